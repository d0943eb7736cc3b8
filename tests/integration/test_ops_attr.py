"""lookup, stat/lstat/fstat, chmod, chown, truncate/ftruncate, utime and
utimensat: the results through the mount equal those of the native
filesystem (parity), plus direct checks of what POSIX/Linux promise."""
import errno
import os
import time

import sysx
from parity import (TimeWatch, closed, content, err, fst, opened, run_parity,
                    same_inode, st, write_file)


def test_lookup(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"data"),
        lambda b: os.mkdir(b.p("d")),
        lambda b: write_file(b.p("d", "g"), b"g"),
        ("f", st("f")),
        ("d", st("d")),
        ("d/g", st("d/g")),
        ("missing", st("missing")),
        ("d/missing", st("d/missing")),
        ("component is a file", st("f/x")),
        ("component missing", st("missing/x")),
        ("d/.. is the root", same_inode("d/..", ".")),
        ("d/./g is d/g", same_inode("d/./g", "d/g")),
        ("stat f via d/../f", lambda b: os.stat(b.p("d", "..", "f")).st_size),
        ("create 255-byte name", lambda b: write_file(b.p("n" * 255), b"x")),
        ("255-byte name", st("n" * 255)),
        ("256-byte name", st("n" * 256)),
        ("create 256-byte name", lambda b: write_file(b.p("m" * 256), b"x")),
        ("other case", st("F")),
        ("create non-ASCII name", lambda b: write_file(b.p("\u00fcn\u00ef \u20ac\t.txt"), b"u")),
        ("non-ASCII name", st("\u00fcn\u00ef \u20ac\t.txt")),
        ("listdir", lambda b: sorted(os.listdir(b))),
    ])
    assert res["f"]["type"] == "reg" and res["f"]["size"] == 4
    assert res["missing"] == err(errno.ENOENT)
    assert res["component is a file"] == err(errno.ENOTDIR)
    assert res["d/.. is the root"] is True
    assert res["255-byte name"]["type"] == "reg"
    assert res["256-byte name"] == err(errno.ENAMETOOLONG)
    assert res["create 256-byte name"] == err(errno.ENAMETOOLONG)
    assert res["other case"] == err(errno.ENOENT)


def test_stat_lstat_fstat_agree(view):
    def fstat_matches_stat(b):
        fd = os.open(b.p("f"), os.O_RDONLY)
        try:
            a, s = os.fstat(fd), os.stat(b.p("f"))
        finally:
            os.close(fd)
        return (a.st_ino == s.st_ino, a.st_dev == s.st_dev, a.st_mode == s.st_mode,
                a.st_size == s.st_size, a.st_nlink == s.st_nlink,
                a.st_mtime_ns == s.st_mtime_ns, a.st_ctime_ns == s.st_ctime_ns)

    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x" * 5000, mode=0o640),
        lambda b: os.mkdir(b.p("d"), 0o750),
        lambda b: os.mkdir(b.p("d", "sub")),
        lambda b: os.symlink("f", b.p("ln")),
        lambda b: os.symlink("d", b.p("lnd")),
        ("f", st("f")), ("d", st("d")), st("d/sub"), ("root", st(".")),
        ("ln", st("ln")), ("ln followed", st("ln", follow=True)),
        st("lnd"), st("lnd", follow=True),
        same_inode("lnd/sub", "d/sub"),
        opened("r", "f", os.O_RDONLY), ("fstat f", fst("r")),
        opened("dfd", "d", os.O_RDONLY | os.O_DIRECTORY), ("fstat d", fst("dfd")),
        ("fstat matches stat", fstat_matches_stat),
        ("stat through symlink is the target",
         lambda b: os.stat(b.p("ln")).st_ino == os.lstat(b.p("f")).st_ino),
        ("lstat on symlink is the link", lambda b: os.lstat(b.p("ln")).st_ino != os.lstat(b.p("f")).st_ino),
        # st_blocks/st_size of a written file after fsync
        lambda b: os.fsync(b.fd("r")),
        ("f with blocks", st("f", blocks=True)),
    ])
    assert res["f"]["size"] == 5000 and res["f"]["mode"] == "0o640"
    assert res["d"]["nlink"] == 3 and res["d"]["mode"] == "0o750"
    assert res["ln"]["type"] == "lnk" and res["ln"]["size"] == 1
    assert res["ln followed"] == res["f"] and res["fstat f"] == res["f"]
    assert res["fstat d"] == res["d"]
    assert all(res["fstat matches stat"])
    assert res["stat through symlink is the target"] is True
    assert res["lstat on symlink is the link"] is True
    assert res["f with blocks"]["blocks"] >= 5000 // 512


