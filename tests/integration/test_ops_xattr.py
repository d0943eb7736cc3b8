"""Extended attributes: set/get/list/remove, flags, ERANGE/size queries,
directories, symlinks, file descriptors, trusted.* as root."""
import errno
import os

import pytest

import sysx
from parity import TimeWatch, err, run_parity, write_file


def xlist(rel, follow=True):
    def step(b):
        return sorted(os.listxattr(b.p(rel), follow_symlinks=follow))
    step.label = "listxattr(%r)" % rel
    return step


def xget(rel, name, follow=True):
    def step(b):
        return os.getxattr(b.p(rel), name, follow_symlinks=follow)
    step.label = "getxattr(%r, %r)" % (rel, name)
    return step


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_xattr_basic(view, kind):
    def make(b):
        if kind == "file":
            write_file(b.p("o"), b"data")
        else:
            os.mkdir(b.p("o"))

    res = run_parity(view, [
        make,
        ("empty list", xlist("o")),
        ("set a", lambda b: os.setxattr(b.p("o"), "user.a", b"value a")),
        ("get a", xget("o", "user.a")),
        ("set binary", lambda b: os.setxattr(b.p("o"), "user.bin", bytes(range(256)))),
        ("get binary", xget("o", "user.bin")),
        ("set empty", lambda b: os.setxattr(b.p("o"), "user.empty", b"")),
        ("get empty", xget("o", "user.empty")),
        ("set big", lambda b: os.setxattr(b.p("o"), "user.big", b"B" * 2000)),
        ("get big", xget("o", "user.big")),
        ("list", xlist("o")),
        ("overwrite", lambda b: os.setxattr(b.p("o"), "user.a", b"new")),
        ("get a again", xget("o", "user.a")),
        ("get missing", xget("o", "user.missing")),
        ("remove a", lambda b: os.removexattr(b.p("o"), "user.a")),
        ("get removed", xget("o", "user.a")),
        ("remove missing", lambda b: os.removexattr(b.p("o"), "user.a")),
        ("list after remove", xlist("o")),
        ("content untouched", lambda b: os.path.getsize(b.p("o")) if kind == "file" else None),
    ])
    assert res["empty list"] == []
    assert res["get a"] == b"value a"
    assert res["get binary"] == bytes(range(256))
    assert res["get empty"] == b""
    assert res["get big"] == b"B" * 2000
    assert res["list"] == ["user.a", "user.big", "user.bin", "user.empty"]
    assert res["get a again"] == b"new"
    assert res["get missing"] == err(errno.ENODATA)
    assert res["get removed"] == err(errno.ENODATA)
    assert res["remove missing"] == err(errno.ENODATA)
    assert res["list after remove"] == ["user.big", "user.bin", "user.empty"]


def test_xattr_create_replace_flags(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        ("REPLACE missing", lambda b: os.setxattr(b.p("f"), "user.k", b"1", os.XATTR_REPLACE)),
        ("CREATE new", lambda b: os.setxattr(b.p("f"), "user.k", b"1", os.XATTR_CREATE)),
        ("CREATE existing", lambda b: os.setxattr(b.p("f"), "user.k", b"2", os.XATTR_CREATE)),
        ("value kept", xget("f", "user.k")),
        ("REPLACE existing", lambda b: os.setxattr(b.p("f"), "user.k", b"3", os.XATTR_REPLACE)),
        ("value replaced", xget("f", "user.k")),
        ("both flags", lambda b: os.setxattr(b.p("f"), "user.k", b"4", os.XATTR_CREATE | os.XATTR_REPLACE)),
        ("value", xget("f", "user.k")),
    ])
    assert res["REPLACE missing"] == err(errno.ENODATA)
    assert res["CREATE new"] is None
    assert res["CREATE existing"] == err(errno.EEXIST)
    assert res["value kept"] == b"1"
    assert res["value replaced"] == b"3"


def test_xattr_sizes_and_erange(view):
    value = b"0123456789abcdef" * 4  # 64 bytes
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: os.setxattr(b.p("f"), "user.value", value),
        lambda b: os.setxattr(b.p("f"), "user.second", b"2"),
        ("getxattr size 0", lambda b: sysx.getxattr(b.p("f"), "user.value", 0)),
        ("getxattr size 1", lambda b: sysx.getxattr(b.p("f"), "user.value", 1)),
        ("getxattr size 63", lambda b: sysx.getxattr(b.p("f"), "user.value", 63)),
        ("getxattr exact", lambda b: sysx.getxattr(b.p("f"), "user.value", 64)),
        ("getxattr larger", lambda b: sysx.getxattr(b.p("f"), "user.value", 4096)),
        ("getxattr size 0 missing", lambda b: sysx.getxattr(b.p("f"), "user.none", 0)),
        ("listxattr size 0", lambda b: sysx.listxattr(b.p("f"), 0)),
        ("listxattr size 3", lambda b: sysx.listxattr(b.p("f"), 3)),
        ("listxattr exact", lambda b: sorted(sysx.listxattr(b.p("f"), sysx.listxattr(b.p("f"), 0)).split(b"\0"))),
        ("listxattr larger", lambda b: sorted(sysx.listxattr(b.p("f"), 4096).split(b"\0"))),
        ("empty value size 0", lambda b: (os.setxattr(b.p("f"), "user.e", b""),
                                          sysx.getxattr(b.p("f"), "user.e", 0))[1]),
        ("empty value sized", lambda b: sysx.getxattr(b.p("f"), "user.e", 10)),
    ])
    assert res["getxattr size 0"] == 64
    assert res["getxattr size 1"] == err(errno.ERANGE)
    assert res["getxattr size 63"] == err(errno.ERANGE)
    assert res["getxattr exact"] == value
    assert res["getxattr larger"] == value
    assert res["getxattr size 0 missing"] == err(errno.ENODATA)
    assert res["listxattr size 0"] == len(b"user.value\0user.second\0")
    assert res["listxattr size 3"] == err(errno.ERANGE)
    assert res["listxattr exact"] == [b"", b"user.second", b"user.value"]
    assert res["empty value size 0"] == 0
    assert res["empty value sized"] == b""


