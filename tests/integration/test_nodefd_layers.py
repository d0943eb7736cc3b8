"""The budget of node fds on a layered mount (--upper over read-only lowers).
A layered node keeps an fd on its object in each layer it has one in (a
merged directory several). Past the budget they are closed and reopened from
file handles. A merge larger than the budget must still be walked, read and
changed as kernel overlayfs shows it; here the merge is modelled by a native
directory holding the same content (the upper lower's files win)."""
import os
import stat

import pytest

from prism_helpers import status_json
from test_nodefd import (BUDGET, DIRS, TIMED, _change, _fd_count, _populate, _snapshot,
                         _walk_all, check_walk_beyond_budget, fd_limit, find_count)


def _populate_low(root):
    """The bottom lower: part of every directory (merged with the top
    lower's), a name the top lower shadows, and directories of its own."""
    for d in range(DIRS):
        dd = os.path.join(root, "d%02d" % d)
        os.makedirs(os.path.join(dd, "deep"), exist_ok=True)
        for i in range(8):
            p = os.path.join(dd, "low%02d" % i)
            with open(p, "w") as f:
                f.write("low %d/%d\n" % (d, i))
        p = os.path.join(dd, "f00")
        if not os.path.exists(p):  # the native model: the top lower's wins
            with open(p, "w") as f:
                f.write("shadowed\n")
        with open(os.path.join(dd, "deep", "x"), "w") as f:
            f.write("x%d\n" % d)


LTIMED = TIMED + ("d08",)


def _view(root, timed=()):
    """_snapshot without directory link counts: a merged directory reports
    1, as on overlayfs (find and other walkers take it as "unknown")."""
    snap = _snapshot(root, timed)
    for rec in snap.values():
        if rec[0] == stat.S_IFDIR:
            rec[2] = None
    return snap


class Layered:
    def __init__(self, workdir, mounter, *args):
        self.top = os.path.join(workdir, "top")
        self.low = os.path.join(workdir, "low")
        self.upper = os.path.join(workdir, "upper")
        self.work = os.path.join(workdir, "work")
        self.native = os.path.join(workdir, "native")
        self.path = os.path.join(workdir, "mnt")
        for d in (self.top, self.low, self.upper, self.work, self.native, self.path):
            os.makedirs(d)
            os.chmod(d, 0o755)
        _populate(self.top)
        _populate_low(self.low)
        _populate(self.native)
        _populate_low(self.native)
        self.mount = mounter(self.top, self.path, "--upper", self.upper, "--work", self.work,
                             "--lower", self.low, *args)

    def p(self, *parts):
        return os.path.join(self.path, *parts)


@pytest.fixture
def layered(workdir, mounter):
    return Layered(workdir, mounter, "--node-fds", str(BUDGET))


def test_walk_beyond_budget(layered):
    # Fixed fds besides those of test_nodefd: the layers' roots, work.
    check_walk_beyond_budget(layered.path, layered.native, layered.mount.pid,
                             snapshot=_view, fixed=32)


def test_identity_survives_closing(layered):
    v = layered
    paths = [v.p("d00", "f05"), v.p("d01", "low02"), v.p("d02"), v.p("d03", "deep")]
    first = [os.lstat(p) for p in paths]
    _walk_all(v.path)
    _walk_all(v.path)
    again = [os.lstat(p) for p in paths]
    assert [(s.st_ino, s.st_dev) for s in again] == [(s.st_ino, s.st_dev) for s in first]
    # A copy-up of a file whose fd was closed keeps its number (overlayfs
    # keeps a copied-up file's st_ino on one filesystem).
    with open(paths[1], "a") as f:
        f.write("more\n")
    assert os.lstat(paths[1]).st_ino == first[1].st_ino
    assert os.path.exists(os.path.join(v.upper, "d01", "low02"))


def test_changes_through_closed_fds(layered):
    v = layered
    _walk_all(v.path)
    _walk_all(v.path)
    before = status_json(v.path)["node_fds"]["reopened"]
    _change(v.path, layered=True)
    _change(v.native, layered=True)
    assert status_json(v.path)["node_fds"]["reopened"] > before
    assert _view(v.path, LTIMED) == _view(v.native, LTIMED)
    # The lowers are read-only: nothing written there.
    with open(os.path.join(v.top, "d00", "f02")) as f:
        assert "appended" not in f.read()
    with open(os.path.join(v.low, "d00", "low03")) as f:
        assert f.read() == "low 0/3\n"
    # Once more after a walk has closed the changed nodes again.
    _walk_all(v.path)
    assert _view(v.path, LTIMED) == _view(v.native, LTIMED)


def test_symlink_xattrs_through_closed_parent(layered):
    """Symlink xattrs are reached through the parent's fd, which may be
    closed: lgetxattr/llistxattr answer as natively."""
    v = layered
    _walk_all(v.path)
    _walk_all(v.path)
    for root in (v.path, v.native):
        p = os.path.join(root, "d06", "link")
        assert [k for k in os.listxattr(p, follow_symlinks=False)
                if k.startswith("user.")] == []
        with pytest.raises(OSError):
            os.getxattr(p, "user.none", follow_symlinks=False)
    assert os.readlink(v.p("d06", "link")) == "f00"


def test_removed_open_directory_lists_empty(layered):
    v = layered
    got = {}
    for root in (v.path, v.native):
        p = os.path.join(root, "d09", "sub")
        fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.rmdir(p)
            _walk_all(root)
            _walk_all(root)
            got[root] = os.listdir(fd)
        finally:
            os.close(fd)
        assert not os.path.exists(p)
    assert got[v.path] == got[v.native] == []


def test_open_lower_file_while_budget_sweeps(layered):
    """A lower file open for reading (served by the daemon so a copy-up can
    move it) keeps working while walks close every other fd, and follows a
    copy-up made through another fd."""
    v = layered
    p = v.p("d10", "low04")
    with open(p, "rb") as r:
        _walk_all(v.path)
        assert r.read() == b"low 10/4\n"
        _walk_all(v.path)
        with open(p, "r+b") as w:
            w.write(b"LOW")
        r.seek(0)
        assert r.read() == b"LOW 10/4\n"


def test_default_budget_under_a_low_fd_limit(workdir, mounter):
    """No --node-fds: the budget comes from the fd limit. A merge of two
    lowers several times that limit walks without EMFILE (each merged
    directory has an fd in each layer)."""
    top = os.path.join(workdir, "top")
    low = os.path.join(workdir, "low")
    upper = os.path.join(workdir, "upper")
    work = os.path.join(workdir, "work")
    mnt = os.path.join(workdir, "mnt")
    for d in (top, low, upper, work, mnt):
        os.makedirs(d)
    for layer, tag in ((top, "t"), (low, "l")):
        for d in range(40):
            dd = os.path.join(layer, "d%02d" % d)
            os.mkdir(dd)
            for i in range(12):
                open(os.path.join(dd, "%s%02d" % (tag, i)), "w").close()
    m = mounter(top, mnt, "--upper", upper, "--work", work, "--lower", low,
                prefix=["prlimit", "--nofile=256:256"])
    limit = fd_limit(m.pid)
    assert limit == 256
    assert find_count(mnt) == 1 + 40 + 40 * 24
    with open(os.path.join(mnt, "d39", "l11"), "w") as f:
        f.write("last\n")
    with open(os.path.join(upper, "d39", "l11")) as f:
        assert f.read() == "last\n"
    assert _fd_count(m.pid) < limit