def test_stat_blksize_is_sane(view):
    write_file(view.p("f"), b"x")
    s = os.stat(view.p("f"))
    assert s.st_blksize > 0 and s.st_blksize & (s.st_blksize - 1) == 0


MODES = [0o000, 0o600, 0o644, 0o755, 0o777, 0o4755, 0o2755, 0o1777, 0o7777, 0o4000, 0o111]


def test_chmod(view):
    steps = [lambda b: write_file(b.p("f"), b"abc"),
             lambda b: os.mkdir(b.p("d")),
             lambda b: os.symlink("f", b.p("ln"))]
    for m in MODES:
        steps += [("chmod f %o" % m, lambda b, m=m: os.chmod(b.p("f"), m)), ("f %o" % m, st("f")),
                  ("chmod d %o" % m, lambda b, m=m: os.chmod(b.p("d"), m)), ("d %o" % m, st("d"))]
    w = TimeWatch("f")
    steps += [
        # chmod through a symlink changes the target, not the link
        ("chmod via symlink", lambda b: os.chmod(b.p("ln"), 0o640)),
        ("f after chmod via symlink", st("f")), ("ln after chmod via symlink", st("ln")),
        opened("fd", "f", os.O_RDONLY),
        ("fchmod", lambda b: os.fchmod(b.fd("fd"), 0o604)),
        ("fstat after fchmod", fst("fd")), ("f after fchmod", st("f")),
        closed("fd"),
        # chmod updates ctime, not mtime
        w.mark,
        lambda b: os.chmod(b.p("f"), 0o600),
        ("times after chmod", w.check),
        ("chmod missing", lambda b: os.chmod(b.p("missing"), 0o600)),
        ("chmod through file", lambda b: os.chmod(b.p("f", "x"), 0o600)),
        # a 0000 file is still readable and writable by root
        lambda b: os.chmod(b.p("f"), 0),
        lambda b: write_file(b.p("f"), b"root", flags=os.O_WRONLY | os.O_TRUNC),
        ("content of 0000 file", content("f")),
    ]
    res = run_parity(view, steps)
    for m in MODES:
        assert res["f %o" % m]["mode"] == oct(m)
        assert res["d %o" % m]["mode"] == oct(m)
    assert res["f after chmod via symlink"]["mode"] == "0o640"
    assert res["ln after chmod via symlink"]["mode"] == "0o777"
    assert res["fstat after fchmod"]["mode"] == res["f after fchmod"]["mode"] == "0o604"
    assert res["times after chmod"] == {"mtime": "marked", "ctime": "changed", "atime": "marked"}
    assert res["chmod missing"] == err(errno.ENOENT)
    assert res["chmod through file"] == err(errno.ENOTDIR)
    assert res["content of 0000 file"] == b"root"


