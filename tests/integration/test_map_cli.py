"""Live path mappings, the command line: --map FILE|FIFO and --map-max,
refusing a bad initial table (one "prismfs: ..." line, non-zero, nothing
mounted), the mapping lines of `prismfs status`, and PassthroughFS's
command line (--mountpoint/--target/--mapping_file, foreground)."""
import calendar
import json
import os
import re
import signal
import stat
import subprocess
import time

import pytest

from conftest import PRISMFS, is_mounted, mounts_under
from map_helpers import (compat, err, ls, make_mapped, mapping_status, mkdirs,  # noqa: F401
                         read_file, send_messages, wait_generation, wait_rejected,
                         write_file,
                         write_map_by_rename, write_map_in_place)
from prism_helpers import (assert_one_error_line, bg, cli, prismfs_daemons_for,  # noqa: F401
                           status_json, wait_for)


def nothing_left(workdir, what):
    mps = mounts_under(os.path.realpath(workdir))
    assert not mps, "%s: something was mounted anyway: %s" % (what, mps)
    assert wait_for(lambda: not prismfs_daemons_for(workdir), 3), \
        "%s: a prismfs process is still running: %s" % (what, prismfs_daemons_for(workdir))


def trees(workdir):
    src, mnt = mkdirs(os.path.join(workdir, "src"), os.path.join(workdir, "mnt"))
    write_file(os.path.join(src, "f"), "f\n")
    os.mkdir(os.path.join(src, "d"))
    return src, mnt


# --------------------------------------------------------------------------
# a bad initial table: refused with one line naming the key and the reason

# (case id, file content, text the error line must contain or None)
BAD_TABLES = [
    ("relative key", {"a/b": {"target": "f"}}, "a/b"),
    ("dot-dot component", {"/d/../f": {"target": "f"}}, "/d/../f"),
    ("dot component", {"/d/./f": {"target": "f"}}, "/d/./f"),
    ("empty component", {"/d//f": {"target": "f"}}, "/d//f"),
    ("trailing slash", {"/d/": {"target": "d"}}, "/d/"),
    ("empty key", {"": {"target": "f"}}, None),
    ("value is a string", {"/x": "f"}, "/x"),
    ("value is a number", {"/x": 5}, "/x"),
    ("value is null", {"/x": None}, "/x"),
    ("path differs from key", {"/x": {"path": "/y", "target": "f"}}, "/x"),
    ("path not a string", {"/x": {"path": 7, "target": "f"}}, "/x"),
    ("target not a string", {"/x": {"target": 7}}, "/x"),
    ("relative target climbing out", {"/x": {"target": "../outside"}}, "/x"),
    ("relative target with inner dot-dot", {"/x": {"target": "d/../f"}}, "/x"),
    ("relative target ending in dot-dot", {"/x": {"target": "d/.."}}, "/x"),
    ("mode not octal", {"/x": {"target": "f", "mode": "rw-r--r--"}}, "/x"),
    ("mode with digit 9", {"/x": {"target": "f", "mode": "0959"}}, "/x"),
    ("mode is a boolean", {"/x": {"target": "f", "mode": True}}, "/x"),
    ("uid is a name", {"/x": {"target": "f", "uid": "root"}}, "/x"),
    ("uid is fractional", {"/x": {"target": "f", "uid": 1.5}}, "/x"),
    ("uid is a boolean", {"/x": {"target": "f", "uid": True}}, "/x"),
    ("gid is a name", {"/x": {"target": "f", "gid": "wheel"}}, "/x"),
    ("readonly is a string", {"/x": {"target": "f", "readonly": "yes"}}, "/x"),
    ("readonly is a number", {"/x": {"target": "f", "readonly": 1}}, "/x"),
    ("bad key among good ones", {"/a": {"target": "f"}, "/b/": {}, "/c": {}}, "/b/"),
    ("top level is an array", [{"/x": {"target": "f"}}], None),
    ("top level is a string", "hello", None),
]