def test_xattr_names_and_namespaces(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        ("no namespace", lambda b: os.setxattr(b.p("f"), "plainname", b"v")),
        ("unknown namespace", lambda b: os.setxattr(b.p("f"), "bogus.name", b"v")),
        ("name too long", lambda b: os.setxattr(b.p("f"), "user." + "n" * 251, b"v")),
        ("longest name", lambda b: os.setxattr(b.p("f"), "user." + "n" * 250, b"v")),
        ("get longest", xget("f", "user." + "n" * 250)),
        ("trusted set", lambda b: os.setxattr(b.p("f"), "trusted.t", b"root only")),
        ("trusted get", xget("f", "trusted.t")),
        ("list with trusted", xlist("f")),
        ("trusted remove", lambda b: os.removexattr(b.p("f"), "trusted.t")),
        ("trusted get removed", xget("f", "trusted.t")),
        ("trusted on dir", lambda b: (os.mkdir(b.p("d")), os.setxattr(b.p("d"), "trusted.d", b"dv"),
                                      os.getxattr(b.p("d"), "trusted.d"))[2]),
        ("value too large", lambda b: os.setxattr(b.p("f"), "user.huge", b"h" * (65536 + 1))),
        ("get on missing file", lambda b: os.getxattr(b.p("missing"), "user.a")),
        ("set on missing file", lambda b: os.setxattr(b.p("missing"), "user.a", b"v")),
    ])
    assert res["no namespace"] == err(errno.EOPNOTSUPP)
    assert res["name too long"] == err(errno.ERANGE)
    assert res["trusted get"] == b"root only"
    assert "trusted.t" in res["list with trusted"]
    assert res["trusted get removed"] == err(errno.ENODATA)
    assert res["trusted on dir"] == b"dv"
    assert res["get on missing file"] == err(errno.ENOENT)


def test_xattr_symlink_fd_link_rename(view):
    w = TimeWatch("f")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: os.symlink("f", b.p("ln")),
        ("set through symlink", lambda b: os.setxattr(b.p("ln"), "user.via", b"link")),
        ("get on target", xget("f", "user.via")),
        ("user.* on the symlink itself", lambda b: os.setxattr(b.p("ln"), "user.own", b"v", follow_symlinks=False)),
        ("llistxattr", xlist("ln", follow=False)),
        ("lgetxattr", xget("ln", "user.via", follow=False)),
        ("trusted on the symlink itself", lambda b: (os.setxattr(b.p("ln"), "trusted.l", b"tl", follow_symlinks=False),
                                                     os.getxattr(b.p("ln"), "trusted.l", follow_symlinks=False))[1]),
        ("fd set/get", lambda b: _fd_xattr(b.p("f"))),
        ("hard link shares", lambda b: (os.link(b.p("f"), b.p("g")), os.getxattr(b.p("g"), "user.fd"))[1]),
        ("survives rename", lambda b: (os.rename(b.p("g"), b.p("h")), sorted(os.listxattr(b.p("h"))))[1]),
        w.mark,
        ("setxattr", lambda b: os.setxattr(b.p("f"), "user.t", b"t")),
        ("times after setxattr", w.check_mtime),
        w.mark,
        ("removexattr", lambda b: os.removexattr(b.p("f"), "user.t")),
        ("times after removexattr", w.check_mtime),
    ])
    assert res["get on target"] == b"link"
    assert res["user.* on the symlink itself"] == err(errno.EPERM)
    assert res["lgetxattr"] == err(errno.ENODATA)
    assert res["fd set/get"] == (b"by fd", ["user.fd", "user.via"])
    assert res["hard link shares"] == b"by fd"
    assert res["times after setxattr"] == {"mtime": "marked", "ctime": "changed"}
    assert res["times after removexattr"] == {"mtime": "marked", "ctime": "changed"}


def _fd_xattr(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.setxattr(fd, "user.fd", b"by fd")
        return os.getxattr(fd, "user.fd"), sorted(os.listxattr(fd))
    finally:
        os.close(fd)
