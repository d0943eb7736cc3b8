"""History (issue 17 item 6): prismfs restore puts back each restored
object's user.* extended attributes as they were at the snapshot (set the
ones it had, none it did not have), for a file restored alone (from its
saved version), a subtree and everything. The expected attributes are read
from SOURCE (listxattr(2), getxattr(2)) when the test takes the snapshot;
after it they are replaced, added and removed, on files and directories,
some objects' data changed and some left alone; after the restore both the
mount and SOURCE must show the recorded attributes."""
import os
import signal

import pytest

from prism_helpers import cli
from test_history_restore_tree import TMP, no_temporaries, record, same, snap, write
from test_history_xattr import xattrs


def make(p):
    os.makedirs(p("proj", "d", "sub"))
    for rel in ("f", "gone", "plain", "same", "d/in", "d/sub/deep", "top"):
        write(p(*(("proj",) + tuple(rel.split("/")))) if rel != "top" else p("top"),
              b"data of " + rel.encode())
    os.symlink("f", p("proj", "link"))
    for path, k, v in [(("proj", "f"), "user.a", b"1"), (("proj", "f"), "user.b", b"two"),
                       (("proj", "gone"), "user.g", b"removed later"),
                       (("proj", "same"), "user.s", b"\0kept\xff"),
                       (("proj",), "user.root", b"the subtree's root"),
                       (("proj", "d"), "user.d", b"dir"),
                       (("proj", "d", "in"), "user.in", b"in"),
                       (("proj", "d", "sub", "deep"), "user.deep", b"deep"),
                       (("top",), "user.top", b"top")]:
        os.setxattr(p(*path), k, v)


def change(p):
    os.setxattr(p("proj", "f"), "user.a", b"replaced, and longer")   # replace
    os.removexattr(p("proj", "f"), "user.b")                         # remove
    os.setxattr(p("proj", "f"), "user.new", b"added")                # add
    write(p("proj", "f"), b"new data of f")
    os.removexattr(p("proj", "gone"), "user.g")                      # all removed
    os.setxattr(p("proj", "plain"), "user.p", b"had none")           # had none
    os.setxattr(p("proj"), "user.root", b"changed")
    os.setxattr(p("proj", "d"), "user.d2", b"added to the dir")
    os.removexattr(p("proj", "d"), "user.d")
    os.setxattr(p("proj", "d", "sub", "deep"), "user.deep", b"changed deep")
    write(p("proj", "d", "in"), b"in, data changed, xattrs not")
    os.removexattr(p("top"), "user.top")
    os.setxattr(p("top"), "user.other", b"other")
    # "same" and d/sub: untouched


@pytest.mark.parametrize("how", ["files", "subtree", "everything"])
def test_restore_puts_back_the_snapshots_user_xattrs(workdir, trees, mounter, how):
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    make(p)
    snap(mnt, "s1")
    want_tree, want_xa = record(os.path.join(src, "proj")), xattrs(os.path.join(src, "proj"))
    want_top = xattrs(os.path.join(src, "top"))
    change(p)
    assert xattrs(os.path.join(src, "proj")) != want_xa

    if how == "files":
        paths = ["proj/f", "proj/gone", "proj/plain", "proj/same", "proj/d/in",
                 "proj/d/sub/deep", "top"]
        r = cli("restore", mnt, "s1", *[p(x) for x in paths])
        assert r.returncode == 0, r.stderr
        got = xattrs(os.path.join(src, "proj"))
        for rel in ("f", "gone", "plain", "same", "d/in", "d/sub/deep"):
            assert got[rel] == want_xa[rel], (rel, got[rel], want_xa[rel])
            assert xattrs(p("proj"))[rel] == want_xa[rel], rel
    else:
        r = cli("restore", mnt, "s1", *([p("proj"), p("top")] if how == "subtree" else []))
        assert r.returncode == 0, r.stderr
        same(record(os.path.join(src, "proj")), want_tree)
        assert xattrs(os.path.join(src, "proj")) == want_xa   # in SOURCE
        assert xattrs(p("proj")) == want_xa                   # through the mount
    assert xattrs(os.path.join(src, "top")) == want_top
    assert xattrs(p("top")) == want_top
    no_temporaries(mnt)


@pytest.mark.parametrize("step,restored", [("restore-built", False),
                                           ("restore-exchanged", True)])
def test_xattrs_change_with_the_rename(workdir, trees, mounter, step, restored):
    """Killed before the exchange, proj still has today's xattrs and the
    temporary the snapshot's; after it, the other way round; the next
    restore sweeps the temporary and leaves the snapshot's."""
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    p = lambda *x: os.path.join(mnt, *x)
    make(p)
    snap(mnt, "s1")
    at_s1 = xattrs(os.path.join(src, "proj"))
    change(p)
    now = xattrs(os.path.join(src, "proj"))

    env = dict(os.environ, PRISMFS_TEST_CRASH=step)
    r = cli("restore", mnt, "s1", "proj", env=env)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    assert xattrs(p("proj")) == (at_s1 if restored else now)
    left = [n for n in os.listdir(mnt) if n.startswith(TMP)]
    assert len(left) == 1, os.listdir(mnt)
    assert xattrs(p(left[0])) == (now if restored else at_s1)

    r = cli("restore", mnt, "s1", "proj")
    assert r.returncode == 0, r.stderr
    assert "left by an interrupted restore" in r.stdout, r.stdout
    assert xattrs(os.path.join(src, "proj")) == at_s1
    no_temporaries(mnt)