@pytest.mark.parametrize("case", [c[0] for c in BAD_TABLES])
def test_bad_initial_table_is_refused(workdir, case):
    _, table, needle = [c for c in BAD_TABLES if c[0] == case][0]
    src, mnt = trees(workdir)
    mapfile = write_file(os.path.join(workdir, "map.json"), json.dumps(table))
    res = cli("mount", "--map", mapfile, src, mnt, timeout=15)
    nothing_left(workdir, case)
    assert_one_error_line(res, "mount --map with %s" % case)
    if needle is not None:
        assert needle in res.stderr, (
            "%s: the error line should name the key %r: %r" % (case, needle, res.stderr))
    assert os.listdir(mnt) == [], "the mount point was changed"


# (case id, text, line of the error)
SYNTAX_ERRORS = [
    ("missing value", '{\n  "/a": {"target": "f"},\n  "/b": \n}\n', 4),
    ("trailing comma", '{\n  "/a": {"target": "f"},\n  "/b": {"target": "f"},\n}\n', 4),
    ("unterminated string", '{\n "/a": {"target": "f"},\n "/b": {"target": "f}\n}\n', 3),
    ("bare word", '{\n\n  "/a": nonsense\n}\n', 3),
]


@pytest.mark.parametrize("case", [c[0] for c in SYNTAX_ERRORS])
def test_json_syntax_error_names_line_and_column(workdir, case):
    _, text, line = [c for c in SYNTAX_ERRORS if c[0] == case][0]
    src, mnt = trees(workdir)
    mapfile = write_file(os.path.join(workdir, "map.json"), text)
    res = cli("mount", "--map", mapfile, src, mnt, timeout=15)
    nothing_left(workdir, case)
    assert_one_error_line(res, "mount --map with a JSON syntax error (%s)" % case)
    msg = res.stderr.lower()
    assert re.search(r"line\D{0,3}%d\b" % line, msg), (
        "the error should give line %d: %r" % (line, res.stderr))
    assert re.search(r"col(umn)?\D{0,3}\d+", msg), "the error should give the column: %r" % (
        res.stderr)


@pytest.mark.parametrize("foreground", [False, True])
def test_bad_table_refused_in_foreground_too(workdir, foreground):
    src, mnt = trees(workdir)
    mapfile = write_file(os.path.join(workdir, "map.json"), '{"/x/": {}}')
    args = ["mount"] + (["-f"] if foreground else []) + ["--map", mapfile, src, mnt]
    res = cli(*args, timeout=15)
    nothing_left(workdir, "bad table")
    assert_one_error_line(res, "prismfs %s" % " ".join(args))
    assert "/x/" in res.stderr


def _bad_args(w):
    src, mnt = os.path.join(w, "src"), os.path.join(w, "mnt")
    good = os.path.join(w, "good.json")
    return {
        "missing map file": ["mount", "--map", os.path.join(w, "nope.json"), src, mnt],
        "map is a directory": ["mount", "--map", os.path.join(w, "adir"), src, mnt],
        "empty map file": ["mount", "--map", os.path.join(w, "empty.json"), src, mnt],
        "--map without a value": ["mount", src, mnt, "--map"],
        "--map-max not a number": ["mount", "--map", good, "--map-max", "lots", src, mnt],
        "--map-max bad suffix": ["mount", "--map", good, "--map-max", "10X", src, mnt],
        "--map-max negative": ["mount", "--map", good, "--map-max", "-5", src, mnt],
        "--map-max without a value": ["mount", "--map", good, src, mnt, "--map-max"],
    }


@pytest.mark.parametrize("case", sorted(_bad_args("/w")))
def test_bad_map_arguments(workdir, case):
    trees(workdir)
    os.mkdir(os.path.join(workdir, "adir"))
    write_file(os.path.join(workdir, "empty.json"), "")
    write_file(os.path.join(workdir, "good.json"), '{"/g": {"target": "f"}}')
    args = _bad_args(workdir)[case]
    res = cli(*args, timeout=15)
    nothing_left(workdir, case)
    assert_one_error_line(res, "prismfs %s (%s)" % (" ".join(args), case))


@pytest.mark.parametrize("value", ["4096", "1K", "64M", "1G"])
def test_map_max_values_accepted(workdir, mounter, value):
    m = make_mapped(workdir, mounter, None, "--map-max", value, fifo=True,
                    populate=lambda s: write_file(os.path.join(s, "f"), "f"))
    send_messages(m.mapfile, {"/g": {"target": "f"}})
    wait_generation(m.mnt, 1)
    assert read_file(m.p("g")) == "f"


