"""History on a layered mount (issue 17, items 1 and 8): prismfs mount
--history H --upper U --work W --lower L2 L1 MNT.

The oracle is kernel overlayfs, not prismfs: when the test takes a
snapshot it records the merged tree as the kernel shows it, mounting
lowerdir=U:L1:L2 read-only (the upper as a lower: the layers as they are at
that moment, merged by the kernel's rules). Then, after changes of every
kind (copy-up of lower files by a write and by a chmod, upper files
rewritten, a lower file and a lower directory removed -- whiteouts and an
opaque directory in U --, new files), .history/SNAP must show that record;
the snapshot exported as a layer (prismfs export --layer DIR) laid by the
kernel over the same lowers (lowerdir=DIR:L1:L2) must show it too; restore
brings back lower-origin files through the mount. The journal has each
change with its process. A kill -9 of the daemon in a workload of copy-ups
and removals leaves the snapshots readable as recorded and every entry of U
journaled."""
import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from conftest import Mount
from prism_helpers import assert_one_error_line, cli, history_rows, wait_for


def record(root):
    """{rel: (kind, mode, uid, gid, sha256 or target, mtime_ns)} of a tree
    (directories' mtimes left out: they move with their entries)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, st.st_uid, st.st_gid, os.readlink(p), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", mode, st.st_uid, st.st_gid, None, None)
            elif stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    h = hashlib.sha256(f.read()).hexdigest()
                out[rel] = ("f", mode, st.st_uid, st.st_gid, h, st.st_mtime_ns)
            else:
                out[rel] = ("o", st.st_mode, st.st_uid, st.st_gid, st.st_rdev, None)
    return out


def same(got, want):
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        assert got[k] == want[k], (k, got[k], want[k])


def kernel_view(lowerdirs, mp, opts=""):
    """The kernel's merged tree of lowerdirs (top first), read-only."""
    os.makedirs(mp, exist_ok=True)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "ro," + opts + "lowerdir=" + ":".join(lowerdirs), mp], check=True,
                   capture_output=True, timeout=30)
    try:
        return record(mp)
    finally:
        subprocess.run(["umount", mp], check=True, timeout=30)


def write(p, data, mtime=None):
    with open(p, "wb") as f:
        f.write(data)
    if mtime:
        os.utime(p, ns=(mtime, mtime))


@pytest.fixture
def layers(workdir):
    """L1 (SOURCE) over L2, an empty upper U, work W, history H."""
    d = {k: os.path.join(workdir, k) for k in ("L1", "L2", "U", "W", "H", "mnt", "k")}
    for k in ("L1", "L2", "U", "W", "mnt"):
        os.makedirs(d[k])
    L1, L2 = d["L1"], d["L2"]
    write(os.path.join(L1, "a"), b"lower a", 1_500_000_000_111_111_111)
    write(os.path.join(L1, "gone"), b"lower, removed later", 1_500_000_000_222_222_222)
    write(os.path.join(L1, "keep"), b"lower, chmod'ed later", 1_500_000_000_333_333_333)
    os.chmod(os.path.join(L1, "keep"), 0o644)
    os.makedirs(os.path.join(L1, "dir", "sub"))
    write(os.path.join(L1, "dir", "c"), b"lower c")
    write(os.path.join(L1, "dir", "sub", "s"), b"lower s")
    os.symlink("a", os.path.join(L1, "link"))
    write(os.path.join(L2, "z"), b"from L2 only", 1_400_000_000_000_000_000)
    os.makedirs(os.path.join(L2, "dir"))
    write(os.path.join(L2, "dir", "l2"), b"L2's, in the merged dir")
    return d


def mount_args(d):
    return ["--history", d["H"], "--upper", d["U"], "--work", d["W"], "--lower", d["L2"]]


def oracle(d, opts=""):
    """The merged tree now, as the kernel merges U over L1 over L2."""
    return kernel_view([d["U"], d["L1"], d["L2"]], d["k"], opts)


def snapshot(mnt, name):
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr


