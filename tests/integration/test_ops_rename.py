"""rename(2) and renameat2(2) (RENAME_NOREPLACE, RENAME_EXCHANGE)."""
import errno
import os

import pytest

import sysx
from parity import (TimeWatch, closed, content, err, fst, listing, opened, run_parity,
                    same_inode, st, tree, write_file)


def remember_ino(rel, key):
    def step(b):
        b.state[key] = os.lstat(b.p(rel)).st_ino
    step.label = "remember ino of %r as %s" % (rel, key)
    return step


def ino_is(rel, key):
    """Step: whether rel now is the inode remembered under key."""
    def step(b):
        return os.lstat(b.p(rel)).st_ino == b.state[key]
    step.label = "%r is %s" % (rel, key)
    return step


def setup_tree(b):
    write_file(b.p("a"), b"content of a")
    write_file(b.p("b"), b"content of b")
    os.mkdir(b.p("d"))
    write_file(b.p("d", "inner"), b"inner")
    os.mkdir(b.p("empty"))
    os.mkdir(b.p("full"))
    write_file(b.p("full", "x"), b"x")
    os.makedirs(b.p("p1", "sub"))
    os.mkdir(b.p("p2"))


def test_rename_file_over_file(view):
    res = run_parity(view, [
        setup_tree,
        remember_ino("a", "A"),
        ("rename a b", lambda b: os.rename(b.p("a"), b.p("b"))),
        ("a gone", lambda b: os.path.lexists(b.p("a"))),
        ("b content", content("b")),
        ("b is A", ino_is("b", "A")),
        ("b", st("b")),
        ("listing", listing()),
        # to a new name in another directory
        ("rename b p2/c", lambda b: os.rename(b.p("b"), b.p("p2", "c"))),
        ("c is A", ino_is("p2/c", "A")),
        content("p2/c"),
        # to itself
        ("rename to itself", lambda b: os.rename(b.p("p2", "c"), b.p("p2", "c"))),
        content("p2/c"),
        # onto another name of the same inode: nothing happens
        lambda b: os.link(b.p("p2", "c"), b.p("p2", "hard")),
        ("rename onto own hard link", lambda b: os.rename(b.p("p2", "c"), b.p("p2", "hard"))),
        ("both names remain", listing("p2")),
        st("p2/c"),
        # symlinks are renamed, not followed
        lambda b: os.symlink("p2/c", b.p("lnk")),
        ("rename symlink", lambda b: os.rename(b.p("lnk"), b.p("lnk2"))),
        ("lnk2", lambda b: os.readlink(b.p("lnk2"))),
        ("rename missing", lambda b: os.rename(b.p("missing"), b.p("x"))),
        ("rename into missing dir", lambda b: os.rename(b.p("p2", "c"), b.p("nodir", "c"))),
        ("rename under a file", lambda b: os.rename(b.p("p2", "c"), b.p("p2", "hard", "c"))),
        ("final", tree()),
    ])
    assert res["a gone"] is False
    assert res["b content"] == b"content of a"
    assert res["b is A"] is True and res["c is A"] is True
    assert res["both names remain"] == ["c", "hard"]
    assert res["rename missing"] == err(errno.ENOENT)
    assert res["rename into missing dir"] == err(errno.ENOENT)
    assert res["rename under a file"] == err(errno.ENOTDIR)