def test_unknown_fields_are_ignored(workdir, mounter):
    m = make_mapped(workdir, mounter,
                    {"/g": {"path": "/g", "target": "f", "comment": "hi", "weight": [1, 2],
                            "nested": {"mode": "bogus"}}},
                    populate=lambda s: write_file(os.path.join(s, "f"), "content"))
    assert read_file(m.p("g")) == "content"
    assert m.status()["entries"] == 1


# --------------------------------------------------------------------------
# status

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")


def iso_seconds(ts):
    assert ISO_RE.match(ts), "%r is not an ISO 8601 UTC time" % ts
    base = ts[:19]
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))


def status_text_mapping(mnt):
    res = cli("status", mnt)
    assert res.returncode == 0, res.stderr
    out = {}
    for line in res.stdout.splitlines():
        if line.startswith("mapping."):
            parts = line.split(None, 1)
            out[parts[0][len("mapping."):]] = parts[1].strip() if len(parts) > 1 else ""
    return out, res.stdout


KEYS = ["source", "kind", "generation", "applied_at", "entries", "rejected",
        "last_rejected_at", "last_rejected_reason"]


def test_status_of_a_file_mapping(workdir, mounter):
    t0 = time.time()
    m = make_mapped(workdir, mounter,
                    {"/a": {"target": "f"}, "/b": {}, "/c/d": {"target": "d"}},
                    populate=lambda s: (write_file(os.path.join(s, "f"), "x"),
                                        os.mkdir(os.path.join(s, "d"))))
    js = mapping_status(m.mnt)
    for k in KEYS:
        assert k in js, "status --json mapping lacks %r: %r" % (k, js)
    assert js["source"] == os.path.realpath(m.mapfile)
    assert js["kind"] == "file"
    assert isinstance(js["generation"], int) and js["generation"] >= 1, (
        "a table was applied: the generation should count it: %r" % js)
    assert js["entries"] == 3
    assert js["rejected"] == 0
    assert js["last_rejected_at"] is None and js["last_rejected_reason"] is None
    applied = iso_seconds(js["applied_at"])
    assert t0 - 5 <= applied <= time.time() + 5, "applied_at %r is not now" % js["applied_at"]
    text, raw = status_text_mapping(m.mnt)
    for k in KEYS:
        assert k in text, "prismfs status has no mapping.%s line:\n%s" % (k, raw)
    assert text["source"] == js["source"]
    assert text["kind"] == "file"
    assert text["generation"] == str(js["generation"])
    assert text["entries"] == "3"
    assert text["rejected"] == "0"
    assert text["applied_at"] == js["applied_at"]


def test_status_of_a_pipe_mapping(workdir, mounter):
    m = make_mapped(workdir, mounter, None, fifo=True,
                    populate=lambda s: write_file(os.path.join(s, "f"), "x"))
    js = mapping_status(m.mnt)
    assert js["kind"] == "named pipe", js
    assert js["source"] == os.path.realpath(m.mapfile)
    assert js["generation"] == 0 and js["entries"] == 0, (
        "before the first message the table is empty (generation 0): %r" % js)
    assert js["rejected"] == 0
    text, raw = status_text_mapping(m.mnt)
    assert text.get("kind") == "named pipe", raw
    assert text.get("generation") == "0", raw
    send_messages(m.mapfile, {"/g": {"target": "f"}, "/h": {}})
    js = wait_generation(m.mnt, 1)
    assert js["entries"] == 2
    iso_seconds(js["applied_at"])


def test_status_after_a_rejected_update(workdir, mounter):
    m = make_mapped(workdir, mounter, {"/a": {"target": "f"}},
                    populate=lambda s: write_file(os.path.join(s, "f"), "x"))
    gen = m.status()["generation"]
    t0 = time.time()
    write_map_by_rename(m.mapfile, {"/bad/": {"target": "f"}})
    js = wait_rejected(m.mnt, 1)
    assert js["generation"] == gen and js["entries"] == 1, js
    assert "/bad/" in js["last_rejected_reason"], js
    assert t0 - 5 <= iso_seconds(js["last_rejected_at"]) <= time.time() + 5, js
    text, raw = status_text_mapping(m.mnt)
    assert text.get("rejected") == "1", raw
    assert "/bad/" in text.get("last_rejected_reason", ""), raw
    assert text.get("last_rejected_at") == js["last_rejected_at"], raw