def test_layered_history_journal_browse_restore_export(layers, mounter):
    d = layers
    mnt = d["mnt"]
    mounter(d["L1"], mnt, *mount_args(d))
    p = lambda *x: os.path.join(mnt, *x)
    # before s1: a copy-up by a write, an upper file, a copy-up of a directory
    with open(p("a"), "ab") as f:
        f.write(b" + first change")
    write(p("u"), b"upper u", 1_600_000_000_000_000_000)
    write(p("dir", "new"), b"upper file in a merged dir")
    at_s1 = oracle(d)
    assert at_s1["a"][4] == hashlib.sha256(b"lower a + first change").hexdigest()
    snapshot(mnt, "s1")
    # after: every kind of change, to lower-origin and upper files
    write(p("a"), b"rewritten")
    write(p("u"), b"upper u rewritten")
    os.unlink(p("gone"))                           # a whiteout in U
    os.chmod(p("keep"), 0o600)                     # copy-up, metadata only
    subprocess.run(["rm", "-r", p("dir")], check=True)  # a merged directory
    os.mkdir(p("dir"))                             # ... made again: opaque
    write(p("dir", "fresh"), b"in the opaque dir")
    os.unlink(p("z"))                              # L2's file, whited out
    os.unlink(p("link"))
    write(p("n"), b"new")
    at_s2 = oracle(d)
    snapshot(mnt, "s2")
    write(p("n"), b"changed after s2")
    os.unlink(p("u"))

    # the journal: each change with its process, uid and command
    me = os.getpid()
    assert cli("log", mnt).returncode == 0  # which writes the outcomes held back
    rows = history_rows(d["H"], "SELECT kind, path, path2, pid, uid, comm, state FROM changes")
    mine = [(k, a, b) for (k, a, b, pid, uid, comm, st) in rows if pid == me]
    assert ("create", "u", None) in mine
    assert any(k == "rename" and b == "a" for (k, a, b) in mine)  # the copy-up
    assert any(k == "mknod" and a == "gone" for (k, a, b) in mine)  # its whiteout
    assert ("unlink", "u", None) in mine
    assert all(st == 1 for (*_, st) in rows)
    # no row of the work directory's temporaries but their renames in
    assert not [r for r in rows if r[1].startswith("/") and r[0] != "rename"]
    # diff speaks of the merged view (test_layered_diff below in detail)
    r = cli("diff", mnt, "s1", "s2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "-\tgone" in lines  # the lower file whited out
    assert "M\tkeep" in lines  # a copy-up by a chmod
    assert not [l for l in lines if l.split("\t", 1)[1].startswith("/")]  # no temporary

    # browse: each snapshot's whole merged tree as the kernel showed it
    same(record(p(".history", "s1")), at_s1)
    same(record(p(".history", "s2")), at_s2)
    with open(p(".history", "s1", "gone"), "rb") as f:
        assert f.read() == b"lower, removed later"

    # export as a layer: the kernel lays it over the same lowers
    for name, want in (("s1", at_s1), ("s2", at_s2)):
        lay = os.path.join(os.path.dirname(mnt), "layer-" + name)
        r = cli("export", mnt, name, "--layer", lay)
        assert r.returncode == 0, r.stderr
        same(kernel_view([lay, d["L1"], d["L2"]], d["k"]), want)
    # into a directory that exists: refused, nothing written
    r = cli("export", mnt, "s1", "--layer", lay)
    assert_one_error_line(r, "exists")
    # the tar stream would miss the lowers: refused in one line
    r = cli("export", mnt, "s1", "-o", os.path.join(os.path.dirname(mnt), "x.tar"))
    assert_one_error_line(r, "--layer")
    assert r.returncode == 2

    # restore lower-origin files (a copied up, gone whited out) and a tree
    r = cli("restore", mnt, "s1", p("a"), p("gone"), p("dir"))
    assert r.returncode == 0, r.stderr
    with open(p("a"), "rb") as f:
        assert f.read() == b"lower a + first change"
    with open(p("gone"), "rb") as f:
        assert f.read() == b"lower, removed later"
    now = record(mnt)
    for k in ("a", "gone", "dir", "dir/c", "dir/l2", "dir/new", "dir/sub", "dir/sub/s"):
        assert now[k][:5] == at_s1[k][:5], k
    assert "dir/fresh" not in now
    # the lowers never changed
    with open(os.path.join(d["L1"], "gone"), "rb") as f:
        assert f.read() == b"lower, removed later"
    assert os.path.exists(os.path.join(d["L2"], "z"))
    # a saved version lost (its file removed behind the daemon's back): the
    # export fails in one line and leaves no partial layer
    vdir = os.path.join(d["H"], "versions")
    for f in os.listdir(vdir):
        os.unlink(os.path.join(vdir, f))
    broken = os.path.join(os.path.dirname(mnt), "layer-broken")
    r = cli("export", mnt, "s1", "--layer", broken)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "cannot read" in r.stderr, r.stderr
    assert not os.path.exists(broken)


def kernel_diff(x, y, renames=()):
    """zfs diff's lines between two kernel records: a name only at x '-',
    only at y '+', in both but different 'M'; renames (old, new) the test
    made of upper files (kept objects: rename(2)) replace their -/+."""
    out = {"-\t" + k for k in x.keys() - y.keys()}
    out |= {"+\t" + k for k in y.keys() - x.keys()}
    out |= {"M\t" + k for k in x.keys() & y.keys() if x[k] != y[k]}
    for a, b in renames:
        assert x[a] == y[b]
        out -= {"-\t" + a, "+\t" + b}
        out.add("R\t%s -> %s" % (a, b))
    return out


def diff_of(mnt, *args, dirs=None):
    """diff's lines, less a directory's 'M' (the root's, or of one in
    both records dirs): its entries changed, and the records leave out
    directories' mtimes."""
    r = cli("diff", mnt, *args)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    keys = [l.split("\t", 1)[1].split(" -> ")[0] for l in lines]
    assert keys == sorted(keys), lines  # in zfs diff's order, by path
    x, y = dirs or ({}, {})
    return {l for l in lines if not (l[0] == "M" and (
        l[2:] == "." or (x.get(l[2:], "?")[0] == "d" and y.get(l[2:], "?")[0] == "d")))}


def stat_of(want):
    n = {t: sum(1 for l in want if l[0] == t) for t in "+-MR"}
    return "%d created, %d deleted, %d modified, %d renamed" % (n["+"], n["-"], n["M"], n["R"])


@pytest.mark.parametrize("xattr", ("trusted", "user"))
def test_layered_diff(layers, mounter, xattr):
    """prismfs diff on a layered mount lists the changes of the merged view
    the kernel shows, not of the upper: a copy-up is 'M', a lower name
    whited out '-', the names beneath a removed lower directory and those an
    opaque directory hides '-', a lower file renamed '-' and '+' (overlayfs
    copies it up), an upper file renamed 'R', names made and removed between
    the snapshots nothing. With -o userxattr too (user.overlay. xattrs; the
    kernel's mount reads them with userxattr)."""
    d = layers
    L1, L2 = d["L1"], d["L2"]
    write(os.path.join(L1, "mv"), b"lower, renamed later")
    os.makedirs(os.path.join(L1, "ldir"))
    write(os.path.join(L1, "ldir", "x"), b"lower x")
    write(os.path.join(L1, "ldir", "y"), b"lower y")
    os.makedirs(os.path.join(L2, "deep", "a"))
    write(os.path.join(L2, "deep", "a", "b"), b"deep in L2")
    mnt = d["mnt"]
    ko = "userxattr," if xattr == "user" else ""
    mounter(L1, mnt, *mount_args(d), *(["-o", "userxattr"] if ko else []))
    now_ = lambda: oracle(d, ko)  # noqa: E731
    p = lambda *x: os.path.join(mnt, *x)
    write(p("u"), b"upper u")
    write(p("u2"), b"upper, renamed later")
    write(p("u4"), b"upper, removed later")
    with open(p("a"), "ab") as f:                  # a copy-up before s1
        f.write(b" + first")
    at_s1 = now_()
    snapshot(mnt, "s1")
    with open(p("keep"), "ab") as f:               # a copy-up by a write
        f.write(b" + appended")
    os.unlink(p("gone"))                           # a lower file whited out
    os.rename(p("mv"), p("moved"))                 # a lower file renamed
    os.rename(p("u2"), p("u3"))                    # an upper file renamed
    os.unlink(p("u4"))                             # an upper file removed
    write(p("u"), b"upper u rewritten")
    write(p("n"), b"new")
    write(p("tmp"), b"made and removed")
    os.unlink(p("tmp"))
    subprocess.run(["rm", "-r", p("dir")], check=True)  # merged: L1 and L2's
    subprocess.run(["rm", "-r", p("ldir")], check=True)
    os.mkdir(p("ldir"))                            # made again: opaque
    write(p("ldir", "fresh"), b"in the opaque dir")
    write(p("ldir", "x"), b"x again, an upper file")
    os.unlink(p("z"))                              # L2's file
    with open(p("deep", "a", "b"), "ab") as f:     # copy-up of L2's dirs
        f.write(b"!")
    os.makedirs(p("nd", "sub"))
    write(p("nd", "sub", "f"), b"new tree")
    at_s2 = now_()
    snapshot(mnt, "s2")
    os.unlink(p("u"))
    os.unlink(p("moved"))
    with open(p("ldir", "fresh"), "ab") as f:
        f.write(b"!")
    now = now_()

    want = kernel_diff(at_s1, at_s2, [("u2", "u3")])
    # the workload's own account, so the oracle is not empty of meaning
    for l in ("M\tkeep", "-\tgone", "-\tmv", "+\tmoved", "R\tu2 -> u3", "-\tu4",
              "M\tu", "+\tn", "-\tdir", "-\tdir/sub/s", "-\tdir/l2", "-\tldir/y",
              "+\tldir/fresh", "M\tldir/x", "-\tz", "M\tdeep/a/b", "+\tnd/sub/f"):
        assert l in want, l
    assert "M\ta" not in want  # copied up before s1, unchanged since
    same(record(p(".history", "s1")), at_s1)
    same(record(p(".history", "s2")), at_s2)
    got = diff_of(mnt, "s1", "s2", dirs=(at_s1, at_s2))
    assert got == want, (sorted(got - want), sorted(want - got))
    r = cli("diff", mnt, "s1", "s2", "--stat")
    assert r.returncode == 0, r.stderr
    dm = len(got_all(mnt, "s1", "s2")) - len(got)  # the directories' M
    assert r.stdout.splitlines() == [stat_of(want | {"M\t%d" % i for i in range(dm)})]
    # a snapshot and now: the live mount is the later side
    want = kernel_diff(at_s2, now)
    assert want == {"-\tu", "-\tmoved", "M\tldir/fresh"}
    assert diff_of(mnt, "s2", dirs=(at_s2, now)) == want
    want = kernel_diff(at_s1, now, [("u2", "u3")])
    assert diff_of(mnt, "s1", dirs=(at_s1, now)) == want
    # log: a copy-up and a name's replacement in the upper by their names,
    # not by the work directory's temporaries
    r = cli("log", mnt)
    assert r.returncode == 0, r.stderr
    assert d["W"] not in r.stdout
    kinds = {(l.split()[1], l.split()[2]) for l in r.stdout.splitlines()}
    for k in (("copy-up", "keep"), ("copy-up", "a"), ("replace", "ldir"), ("unlink", "u4")):
        assert k in kinds, (k, r.stdout)
    assert any(l.split()[1:5] == ["rename", "u2", "->", "u3"] for l in r.stdout.splitlines())
    # by id, as by name
    ids = history_rows(d["H"], "SELECT id FROM snapshots WHERE name IN ('s1', 's2') ORDER BY id")
    assert got_all(mnt, str(ids[0][0]), str(ids[1][0])) == got_all(mnt, "s1", "s2")


def got_all(mnt, *args):
    r = cli("diff", mnt, *args)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.splitlines())


