"""fallocate (posix_fallocate, KEEP_SIZE, PUNCH_HOLE), copy_file_range and
lseek SEEK_DATA/SEEK_HOLE, compared with the native filesystem."""
import errno
import os

import sysx
from parity import closed, content, digest, err, fst, opened, pread_all, run_parity, write_file

KiB = 1024
MiB = 1024 * KiB
KEEP = sysx.FALLOC_FL_KEEP_SIZE
PUNCH = sysx.FALLOC_FL_PUNCH_HOLE | sysx.FALLOC_FL_KEEP_SIZE


def blocks_after_sync(key, rel):
    def step(b):
        os.fsync(b.fd(key))
        s = os.stat(b.p(rel))
        return (s.st_size, s.st_blocks)
    step.label = "size/blocks of %r after fsync" % rel
    return step


def test_posix_fallocate(view):
    res = run_parity(view, [
        opened("f", "f", os.O_RDWR | os.O_CREAT),
        ("posix_fallocate 1 MiB", lambda b: os.posix_fallocate(b.fd("f"), 0, MiB)),
        ("after", blocks_after_sync("f", "f")),
        ("reads zeros", lambda b: pread_all(b.fd("f"), MiB, 0) == bytes(MiB)),
        ("write into it", lambda b: os.pwrite(b.fd("f"), b"data", 4096)),
        ("posix_fallocate inside", lambda b: os.posix_fallocate(b.fd("f"), 100, 200)),
        ("size unchanged", fst("f")),
        ("posix_fallocate beyond EOF", lambda b: os.posix_fallocate(b.fd("f"), 2 * MiB, 4096)),
        ("grown", blocks_after_sync("f", "f")),
        ("data kept", lambda b: os.pread(b.fd("f"), 4, 4096)),
        opened("r", "f", os.O_RDONLY),
        ("posix_fallocate on O_RDONLY", lambda b: os.posix_fallocate(b.fd("r"), 0, 10)),
    ])
    assert res["after"][0] == MiB and res["after"][1] >= MiB // 512
    assert res["reads zeros"] is True
    assert res["size unchanged"]["size"] == MiB
    assert res["grown"][0] == 2 * MiB + 4096
    assert res["data kept"] == b"data"
    assert res["posix_fallocate on O_RDONLY"] == err(errno.EBADF)


def test_fallocate_keep_size(view):
    res = run_parity(view, [
        opened("f", "f", os.O_RDWR | os.O_CREAT),
        lambda b: os.write(b.fd("f"), b"x" * 100),
        ("KEEP_SIZE beyond EOF", lambda b: sysx.fallocate(b.fd("f"), KEEP, 0, 4 * MiB)),
        ("after", blocks_after_sync("f", "f")),
        ("content", content("f")),
        ("mode 0 beyond EOF", lambda b: sysx.fallocate(b.fd("f"), 0, 0, 64 * KiB)),
        ("after mode 0", blocks_after_sync("f", "f")),
        ("bad mode", lambda b: sysx.fallocate(b.fd("f"), 0x4000, 0, 10)),
        ("zero length", lambda b: sysx.fallocate(b.fd("f"), 0, 0, 0)),
        ("negative offset", lambda b: sysx.fallocate(b.fd("f"), 0, -1, 10)),
    ])
    size, blocks = res["after"]
    assert size == 100, "KEEP_SIZE must not change st_size"
    assert blocks >= 4 * MiB // 512, "KEEP_SIZE must allocate"
    assert res["content"] == b"x" * 100
    assert res["after mode 0"][0] == 64 * KiB
    assert res["zero length"] == err(errno.EINVAL)
    assert res["negative offset"] == err(errno.EINVAL)


