"""History (issue 17 item 4): user.* extended attributes under .history.
A snapshot is the tree as it was when taken, its files' and directories'
user.* attributes too (getxattr(2), listxattr(2)). At each snapshot the
test reads every object's user.* attributes (and content, mode, times)
from SOURCE, then changes them (set, replace, remove, through each name of
a hard-linked file, on a directory, with a removal and a chmod of the
object), and compares with .history/SNAP."""
import errno
import os

import pytest

from prism_helpers import cli
from test_history_browse import record, same, write


def xattrs(root):
    """{rel: {name: value}} of the user.* attributes of every object but
    symlinks (which cannot have user.* ones), the root's too."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in [None] + dirs + files:
            p = d if n is None else os.path.join(d, n)
            if n is None and d != root:
                continue
            if os.path.islink(p):
                continue
            names = sorted(k for k in os.listxattr(p, follow_symlinks=False)
                           if k.startswith("user."))
            out[os.path.relpath(p, root)] = {
                k: os.getxattr(p, k, follow_symlinks=False) for k in names}
    return out


def snap(mnt, name, src, records):
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr
    records[name] = (record(src), xattrs(src))


def check(mnt, records):
    for name, (tree, xa) in records.items():
        root = os.path.join(mnt, ".history", name)
        same(record(root), tree)
        got = xattrs(root)
        assert got == xa, (name, {k: (xa.get(k), got.get(k)) for k in set(xa) | set(got)
                                  if xa.get(k) != got.get(k)})


def test_user_xattrs_are_as_at_the_snapshot(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    os.mkdir(p("d"))
    for name in ("a", "u", "c", "g", "h1", "d/in"):
        write(p(name), b"data of " + name.encode())
    os.link(p("h1"), p("h2"))
    os.symlink("a", p("sym"))
    for path, k, v in [("a", "user.a", b"1"), ("a", "user.b", b"2"), ("u", "user.u", b"x"),
                       ("c", "user.c", b"c"), ("g", "user.g", b"g"), ("h1", "user.h", b"1"),
                       ("d", "user.d", b"dir"), ("d/in", "user.in", b"\0binary\xff"),
                       ("", "user.root", b"r")]:
        os.setxattr(p(path), k, v)
    records = {}
    snap(mnt, "s1", src, records)

    os.setxattr(p("a"), "user.a", b"replaced, and longer")   # replace
    os.removexattr(p("a"), "user.b")                         # remove
    os.setxattr(p("a"), "user.new", b"new")                  # add
    os.setxattr(p("d"), "user.d", b"dir changed")            # a directory's
    os.setxattr(p("d"), "user.d2", b"second")
    os.chmod(p("c"), 0o600)                                  # saved by a chmod...
    os.setxattr(p("c"), "user.c", b"changed after the chmod")  # ... then changed
    os.unlink(p("g"))                                        # removed
    os.setxattr(p("h2"), "user.h", b"through h2")            # a hard link's other name
    write(p("h1"), b"then data through h1")
    os.removexattr(p("d", "in"), "user.in")
    os.setxattr(p(""), "user.root", b"root changed")
    check(mnt, records)

    snap(mnt, "s2", src, records)
    os.setxattr(p("u"), "user.u", b"changed after s2")       # unchanged at s1 and s2
    os.setxattr(p("a"), "user.a", b"changed after s2")
    check(mnt, records)
    # one that is not there, and the system's names: none
    with pytest.raises(OSError) as e:
        os.getxattr(p(".history", "s1", "a"), "user.none")
    assert e.value.errno == errno.ENODATA
    # the kernel asks for the size first (size 0), then the value: both
    assert os.getxattr(p(".history", "s1", "d", "in"), "user.in") == b"\0binary\xff"

    m.stop()
    mounter(src, mnt, "--history", hdir)
    check(mnt, records)