def test_chown_as_root(view):
    w = TimeWatch("f")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"abc"),
        lambda b: os.mkdir(b.p("d")),
        lambda b: os.symlink("f", b.p("ln")),
        ("chown f 1234:5678", lambda b: os.chown(b.p("f"), 1234, 5678)),
        ("f 1234:5678", st("f")),
        ("chown f uid only", lambda b: os.chown(b.p("f"), 4321, -1)),
        ("f 4321:-1", st("f")),
        ("chown f gid only", lambda b: os.chown(b.p("f"), -1, 8765)),
        ("f -1:8765", st("f")),
        ("chown f -1:-1", lambda b: os.chown(b.p("f"), -1, -1)),
        ("f -1:-1", st("f")),
        ("chown d", lambda b: os.chown(b.p("d"), 99, 98)),
        ("d 99:98", st("d")),
        # lchown changes the link itself, chown through it the target
        ("lchown ln", lambda b: os.lchown(b.p("ln"), 2000, 2001)),
        ("ln after lchown", st("ln")), ("f after lchown", st("f")),
        ("chown via ln", lambda b: os.chown(b.p("ln"), 3000, 3001)),
        ("ln after chown via ln", st("ln")), ("f after chown via ln", st("f")),
        opened("fd", "f", os.O_RDONLY),
        ("fchown", lambda b: os.fchown(b.fd("fd"), 0, 0)),
        ("fstat after fchown", fst("fd")),
        closed("fd"),
        # changing the owner of an executable clears set-user-ID/set-group-ID
        lambda b: os.chmod(b.p("f"), 0o6755),
        ("chown setuid file", lambda b: os.chown(b.p("f"), 1000, 1000)),
        ("setuid file after chown", st("f")),
        # ... but not the set-group-ID bit of a directory
        lambda b: os.chmod(b.p("d"), 0o2775),
        ("chown setgid dir", lambda b: os.chown(b.p("d"), 1000, 1000)),
        ("setgid dir after chown", st("d")),
        # chown updates ctime, not mtime
        w.mark,
        lambda b: os.chown(b.p("f"), 7, 7),
        ("times after chown", w.check),
        ("chown missing", lambda b: os.chown(b.p("missing"), 1, 1)),
    ])
    assert (res["f 1234:5678"]["uid"], res["f 1234:5678"]["gid"]) == (1234, 5678)
    assert (res["f 4321:-1"]["uid"], res["f 4321:-1"]["gid"]) == (4321, 5678)
    assert (res["f -1:8765"]["uid"], res["f -1:8765"]["gid"]) == (4321, 8765)
    assert res["f -1:-1"] == res["f -1:8765"]
    assert (res["d 99:98"]["uid"], res["d 99:98"]["gid"]) == (99, 98)
    assert res["ln after lchown"]["uid"] == 2000 and res["f after lchown"]["uid"] == 4321
    assert res["ln after chown via ln"]["uid"] == 2000 and res["f after chown via ln"]["uid"] == 3000
    assert (res["fstat after fchown"]["uid"], res["fstat after fchown"]["gid"]) == (0, 0)
    assert res["setuid file after chown"]["mode"] == "0o755"
    assert res["setgid dir after chown"]["mode"] == "0o2775"
    assert res["times after chown"] == {"mtime": "marked", "ctime": "changed", "atime": "marked"}
    assert res["chown missing"] == err(errno.ENOENT)


def test_truncate_grow_and_shrink(view):
    w = TimeWatch("f")
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"0123456789"),
        w.mark,
        ("truncate grow", lambda b: os.truncate(b.p("f"), 100)),
        ("times after grow", w.check_mtime),
        ("stat after grow", st("f")), ("content after grow", content("f")),
        w.mark,
        ("truncate shrink", lambda b: os.truncate(b.p("f"), 4)),
        ("times after shrink", w.check_mtime),
        ("stat after shrink", st("f")), ("content after shrink", content("f")),
        ("truncate to 0", lambda b: os.truncate(b.p("f"), 0)),
        st("f"), content("f"),
        ("truncate grow big", lambda b: os.truncate(b.p("f"), 3 * 1024 * 1024 + 17)),
        st("f"), content("f"),
        lambda b: write_file(b.p("f"), b"0123456789", flags=os.O_WRONLY),
        opened("w", "f", os.O_RDWR),
        w.mark,
        ("ftruncate shrink", lambda b: os.ftruncate(b.fd("w"), 5)),
        ("times after ftruncate", w.check_mtime),
        ("fstat after ftruncate", fst("w")),
        ("write after shrink", lambda b: os.pwrite(b.fd("w"), b"xy", 10)),
        fst("w"),
        ("content after write", content("f")),
        ("ftruncate grow", lambda b: os.ftruncate(b.fd("w"), 20)),
        fst("w"),
        ("content after ftruncate grow", content("f")),
        ("read grown part", lambda b: os.pread(b.fd("w"), 100, 0)),
        closed("w"),
        opened("r", "f", os.O_RDONLY),
        ("ftruncate O_RDONLY fd", lambda b: os.ftruncate(b.fd("r"), 1)),
        closed("r"),
        ("truncate negative", lambda b: os.truncate(b.p("f"), -1)),
        ("truncate missing", lambda b: os.truncate(b.p("missing"), 0)),
        lambda b: os.mkdir(b.p("d")),
        ("truncate dir", lambda b: os.truncate(b.p("d"), 0)),
        st("f"),
    ])
    assert res["times after grow"] == {"mtime": "changed", "ctime": "changed"}
    assert res["times after shrink"] == {"mtime": "changed", "ctime": "changed"}
    assert res["times after ftruncate"] == {"mtime": "changed", "ctime": "changed"}
    assert res["stat after grow"]["size"] == 100
    assert res["content after grow"] == b"0123456789" + bytes(90)
    assert res["content after shrink"] == b"0123"
    assert res["fstat after ftruncate"]["size"] == 5
    assert res["content after write"] == b"01234\0\0\0\0\0xy"
    assert res["content after ftruncate grow"] == b"01234\0\0\0\0\0xy" + bytes(8)
    assert res["ftruncate O_RDONLY fd"] == err(errno.EINVAL)
    assert res["truncate negative"] == err(errno.EINVAL)
    assert res["truncate missing"] == err(errno.ENOENT)
    assert res["truncate dir"] == err(errno.EISDIR)


