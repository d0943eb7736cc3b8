"""Directories without handles. A plain mirror (no mapping table, no layers,
no op log) answers OPENDIR with ENOSYS, so the kernel opens directories
without asking and keeps their listings; each READDIR is served from a
stream of its own at the kernel's offset. Open directories then cost the
daemon nothing, and listings must still follow every change."""
import os

import pytest

from prism_helpers import daemon_fds, make_dirs, wait_for


def _fds(m):
    """The daemon's fds other than node fds (those come and go with the
    node fd budget: a test run may set a tiny one) and those its threads
    keep (threads added under load keep theirs: see daemon_fds)."""
    return daemon_fds(m.pid, m.mountpoint)["other"]


def _tree(src):
    for d in range(20):
        os.makedirs(os.path.join(src, "d%02d" % d))
        for i in range(30):
            open(os.path.join(src, "d%02d" % d, "f%02d" % i), "w").close()


@pytest.mark.parametrize("log", [False, True])
def test_open_directories_and_daemon_fds(workdir, mounter, log):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _tree(src)
    args = ["--log", os.path.join(workdir, "ops.log")] if log else []
    m = mounter(src, mnt, *args)
    for d in sorted(os.listdir(mnt)):  # the kernel knows them all first
        os.listdir(os.path.join(mnt, d))
    # Settled: the daemon closes surplus node fds just after it answers.
    before = wait_for(lambda: _fds(m) if _fds(m) == _fds(m) else None, timeout=5)
    assert before is not None
    held = [os.open(os.path.join(mnt, d), os.O_RDONLY | os.O_DIRECTORY)
            for d in sorted(os.listdir(mnt))]
    try:
        for fd in held:
            assert sorted(os.listdir(fd)) == ["f%02d" % i for i in range(30)]
        # Without a log no handle is kept; with one (which records
        # directory opens) each open directory is a handle of its own.
        # (The daemon closes surplus node fds just after it answers: wait.)
        want = len(held) if log else 0
        assert wait_for(lambda: _fds(m) - before == want, timeout=5), _fds(m) - before
    finally:
        for fd in held:
            os.close(fd)


def test_listing_follows_changes(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _tree(src)
    mounter(src, mnt)
    d = os.path.join(mnt, "d00")
    want = sorted(os.listdir(os.path.join(src, "d00")))
    assert sorted(os.listdir(d)) == want
    assert sorted(os.listdir(d)) == want  # now from the kernel's cache
    open(os.path.join(d, "new"), "w").close()
    os.unlink(os.path.join(d, "f00"))
    os.rename(os.path.join(d, "f01"), os.path.join(d, "g01"))
    os.mkdir(os.path.join(d, "sub"))
    want = sorted(set(want) - {"f00", "f01"} | {"new", "g01", "sub"})
    assert sorted(os.listdir(d)) == want
    # One open directory read in parts, with a change between the parts:
    # every entry neither added nor removed meanwhile comes exactly once.
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as it:
            first = [next(it).name for _ in range(5)]
            open(os.path.join(d, "added-meanwhile"), "w").close()
            rest = [e.name for e in it]
        seen = first + rest
        assert len(seen) == len(set(seen))
        assert set(want) <= set(seen) <= set(want) | {"added-meanwhile"}
        os.fsync(fd)  # FSYNCDIR without a handle
    finally:
        os.close(fd)


def test_removed_directory_lists_nothing(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    os.mkdir(os.path.join(src, "gone"))
    native = os.path.join(workdir, "native-gone")
    os.mkdir(native)
    mounter(src, mnt)
    got = {}
    for path in (os.path.join(mnt, "gone"), native):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.rmdir(path)
            try:
                got[path] = os.listdir(fd)
            except OSError as e:
                got[path] = e.errno
        finally:
            os.close(fd)
    assert got[os.path.join(mnt, "gone")] == got[native]
