"""Live path mappings: reloading.  A map file rewritten in place or replaced
by an atomic rename is applied at once; an update that does not parse or
validate is rejected whole and the view stays; and once an update is
applied (status generation), the very next stat, lookup and listing show
the new view, although the kernel may cache names and attributes for a day
(--timeout default 86400): no retry loops after the generation is seen."""
import errno
import json
import os
import stat
import time

import pytest

from map_helpers import (err, ls, make_mapped, mkdirs, read_file,
                         send_messages, wait_for, wait_generation, wait_rejected, write_file,
                         write_map_by_rename, write_map_in_place)

WRITERS = {"in place": write_map_in_place, "rename": write_map_by_rename}


def populate(s):
    write_file(os.path.join(s, "fa"), "A")
    write_file(os.path.join(s, "fb"), "BB")
    write_file(os.path.join(s, "real"), "real")
    write_file(os.path.join(s, "later"), "later")
    mkdirs(os.path.join(s, "dir1"), os.path.join(s, "dir1", "sub"), os.path.join(s, "dir2"))
    write_file(os.path.join(s, "dir1", "f1"), "1")
    write_file(os.path.join(s, "dir1", "sub", "deep"), "deep")
    write_file(os.path.join(s, "dir2", "f2"), "22")


TABLE_A = {
    "/x": {"target": "fa"},
    "/gone": {"target": "fa"},
    "/g": {"target": "dir1"},
    "/later": {},
    "/m": {"target": "fa", "mode": "0644"},
    "/v/a/x": {"target": "fa"},
}
TABLE_B = {
    "/x": {"target": "fb"},
    "/g": {"target": "dir2"},
    "/new": {"target": "fa"},
    "/real": {},
    "/m": {"target": "fa", "mode": "0600"},
    "/v/b/y": {"target": "fb"},
}
ROOT_A = ["dir1", "dir2", "fa", "fb", "g", "gone", "m", "real", "v", "x"]
ROOT_B = ["dir1", "dir2", "fa", "fb", "g", "later", "m", "new", "v", "x"]


@pytest.mark.parametrize("how", sorted(WRITERS))
def test_file_update_is_applied_at_once(workdir, mounter, how):
    m = make_mapped(workdir, mounter, TABLE_A, populate=populate)
    assert ls(m.mnt) == ROOT_A
    gen = m.status()["generation"]
    t0 = time.monotonic()
    WRITERS[how](m.mapfile, TABLE_B)
    st = wait_generation(m.mnt, gen + 1)
    took = time.monotonic() - t0
    assert st["entries"] == len(TABLE_B) and st["rejected"] == 0, st
    assert ls(m.mnt) == ROOT_B
    assert took < 1.5, "the update took %.2fs to be applied (expected ~0.5s)" % took
    # and back again, the other way
    other = "rename" if how == "in place" else "in place"
    WRITERS[other](m.mapfile, TABLE_A)
    wait_generation(m.mnt, gen + 2)
    assert ls(m.mnt) == ROOT_A


def test_successive_replacements_are_all_followed(workdir, mounter):
    """After a rename the file is a new inode: later renames and in-place
    writes of the new file are still followed."""
    m = make_mapped(workdir, mounter, {}, populate=populate)
    seq = ["rename", "rename", "in place", "rename", "in place", "in place", "rename"]
    for i, how in enumerate(seq):
        name = "n%d" % i
        m.update({"/" + name: {"target": "fa"}}, how=how)
        assert ls(m.mnt) == sorted(["dir1", "dir2", "fa", "fb", "later", "real", name]), (
            "update %d (%s) not shown" % (i, how))


def test_rapid_renames_end_in_the_last_table(workdir, mounter):
    """Tables replaced by rename faster than they are applied: never a
    rejection (each file is whole), and the view ends as the last table."""
    m = make_mapped(workdir, mounter, {}, populate=populate)
    gen = m.status()["generation"]
    n = 30
    for i in range(n):
        write_map_by_rename(m.mapfile, {"/r%d" % i: {"target": "fa"},
                                        "/count": {"target": "dir%d" % (1 + i % 2)}})
    # poll the view (not the generation: several tables may be applied)
    assert wait_for(lambda: "r%d" % (n - 1) in os.listdir(m.mnt), 5), ls(m.mnt)
    st = m.status()
    assert gen < st["generation"] <= gen + n, st
    assert st["rejected"] == 0, "an atomically renamed table was rejected: %r" % st
    assert ls(m.mnt) == sorted(["dir1", "dir2", "fa", "fb", "later", "real", "count",
                                "r%d" % (n - 1)])
    assert ls(m.p("count")) == (["f1", "sub"] if (n - 1) % 2 == 0 else ["f2"])


BAD_UPDATES = {
    "syntax error": ('{\n  "/x": {"target": "fb"},\n  "/y": {"target" "fb"}\n}\n', "line"),
    "bad key": ({"/x": {"target": "fb"}, "/y/": {"target": "fb"}}, "/y/"),
    "bad value": ({"/x": {"target": "fb"}, "/y": {"target": "fb", "mode": "rw"}}, "/y"),
    "escaping target": ({"/x": {"target": "fb"}, "/y": {"target": "../../etc"}}, "/y"),
    "empty file": ("", None),
}