def test_relative_map_path_in_background(workdir, bg):
    """A background mount given a relative --map path still follows the
    file after the daemon detached (and status shows it absolute)."""
    src, mnt = trees(workdir)
    write_file(os.path.join(workdir, "rel.json"), '{"/g": {"target": "f"}}')
    res = bg.mount("src", "mnt", "--map", "rel.json", cwd=workdir)
    assert res.returncode == 0, res.stderr
    assert read_file(os.path.join(mnt, "g")) == "f\n"
    js = mapping_status(mnt)
    assert js["source"] == os.path.join(os.path.realpath(workdir), "rel.json"), js
    gen = js["generation"]
    write_map_in_place(os.path.join(workdir, "rel.json"), '{"/h": {"target": "f"}}')
    wait_generation(mnt, gen + 1)
    assert ls(mnt) == ["d", "f", "h"]


def test_pipe_mount_returns_at_once(workdir, bg):
    """Mounting with a pipe nobody writes to is not blocked: the command
    returns and the mount answers (an empty table)."""
    src, mnt = trees(workdir)
    fifo = os.path.join(workdir, "map.fifo")
    os.mkfifo(fifo)
    t0 = time.monotonic()
    res = bg.mount(src, mnt, "--map", fifo, timeout=20)
    took = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert took < 10, "mount took %.1fs with a silent pipe" % took
    assert is_mounted(mnt)
    assert ls(mnt) == ["d", "f"]
    assert mapping_status(mnt)["generation"] == 0
    send_messages(fifo, {"/g": {"target": "f"}})
    wait_generation(mnt, 1)
    assert ls(mnt) == ["d", "f", "g"]


# --------------------------------------------------------------------------
# PassthroughFS's command line

def passthroughfs_example(workdir):
    """The example table of PassthroughFS with real directories: /underlying_fs
    is a tree beside the target."""
    under = os.path.join(workdir, "underlying_fs")
    target = os.path.join(workdir, "target")
    mnt = os.path.join(workdir, "mnt")
    mkdirs(under, os.path.join(under, "some", "dir"), target, mnt)
    write_file(os.path.join(under, "real_example.txt"), "real example\n")
    write_file(os.path.join(under, "some", "dir", "inner.txt"), "inner\n")
    write_file(os.path.join(target, "example2.txt"), "hidden by the table\n")
    write_file(os.path.join(target, "plain.txt"), "plain\n")
    table = {
        "/example.txt": {"path": "/example.txt",
                         "target": os.path.join(under, "real_example.txt")},
        "/example2.txt": {"path": "/example2.txt"},
        "/some/dir": {"path": "/some/dir", "target": os.path.join(under, "some", "dir")},
    }
    mapfile = write_file(os.path.join(workdir, "mapping.json"), json.dumps(table, indent=4))
    return under, target, mnt, mapfile


def check_example_view(mnt, under):
    assert ls(mnt) == ["example.txt", "plain.txt", "some"]
    assert read_file(os.path.join(mnt, "example.txt")) == "real example\n"
    assert err(os.stat, os.path.join(mnt, "example2.txt")) == "ENOENT"
    assert ls(os.path.join(mnt, "some")) == ["dir"]
    assert ls(os.path.join(mnt, "some", "dir")) == ["inner.txt"]
    assert read_file(os.path.join(mnt, "some", "dir", "inner.txt")) == "inner\n"
    assert read_file(os.path.join(mnt, "plain.txt")) == "plain\n"
    # writes go to the mapped places
    with open(os.path.join(mnt, "some", "dir", "new.txt"), "w") as f:
        f.write("new\n")
    assert read_file(os.path.join(under, "some", "dir", "new.txt")) == "new\n"


COMPAT_FORMS = {
    "documented order": lambda m, t, f: ["--mountpoint", m, "--target", t, "--mapping_file", f],
    "equals forms": lambda m, t, f: ["--mapping_file=" + f, "--target=" + t, "--mountpoint=" + m],
    "mixed order": lambda m, t, f: ["--target", t, "--mapping_file=" + f, "--mountpoint", m],
}


