"""History (issue 17 item 4): the read-only .history directory at the
mount's root. At each snapshot the test copies SOURCE with cp -a (the real
files, not prismfs); MNT/.history/SNAP must then show exactly that copy,
whatever changed since (data, truncation, renames of files and
directories, removals, new files, directories and symlinks). .history
is in no listing of the root but reachable by name; every change under
it fails with EROFS; its name is configurable; a snapshot taken later
shows without a remount."""
import errno
import os
import stat
import subprocess

import pytest

from prism_helpers import assert_one_error_line, cli, daemon_fds, status_json


def record(root):
    """{rel: (type, mode, uid, gid, size, content, mtime_ns)} of a tree;
    a directory's size and mtime change with its entries: not kept."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, st.st_uid, st.st_gid, None, os.readlink(p),
                            st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None,
                            None)
            else:
                assert stat.S_ISREG(st.st_mode), p
                with open(p, "rb") as f:
                    data = f.read()
                out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size,
                            data, st.st_mtime_ns)
    return out


def same(got, want):
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        assert got[k] == want[k], (k, got[k][:5], want[k][:5])


def write(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def snapshot(workdir, src, mnt, name, copies):
    """A snapshot, and cp -a of SOURCE as it is now (nothing runs meanwhile)."""
    dest = os.path.join(workdir, "copy-" + name)
    r = subprocess.run(["cp", "-a", src, dest], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr
    copies[name] = record(dest)


def check_all(mnt, copies, gate=".history"):
    assert sorted(os.listdir(os.path.join(mnt, gate))) == sorted(copies)
    for name, want in copies.items():
        same(record(os.path.join(mnt, gate, name)), want)


def changes_1(p):
    write(p("keep"), b"tail", "ab")                 # append
    write(p("over"), b"new content, longer than before")  # overwrite
    os.truncate(p("trunc"), 3)                      # truncate
    os.rename(p("ren"), p("renamed"))               # rename a file
    os.rename(p("dir"), p("dir2"))                  # rename a directory...
    write(p("dir2", "in"), b"changed under the renamed directory")
    os.unlink(p("dir2", "gone"))                    # ... and delete beneath it
    os.unlink(p("del"))                             # delete
    os.rmdir(p("emptydir"))                         # delete a directory
    os.makedirs(p("newdir", "sub"))                 # mkdir
    write(p("newdir", "sub", "f"), b"new file in a new directory")
    write(p("newfile"), b"a new file")
    os.chmod(p("mode"), 0o600)
    os.rename(p("src1"), p("target"))               # rename over a file
    os.unlink(p("link2"))                           # a symlink removed
    os.symlink("newfile", p("link3"))               # and one made


def changes_2(p):
    write(p("renamed"), b"second change of a renamed file")
    os.rename(p("dir2", "sub"), p("moved-sub"))     # move a directory out
    os.unlink(p("newfile"))
    write(p("newdir", "sub", "f"), b"x", "ab")
    os.truncate(p("over"), 0)
    write(p("latest"), b"after the second snapshot")


def test_history_tree_is_each_snapshot_as_copied(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("dir", "sub"))
    for name, data in [("keep", b"unchanged until later"), ("over", b"old"),
                       ("trunc", b"0123456789"), ("ren", b"renamed later"),
                       ("del", b"deleted later"), ("mode", b"chmod'ed later"),
                       ("src1", b"renamed over target"), ("target", b"replaced"),
                       ("dir/in", b"in a dir renamed later"), ("dir/gone", b"removed"),
                       ("dir/sub/deep", b"deep")]:
        write(p(name), data)
    os.utime(p("keep"), ns=(1_500_000_000_123_456_789, 1_500_000_000_123_456_789))
    os.mkdir(p("emptydir"))
    os.symlink("keep", p("link"))
    os.symlink("dir/in", p("link2"))
    copies = {}
    snapshot(workdir, src, mnt, "s1", copies)

    assert ".history" not in os.listdir(mnt)
    assert stat.S_ISDIR(os.stat(p(".history")).st_mode)
    assert os.listdir(p(".history")) == ["s1"]
    # read before any change: served from SOURCE, and the same after it
    check_all(mnt, copies)

    changes_1(p)
    snapshot(workdir, src, mnt, "s2", copies)
    check_all(mnt, copies)
    changes_2(p)
    # a snapshot taken later shows in a listing already read, no remount
    assert sorted(os.listdir(p(".history"))) == ["s1", "s2"]
    snapshot(workdir, src, mnt, "s3", copies)
    write(p("keep"), b"changed after the last snapshot")
    os.unlink(p("trunc"))
    check_all(mnt, copies)
    assert ".history" not in os.listdir(mnt)
    assert not os.path.exists(os.path.join(src, ".history"))


def test_history_tree_reads_the_same_after_a_remount(workdir, trees, mounter):
    """No cache of the kernel's or the daemon's: saved versions and SOURCE."""
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("dir", "sub"))
    for name in ["keep", "over", "trunc", "ren", "del", "mode", "src1", "target", "dir/in",
                 "dir/gone", "dir/sub/deep"]:
        write(p(name), ("content of %s\n" % name).encode() * 50)
    os.mkdir(p("emptydir"))
    os.symlink("keep", p("link"))
    os.symlink("dir/in", p("link2"))
    copies = {}
    snapshot(workdir, src, mnt, "a", copies)
    changes_1(p)
    snapshot(workdir, src, mnt, "b", copies)
    changes_2(p)
    write(p("keep"), b"changed after the last snapshot")
    m.stop()
    m.check_clean_exit()
    mounter(src, mnt, "--history", hdir)
    check_all(mnt, copies)


def expect_erofs(fn, *args):
    with pytest.raises(OSError) as e:
        fn(*args)
    assert e.value.errno == errno.EROFS, (fn, args, e.value)


def test_every_change_under_history_is_erofs(workdir, trees, mounter):
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    os.makedirs(os.path.join(mnt, "d"))
    write(os.path.join(mnt, "d", "f"), b"data")
    r = cli("snapshot", mnt, "--name", "s")
    assert r.returncode == 0, r.stderr
    h = os.path.join(mnt, ".history", "s")
    f, d = os.path.join(h, "d", "f"), os.path.join(h, "d")
    st = os.stat(f)
    assert stat.S_ISREG(st.st_mode) and st.st_size == 4
    expect_erofs(os.open, f, os.O_WRONLY)
    expect_erofs(os.open, f, os.O_RDWR)
    expect_erofs(os.open, f, os.O_WRONLY | os.O_TRUNC)
    expect_erofs(os.open, os.path.join(d, "new"), os.O_WRONLY | os.O_CREAT, 0o644)
    expect_erofs(os.unlink, f)
    expect_erofs(os.mkdir, os.path.join(d, "m"))
    expect_erofs(os.rmdir, d)
    expect_erofs(os.rename, f, os.path.join(d, "g"))
    expect_erofs(os.rename, d, os.path.join(h, "e"))
    expect_erofs(os.symlink, "f", os.path.join(d, "l"))
    expect_erofs(os.link, f, os.path.join(d, "hl"))
    expect_erofs(os.chmod, f, 0o600)
    expect_erofs(os.truncate, f, 0)
    expect_erofs(os.utime, f, None)
    expect_erofs(os.setxattr, f, "user.x", b"1")
    expect_erofs(os.mkdir, os.path.join(mnt, ".history", "new-snapshot"))
    expect_erofs(os.rmdir, h)
    # nothing of it reached SOURCE, and the file still reads as it was
    assert sorted(os.listdir(src)) == ["d"] and os.listdir(os.path.join(src, "d")) == ["f"]
    with open(f, "rb") as fh:
        assert fh.read() == b"data"
    # the names .history and its snapshots are not SOURCE's to make or remove
    with pytest.raises(OSError) as e:
        os.mkdir(os.path.join(mnt, ".history"))
    assert e.value.errno == errno.EEXIST
    expect_erofs(os.rmdir, os.path.join(mnt, ".history"))
    expect_erofs(os.rename, os.path.join(mnt, "d"), os.path.join(mnt, ".history"))
    with pytest.raises(FileNotFoundError):
        os.stat(os.path.join(mnt, ".history", "no-such-snapshot"))


@pytest.mark.parametrize("form", ["long", "o"])
def test_history_dir_name_is_configurable(workdir, trees, mounter, form):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    args = (["--history-dir-name", ".snaps"] if form == "long"
            else ["-o", "history_dir_name=.snaps"])
    mounter(src, mnt, "--history", hdir, *args)
    write(os.path.join(mnt, "f"), b"one")
    r = cli("snapshot", mnt, "--name", "first")
    assert r.returncode == 0, r.stderr
    write(os.path.join(mnt, "f"), b"two")
    assert sorted(os.listdir(mnt)) == ["f"]
    assert not os.path.exists(os.path.join(mnt, ".history"))
    assert os.listdir(os.path.join(mnt, ".snaps")) == ["first"]
    with open(os.path.join(mnt, ".snaps", "first", "f"), "rb") as fh:
        assert fh.read() == b"one"


def test_history_dir_name_refusals(workdir, trees):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    for bad in ["a/b", "..", ""]:
        r = cli("mount", "--history", hdir, "--history-dir-name", bad, src, mnt)
        assert_one_error_line(r, "--history-dir-name %r" % bad)
    r = cli("mount", "--history-dir-name", ".snaps", src, mnt)
    assert_one_error_line(r, "--history-dir-name without --history")
    assert not os.path.ismount(mnt)
    assert not os.path.exists(hdir)


BUDGET = 64


def test_history_tree_walk_beyond_the_node_fd_budget(workdir, trees, mounter):
    """A walk of .history with far more names than --node-fds keeps the
    daemon's fds within the budget (the nodes of the past are closed and
    opened again like any), and reads each snapshot as it was."""
    src, mnt = trees
    m = mounter(src, mnt, "--history", os.path.join(workdir, "hist"), "--node-fds", str(BUDGET))
    copies = {}
    for d in range(6):
        os.makedirs(os.path.join(mnt, "d%d" % d))
        for i in range(100):
            write(os.path.join(mnt, "d%d" % d, "f%d" % i), b"%d/%d\n" % (d, i))
    snapshot(workdir, src, mnt, "s1", copies)
    for d in range(6):
        os.unlink(os.path.join(mnt, "d%d" % d, "f0"))
        write(os.path.join(mnt, "d%d" % d, "f1"), b"changed")
    os.rename(os.path.join(mnt, "d5"), os.path.join(mnt, "moved"))
    for _ in range(2):  # the second walk reopens what the first closed
        check_all(mnt, copies)
        st = status_json(mnt)
        assert st["nodes"] > 4 * BUDGET
        assert st["node_fds"]["open"] <= BUDGET
        fds = daemon_fds(m.pid, mnt)
        assert fds["node"] + fds["other"] <= BUDGET + 24, fds


def test_snapshots_taken_and_pruned_show_at_once(workdir, trees, mounter):
    """.history's listing follows the snapshots as soon as the command
    returns, though the kernel keeps its names and attributes meanwhile."""
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    gate = os.path.join(mnt, ".history")
    write(os.path.join(mnt, "f"), b"one")
    seen = []
    for name in ["a", "b", "c"]:
        r = cli("snapshot", mnt, "--name", name)
        assert r.returncode == 0, r.stderr
        seen.append(name)
        assert sorted(os.listdir(gate)) == seen
        os.stat(os.path.join(gate, name, "f"))  # the kernel holds it now
        write(os.path.join(mnt, "f"), name.encode())
    r = cli("prune", mnt, "--keep", "manual=1")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(gate)) == ["c"]
    with open(os.path.join(gate, "c", "f"), "rb") as fh:
        assert fh.read() == b"b"


def test_file_open_for_writing_across_snapshots(workdir, trees, mounter):
    """A file open for writing at s1 and still at s2, written in between
    (a passthrough write makes no row), then changed: s1 shows what it held
    at s1, not what s2 saved of it. Found by the history parity run
    (test_ops_rename.py::test_open_fd_survives_rename[history]): the
    version before the first change since s1 was taken as the last one
    saved, which was s2's. Each file's first change since is another kind:
    a chmod (the object stays), a rename over it (gone), none at all."""
    import tarfile
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    names = ("chmod", "replaced", "untouched")
    for n in names:
        write(p(n), b"at s1")
    write(p("other"), b"renamed over replaced")
    fds = {n: os.open(p(n), os.O_RDWR) for n in names}
    try:
        copies = {}
        snapshot(workdir, src, mnt, "s1", copies)
        for n in names:
            os.pwrite(fds[n], b" and after", 5)
        snapshot(workdir, src, mnt, "s2", copies)
        os.fchmod(fds["chmod"], 0o600)
        os.rename(p("other"), p("replaced"))
        for n in names:
            os.pwrite(fds[n], b"X", 0)
        check_all(mnt, copies)
        out = os.path.join(workdir, "s1.tar")
        r = cli("export", mnt, "s1", "-o", out)
        assert r.returncode == 0, r.stderr
        with tarfile.open(out) as t:
            for n in names:
                assert t.extractfile(n).read() == b"at s1", n
    finally:
        for fd in fds.values():
            os.close(fd)


def test_browsing_does_not_move_the_live_files_atime(workdir, trees, mounter):
    """Reading an unchanged file, and listing an unchanged directory, under
    .history reads the live ones: that is the history's read, not an
    access of the user's (a mount with --history answers stat(2) as one
    without): their atime stays (the daemon may use O_NOATIME: it runs as
    root here, CAP_FOWNER)."""
    src, mnt = trees
    os.mkdir(os.path.join(src, "dir"))
    write(os.path.join(src, "dir", "f"), b"unchanged since the snapshot")
    write(os.path.join(src, "probe"), b"probe")
    old = 1_500_000_000_000_000_000  # long before the mtime: relatime updates it
    for p in ("probe", "dir/f", "dir"):
        os.utime(os.path.join(src, p), ns=(old, os.stat(os.path.join(src, p)).st_mtime_ns))
    # does this filesystem move atimes at all (no noatime mount)?
    with open(os.path.join(src, "probe"), "rb") as f:
        f.read()
    if os.stat(os.path.join(src, "probe")).st_atime_ns == old:
        pytest.skip("SOURCE's filesystem does not update atime (noatime)")
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    r = cli("snapshot", mnt, "--name", "s1")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(os.path.join(mnt, ".history", "s1", "dir"))) == ["f"]
    with open(os.path.join(mnt, ".history", "s1", "dir", "f"), "rb") as f:
        assert f.read() == b"unchanged since the snapshot"
    assert os.stat(os.path.join(src, "dir", "f")).st_atime_ns == old
    assert os.stat(os.path.join(src, "dir")).st_atime_ns == old
