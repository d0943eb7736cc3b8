"""open/create: O_CREAT/O_EXCL, O_TRUNC, O_APPEND, creation modes and umask,
O_DIRECT, O_NOFOLLOW, O_DIRECTORY, O_PATH and the access-mode errors."""
import errno
import hashlib
import mmap
import os
import stat

import pytest

from parity import (TimeWatch, closed, content, digest, err, fst, opened, run_parity, st,
                    write_file)

RW_CREAT = os.O_RDWR | os.O_CREAT


def test_creat_excl(view):
    res = run_parity(view, [
        ("create new O_EXCL", lambda b: b.open("a", "f", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)),
        ("write", lambda b: os.write(b.fd("a"), b"hello")),
        closed("a"),
        st("f"),
        ("O_EXCL existing file", lambda b: os.open(b.p("f"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
        ("O_CREAT existing keeps data", lambda b: os.close(os.open(b.p("f"), os.O_WRONLY | os.O_CREAT, 0o600))),
        content("f"), st("f"),
        lambda b: os.mkdir(b.p("d")),
        ("O_EXCL existing dir", lambda b: os.open(b.p("d"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
        ("O_CREAT existing dir", lambda b: os.open(b.p("d"), os.O_WRONLY | os.O_CREAT)),
        ("O_CREAT|O_RDONLY existing dir", lambda b: os.close(os.open(b.p("d"), os.O_RDONLY | os.O_CREAT))),
        lambda b: os.symlink("target", b.p("dangling")),
        ("O_EXCL on dangling symlink", lambda b: os.open(b.p("dangling"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)),
        ("target not created", lambda b: os.path.lexists(b.p("target"))),
        ("O_CREAT through dangling symlink", lambda b: os.close(os.open(b.p("dangling"), os.O_WRONLY | os.O_CREAT, 0o600))),
        ("target created", st("target")),
        ("O_CREAT in missing dir", lambda b: os.open(b.p("nodir", "f"), os.O_WRONLY | os.O_CREAT)),
        ("O_CREAT under a file", lambda b: os.open(b.p("f", "x"), os.O_WRONLY | os.O_CREAT)),
        ("O_CREAT|O_EXCL|O_RDONLY", lambda b: os.close(os.open(b.p("ro"), os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444))),
        st("ro"),
        ("listing", lambda b: sorted(os.listdir(b))),
    ])
    assert res["O_EXCL existing file"] == err(errno.EEXIST)
    assert res["O_EXCL existing dir"] == err(errno.EEXIST)
    assert res["O_CREAT existing dir"] == err(errno.EISDIR)
    assert res["O_EXCL on dangling symlink"] == err(errno.EEXIST)
    assert res["target not created"] is False
    assert res["target created"]["type"] == "reg"
    assert res["O_CREAT in missing dir"] == err(errno.ENOENT)
    assert res["O_CREAT under a file"] == err(errno.ENOTDIR)


def test_open_trunc(view):
    w = TimeWatch("f")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"0123456789" * 1000),
        w.mark,
        ("O_WRONLY|O_TRUNC", lambda b: os.close(os.open(b.p("f"), os.O_WRONLY | os.O_TRUNC))),
        ("times after O_TRUNC", w.check_mtime),
        ("stat after O_TRUNC", st("f")),
        lambda b: write_file(b.p("f"), b"abc", flags=os.O_WRONLY),
        ("O_RDWR|O_TRUNC then write", lambda b: (b.open("t", "f", os.O_RDWR | os.O_TRUNC),
                                                 os.write(b.fd("t"), b"xy"),
                                                 os.pread(b.fd("t"), 10, 0))),
        fst("t"),
        closed("t"),
        content("f"),
        # Linux truncates on O_RDONLY|O_TRUNC too (POSIX leaves it unspecified)
        ("O_RDONLY|O_TRUNC", lambda b: os.close(os.open(b.p("f"), os.O_RDONLY | os.O_TRUNC))),
        st("f"),
        # O_TRUNC of an empty file still updates mtime and ctime
        w.mark,
        ("O_TRUNC empty", lambda b: os.close(os.open(b.p("f"), os.O_WRONLY | os.O_TRUNC))),
        ("times after O_TRUNC empty", w.check_mtime),
        # O_TRUNC of a 0444 file: root may
        lambda b: (write_file(b.p("f"), b"data"), os.chmod(b.p("f"), 0o444)),
        ("O_TRUNC 0444 as root", lambda b: os.close(os.open(b.p("f"), os.O_WRONLY | os.O_TRUNC))),
        st("f"),
        ("O_TRUNC on dir", lambda b: (os.mkdir(b.p("d")), os.open(b.p("d"), os.O_RDONLY | os.O_TRUNC))),
    ])
    assert res["times after O_TRUNC"] == {"mtime": "changed", "ctime": "changed"}
    assert res["stat after O_TRUNC"]["size"] == 0
    assert res["O_RDWR|O_TRUNC then write"][1:] == (2, b"xy")
    assert res["times after O_TRUNC empty"] == {"mtime": "changed", "ctime": "changed"}


def test_open_append_two_fds(view):
    steps = [lambda b: write_file(b.p("f"), b"start\n"),
             opened("a", "f", os.O_WRONLY | os.O_APPEND),
             opened("b", "f", os.O_RDWR | os.O_APPEND)]
    for i in range(20):
        k = "a" if i % 2 == 0 else "b"
        steps += [("write %s %d" % (k, i), lambda b, k=k, i=i: os.write(b.fd(k), b"%s%d-" % (k.encode(), i) * (i + 1))),
                  ("size after %d" % i, lambda b, k=k: os.fstat(b.fd(k)).st_size),
                  ("offset %s after %d" % (k, i), lambda b, k=k: os.lseek(b.fd(k), 0, os.SEEK_CUR))]
    steps += [
        # lseek does not defeat O_APPEND
        ("seek 0 then write", lambda b: (os.lseek(b.fd("a"), 0, os.SEEK_SET), os.write(b.fd("a"), b"SEEK"))),
        # Linux: pwrite on an O_APPEND fd appends, ignoring the offset
        ("pwrite on O_APPEND", lambda b: os.pwrite(b.fd("b"), b"PW", 0)),
        ("read back through O_RDWR|O_APPEND", lambda b: os.pread(b.fd("b"), 8, 0)),
        closed("a"), closed("b"),
        ("content", content("f")),
        st("f"),
    ]
    res = run_parity(view, steps)
    expected = b"start\n" + b"".join((b"%s%d-" % (b"a" if i % 2 == 0 else b"b", i)) * (i + 1)
                                     for i in range(20)) + b"SEEKPW"
    assert res["content"] == digest(expected)


@pytest.fixture(params=[0o022, 0o077, 0o000], ids=["umask022", "umask077", "umask000"])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


FILE_MODES = [0o777, 0o666, 0o644, 0o600, 0o000, 0o4755, 0o2755, 0o1777, 0o7777]
DIR_MODES = [0o777, 0o755, 0o700, 0o1777, 0o2775, 0o7777]


def test_creat_modes(view, umask):
    steps = []
    for m in FILE_MODES:
        steps += [("create %o" % m, lambda b, m=m: os.close(os.open(b.p("f%o" % m), os.O_WRONLY | os.O_CREAT | os.O_EXCL, m))),
                  ("file %o" % m, st("f%o" % m))]
    for m in DIR_MODES:
        steps += [("mkdir %o" % m, lambda b, m=m: os.mkdir(b.p("d%o" % m), m)),
                  ("dir %o" % m, st("d%o" % m))]
    steps += [("mkfifo", lambda b: os.mkfifo(b.p("fifo"), 0o666)), ("fifo", st("fifo")),
              ("mknod reg", lambda b: os.mknod(b.p("nod"), stat.S_IFREG | 0o666)), ("nod", st("nod"))]
    res = run_parity(view, steps)
    for m in FILE_MODES:
        assert res["file %o" % m]["mode"] == oct(m & ~umask), m
    for m in DIR_MODES:
        # mkdir(2) takes the permission and sticky bits from mode (S_ISGID
        # only by inheritance from a set-group-ID parent)
        assert res["dir %o" % m]["mode"] == oct(m & 0o1777 & ~umask), m
    assert res["fifo"]["mode"] == oct(0o666 & ~umask)


def test_creat_in_setgid_directory(view):
    """A new entry in a set-group-ID directory takes the directory's group;
    a new subdirectory also inherits the set-group-ID bit."""
    res = run_parity(view, [
        lambda b: (os.mkdir(b.p("sg")), os.chown(b.p("sg"), 0, 4242), os.chmod(b.p("sg"), 0o2775)),
        st("sg"),
        ("file in sg", lambda b: (write_file(b.p("sg", "f"), b"x"), stat_tuple(b.p("sg", "f")))),
        ("dir in sg", lambda b: (os.mkdir(b.p("sg", "sub"), 0o755), stat_tuple(b.p("sg", "sub")))),
        ("symlink in sg", lambda b: (os.symlink("f", b.p("sg", "ln")), stat_tuple(b.p("sg", "ln")))),
        ("fifo in sg", lambda b: (os.mkfifo(b.p("sg", "p")), stat_tuple(b.p("sg", "p")))),
    ])
    assert res["file in sg"][1][:2] == (0, 4242)
    assert res["dir in sg"][1][:2] == (0, 4242)
    assert int(res["dir in sg"][1][2], 8) & stat.S_ISGID
    assert res["fifo in sg"][1][:2] == (0, 4242)


def stat_tuple(p):
    s = os.lstat(p)
    return (s.st_uid, s.st_gid, oct(stat.S_IMODE(s.st_mode)))


def _direct_io(b):
    """Write and read back 64 KiB with O_DIRECT through page-aligned buffers."""
    size = 64 * 1024
    wbuf = mmap.mmap(-1, size)
    rbuf = mmap.mmap(-1, size)
    try:
        wbuf.write(bytes(range(256)) * (size // 256))
        fd = os.open(b.p("direct"), os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o644)
        try:
            n = os.pwritev(fd, [wbuf], 0)
            n2 = os.pwritev(fd, [wbuf], size * 3)   # leaves a hole
            r = os.preadv(fd, [rbuf], 0)
            same = rbuf[:] == wbuf[:]
            r2 = os.preadv(fd, [rbuf], size)         # the hole
            zeros = rbuf[:] == bytes(size)
            r3 = os.preadv(fd, [rbuf], size * 4)     # at EOF
        finally:
            os.close(fd)
        return ("ok", n, n2, r, same, r2, zeros, r3)
    finally:
        wbuf.close()
        rbuf.close()


def test_o_direct(view):
    """O_DIRECT with aligned buffers works as on the native filesystem (or, if
    the native filesystem refuses O_DIRECT, is refused the same way)."""
    res = run_parity(view, [
        ("direct io", _direct_io),
        ("buffered view of the direct writes", lambda b: os.path.exists(b.p("direct")) and
         hashlib.sha256(open(b.p("direct"), "rb").read()).hexdigest()),
        st("direct"),
        ("open existing O_DIRECT|O_RDONLY", lambda b: os.path.exists(b.p("direct")) and
         os.close(os.open(b.p("direct"), os.O_RDONLY | os.O_DIRECT))),
    ])
    if res["direct io"][0] == "ok":
        assert res["direct io"] == ("ok", 65536, 65536, 65536, True, 65536, True, 0)


def test_access_mode_and_type_errors(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"content"),
        lambda b: os.mkdir(b.p("d")),
        lambda b: os.symlink("f", b.p("lnf")),
        lambda b: os.symlink("d", b.p("lnd")),
        lambda b: os.symlink("nowhere", b.p("dangling")),
        opened("r", "f", os.O_RDONLY),
        ("write on O_RDONLY", lambda b: os.write(b.fd("r"), b"x")),
        ("pwrite on O_RDONLY", lambda b: os.pwrite(b.fd("r"), b"x", 0)),
        ("read on O_RDONLY", lambda b: os.read(b.fd("r"), 100)),
        opened("w", "f", os.O_WRONLY),
        ("read on O_WRONLY", lambda b: os.read(b.fd("w"), 10)),
        ("pread on O_WRONLY", lambda b: os.pread(b.fd("w"), 10, 0)),
        ("write on O_WRONLY", lambda b: os.write(b.fd("w"), b"C")),
        closed("w"),
        content("f"),
        ("O_NOFOLLOW symlink", lambda b: os.open(b.p("lnf"), os.O_RDONLY | os.O_NOFOLLOW)),
        ("O_NOFOLLOW dangling", lambda b: os.open(b.p("dangling"), os.O_RDONLY | os.O_NOFOLLOW)),
        ("O_NOFOLLOW|O_CREAT dangling", lambda b: os.open(b.p("dangling"), os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW)),
        ("O_NOFOLLOW file", lambda b: os.close(os.open(b.p("f"), os.O_RDONLY | os.O_NOFOLLOW))),
        ("O_NOFOLLOW via dir symlink", lambda b: os.close(os.open(b.p("lnd", "."), os.O_RDONLY | os.O_NOFOLLOW))),
        ("O_DIRECTORY file", lambda b: os.open(b.p("f"), os.O_RDONLY | os.O_DIRECTORY)),
        ("O_DIRECTORY symlink to file", lambda b: os.open(b.p("lnf"), os.O_RDONLY | os.O_DIRECTORY)),
        ("O_DIRECTORY symlink to dir", lambda b: os.close(os.open(b.p("lnd"), os.O_RDONLY | os.O_DIRECTORY))),
        ("O_DIRECTORY dir", lambda b: os.close(os.open(b.p("d"), os.O_RDONLY | os.O_DIRECTORY))),
        ("dir O_WRONLY", lambda b: os.open(b.p("d"), os.O_WRONLY)),
        ("dir O_RDWR", lambda b: os.open(b.p("d"), os.O_RDWR)),
        ("dir O_WRONLY|O_CREAT", lambda b: os.open(b.p("d"), os.O_WRONLY | os.O_CREAT)),
        opened("dfd", "d", os.O_RDONLY),
        ("read on dir fd", lambda b: os.read(b.fd("dfd"), 10)),
        ("write on dir fd", lambda b: os.write(b.fd("dfd"), b"x")),
        ("open missing", lambda b: os.open(b.p("missing"), os.O_RDONLY)),
        ("open under a file", lambda b: os.open(b.p("f", "x"), os.O_RDONLY)),
        ("open dangling", lambda b: os.open(b.p("dangling"), os.O_RDONLY)),
        ("O_PATH symlink NOFOLLOW",
         lambda b: (b.open("path", "lnf", os.O_PATH | os.O_NOFOLLOW),
                    stat.S_ISLNK(os.fstat(b.fd("path")).st_mode))),
        ("read on O_PATH", lambda b: os.read(b.fd("path"), 1)),
        ("O_PATH file fstat", lambda b: (b.open("pf", "f", os.O_PATH), os.fstat(b.fd("pf")).st_size)),
        ("O_SYNC write", lambda b: (b.open("s", "f", os.O_WRONLY | os.O_SYNC),
                                    os.write(b.fd("s"), b"S"), os.pread(b.fd("r"), 3, 0))),
        ("O_DSYNC write", lambda b: (b.open("ds", "f", os.O_WRONLY | os.O_DSYNC),
                                     os.pwrite(b.fd("ds"), b"D", 1), os.pread(b.fd("r"), 3, 0))),
    ])
    assert res["write on O_RDONLY"] == err(errno.EBADF)
    assert res["pwrite on O_RDONLY"] == err(errno.EBADF)
    assert res["read on O_WRONLY"] == err(errno.EBADF)
    assert res["O_NOFOLLOW symlink"] == err(errno.ELOOP)
    assert res["O_NOFOLLOW dangling"] == err(errno.ELOOP)
    assert res["O_DIRECTORY file"] == err(errno.ENOTDIR)
    assert res["O_DIRECTORY symlink to file"] == err(errno.ENOTDIR)
    assert res["dir O_WRONLY"] == err(errno.EISDIR)
    assert res["dir O_RDWR"] == err(errno.EISDIR)
    assert res["read on dir fd"] == err(errno.EISDIR)
    assert res["open missing"] == err(errno.ENOENT)
    assert res["open under a file"] == err(errno.ENOTDIR)
    assert res["O_PATH symlink NOFOLLOW"] == (None, True)
    assert res["read on O_PATH"] == err(errno.EBADF)
    assert res["O_SYNC write"][1:] == (1, b"Son")
    assert res["O_DSYNC write"][1:] == (1, b"SDn")
