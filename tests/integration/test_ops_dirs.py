"""mkdir, rmdir, unlink, and the life of an open file after its unlink."""
import errno
import os

from parity import (TimeWatch, closed, content, err, fst, listing, opened, run_parity, st,
                    write_file)


def test_mkdir(view):
    w = TimeWatch(".")
    res = run_parity(view, [
        ("root before", st(".")),
        w.mark,
        ("mkdir d", lambda b: os.mkdir(b.p("d"))),
        ("parent times", w.check_mtime),
        ("root after", st(".")),
        ("d", st("d")),
        ("mkdir again", lambda b: os.mkdir(b.p("d"))),
        lambda b: write_file(b.p("f"), b"x"),
        ("mkdir over file", lambda b: os.mkdir(b.p("f"))),
        ("mkdir under file", lambda b: os.mkdir(b.p("f", "x"))),
        ("mkdir missing parent", lambda b: os.mkdir(b.p("nope", "x"))),
        lambda b: os.symlink("nowhere", b.p("dangling")),
        ("mkdir over dangling symlink", lambda b: os.mkdir(b.p("dangling"))),
        ("mkdir trailing slash", lambda b: os.mkdir(b.p("e") + "/")),
        ("nested", lambda b: os.makedirs(b.p("a", "b", "c", "d"))),
        ("a", st("a")), ("a/b/c/d", st("a/b/c/d")),
        ("mkdir name too long", lambda b: os.mkdir(b.p("n" * 256))),
        ("listing", listing()),
    ])
    assert res["mkdir d"] is None
    assert res["parent times"] == {"mtime": "changed", "ctime": "changed"}
    assert res["root after"]["nlink"] == res["root before"]["nlink"] + 1
    assert res["d"]["type"] == "dir" and res["d"]["nlink"] == 2
    assert res["mkdir again"] == err(errno.EEXIST)
    assert res["mkdir over file"] == err(errno.EEXIST)
    assert res["mkdir under file"] == err(errno.ENOTDIR)
    assert res["mkdir missing parent"] == err(errno.ENOENT)
    assert res["mkdir over dangling symlink"] == err(errno.EEXIST)
    assert res["mkdir name too long"] == err(errno.ENAMETOOLONG)


def test_rmdir(view):
    w = TimeWatch(".")
    res = run_parity(view, [
        lambda b: os.makedirs(b.p("full", "sub")),
        lambda b: write_file(b.p("full", "file"), b"x"),
        lambda b: os.mkdir(b.p("empty")),
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: os.symlink("empty", b.p("lnk")),
        ("root before", st(".")),
        ("rmdir non-empty", lambda b: os.rmdir(b.p("full"))),
        ("rmdir missing", lambda b: os.rmdir(b.p("missing"))),
        ("rmdir file", lambda b: os.rmdir(b.p("f"))),
        ("rmdir symlink to dir", lambda b: os.rmdir(b.p("lnk"))),
        ("rmdir dot", lambda b: os.rmdir(b.p("empty", "."))),
        ("rmdir dotdot", lambda b: os.rmdir(b.p("full", "sub", ".."))),
        ("rmdir under file", lambda b: os.rmdir(b.p("f", "x"))),
        w.mark,
        ("rmdir empty", lambda b: os.rmdir(b.p("empty"))),
        ("parent times", w.check_mtime),
        ("gone", lambda b: os.path.lexists(b.p("empty"))),
        ("root after", st(".")),
        ("rmdir nested leaf", lambda b: os.rmdir(b.p("full", "sub"))),
        ("full after", st("full")),
        ("still non-empty", lambda b: os.rmdir(b.p("full"))),
        lambda b: os.unlink(b.p("full", "file")),
        ("now empty", lambda b: os.rmdir(b.p("full"))),
        ("recreate", lambda b: os.mkdir(b.p("full"))),
        st("full"),
        listing(),
    ])
    assert res["rmdir non-empty"] == err(errno.ENOTEMPTY)
    assert res["rmdir missing"] == err(errno.ENOENT)
    assert res["rmdir file"] == err(errno.ENOTDIR)
    assert res["rmdir symlink to dir"] == err(errno.ENOTDIR)
    assert res["rmdir dot"] == err(errno.EINVAL)
    assert res["rmdir under file"] == err(errno.ENOTDIR)
    assert res["parent times"] == {"mtime": "changed", "ctime": "changed"}
    assert res["gone"] is False
    assert res["root after"]["nlink"] == res["root before"]["nlink"] - 1
    assert res["full after"]["nlink"] == 2
    assert res["now empty"] is None