# Nanosecond timestamps that must round-trip exactly (atime, mtime).
TIMES = [
    (0, 0),
    (1, 999_999_999),
    (1_234_567_890_123_456_789, 987_654_321_000_000_001),
    (1_700_000_000_000_000_001, 1_700_000_000_999_999_999),
    (-1_000_000_001, -86_400_000_000_007),           # before 1970
    (4_102_444_800_123_456_789, 4_102_444_801_000_000_000),  # year 2100
]


def test_utime_nanoseconds_roundtrip(view):
    steps = [lambda b: write_file(b.p("f"), b"abc"), lambda b: os.mkdir(b.p("d"))]
    for at, mt in TIMES:
        steps += [("utime f %d %d" % (at, mt), lambda b, at=at, mt=mt: os.utime(b.p("f"), ns=(at, mt))),
                  ("times f %d %d" % (at, mt), lambda b: (os.stat(b.p("f")).st_atime_ns, os.stat(b.p("f")).st_mtime_ns)),
                  ("utime d %d %d" % (at, mt), lambda b, at=at, mt=mt: os.utime(b.p("d"), ns=(at, mt))),
                  ("times d %d %d" % (at, mt), lambda b: (os.stat(b.p("d")).st_atime_ns, os.stat(b.p("d")).st_mtime_ns))]
    res = run_parity(view, steps)
    for at, mt in TIMES:
        assert res["times f %d %d" % (at, mt)] == (at, mt)
        assert res["times d %d %d" % (at, mt)] == (at, mt)
    # and directly through the mount, including through an open fd
    fd = os.open(view.p("f"), os.O_RDONLY)
    try:
        os.utime(fd, ns=(111_111_111_111_111_111, 222_222_222_222_222_222))
        s = os.fstat(fd)
        assert (s.st_atime_ns, s.st_mtime_ns) == (111_111_111_111_111_111, 222_222_222_222_222_222)
    finally:
        os.close(fd)
    s = os.stat(view.p("f"))
    assert (s.st_atime_ns, s.st_mtime_ns) == (111_111_111_111_111_111, 222_222_222_222_222_222)


def test_utime_now(view):
    write_file(view.p("f"), b"abc")
    os.utime(view.p("f"), ns=(5_000_000_000, 6_000_000_000))
    before = time.time_ns()
    os.utime(view.p("f"))
    after = time.time_ns()
    s = os.stat(view.p("f"))
    # kernel timestamps come from a coarse clock: allow a second of slack
    for t in (s.st_atime_ns, s.st_mtime_ns):
        assert before - 10 ** 9 <= t <= after + 10 ** 9
    assert s.st_ctime_ns >= s.st_mtime_ns - 10 ** 9