def test_fallocate_punch_hole(view):
    data = bytes((i * 7) % 256 for i in range(MiB))

    res = run_parity(view, [
        lambda b: write_file(b.p("f"), data),
        opened("f", "f", os.O_RDWR),
        ("before", blocks_after_sync("f", "f")),
        ("punch 256 KiB", lambda b: sysx.fallocate(b.fd("f"), PUNCH, 256 * KiB, 256 * KiB)),
        ("after", blocks_after_sync("f", "f")),
        ("punched range", lambda b: pread_all(b.fd("f"), 256 * KiB, 256 * KiB) == bytes(256 * KiB)),
        ("rest intact", lambda b: (pread_all(b.fd("f"), 256 * KiB, 0) == data[:256 * KiB],
                                   pread_all(b.fd("f"), 512 * KiB, 512 * KiB) == data[512 * KiB:])),
        ("unaligned punch", lambda b: sysx.fallocate(b.fd("f"), PUNCH, 1000, 3000)),
        ("unaligned zeros", lambda b: (pread_all(b.fd("f"), 3000, 1000) == bytes(3000),
                                       os.pread(b.fd("f"), 1, 999) == data[999:1000],
                                       os.pread(b.fd("f"), 1, 4000) == data[4000:4001])),
        ("punch without KEEP_SIZE", lambda b: sysx.fallocate(b.fd("f"), sysx.FALLOC_FL_PUNCH_HOLE, 0, 4096)),
        ("punch past EOF", lambda b: sysx.fallocate(b.fd("f"), PUNCH, 2 * MiB, MiB)),
        ("final", blocks_after_sync("f", "f")),
        ("sha", content("f")),
    ])
    assert res["before"][0] == res["after"][0] == MiB
    assert res["after"][1] < res["before"][1], "st_blocks must drop after PUNCH_HOLE"
    assert res["before"][1] - res["after"][1] >= 256 * KiB // 512
    assert res["punched range"] is True
    assert res["rest intact"] == (True, True)
    assert res["unaligned zeros"] == (True, True, True)
    assert res["punch without KEEP_SIZE"] == err(errno.EOPNOTSUPP)
    assert res["final"][0] == MiB


def test_fallocate_zero_range(view):
    """FALLOC_FL_ZERO_RANGE: the range reads as zeros; without KEEP_SIZE a
    range past the end makes the file longer, with it the size stays. (A
    cached view's memory filesystem has no ZERO_RANGE of its own.)"""
    data = bytes((i * 11) % 256 for i in range(256 * KiB))
    ZERO = sysx.FALLOC_FL_ZERO_RANGE

    res = run_parity(view, [
        lambda b: write_file(b.p("f"), data),
        opened("f", "f", os.O_RDWR),
        ("zero inside", lambda b: sysx.fallocate(b.fd("f"), ZERO, 1000, 70000)),
        ("zeros", lambda b: (pread_all(b.fd("f"), 70000, 1000) == bytes(70000),
                             os.pread(b.fd("f"), 1, 999) == data[999:1000],
                             os.pread(b.fd("f"), 1, 71000) == data[71000:71001])),
        ("zero past EOF, KEEP_SIZE", lambda b: sysx.fallocate(b.fd("f"), ZERO | KEEP,
                                                               200 * KiB, 100 * KiB)),
        ("size kept", fst("f")),
        ("zero past EOF", lambda b: sysx.fallocate(b.fd("f"), ZERO, 250 * KiB, 20 * KiB)),
        ("size grown", fst("f")),
        ("on O_RDONLY", lambda b: (b.open("r", "f", os.O_RDONLY),
                                   sysx.fallocate(b.fd("r"), ZERO, 0, 10))),
        closed("f"),
        ("sha", content("f")),
    ])
    assert res["zeros"] == (True, True, True)
    assert res["size kept"]["size"] == 256 * KiB
    assert res["size grown"]["size"] == 270 * KiB
    assert res["on O_RDONLY"] == err(errno.EBADF)