@pytest.mark.parametrize("form", sorted(COMPAT_FORMS))
def test_passthroughfs_command_line(workdir, compat, form):
    under, target, mnt, mapfile = passthroughfs_example(workdir)
    args = COMPAT_FORMS[form](mnt, target, mapfile)
    run = compat.start(args, mnt)
    check_example_view(mnt, under)
    assert run.proc.poll() is None, "PassthroughFS's command line should stay in the foreground"
    st = status_json(mnt)
    assert st["pid"] == run.proc.pid, "the foreground process is the daemon: %r" % st
    assert st["mapping"]["kind"] == "file" and st["mapping"]["entries"] == 3, st
    res = cli("unmount", mnt)
    assert res.returncode == 0, res.stderr
    assert run.proc.wait(20) == 0, "the daemon exited %r: %s" % (run.proc.returncode,
                                                                run.output())
    assert not is_mounted(mnt)


def test_passthroughfs_command_line_live_reload(workdir, compat):
    under, target, mnt, mapfile = passthroughfs_example(workdir)
    compat.start(["--mountpoint", mnt, "--target", target, "--mapping_file", mapfile], mnt)
    gen = mapping_status(mnt)["generation"]
    write_map_in_place(mapfile, {"/example2.txt": {"path": "/example2.txt",
                                                   "target": os.path.join(target, "plain.txt")}})
    wait_generation(mnt, gen + 1)
    assert ls(mnt) == ["example2.txt", "plain.txt"]
    assert read_file(os.path.join(mnt, "example2.txt")) == "plain\n"


def test_passthroughfs_command_line_without_mapping(workdir, compat):
    _, target, mnt, _ = passthroughfs_example(workdir)
    run = compat.start(["--target=" + target, "--mountpoint=" + mnt], mnt)
    assert ls(mnt) == ["example2.txt", "plain.txt"]
    assert run.proc.poll() is None


def test_passthroughfs_command_line_interrupt_unmounts(workdir, compat):
    """Like PassthroughFS in the foreground, Ctrl-C ends the daemon and
    unmounts."""
    under, target, mnt, mapfile = passthroughfs_example(workdir)
    run = compat.start(["--mountpoint", mnt, "--target", target, "--mapping_file", mapfile],
                       mnt)
    run.proc.send_signal(signal.SIGINT)
    run.proc.wait(20)
    assert wait_for(lambda: not is_mounted(mnt), 5), "still mounted after SIGINT"


@pytest.mark.parametrize("case", ["bad table", "missing target", "missing mapping file"])
def test_passthroughfs_command_line_refusals(workdir, case):
    under, target, mnt, mapfile = passthroughfs_example(workdir)
    if case == "bad table":
        write_file(mapfile, '{"/example.txt": {"path": "/other.txt"}}')
        args = ["--mountpoint", mnt, "--target", target, "--mapping_file", mapfile]
    elif case == "missing target":
        args = ["--mountpoint", mnt, "--mapping_file", mapfile]
    else:
        args = ["--mountpoint", mnt, "--target", target, "--mapping_file",
                os.path.join(workdir, "nope.json")]
    res = cli(*args, timeout=15)
    nothing_left(workdir, case)
    assert_one_error_line(res, "prismfs %s (%s)" % (" ".join(args), case))
    if case == "bad table":
        assert "/example.txt" in res.stderr


def mount_dev(mnt):
    rp = os.path.realpath(mnt)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == rp:
                return parts[2]
    return None


def test_status_of_a_mount_after_another_mapped_mount_ended(workdir, mounter):
    """A mapped mount ended from outside (fusermount -u) and a new mount made
    right after it (which may get the same device number): once the first
    daemon has exited, the new mount's status still answers."""
    src, mnt = trees(workdir)
    src2, mnt2 = mkdirs(os.path.join(workdir, "src2"), os.path.join(workdir, "mnt2"))
    mapfile = write_file(os.path.join(workdir, "map.json"), '{"/g": {"target": "f"}}')
    first = mounter(src, mnt, "--map", mapfile)
    dev = mount_dev(mnt)
    subprocess.run(["fusermount3", "-u", mnt], check=True)
    second = mounter(src2, mnt2)
    first.wait(20)
    st = cli("status", "--json", mnt2)
    assert st.returncode == 0, (
        "the status of a live mount (device %s, the ended one was %s) fails: %s"
        % (mount_dev(mnt2), dev, st.stderr))
    assert json.loads(st.stdout)["pid"] == second.pid