@pytest.mark.parametrize("how", sorted(WRITERS))
@pytest.mark.parametrize("case", sorted(BAD_UPDATES))
def test_bad_update_is_rejected_whole(workdir, mounter, case, how):
    m = make_mapped(workdir, mounter, TABLE_A, populate=populate)
    before = m.status()
    ls(m.mnt)
    read_file(m.p("x"))
    content, needle = BAD_UPDATES[case]
    WRITERS[how](m.mapfile, content if isinstance(content, str) else json.dumps(content))
    st = wait_rejected(m.mnt, before["rejected"] + 1)
    assert st["generation"] == before["generation"], st
    assert st["entries"] == before["entries"], st
    reason = st["last_rejected_reason"]
    assert isinstance(reason, str) and reason, st
    if needle == "line":
        assert "line" in reason.lower() and "col" in reason.lower(), reason
    elif needle:
        assert needle in reason, reason
    # the view stays: not even the good part of the bad table is applied
    assert ls(m.mnt) == ROOT_A
    assert read_file(m.p("x")) == "A"
    # a good update afterwards is applied
    WRITERS[how](m.mapfile, TABLE_B)
    st = wait_generation(m.mnt, before["generation"] + 1)
    assert st["rejected"] == before["rejected"] + 1, st
    assert ls(m.mnt) == ROOT_B


# --------------------------------------------------------------------------
# the kernel's caches follow the table at once

def prime(mnt):
    """Look up and list everything the update will change (positive and
    negative entries, attributes, page cache)."""
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    seen = {
        "stat x": os.stat(p("x")).st_size,
        "read x": read_file(p("x")),
        "stat gone": os.stat(p("gone")).st_size,
        "stat g/f1": os.stat(p("g", "f1")).st_size,
        "stat g/sub/deep": os.stat(p("g", "sub", "deep")).st_size,
        "ls g": ls(p("g")),
        "stat new": err(os.stat, p("new")),
        "stat later": err(os.stat, p("later")),
        "stat real": os.stat(p("real")).st_size,
        "mode m": oct(stat.S_IMODE(os.stat(p("m")).st_mode)),
        "ls v": ls(p("v")),
        "stat v/a/x": os.stat(p("v", "a", "x")).st_size,
        "stat v/b": err(os.stat, p("v", "b")),
        "ls /": ls(mnt),
    }
    assert seen == {"stat x": 1, "read x": "A", "stat gone": 1, "stat g/f1": 1,
                    "stat g/sub/deep": 4, "ls g": ["f1", "sub"], "stat new": "ENOENT",
                    "stat later": "ENOENT", "stat real": 4, "mode m": "0o644",
                    "ls v": ["a"], "stat v/a/x": 1, "stat v/b": "ENOENT",
                    "ls /": ROOT_A}, seen


def after_b(mnt):
    """One look at every changed name (no retries)."""
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731

    def size(path):
        try:
            return os.stat(path).st_size
        except OSError as e:
            return errno.errorcode.get(e.errno, str(e.errno))

    got = {}
    got["stat x"] = size(p("x"))
    got["read x"] = read_file(p("x"))
    got["stat gone"] = size(p("gone"))
    got["stat g/f1"] = size(p("g", "f1"))
    got["stat g/sub/deep"] = size(p("g", "sub", "deep"))
    got["stat g/f2"] = size(p("g", "f2"))
    got["ls g"] = ls(p("g"))
    got["stat new"] = size(p("new"))
    got["stat later"] = size(p("later"))
    got["stat real"] = size(p("real"))
    got["mode m"] = oct(stat.S_IMODE(os.stat(p("m")).st_mode))
    got["ls v"] = ls(p("v"))
    got["stat v/a"] = size(p("v", "a"))
    got["read v/b/y"] = read_file(p("v", "b", "y"))
    got["ls /"] = ls(mnt)
    return got


EXPECTED_B = {"stat x": 2, "read x": "BB", "stat gone": "ENOENT", "stat g/f1": "ENOENT",
              "stat g/sub/deep": "ENOENT", "stat g/f2": 2, "ls g": ["f2"], "stat new": 1,
              "stat later": 5, "stat real": "ENOENT", "mode m": "0o600", "ls v": ["b"],
              "stat v/a": "ENOENT", "read v/b/y": "BB", "ls /": ROOT_B}


@pytest.mark.parametrize("via", ["file in place", "file rename", "pipe"])
def test_cached_view_changes_at_once(workdir, mounter, via):
    if via == "pipe":
        m = make_mapped(workdir, mounter, None, fifo=True, populate=populate)
        send_messages(m.mapfile, TABLE_A)
        wait_generation(m.mnt, 1)
    else:
        m = make_mapped(workdir, mounter, TABLE_A, populate=populate)
    gen = m.status()["generation"]
    prime(m.mnt)
    prime(m.mnt)  # twice: everything is now answered from the kernel's caches
    if via == "pipe":
        send_messages(m.mapfile, TABLE_B)
    else:
        WRITERS[via[len("file "):]](m.mapfile, TABLE_B)
    wait_generation(m.mnt, gen + 1)
    got = after_b(m.mnt)
    wrong = {k: (got.get(k), v) for k, v in EXPECTED_B.items() if got.get(k) != v}
    assert not wrong, "stale answers right after the update (got, expected): %r" % wrong


def test_readonly_toggle_applies_at_once(workdir, mounter):
    m = make_mapped(workdir, mounter, {"/w": {"target": "dir2"}}, populate=populate)
    with open(m.p("w", "f2"), "a") as f:
        f.write("+")
    assert os.access(m.p("w", "f2"), os.W_OK)
    m.update({"/w": {"target": "dir2", "readonly": True}})
    got = {"open write": err(os.open, m.p("w", "f2"), os.O_WRONLY),
           "create": err(os.open, m.p("w", "new"), os.O_CREAT | os.O_WRONLY, 0o644),
           "chmod": err(os.chmod, m.p("w", "f2"), 0o600)}
    assert got == dict.fromkeys(got, "EROFS"), got
    m.update({"/w": {"target": "dir2"}})
    assert err(os.open, m.p("w", "f2"), os.O_WRONLY) == "ok"