def test_utimensat_now_and_omit(view):
    A, M = 1_111_111_111_111_111_111, 1_222_222_222_222_222_222
    w = TimeWatch("f")

    def rel_now(label):
        """Step: each of atime/mtime is "set" (still A/M), "now" (within a
        few seconds of the clock) or its raw value."""
        def step(b):
            s = os.stat(b.p("f"))
            now = time.time_ns()

            def rel(v, setv):
                return "set" if v == setv else ("now" if abs(v - now) < 5 * 10 ** 9 else v)
            return {"atime": rel(s.st_atime_ns, A), "mtime": rel(s.st_mtime_ns, M)}
        return (label, step)

    reset = ("reset times", lambda b: os.utime(b.p("f"), ns=(A, M)))
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"abc"),
        reset,
        ("atime NOW, mtime OMIT", lambda b: sysx.utimensat(b.p("f"), sysx.NOW, sysx.OMIT)),
        rel_now("after NOW,OMIT"),
        reset,
        ("atime OMIT, mtime NOW", lambda b: sysx.utimensat(b.p("f"), sysx.OMIT, sysx.NOW)),
        rel_now("after OMIT,NOW"),
        reset,
        ("both NOW", lambda b: sysx.utimensat(b.p("f"), sysx.NOW, sysx.NOW)),
        rel_now("after NOW,NOW"),
        reset,
        ("atime OMIT, mtime explicit", lambda b: sysx.utimensat(b.p("f"), sysx.OMIT, 42_000_000_123)),
        ("after OMIT,explicit", st("f", times=True)),
        reset,
        ("atime explicit, mtime OMIT", lambda b: sysx.utimensat(b.p("f"), 7_000_000_007, sysx.OMIT)),
        ("after explicit,OMIT", st("f", times=True)),
        # both OMIT changes nothing, not even ctime
        w.mark,
        ("both OMIT", lambda b: sysx.utimensat(b.p("f"), sysx.OMIT, sysx.OMIT)),
        ("relations after OMIT,OMIT", w.check),
        # an explicit time change updates ctime
        w.mark,
        lambda b: sysx.utimensat(b.p("f"), 1, 2),
        ("relations after explicit", w.check),
        ("after explicit 1,2", st("f", times=True)),
        # futimens on an open fd
        reset,
        opened("fd", "f", os.O_RDONLY),
        ("futimens OMIT,NOW", lambda b: sysx.futimens(b.fd("fd"), sysx.OMIT, sysx.NOW)),
        rel_now("after futimens OMIT,NOW"),
        ("futimens explicit", lambda b: sysx.futimens(b.fd("fd"), 123_456_789_987_654_321, 3)),
        ("after futimens explicit", fst("fd", times=True)),
        closed("fd"),
        ("utimensat missing", lambda b: sysx.utimensat(b.p("missing"), sysx.NOW, sysx.NOW)),
    ])

    def t(label):
        return (res[label]["atime_ns"], res[label]["mtime_ns"])

    assert res["after NOW,OMIT"] == {"atime": "now", "mtime": "set"}
    assert res["after OMIT,NOW"] == {"atime": "set", "mtime": "now"}
    assert res["after NOW,NOW"] == {"atime": "now", "mtime": "now"}
    assert t("after OMIT,explicit") == (A, 42_000_000_123)
    assert t("after explicit,OMIT") == (7_000_000_007, M)
    assert res["relations after OMIT,OMIT"] == {"atime": "marked", "mtime": "marked", "ctime": "same"}
    assert res["relations after explicit"] == {"atime": "changed", "mtime": "changed", "ctime": "changed"}
    assert t("after explicit 1,2") == (1, 2)
    assert res["after futimens OMIT,NOW"] == {"atime": "set", "mtime": "now"}
    assert t("after futimens explicit") == (123_456_789_987_654_321, 3)
    assert res["utimensat missing"] == err(errno.ENOENT)


def test_utimensat_symlink_nofollow(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"abc"),
        lambda b: os.symlink("f", b.p("ln")),
        lambda b: os.utime(b.p("f"), ns=(10, 20)),
        ("utimensat ln NOFOLLOW",
         lambda b: sysx.utimensat(b.p("ln"), 1_000_000_001, 2_000_000_002, flags=sysx.AT_SYMLINK_NOFOLLOW)),
        ("link times", st("ln", times=True)),
        ("target times", st("f", times=True)),
        ("utime via symlink", lambda b: os.utime(b.p("ln"), ns=(30, 40))),
        # following the link may update its atime (relatime): mtime only
        ("link mtime after follow", st("ln", times="mtime")),
        ("target times after follow", st("f", times=True)),
        ("lutimes dangling", lambda b: (os.symlink("nowhere", b.p("dang")),
                                        os.utime(b.p("dang"), ns=(50, 60), follow_symlinks=False))),
        ("dangling times", st("dang", times=True)),
        ("utime dangling follow", lambda b: os.utime(b.p("dang"), ns=(1, 1))),
    ])
    assert (res["link times"]["atime_ns"], res["link times"]["mtime_ns"]) == (1_000_000_001, 2_000_000_002)
    assert (res["target times"]["atime_ns"], res["target times"]["mtime_ns"]) == (10, 20)
    assert res["link mtime after follow"]["mtime_ns"] == 2_000_000_002
    assert (res["target times after follow"]["atime_ns"],
            res["target times after follow"]["mtime_ns"]) == (30, 40)
    assert (res["dangling times"]["atime_ns"], res["dangling times"]["mtime_ns"]) == (50, 60)
    assert res["utime dangling follow"] == err(errno.ENOENT)