def test_unlink(view):
    w = TimeWatch(".")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        lambda b: write_file(b.p("target"), b"t"),
        lambda b: os.symlink("target", b.p("lnk")),
        lambda b: os.mkdir(b.p("d")),
        ("unlink dir", lambda b: os.unlink(b.p("d"))),
        ("unlink missing", lambda b: os.unlink(b.p("missing"))),
        ("unlink under file", lambda b: os.unlink(b.p("f", "x"))),
        ("unlink trailing slash", lambda b: os.unlink(b.p("f") + "/")),
        w.mark,
        ("unlink f", lambda b: os.unlink(b.p("f"))),
        ("parent times", w.check_mtime),
        ("f gone", lambda b: os.path.lexists(b.p("f"))),
        ("unlink again", lambda b: os.unlink(b.p("f"))),
        ("unlink symlink", lambda b: os.unlink(b.p("lnk"))),
        ("target kept", content("target")),
        ("stat f", st("f")),
        ("recreate f", lambda b: write_file(b.p("f"), b"new")),
        content("f"),
        listing(),
    ])
    assert res["unlink dir"] == err(errno.EISDIR)
    assert res["unlink missing"] == err(errno.ENOENT)
    assert res["unlink under file"] == err(errno.ENOTDIR)
    assert res["parent times"] == {"mtime": "changed", "ctime": "changed"}
    assert res["f gone"] is False
    assert res["unlink again"] == err(errno.ENOENT)
    assert res["target kept"] == b"t"
    assert res["stat f"] == err(errno.ENOENT)


def test_open_unlinked_file_stays_usable(view):
    res = run_parity(view, [
        opened("w", "f", os.O_RDWR | os.O_CREAT),
        opened("r", "f", os.O_RDONLY),
        lambda b: os.write(b.fd("w"), b"before unlink;"),
        ("unlink", lambda b: os.unlink(b.p("f"))),
        ("not listed", listing()),
        ("lstat name", st("f")),
        ("fstat", fst("w")),
        ("write after unlink", lambda b: os.write(b.fd("w"), b"after unlink")),
        ("read via other fd", lambda b: os.pread(b.fd("r"), 100, 0)),
        ("pwrite after unlink", lambda b: os.pwrite(b.fd("w"), b"B", 0)),
        ("read same fd", lambda b: os.pread(b.fd("w"), 100, 0)),
        ("ftruncate", lambda b: os.ftruncate(b.fd("w"), 6)),
        ("fstat after ftruncate", fst("r")),
        ("fchmod", lambda b: os.fchmod(b.fd("w"), 0o600)),
        ("fsync", lambda b: os.fsync(b.fd("w"))),
        ("fstat after fchmod", fst("w")),
        # a new file with the same name is a different file
        ("new file same name", lambda b: write_file(b.p("f"), b"second")),
        ("new content", content("f")),
        ("old fd unaffected", lambda b: os.pread(b.fd("r"), 100, 0)),
        ("old fd nlink", lambda b: os.fstat(b.fd("r")).st_nlink),
        closed("w"), closed("r"),
        ("new file still there", content("f")),
    ])
    assert res["not listed"] == []
    assert res["lstat name"] == err(errno.ENOENT)
    assert res["fstat"]["nlink"] == 0 and res["fstat"]["size"] == 14
    assert res["read via other fd"] == b"before unlink;after unlink"
    assert res["read same fd"] == b"Before unlink;after unlink"
    assert res["fstat after ftruncate"]["size"] == 6
    assert res["fstat after fchmod"]["mode"] == "0o600"
    assert res["old fd unaffected"] == b"Before"
    assert res["old fd nlink"] == 0
    assert res["new file still there"] == b"second"


def test_unlink_one_of_two_links_while_open(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"shared"),
        lambda b: os.link(b.p("f"), b.p("g")),
        opened("fd", "f", os.O_RDWR),
        lambda b: os.unlink(b.p("f")),
        ("fstat", fst("fd")),
        ("g", st("g")),
        lambda b: os.pwrite(b.fd("fd"), b"S", 0),
        ("g content", content("g")),
    ])
    assert res["fstat"]["nlink"] == 1 and res["g"]["nlink"] == 1
    assert res["g content"] == b"Shared"