def test_layered_history_refusals(layers, workdir):
    d = layers
    mnt = d["mnt"]
    base = ["mount", "--history", d["H"]]
    for extra, what in (
            (["--upper", d["U"], "--map", os.path.join(workdir, "m.json")], "--map"),
            (["--upper", d["U"], "-o", "redirect_dir=on"], "redirect_dir"),
            (["--upper", d["U"], "--on-unmount", "discard"], "preserve"),
            (["--lower", d["L2"]], "--upper")):
        r = cli(*base, *extra, d["L1"], mnt)
        assert_one_error_line(r, what)
        assert r.returncode != 0
        assert not os.path.exists(os.path.join(d["H"], "history.db"))
    # DIR in a layer that must not change: refused, nothing made there
    r = cli(*base[:2], os.path.join(d["L2"], "h"), "--upper", d["U"], "--lower", d["L2"],
            d["L1"], mnt)
    assert_one_error_line(r, "lower layer")
    assert not os.path.exists(os.path.join(d["L2"], "h"))
    assert not os.path.ismount(mnt)


# A workload of copy-ups, removals of lower files and upper writes.
WRITER = textwrap.dedent(r"""
    import os, sys
    d, log = sys.argv[1], open(sys.argv[2], "w", buffering=1)
    for i in range(1000000):
        log.write("B %d\n" % i)
        a = os.path.join(d, "d%d" % (i % 4), "f%d" % (i % 23))
        try:
            if i % 7 == 6:
                os.unlink(a)
            elif i % 5 == 4:
                os.chmod(a, 0o600 + (i % 8))
            else:
                with open(a, "a") as f:
                    f.write("v%d\n" % i)
        except FileNotFoundError:
            pass
        except OSError:
            break
        log.write("A %d\n" % i)
""")


