"""link(2) (hard links) and symlink(2)/readlink(2)."""
import errno
import os

import pytest

from parity import (TimeWatch, content, err, listing, run_parity, same_inode, st, tree,
                    write_file)


def nlinks(*rels):
    def step(b):
        return tuple(os.lstat(b.p(r)).st_nlink for r in rels)
    step.label = "nlink%r" % (rels,)
    return step


def test_hard_links(view):
    w = TimeWatch("f")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"original"),
        lambda b: os.mkdir(b.p("d")),
        w.mark,
        ("link f g", lambda b: os.link(b.p("f"), b.p("g"))),
        ("f times", w.check_mtime),
        ("same ino", same_inode("f", "g")),
        ("nlink after link", nlinks("f", "g")),
        ("link into subdir", lambda b: os.link(b.p("g"), b.p("d", "h"))),
        ("same ino 3", same_inode("f", "d/h")),
        ("nlink 3", nlinks("f", "g", "d/h")),
        ("write via h", lambda b: write_file(b.p("d", "h"), b"changed via h", flags=os.O_WRONLY | os.O_TRUNC)),
        ("read via f", content("f")),
        ("chmod via g", lambda b: os.chmod(b.p("g"), 0o600)),
        ("f mode", st("f")),
        ("unlink f", lambda b: os.unlink(b.p("f"))),
        ("nlink after unlink", nlinks("g", "d/h")),
        ("g", st("g")),
        ("unlink g", lambda b: os.unlink(b.p("g"))),
        ("nlink last", nlinks("d/h")),
        ("h content", content("d/h")),
        ("link to existing name", lambda b: (write_file(b.p("x"), b"x"), os.link(b.p("x"), b.p("d", "h")))),
        ("link missing", lambda b: os.link(b.p("missing"), b.p("y"))),
        ("link into missing dir", lambda b: os.link(b.p("x"), b.p("nodir", "y"))),
        ("link to a directory", lambda b: os.link(b.p("d"), b.p("dlink"))),
        ("final", tree()),
    ])
    assert res["link f g"] is None
    assert res["f times"] == {"mtime": "marked", "ctime": "changed"}
    assert res["same ino"] is True and res["same ino 3"] is True
    assert res["nlink after link"] == (2, 2)
    assert res["nlink 3"] == (3, 3, 3)
    assert res["read via f"] == b"changed via h"
    assert res["f mode"]["mode"] == "0o600"
    assert res["nlink after unlink"] == (2, 2)
    assert res["nlink last"] == (1,)
    assert res["link to existing name"] == err(errno.EEXIST)
    assert res["link missing"] == err(errno.ENOENT)
    assert res["link into missing dir"] == err(errno.ENOENT)
    assert res["link to a directory"] == err(errno.EPERM)


def test_many_hard_links(view):
    n = 60
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        ("make links", lambda b: len([os.link(b.p("f"), b.p("l%d" % i)) for i in range(n)])),
        ("nlink", nlinks("f", "l0", "l%d" % (n - 1))),
        ("all same", lambda b: len({os.lstat(b.p("l%d" % i)).st_ino for i in range(n)} |
                                   {os.lstat(b.p("f")).st_ino})),
        ("remove half", lambda b: len([os.unlink(b.p("l%d" % i)) for i in range(0, n, 2)])),
        ("nlink after", nlinks("f", "l1")),
    ])
    assert res["nlink"] == (n + 1,) * 3
    assert res["all same"] == 1
    assert res["nlink after"] == (n // 2 + 1,) * 2


def linkat_follow(src, dst):
    """linkat(dirfd, src, dirfd, dst, AT_SYMLINK_FOLLOW).  (os.link without
    dir fds calls link(2), which on Linux never follows.)"""
    def step(b):
        dfd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.link(src, dst, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)
        finally:
            os.close(dfd)
    return step


def test_hard_link_to_symlink(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: os.symlink("f", b.p("s")),
        ("link symlink itself", lambda b: os.link(b.p("s"), b.p("s2"), follow_symlinks=False)),
        ("s2", st("s2")),
        ("s2 is s", same_inode("s", "s2")),
        ("linkat AT_SYMLINK_FOLLOW", linkat_follow("s", "f2")),
        ("f2", st("f2")),
        ("f2 is f", same_inode("f", "f2")),
    ])
    assert res["s2"]["type"] == "lnk" and res["s2"]["nlink"] == 2
    assert res["s2 is s"] is True and res["f2 is f"] is True


def readlinkat(b, rel):
    dfd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return os.readlink(rel, dir_fd=dfd)
    finally:
        os.close(dfd)