def test_rename_directories(view):
    res = run_parity(view, [
        setup_tree,
        remember_ino("d", "D"),
        ("dir over empty dir", lambda b: os.rename(b.p("d"), b.p("empty"))),
        ("empty is D", ino_is("empty", "D")),
        ("moved content", content("empty/inner")),
        ("d gone", lambda b: os.path.lexists(b.p("d"))),
        ("dir over non-empty dir", lambda b: os.rename(b.p("empty"), b.p("full"))),
        ("file over dir", lambda b: os.rename(b.p("a"), b.p("full"))),
        ("file over empty dir", lambda b: (os.mkdir(b.p("e2")), os.rename(b.p("a"), b.p("e2")))),
        ("dir over file", lambda b: os.rename(b.p("full"), b.p("b"))),
        ("into own subdir", lambda b: os.rename(b.p("p1"), b.p("p1", "sub", "x"))),
        ("into itself", lambda b: os.rename(b.p("p1"), b.p("p1", "x"))),
        ("dir to itself", lambda b: os.rename(b.p("p1"), b.p("p1"))),
        ("rename dot", lambda b: os.rename(b.p("p1", "."), b.p("p3"))),
        ("rename onto dot", lambda b: os.rename(b.p("p2"), b.p("p1", "."))),
        ("p1 before", st("p1")), ("p2 before", st("p2")),
        # moving a directory between parents moves a ".." link
        ("move sub p1 -> p2", lambda b: os.rename(b.p("p1", "sub"), b.p("p2", "sub"))),
        ("p1 after", st("p1")), ("p2 after", st("p2")),
        ("dotdot follows", same_inode("p2/sub/..", "p2")),
        ("trailing slash dir", lambda b: os.rename(b.p("p2", "sub") + "/", b.p("p2", "sub2") + "/")),
        ("trailing slash file", lambda b: os.rename(b.p("b") + "/", b.p("b2"))),
        ("final", tree()),
    ])
    assert res["empty is D"] is True
    assert res["moved content"] == b"inner"
    assert res["dir over non-empty dir"] in (err(errno.ENOTEMPTY), err(errno.EEXIST))
    assert res["file over dir"] == err(errno.EISDIR)
    assert res["file over empty dir"] == err(errno.EISDIR)
    assert res["dir over file"] == err(errno.ENOTDIR)
    assert res["into own subdir"] == err(errno.EINVAL)
    assert res["into itself"] == err(errno.EINVAL)
    assert res["p1 after"]["nlink"] == res["p1 before"]["nlink"] - 1
    assert res["p2 after"]["nlink"] == res["p2 before"]["nlink"] + 1
    assert res["dotdot follows"] is True


def test_rename_timestamps(view):
    wf = TimeWatch("p1/f")
    w1 = TimeWatch("p1")
    w2 = TimeWatch("p2")
    res = run_parity(view, [
        lambda b: (os.mkdir(b.p("p1")), os.mkdir(b.p("p2")), write_file(b.p("p1", "f"), b"f")),
        wf.mark, w1.mark, w2.mark,
        lambda b: os.rename(b.p("p1", "f"), b.p("p2", "f")),
        ("old parent", w1.check_mtime),
        ("new parent", w2.check_mtime),
        ("moved file", lambda b: (lambda s: s.st_mtime_ns == TimeWatch.MARK_NS)(os.stat(b.p("p2", "f")))),
    ])
    assert res["old parent"] == {"mtime": "changed", "ctime": "changed"}
    assert res["new parent"] == {"mtime": "changed", "ctime": "changed"}
    assert res["moved file"] is True  # rename does not touch the file's mtime


def test_open_fd_survives_rename(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"v1"),
        lambda b: os.mkdir(b.p("d")),
        opened("fd", "f", os.O_RDWR),
        ("rename", lambda b: os.rename(b.p("f"), b.p("d", "g"))),
        ("write via fd", lambda b: os.pwrite(b.fd("fd"), b"after rename", 2)),
        ("read new name", content("d/g")),
        ("fstat", fst("fd")),
        ("fstat == stat new name", lambda b: os.fstat(b.fd("fd")).st_ino == os.stat(b.p("d", "g")).st_ino),
        ("fchmod", lambda b: os.fchmod(b.fd("fd"), 0o600)),
        ("new name mode", st("d/g")),
        # rename another file over the open one: the fd keeps the old file
        lambda b: write_file(b.p("other"), b"replacement"),
        ("rename over open file", lambda b: os.rename(b.p("other"), b.p("d", "g"))),
        ("old fd reads old data", lambda b: os.pread(b.fd("fd"), 100, 0)),
        ("old fd nlink", lambda b: os.fstat(b.fd("fd")).st_nlink),
        ("name has new data", content("d/g")),
        ("write to orphan", lambda b: os.pwrite(b.fd("fd"), b"X", 0)),
        ("name unaffected", content("d/g")),
        closed("fd"),
    ])
    assert res["read new name"] == b"v1after rename"
    assert res["fstat == stat new name"] is True
    assert res["old fd reads old data"] == b"v1after rename"
    assert res["old fd nlink"] == 0
    assert res["name has new data"] == b"replacement"
    assert res["name unaffected"] == b"replacement"