def acked(log):
    n = 0
    if not os.path.exists(log):  # the writer has not started yet
        return 0
    with open(log) as f:
        for line in f:
            if line.startswith("A "):
                n = int(line.split()[1]) + 1
    return n


def test_kill_9_on_a_layered_mount(layers):
    d = layers
    mnt = d["mnt"]
    for k in range(4):
        os.makedirs(os.path.join(d["L1"], "d%d" % k))
        for j in range(23):
            write(os.path.join(d["L1"], "d%d" % k, "f%d" % j), b"lower %d %d\n" % (k, j))
    log = os.path.join(os.path.dirname(mnt), "writer.log")
    m = Mount(d["L1"], mnt, mount_args(d)).start()
    w = subprocess.Popen([sys.executable, "-c", WRITER, mnt, log],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    taken = {}
    try:
        for k in range(2):
            wait_for(lambda: acked(log) >= 100 * (k + 1), timeout=120)
            os.kill(w.pid, signal.SIGSTOP)
            wait_for(lambda: open("/proc/%d/stat" % w.pid).read().split(")")[1].split()[0]
                     == "T", timeout=30)
            taken["s%d" % k] = oracle(d)
            snapshot(mnt, "s%d" % k)
            os.kill(w.pid, signal.SIGCONT)
        wait_for(lambda: acked(log) >= 300, timeout=120)
        os.kill(m.pid, signal.SIGKILL)
        w.wait(timeout=60)
    finally:
        if w.poll() is None:
            os.kill(w.pid, signal.SIGCONT)
            w.kill()
            w.wait()
        m.kill()
        m.cleanup()
    m2 = Mount(d["L1"], mnt, mount_args(d)).start()
    try:
        for name, want in taken.items():
            same(record(os.path.join(mnt, ".history", name)), want)
        # every entry of U has the change that made it; none left in flight
        made = set()
        for kind, path, path2 in history_rows(d["H"], "SELECT kind, path, path2 FROM changes"):
            made.add(path2 if kind in ("rename", "link") else path)
        for dd, dirs, files in os.walk(d["U"]):
            for n in dirs + files:
                rel = os.path.relpath(os.path.join(dd, n), d["U"])
                assert rel in made, rel
        assert not history_rows(d["H"], "SELECT seq FROM changes WHERE state = 0")
        # the mount goes on: a snapshot then a copy-up, browsed as before it
        before = oracle(d)
        snapshot(mnt, "after")
        write(os.path.join(mnt, "d0", "f0"), b"after")
        same(record(os.path.join(mnt, ".history", "after")), before)
    finally:
        m2.stop()
        m2.cleanup()
    m2.check_clean_exit()
