"""History (issue 17, second slice): prismfs diff lists what was created,
deleted, modified and renamed between two snapshots, or a snapshot and now,
from the journal; prismfs versions lists one file's saved versions.

Real mounts and real system calls. The expected diff is not written down:
the test walks the tree when it takes each snapshot and at the end, and
derives what changed from the inodes (the source keeps an object's inode
across renames; the inodes of deleted files are held open, so none is
reused): an inode new is created, one gone is deleted, one under another
(parent directory, name) is renamed, one whose data, mode, owner or mtime
moved is modified (a directory: mode or owner)."""
import ctypes
import errno
import hashlib
import json
import os
import stat

import pytest

from prism_helpers import assert_one_error_line, cli, wait_for


@pytest.fixture
def hist(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    return src, mnt, hdir, m


def walk(root):
    """{path: (ino, parent ino, name, is dir, what a change would move)}"""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            isdir = os.path.isdir(p) and not os.path.islink(p)
            if isdir:
                what = (st.st_mode, st.st_uid, st.st_gid)
            else:
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                what = (h, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
            out[os.path.relpath(p, root)] = (st.st_ino, os.lstat(d).st_ino, n, isdir, what)
    return out


def expected(before, after):
    bi = {v[0]: (p, v) for p, v in before.items()}
    ai = {v[0]: (p, v) for p, v in after.items()}
    # a parent directory's identity is its inode; the root's is the same in both
    lines = set()
    for ino, (p, v) in ai.items():
        if ino not in bi:
            lines.add(("+", p))
            continue
        op, ov = bi[ino]
        if (ov[1], ov[2]) != (v[1], v[2]):
            lines.add(("R", op, p))
        elif ov[4] != v[4]:
            lines.add(("M", p))
    for ino, (p, v) in bi.items():
        if ino not in ai:
            lines.add(("-", p))
    return lines


def diff(mnt, *args):
    r = cli("diff", mnt, *args)
    assert r.returncode == 0, r.stderr
    out = set()
    for line in r.stdout.splitlines():
        t, rest = line.split("\t", 1)
        out.add((t, *rest.split(" -> ")) if t == "R" else (t, rest))
    return out


def exchange(a, b):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def put(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


def test_diff_lists_what_changed_between_snapshots(hist):
    src, mnt, hdir, m = hist
    p = lambda *x: os.path.join(mnt, *x)
    for n in ("mod", "del", "ren", "over", "victim", "chm", "keep", "swap1", "swap2"):
        put(p(n), "%s\n" % n)
    os.makedirs(p("d", "sub"))
    put(p("d", "x"), "x")
    put(p("d", "sub", "y"), "y")
    held = []
    t0 = walk(src)
    assert cli("snapshot", mnt, "--name", "s1").returncode == 0

    put(p("new"), "new")
    put(p("mod"), "more\n", "a")            # no O_TRUNC: a write row at release
    held.append(open(os.path.join(src, "del")))
    os.unlink(p("del"))
    os.rename(p("ren"), p("ren2"))
    os.rename(p("d"), p("e"))               # moves d/x, d/sub/y with it
    os.chmod(p("e", "x"), 0o600)            # modified beneath the renamed directory
    os.rename(p("e", "sub", "y"), p("y2"))  # renamed out of it
    held.append(open(os.path.join(src, "victim")))
    os.rename(p("over"), p("victim"))       # over victim: victim is deleted
    put(p("tmp"), "t")
    os.unlink(p("tmp"))                     # created and deleted: not listed
    os.mkdir(p("nd"))
    put(p("nd", "f"), "f")
    os.chmod(p("chm"), 0o640)
    exchange(p("swap1"), p("swap2"))
    t1 = walk(src)
    want = expected(t0, t1)
    assert ("-", "victim") in want and ("R", "d", "e") in want  # the oracle sees them
    assert wait_for(lambda: diff(mnt, "s1") == want), (diff(mnt, "s1"), want)

    assert cli("snapshot", mnt, "--name", "s2").returncode == 0
    put(p("mod"), "rewritten")              # O_TRUNC
    os.rename(p("nd"), p("nd2"))
    held_dir = os.open(os.path.join(src, "e", "sub"), os.O_RDONLY | os.O_DIRECTORY)
    os.rmdir(p("e", "sub"))                 # (held open: its inode is not reused)
    put(p("e", "sub"), "a file where the directory was")
    t2 = walk(src)
    assert diff(mnt, "s1", "s2") == want    # what s2 closes does not move
    assert wait_for(lambda: diff(mnt, "s2") == expected(t1, t2)), (diff(mnt, "s2"),
                                                                   expected(t1, t2))
    assert wait_for(lambda: diff(mnt, "s1") == expected(t0, t2)), (diff(mnt, "s1"),
                                                                   expected(t0, t2))
    # ids name snapshots as well as names do
    assert diff(mnt, "1", "2") == want
    r = cli("diff", mnt, "s1", "--stat")
    assert r.returncode == 0, r.stderr
    e = expected(t0, t2)
    count = lambda t: sum(1 for x in e if x[0] == t)
    assert r.stdout == "%d created, %d deleted, %d modified, %d renamed\n" % (
        count("+"), count("-"), count("M"), count("R"))
    for f in held:
        f.close()
    os.close(held_dir)


def test_versions_lists_what_each_snapshot_saved(hist):
    src, mnt, hdir, m = hist
    f = os.path.join(mnt, "f")
    put(f, "one")
    st1 = os.stat(f)
    assert cli("snapshot", mnt, "--name", "a").returncode == 0
    put(f, "second version")
    put(f, "not saved again under a")
    st2 = os.stat(f)
    assert cli("snapshot", mnt, "--name", "b").returncode == 0
    assert cli("snapshot", mnt, "--name", "c").returncode == 0  # nothing changes after it
    os.truncate(f, 1)
    r = cli("versions", mnt, f, "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    # a version is saved under the last snapshot before the change (c: what
    # the file was at b and at c alike)
    assert [(v["snapshot"], v["size"]) for v in got] == [("a", st1.st_size),
                                                          ("c", st2.st_size)], got
    snaps = {s["name"]: s for s in json.loads(cli("snapshots", mnt, "--json").stdout)}
    assert [v["time"] for v in got] == [snaps["a"]["time"], snaps["c"]["time"]]
    # the same, as text, and by a path relative to the root
    r = cli("versions", mnt, "f")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[0] for l in lines] == ["a", "c"]
    assert [l.split()[2] for l in lines] == ["size=%d" % st1.st_size, "size=%d" % st2.st_size]
    # a file never changed after a snapshot has none
    put(os.path.join(mnt, "g"), "g")
    r = cli("versions", mnt, "g")
    assert r.returncode == 0 and r.stdout == "", (r.stdout, r.stderr)


def test_versions_follow_the_file_across_renames(hist):
    """A file renamed (itself, or a directory above it) keeps the versions
    saved under its earlier names; each says the name it was saved as."""
    src, mnt, hdir, m = hist
    p = lambda *x: os.path.join(mnt, *x)
    snap = lambda n: cli("snapshot", mnt, "--name", n).returncode == 0
    put(p("f"), "1")
    assert snap("s1")
    put(p("f"), "22")               # saves "1" as f under s1
    assert snap("s2")
    os.rename(p("f"), p("g"))       # saves "22" as f under s2
    put(p("g"), "333")
    assert snap("s3")
    os.mkdir(p("d"))
    os.rename(p("g"), p("d", "h"))  # saves "333" as g under s3
    put(p("d", "h"), "4444")
    assert snap("s4")
    put(p("d", "h"), "55555")       # saves "4444" as d/h under s4
    os.rename(p("d"), p("e"))       # a directory above it
    assert snap("s5")
    put(p("e", "h"), "666666")      # saves "55555" as e/h under s5
    put(p("f"), "another file at the old name")
    r = cli("versions", mnt, "e/h", "--json")
    assert r.returncode == 0, r.stderr
    got = [(v["snapshot"], v["size"], v["path"]) for v in json.loads(r.stdout)]
    assert got == [("s1", 1, "f"), ("s2", 2, "f"), ("s3", 3, "g"), ("s4", 4, "d/h"),
                   ("s5", 5, "e/h")], got
    r = cli("versions", mnt, "e/h")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split()[-1] for l in lines[:4]] == ["as=f", "as=f", "as=g", "as=d/h"], lines
    assert len(lines) == 5 and "as=" not in lines[4], lines
    # the file now at f was made after every snapshot: f's versions are
    # those of the object that had the name before
    r = cli("versions", mnt, "f", "--json")
    assert [(v["snapshot"], v["size"]) for v in json.loads(r.stdout)] == [("s1", 1), ("s2", 2)]


def test_bad_usage_of_diff_and_versions_is_one_line(hist, trees, mounter):
    src, mnt, hdir, m = hist
    assert cli("snapshot", mnt, "--name", "s1").returncode == 0
    assert cli("snapshot", mnt, "--name", "s2").returncode == 0
    for args, code in ((["diff", mnt], 2), (["diff"], 2), (["diff", mnt, "s1", "--json"], 2),
                       (["diff", mnt, "s1", "s2", "s3"], 2), (["diff", mnt, "nope"], 1),
                       (["diff", mnt, "s1", "nope"], 1), (["diff", mnt, "s2", "s1"], 1),
                       (["versions", mnt], 2), (["versions", mnt, "f", "--stat"], 2),
                       (["versions", os.path.join(mnt, "nodir"), "f"], 1)):
        r = cli(*args)
        assert_one_error_line(r, " ".join(args))
        assert r.returncode == code, (args, r.returncode, r.stderr)


def snapshot_names(mnt):
    r = cli("snapshots", mnt, "--json")
    assert r.returncode == 0, r.stderr
    return [s["name"] for s in json.loads(r.stdout)]


def state(path):
    st = os.stat(path)
    with open(path, "rb") as f:
        return f.read(), st.st_mode, st.st_mtime_ns


def test_restore_puts_files_back_and_can_be_undone(hist):
    src, mnt, hdir, m = hist
    f, g = os.path.join(mnt, "f"), os.path.join(mnt, "d", "g")
    os.mkdir(os.path.join(mnt, "d"))
    put(f, "first\n")
    os.chmod(f, 0o640)
    os.utime(f, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    put(g, "g one\n")
    at_s1 = {f: state(f), g: state(g)}
    assert cli("snapshot", mnt, "--name", "s1").returncode == 0
    put(f, "second, longer\n")
    os.chmod(f, 0o600)
    put(g, "g two\n", "a")
    put(os.path.join(mnt, "new"), "made after s1")
    before = {f: state(f), g: state(g)}
    ino = os.stat(f).st_ino

    r = cli("restore", mnt, "s1", f, "d/g")
    assert r.returncode == 0, r.stderr
    # read through the mount (the kernel's caches see it) and in SOURCE
    assert {p: state(p) for p in (f, g)} == at_s1
    assert state(os.path.join(src, "f")) == at_s1[f]
    assert os.stat(f).st_ino != ino                    # replaced in one rename
    assert sorted(os.listdir(mnt)) == ["d", "f", "new"]  # no temporary left
    # the restore is in the journal, as this command's doing
    renames = [x for x in log_json(mnt, "--since", "s1") if x["kind"] == "rename"]
    assert [x["path2"] for x in renames] == ["f", "d/g"], renames
    assert {x["comm"] for x in renames} == {"prismfs"}
    # the snapshot taken just before it undoes it
    undo = [n for n in snapshot_names(mnt) if n.startswith("before-restore-")]
    assert len(undo) == 1 and undo[0] in r.stdout, r.stdout
    r = cli("restore", mnt, undo[0], "f", g)
    assert r.returncode == 0, r.stderr
    assert {p: state(p) for p in (f, g)} == before


def log_json(mnt, *args):
    r = cli("log", mnt, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_restore_refuses_in_one_line_what_it_cannot_restore(hist):
    src, mnt, hdir, m = hist
    f = os.path.join(mnt, "f")
    put(f, "kept")
    os.mkdir(os.path.join(mnt, "d"))
    assert cli("snapshot", mnt, "--name", "s1").returncode == 0
    put(os.path.join(mnt, "later"), "made after s1")
    put(os.path.join(mnt, "later"), "changed")
    os.chmod(os.path.join(mnt, "d"), 0o700)
    # no such snapshot: nothing taken, nothing changed
    r = cli("restore", mnt, "nope", f)
    assert_one_error_line(r, "restore from an unknown snapshot")
    assert r.returncode == 1
    assert snapshot_names(mnt) == ["s1"]
    # a path there neither at s1 nor now; one outside the mount; the past
    for what in ("missing", "../x", "d/../f", "/etc", os.path.join(mnt, ".history", "s1")):
        r = cli("restore", mnt, "s1", what)
        assert_one_error_line(r, "restore of %s" % what)
        assert r.returncode == 1, r.stderr
    assert open(f).read() == "kept"
    assert open(os.path.join(mnt, "later")).read() == "changed"
    assert stat.S_IMODE(os.stat(os.path.join(mnt, "d")).st_mode) == 0o700
    for args in (["restore", mnt], ["restore", mnt, "s1", "f", "-x"]):
        r = cli(*args)
        assert_one_error_line(r, " ".join(args))
        assert r.returncode == 2