LONG_TARGET = "/".join(["component%03d" % i for i in range(363)])[:4000]


@pytest.mark.parametrize("target", ["f", "d/../f", "./d", "nowhere", "d/deeper/nowhere",
                                    "ABS", LONG_TARGET, "x" * 4095, "weird name\nwith newline",
                                    "\u00fcnicode-\u20ac"],
                         ids=["rel", "dotdot", "dir", "dangling", "dangling-deep", "absolute",
                              "long-4000", "max-4095", "newline", "unicode"])
def test_symlink_readlink(view, target):
    def tgt(b):
        # an absolute target outside both trees and equal for both: their
        # common parent directory (the test's workdir)
        return os.path.join(os.path.dirname(str(b)), "abs-target") if target == "ABS" else target

    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"the file"),
        lambda b: os.mkdir(b.p("d")),
        lambda b: write_file(os.path.join(os.path.dirname(str(b)), "abs-target"), b"outside"),
        ("symlink", lambda b: os.symlink(tgt(b), b.p("ln"))),
        ("readlink", lambda b: os.readlink(b.p("ln")) == tgt(b)),
        ("readlink bytes length", lambda b: len(os.readlink(os.fsencode(b.p("ln"))))),
        ("lstat", st("ln")),
        ("stat follows", st("ln", follow=True)),
        ("open follows", content("ln")),
        ("symlink again", lambda b: os.symlink(tgt(b), b.p("ln"))),
        ("listed", listing()),
        ("readlinkat", lambda b: readlinkat(b, "ln") == tgt(b)),
    ])
    assert res["symlink"] is None
    assert res["readlink"] is True
    assert res["lstat"]["type"] == "lnk"
    assert res["lstat"]["size"] == len(os.fsencode(tgt(view.native)))
    assert res["readlink bytes length"] == res["lstat"]["size"]
    assert res["symlink again"] == err(errno.EEXIST)


def test_symlink_errors(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: os.mkdir(b.p("d")),
        ("target 4096 bytes", lambda b: os.symlink("y" * 4096, b.p("toolong"))),
        ("empty target", lambda b: os.symlink("", b.p("empty"))),
        ("readlink regular file", lambda b: os.readlink(b.p("f"))),
        ("readlink dir", lambda b: os.readlink(b.p("d"))),
        ("readlink missing", lambda b: os.readlink(b.p("missing"))),
        ("symlink over file", lambda b: os.symlink("f", b.p("f"))),
        ("symlink over dir", lambda b: os.symlink("f", b.p("d"))),
        ("symlink in missing dir", lambda b: os.symlink("f", b.p("nodir", "ln"))),
        ("loop", lambda b: (os.symlink("loop2", b.p("loop1")), os.symlink("loop1", b.p("loop2")))),
        ("stat loop", st("loop1", follow=True)),
        ("open loop", lambda b: os.open(b.p("loop1"), os.O_RDONLY)),
        ("lstat loop", st("loop1")),
        ("chain of 30", lambda b: len([os.symlink("c%d" % (i + 1) if i < 29 else "f", b.p("c%d" % i))
                                       for i in range(30)])),
        ("follow chain", content("c0")),
        ("symlink to dir traversal", lambda b: (os.symlink("d", b.p("dl")), write_file(b.p("dl", "inner"), b"i"))),
        ("inner via real path", content("d/inner")),
        ("final", tree()),
    ])
    assert res["target 4096 bytes"] == err(errno.ENAMETOOLONG)
    assert res["empty target"] == err(errno.ENOENT)
    assert res["readlink regular file"] == err(errno.EINVAL)
    assert res["readlink missing"] == err(errno.ENOENT)
    assert res["symlink over file"] == err(errno.EEXIST)
    assert res["stat loop"] == err(errno.ELOOP)
    assert res["open loop"] == err(errno.ELOOP)
    assert res["follow chain"] == b"x"
    assert res["inner via real path"] == b"i"


def test_symlink_timestamps_and_owner(view):
    w = TimeWatch(".")
    res = run_parity(view, [
        w.mark,
        lambda b: os.symlink("target", b.p("ln")),
        ("parent", w.check_mtime),
        ("lstat", st("ln")),
        ("lchown", lambda b: os.lchown(b.p("ln"), 123, 456)),
        ("after lchown", st("ln")),
    ])
    assert res["parent"] == {"mtime": "changed", "ctime": "changed"}
    assert res["lstat"]["mode"] == "0o777"
    assert (res["after lchown"]["uid"], res["after lchown"]["gid"]) == (123, 456)
