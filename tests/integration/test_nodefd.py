"""The budget of node fds. The daemon keeps an O_PATH fd on the backing
object of every node the kernel holds, and a process may hold only
RLIMIT_NOFILE fds; past the budget (--node-fds, or 3/4 of the limit) the
least used are closed and reopened from file handles when needed. A tree
larger than the budget must still be walked, read and changed exactly as the
native filesystem is, with the daemon's fd count bounded."""
import os
import stat
import subprocess

import pytest

from prism_helpers import cli, daemon_fds, status_json

BUDGET = 16
PER_DIR = 24
DIRS = 12


def _populate(root):
    for d in range(DIRS):
        dd = os.path.join(root, "d%02d" % d)
        os.mkdir(dd)
        os.mkdir(os.path.join(dd, "sub"))
        for i in range(PER_DIR):
            with open(os.path.join(dd, "f%02d" % i), "w") as f:
                f.write("%d/%d\n" % (d, i) * (i + 1))
        os.symlink("f00", os.path.join(dd, "link"))
        os.setxattr(os.path.join(dd, "f01"), "user.tag", b"d%d" % d)


TIMED = ("d00/f05", "d05/link", "d00", "d00/sub", "d00/sub/new", "d01", "d02", "d03", "d04")


def _snapshot(root, timed=()):
    """Everything a walk sees: names, types, modes, sizes, link counts,
    symlink targets, file data and user xattrs; mtimes where _change set
    them (the two trees were made at different moments)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink,
                   st.st_uid, st.st_gid, st.st_mtime_ns if rel in timed else None]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                rec.append(st.st_size)
                with open(p, "rb") as f:
                    rec.append(f.read())
                rec.append(sorted((k, os.getxattr(p, k)) for k in os.listxattr(p)
                                  if k.startswith("user.")))
            out[rel] = rec
    return out


def _fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def _walk_all(root):
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lstat(os.path.join(dirpath, name))
            n += 1
    return n


@pytest.fixture(params=["plain", "oversrc", "cached"])
def budget_view(request, make_view):
    return make_view(request.param, "--node-fds", str(BUDGET), populate=_populate)


def check_walk_beyond_budget(path, native, pid, snapshot=_snapshot, fixed=24):
    """Walks of path see what native shows, with more nodes than the budget
    yet no more fds than it, plus `fixed` others (/dev/fuse, the source,
    /proc, the control socket, ...)."""
    assert snapshot(path) == snapshot(native)
    st = status_json(path)
    assert st["nodes"] > 4 * BUDGET
    assert st["node_fds"]["budget"] == BUDGET
    assert st["node_fds"]["open"] <= BUDGET
    assert st["node_fds"]["closed"] > 0
    # Threads added under load keep fds of their own (see daemon_fds).
    fds = daemon_fds(pid, path)
    assert fds["node"] + fds["other"] <= BUDGET + fixed, fds
    # A second walk reopens what the first closed: same answers.
    assert snapshot(path) == snapshot(native)
    assert status_json(path)["node_fds"]["reopened"] > 0


def test_walk_beyond_budget(budget_view):
    check_walk_beyond_budget(budget_view.path, budget_view.native, budget_view.mount.pid)


def test_identity_survives_closing(budget_view):
    v = budget_view
    p = v.p("d00", "f05")
    first = os.lstat(p)
    fd_dir = os.open(v.p("d00"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        _walk_all(v.path)  # closes d00/f05's fd (least recently used)
        again = os.lstat(p)
        assert (again.st_ino, again.st_dev) == (first.st_ino, first.st_dev)
        assert os.listdir(fd_dir) == os.listdir(v.p("d00"))
        assert sorted(os.listdir(fd_dir)) == sorted(os.listdir(os.path.join(v.native, "d00")))
    finally:
        os.close(fd_dir)


def _change(root, layered=False):
    """The same changes, to objects whose node fds the walks have closed.
    layered: over two lowers (test_nodefd_layers), where copy-ups and
    whiteouts do them, and a lower directory cannot be renamed (EXDEV, as
    on overlayfs without redirect_dir)."""
    d = os.path.join(root, "d00")
    with open(os.path.join(d, "f02"), "a") as f:
        f.write("appended\n")
    os.chmod(os.path.join(d, "f03"), 0o600)
    os.chown(os.path.join(d, "f04"), 1234, 5678)
    os.utime(os.path.join(d, "f05"), ns=(1_000_000_000, 2_000_000_000))
    os.setxattr(os.path.join(d, "f06"), "user.new", b"v")
    os.removexattr(os.path.join(d, "f01"), "user.tag")
    os.truncate(os.path.join(d, "f07"), 3)
    os.link(os.path.join(d, "f08"), os.path.join(root, "d01", "hard"))
    os.rename(os.path.join(d, "f09"), os.path.join(root, "d02", "moved"))
    os.unlink(os.path.join(d, "f10"))
    os.mkdir(os.path.join(d, "sub", "new"))
    with open(os.path.join(d, "sub", "new", "x"), "w") as f:
        f.write("x\n")
    os.rmdir(os.path.join(root, "d03", "sub"))
    os.symlink("../d00/f02", os.path.join(root, "d04", "sym"))
    os.utime(os.path.join(root, "d05", "link"), ns=(3_000_000_000, 4_000_000_000),
             follow_symlinks=False)
    dirs = ["d00", "d00/sub", "d00/sub/new", "d01", "d02", "d03", "d04"]
    if layered:  # the bottom lower's objects
        with open(os.path.join(d, "low03"), "r+") as f:
            f.write("LOW")
        os.unlink(os.path.join(root, "d08", "low01"))
        os.unlink(os.path.join(root, "d04", "deep", "x"))
        os.rmdir(os.path.join(root, "d04", "deep"))
        dirs.append("d08")
    else:
        os.rename(os.path.join(root, "d06"), os.path.join(root, "d00", "sub", "d06"))
    # Directories changed above get their times back: the comparison is of
    # what the changes did, not of when.
    for dd in dirs:
        os.utime(os.path.join(root, dd), ns=(5_000_000_000, 6_000_000_000))


def test_changes_through_closed_fds(budget_view):
    v = budget_view
    _walk_all(v.path)
    _walk_all(v.path)
    before = status_json(v.path)["node_fds"]["reopened"]
    _change(v.path)
    _change(v.native)
    assert status_json(v.path)["node_fds"]["reopened"] > before
    assert os.access(v.p("d00", "f03"), os.R_OK | os.W_OK)
    assert _snapshot(v.path, TIMED) == _snapshot(v.native, TIMED)


def test_open_unlinked_file_keeps_working(budget_view):
    v = budget_view
    got = {}
    for root in (v.path, v.native):
        p = os.path.join(root, "d07", "f00")
        fd = os.open(p, os.O_RDWR)
        try:
            os.unlink(p)
            _walk_all(root)
            _walk_all(root)
            os.write(fd, b"over")
            os.ftruncate(fd, 6)
            os.fchmod(fd, 0o640)
            st = os.fstat(fd)
            got[root] = (os.pread(fd, 100, 0), st.st_size, st.st_nlink,
                         stat.S_IMODE(st.st_mode))
        finally:
            os.close(fd)
    assert got[v.path] == got[v.native] == (b"over\0\0", 6, 0, 0o640)


def test_object_changed_outside_while_closed(make_view):
    v = make_view("plain", "--node-fds", str(BUDGET), "--timeout", "0", populate=_populate)
    assert os.lstat(v.p("d08", "f01")).st_size > 0
    fd_dir = os.open(v.p("d08"), os.O_RDONLY | os.O_DIRECTORY)
    try:
        _walk_all(v.path)
        # Renamed and removed behind the daemon's back, while closed.
        os.rename(os.path.join(v.backing, "d08", "f01"), os.path.join(v.backing, "d08", "g01"))
        os.unlink(os.path.join(v.backing, "d08", "f02"))
        with pytest.raises(FileNotFoundError):
            os.lstat(v.p("d08", "f01"))
        with pytest.raises(FileNotFoundError):
            os.lstat(v.p("d08", "f02"))
        with open(v.p("d08", "g01"), "rb") as f:
            assert f.read() == b"8/1\n" * 2
        assert os.getxattr(v.p("d08", "g01"), "user.tag") == b"d8"
        # The open directory's node was closed too; it is still the directory.
        assert "g01" in os.listdir(fd_dir) and "f02" not in os.listdir(fd_dir)
    finally:
        os.close(fd_dir)


def fd_limit(pid):
    with open("/proc/%d/limits" % pid) as f:
        return [int(line.split()[3]) for line in f if line.startswith("Max open files")][0]


def find_count(path):
    """How many entries find(1) lists under path; it must report no error."""
    names = subprocess.run(["find", path], capture_output=True, text=True)
    assert names.returncode == 0 and names.stderr == "", names.stderr[:2000]
    return len(names.stdout.split("\n")) - 1


def test_default_budget_under_a_low_fd_limit(workdir, mounter):
    """No --node-fds: the budget comes from the fd limit the daemon runs
    under. A tree of several times that limit walks without EMFILE."""
    src = os.path.join(workdir, "src")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mnt)
    os.makedirs(src)
    for d in range(8):
        dd = os.path.join(src, "d%d" % d)
        os.mkdir(dd)
        for i in range(120):
            open(os.path.join(dd, "f%03d" % i), "w").close()
    m = mounter(src, mnt, prefix=["prlimit", "--nofile=256:256"])
    limit = fd_limit(m.pid)
    st = status_json(mnt)
    assert 0 < st["node_fds"]["budget"] < limit
    assert find_count(mnt) == 1 + 8 + 8 * 120
    with open(os.path.join(mnt, "d7", "f119"), "w") as f:
        f.write("last\n")
    with open(os.path.join(src, "d7", "f119")) as f:
        assert f.read() == "last\n"
    assert _fd_count(m.pid) < limit


def test_bad_budget_stops_before_mounting(workdir):
    src = os.path.join(workdir, "src")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(src)
    os.makedirs(mnt)
    for bad in ("0", "15", "-3", "lots"):
        res = cli("mount", "--node-fds", bad, src, mnt)
        assert res.returncode != 0
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "--node-fds" in lines[0], res.stderr
        assert not os.path.ismount(mnt)
