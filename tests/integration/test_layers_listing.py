"""Layered mounts: a merged directory listed while it changes, and open
directories without handles.

A layered mount without a mapping table or an op log answers OPENDIR with
ENOSYS, as a plain mirror does (test_dirs_stateless.py): each READDIR comes
alone at the kernel's offset.  The parity test below holds on kernel
overlayfs too (PRISMFS_LAYER_BACKENDS=kernel): names neither added nor
removed while a stream lists the directory are returned exactly once
(POSIX readdir), whatever changes through the mount meanwhile.
"""
import collections
import os

from layer_helpers import mkfile, mkwhiteout, ovl, pytest_generate_tests
from prism_helpers import daemon_fds, make_dirs, wait_for
from sysx import DirStream

assert ovl and pytest_generate_tests  # fixture and hook used by pytest


def test_merged_listing_while_it_changes(ovl):
    """600 names over three layers (some whited out); after a third of them
    is read, 150 names are removed and 150 made through the mount, in the
    part read and in the rest: every name left alone is read exactly once,
    no name twice."""
    for i in range(600):
        mkfile((ovl.u, ovl.l1, ovl.l2)[i % 3]("d", "n%04d" % i), b"")
    for i in range(0, 600, 5):
        mkfile(ovl.l2("d", "n%04d" % i), b"below too")
    for i in range(30):
        mkfile(ovl.l2("d", "w%04d" % i), b"hidden")
        mkwhiteout((ovl.u, ovl.l1)[i % 2]("d", "w%04d" % i))
    ovl.mount()
    removed = {"n%04d" % i for i in range(0, 600, 4)}
    added = {"new%04d" % i for i in range(150)}
    with DirStream(ovl.m("d")) as ds:
        seen = [ds.read()[0] for _ in range(200)]
        for n in sorted(removed):
            os.unlink(ovl.m("d", n))
        for n in sorted(added):
            mkfile(ovl.m("d", n), b"")
        seen += [n for n, _, _ in ds]
    counts = collections.Counter(n for n in seen if n not in (".", ".."))
    assert not [n for n, c in counts.items() if c > 1], "listed twice"
    kept = {"n%04d" % i for i in range(600)} - removed
    assert kept <= set(counts), sorted(kept - set(counts))[:10]
    assert set(counts) <= kept | removed | added
    assert sorted(os.listdir(ovl.m("d"))) == sorted(kept | added)


def test_open_merged_directories_cost_no_daemon_fds(workdir, mounter):
    """Twenty merged directories held open and listed: no fd in the daemon
    for any of them (no handle), and each lists its merge."""
    src, upper, work, mnt = make_dirs(workdir, "src", "upper", "work", "mnt")
    for d in range(20):
        for i in range(10):
            mkfile(os.path.join(src, "d%02d" % d, "low%02d" % i), b"")
            mkfile(os.path.join(upper, "d%02d" % d, "up%02d" % i), b"")
    m = mounter(src, mnt, "--upper", upper, "--work", work)
    for d in sorted(os.listdir(mnt)):  # the kernel knows them all first
        os.listdir(os.path.join(mnt, d))

    def other():
        return daemon_fds(m.pid, mnt)["other"]
    before = wait_for(lambda: other() if other() == other() else None, timeout=5)
    assert before is not None
    held = [os.open(os.path.join(mnt, d), os.O_RDONLY | os.O_DIRECTORY)
            for d in sorted(os.listdir(mnt))]
    try:
        want = sorted(["low%02d" % i for i in range(10)] + ["up%02d" % i for i in range(10)])
        for fd in held:
            assert sorted(os.listdir(fd)) == want
        assert wait_for(lambda: other() == before, timeout=5), other() - before
    finally:
        for fd in held:
            os.close(fd)