def test_copy_file_range(view):
    src = os.urandom(3 * MiB + 333)

    def cfr(count, off_src=None, off_dst=None, s="s", d="d"):
        def step(b):
            return os.copy_file_range(b.fd(s), b.fd(d), count, off_src, off_dst)
        return step

    res = run_parity(view, [
        lambda b: write_file(b.p("src"), src),
        opened("s", "src", os.O_RDONLY),
        opened("d", "dst", os.O_RDWR | os.O_CREAT),
        ("whole", lambda b: _copy_all(b.fd("s"), b.fd("d"), len(src))),
        ("dst", content("dst")),
        ("positions", lambda b: (os.lseek(b.fd("s"), 0, os.SEEK_CUR), os.lseek(b.fd("d"), 0, os.SEEK_CUR))),
        ("partial with offsets", cfr(1000, 12345, 500)),
        ("positions unchanged", lambda b: (os.lseek(b.fd("s"), 0, os.SEEK_CUR), os.lseek(b.fd("d"), 0, os.SEEK_CUR))),
        ("partial content", lambda b: os.pread(b.fd("d"), 1000, 500) == src[12345:13345]),
        ("past EOF of dst", cfr(4096, 0, 5 * MiB)),
        ("dst grew", fst("d")),
        ("gap reads zeros", lambda b: os.pread(b.fd("d"), 100, 4 * MiB) == bytes(100)),
        ("at src EOF", cfr(100, len(src), 0)),
        ("across src EOF", cfr(1000, len(src) - 10, 0)),
        ("zero count", cfr(0, 0, 0)),
        ("within one file", cfr(4096, 0, 8 * MiB, s="d", d="d")),
        ("overlap in one file", cfr(4096, 0, 100, s="d", d="d")),
        opened("w", "wo", os.O_WRONLY | os.O_CREAT),
        ("from O_WRONLY", cfr(10, 0, 0, s="w", d="d")),
        ("to O_RDONLY", cfr(10, 0, 0, s="d", d="s")),
        closed("d"),
        ("final dst", content("dst")),
        ("src untouched", content("src")),
    ])
    assert res["whole"] == len(src)
    assert res["dst"] == digest(src)
    assert res["positions"] == (len(src), len(src))
    assert res["partial with offsets"] == 1000
    assert res["positions unchanged"] == (len(src), len(src))
    assert res["partial content"] is True
    assert res["dst grew"]["size"] == 5 * MiB + 4096
    assert res["gap reads zeros"] is True
    assert res["at src EOF"] == 0
    assert res["across src EOF"] == 10
    assert res["overlap in one file"] == err(errno.EINVAL)
    assert res["from O_WRONLY"] == err(errno.EBADF)
    assert res["to O_RDONLY"] == err(errno.EBADF)


def _copy_all(s, d, n):
    done = 0
    while done < n:
        r = os.copy_file_range(s, d, n - done)
        if r == 0:
            break
        done += r
    return done


def test_copy_file_range_between_directories(view):
    data = b"abcdefghij" * 10000
    res = run_parity(view, [
        lambda b: (os.mkdir(b.p("a")), os.mkdir(b.p("z")), write_file(b.p("a", "f"), data)),
        opened("s", "a/f", os.O_RDONLY),
        opened("d", "z/g", os.O_WRONLY | os.O_CREAT),
        ("copy middle", lambda b: os.copy_file_range(b.fd("s"), b.fd("d"), 5000, 777, 0)),
        closed("d"),
        ("g", content("z/g")),
    ])
    assert res["copy middle"] == 5000
    assert res["g"] == digest(data[777:5777])


def _seek_map(fd, size):
    """Every (SEEK_DATA, SEEK_HOLE) answer from a set of probe offsets."""
    out = []
    for off in (0, 1, 4095, 4096, 64 * KiB, MiB - 1, MiB, MiB + 4096, 2 * MiB,
                3 * MiB, size - 1, size, size + 1):
        row = [off]
        for whence in (os.SEEK_DATA, os.SEEK_HOLE):
            try:
                row.append(os.lseek(fd, off, whence))
            except OSError as e:
                row.append(err(e.errno))
        out.append(tuple(row))
    return out


def test_seek_data_hole(view):
    def make(b):
        fd = os.open(b.p("sparse"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"A" * 4096, MiB)            # data at 1 MiB
            os.pwrite(fd, b"B" * 8192, 3 * MiB)        # data at 3 MiB
            os.ftruncate(fd, 4 * MiB + 100)            # trailing hole
            os.fsync(fd)
        finally:
            os.close(fd)

    res = run_parity(view, [
        make,
        opened("r", "sparse", os.O_RDONLY),
        ("seek map", lambda b: _seek_map(b.fd("r"), 4 * MiB + 100)),
        ("first data", lambda b: os.lseek(b.fd("r"), 0, os.SEEK_DATA)),
        ("first hole after data", lambda b: os.lseek(b.fd("r"), MiB, os.SEEK_HOLE)),
        ("empty file SEEK_DATA", lambda b: (write_file(b.p("empty"), b""),
                                            _lseek_path(b.p("empty"), 0, os.SEEK_DATA))[1]),
        ("dense file SEEK_HOLE", lambda b: (write_file(b.p("dense"), b"d" * 10000),
                                            _lseek_path(b.p("dense"), 0, os.SEEK_HOLE))[1]),
    ])
    assert res["first data"] == MiB
    assert res["first hole after data"] == MiB + 4096
    assert res["empty file SEEK_DATA"] == err(errno.ENXIO)
    assert res["dense file SEEK_HOLE"] == 10000


def _lseek_path(path, off, whence):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, off, whence)
    finally:
        os.close(fd)