def test_renameat2_noreplace(view):
    NR = sysx.RENAME_NOREPLACE
    res = run_parity(view, [
        setup_tree,
        ("noreplace onto file", lambda b: sysx.renameat2(b.p("a"), b.p("b"), NR)),
        ("noreplace onto empty dir", lambda b: sysx.renameat2(b.p("d"), b.p("empty"), NR)),
        ("noreplace onto dangling symlink",
         lambda b: (os.symlink("nowhere", b.p("dang")), sysx.renameat2(b.p("a"), b.p("dang"), NR))),
        ("unchanged", tree()),
        ("noreplace to new name", lambda b: sysx.renameat2(b.p("a"), b.p("p2", "a2"), NR)),
        ("moved", content("p2/a2")),
        ("noreplace dir to new name", lambda b: sysx.renameat2(b.p("d"), b.p("p1", "d"), NR)),
        ("noreplace missing", lambda b: sysx.renameat2(b.p("missing"), b.p("zz"), NR)),
        ("final", tree()),
    ])
    assert res["noreplace onto file"] == err(errno.EEXIST)
    assert res["noreplace onto empty dir"] == err(errno.EEXIST)
    assert res["noreplace onto dangling symlink"] == err(errno.EEXIST)
    assert res["moved"] == b"content of a"
    assert res["noreplace missing"] == err(errno.ENOENT)


@pytest.mark.parametrize("first,second", [("a", "b"), ("a", "d"), ("d", "a"), ("d", "full"),
                                          ("a", "p1/sub"), ("p2", "d/inner")])
def test_renameat2_exchange(view, first, second):
    """RENAME_EXCHANGE swaps two existing entries (any types, also across
    directories); both names stay, each now naming the other inode."""
    EX = sysx.RENAME_EXCHANGE
    res = run_parity(view, [
        setup_tree,
        remember_ino(first, "F"), remember_ino(second, "S"),
        ("before", tree()),
        ("exchange", lambda b: sysx.renameat2(b.p(first), b.p(second), EX)),
        ("first is S", ino_is(first, "S")),
        ("second is F", ino_is(second, "F")),
        (first, st(first)), (second, st(second)),
        ("after", tree()),
        ("exchange back", lambda b: sysx.renameat2(b.p(second), b.p(first), EX)),
        ("first is F again", ino_is(first, "F")),
        ("restored", tree()),
    ])
    assert res["exchange"] is None
    assert res["first is S"] is True and res["second is F"] is True
    assert res["restored"] == res["before"]


def test_renameat2_exchange_errors(view):
    EX = sysx.RENAME_EXCHANGE
    res = run_parity(view, [
        setup_tree,
        ("exchange with missing", lambda b: sysx.renameat2(b.p("a"), b.p("missing"), EX)),
        ("exchange missing source", lambda b: sysx.renameat2(b.p("missing"), b.p("a"), EX)),
        ("exchange|noreplace", lambda b: sysx.renameat2(b.p("a"), b.p("b"),
                                                        EX | sysx.RENAME_NOREPLACE)),
        ("exchange dir into own subdir", lambda b: sysx.renameat2(b.p("p1"), b.p("p1", "sub"), EX)),
        ("exchange with itself", lambda b: sysx.renameat2(b.p("a"), b.p("a"), EX)),
        ("unchanged", tree()),
    ])
    assert res["exchange with missing"] == err(errno.ENOENT)
    assert res["exchange missing source"] == err(errno.ENOENT)
    assert res["exchange|noreplace"] == err(errno.EINVAL)
    assert res["exchange dir into own subdir"] == err(errno.EINVAL)


def test_renameat2_exchange_updates_dir_links(view):
    """Exchanging a directory with a file across parents moves the ".."
    link: the parents' st_nlink follow."""
    EX = sysx.RENAME_EXCHANGE
    res = run_parity(view, [
        setup_tree,
        ("p1", st("p1")), ("p2", st("p2")),
        lambda b: write_file(b.p("p2", "file"), b"f"),
        ("exchange p1/sub <-> p2/file", lambda b: sysx.renameat2(b.p("p1", "sub"), b.p("p2", "file"), EX)),
        ("p1 after", st("p1")), ("p2 after", st("p2")),
        ("p1/sub is file", st("p1/sub")),
        ("dotdot", same_inode("p2/file/..", "p2")),
    ])
    assert res["p1 after"]["nlink"] == res["p1"]["nlink"] - 1
    assert res["p2 after"]["nlink"] == res["p2"]["nlink"] + 1
    assert res["p1/sub is file"]["type"] == "reg"
    assert res["dotdot"] is True
