"""read/write at arbitrary offsets, large writes, sparse files, flush/close,
fsync/fdatasync (files and directories) and shared mmap writes."""
import errno
import hashlib
import mmap
import os

from parity import (closed, content, err, fst, opened, pread_all, read_file, run_parity, st,
                    write_file)
from prism_helpers import daemon_fds, wait_for, wait_released

MiB = 1024 * 1024
GiB = 1024 * MiB

OFFSETS = [(0, 1), (5, 10), (4095, 2), (4096, 4096), (8190, 5000), (65535, 3),
           (MiB - 1, 2), (3 * MiB + 123, 70000), (12_345_678, 17)]


def _payload(off, n):
    return (b"%d:" % off + bytes((off + i) % 251 for i in range(n)))[:n]


def test_pread_pwrite_arbitrary_offsets(view):
    steps = [opened("w", "f", os.O_RDWR | os.O_CREAT),
             opened("r", "f", os.O_RDONLY)]
    for off, n in OFFSETS:
        steps += [("pwrite %d+%d" % (off, n), lambda b, off=off, n=n: os.pwrite(b.fd("w"), _payload(off, n), off)),
                  ("size after %d" % off, lambda b: os.fstat(b.fd("r")).st_size),
                  # another descriptor sees the write immediately
                  ("pread other fd %d" % off, lambda b, off=off, n=n: pread_all(b.fd("r"), n, off) == _payload(off, n))]
    steps += [
        ("pread spanning writes", lambda b: hashlib.sha256(pread_all(b.fd("r"), 100000, 4000)).hexdigest()),
        ("pread in a hole", lambda b: os.pread(b.fd("r"), 20, 2 * MiB)),
        ("pread at EOF", lambda b: os.pread(b.fd("r"), 10, os.fstat(b.fd("r")).st_size)),
        ("pread past EOF", lambda b: os.pread(b.fd("r"), 10, 20 * MiB)),
        ("pread across EOF", lambda b: os.pread(b.fd("r"), 100, os.fstat(b.fd("r")).st_size - 7)),
        ("pread 0 bytes", lambda b: os.pread(b.fd("r"), 0, 5)),
        # file position based I/O
        ("lseek+write", lambda b: (os.lseek(b.fd("w"), 100, os.SEEK_SET), os.write(b.fd("w"), b"positional"),
                                   os.lseek(b.fd("w"), 0, os.SEEK_CUR))),
        ("lseek+read", lambda b: (os.lseek(b.fd("r"), 98, os.SEEK_SET), os.read(b.fd("r"), 14),
                                  os.lseek(b.fd("r"), 0, os.SEEK_CUR))),
        ("pread leaves position", lambda b: (os.pread(b.fd("r"), 5, 0), os.lseek(b.fd("r"), 0, os.SEEK_CUR))),
        ("SEEK_END", lambda b: os.lseek(b.fd("r"), -3, os.SEEK_END)),
        ("read at end", lambda b: os.read(b.fd("r"), 100)),
        ("read again at EOF", lambda b: os.read(b.fd("r"), 100)),
        ("seek past EOF then write", lambda b: (os.lseek(b.fd("w"), 13 * MiB, os.SEEK_SET),
                                                os.write(b.fd("w"), b"tail"))),
        ("negative seek", lambda b: os.lseek(b.fd("r"), -1, os.SEEK_SET)),
        fst("w"),
        closed("w"), closed("r"),
        content("f"),
    ]
    res = run_parity(view, steps)
    for off, n in OFFSETS:
        assert res["pread other fd %d" % off] is True
    assert res["pread in a hole"] == bytes(20)
    assert res["pread past EOF"] == b""
    assert len(res["pread across EOF"]) == 7
    assert res["lseek+write"] == (100, 10, 110)
    assert res["lseek+read"] == (98, bytes(2) + b"positional" + bytes(2), 112)
    assert res["read at end"] == _payload(12_345_678, 17)[-3:]
    assert res["read again at EOF"] == b""


def test_large_write_sha256(view):
    data = os.urandom(9 * MiB + 4321)
    want = hashlib.sha256(data).hexdigest()
    path = view.p("big")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        # odd chunk sizes, one huge single write
        pos = 0
        for size in (1, 4095, MiB + 7, 3 * MiB - 13):
            pos += os.write(fd, data[pos:pos + size])
        while pos < len(data):
            pos += os.write(fd, data[pos:])
    finally:
        os.close(fd)
    assert os.stat(path).st_size == len(data)
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == want
    # read back in different chunk sizes
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            chunk = os.read(fd, 131072 + 17)
            if not chunk:
                break
            h.update(chunk)
    finally:
        os.close(fd)
    assert h.hexdigest() == want
    # a single pwrite of several MiB in the middle
    patch = os.urandom(4 * MiB)
    fd = os.open(path, os.O_RDWR)
    try:
        assert os.pwrite(fd, patch, 2 * MiB + 1) == len(patch)
        os.fsync(fd)
    finally:
        os.close(fd)
    data = data[:2 * MiB + 1] + patch + data[2 * MiB + 1 + len(patch):]
    assert hashlib.sha256(read_file(path)).hexdigest() == hashlib.sha256(data).hexdigest()
    if view.backing:
        # the bytes really are in the source file
        assert hashlib.sha256(read_file(os.path.join(view.backing, "big"))).hexdigest() == \
            hashlib.sha256(data).hexdigest()


def test_sparse_file(view):
    def make_sparse(b):
        fd = os.open(b.p("sparse"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, b"head", 0)
            os.pwrite(fd, b"end", GiB)
            os.fsync(fd)
        finally:
            os.close(fd)

    res = run_parity(view, [
        make_sparse,
        ("stat", st("sparse", blocks=True)),
        ("read hole", lambda b: read_range(b.p("sparse"), 512 * MiB, MiB) == bytes(MiB)),
        ("read around the end", lambda b: read_range(b.p("sparse"), GiB - 5, 100)),
        ("read head", lambda b: read_range(b.p("sparse"), 0, 8)),
    ])
    s = res["stat"]
    assert s["size"] == GiB + 3
    assert s["blocks"] < 1024, "a 1 GiB sparse file should allocate almost nothing"
    assert res["read hole"] is True
    assert res["read around the end"] == bytes(5) + b"end"
    assert res["read head"] == b"head" + bytes(4)
    # directly through the mount as well
    s = os.stat(view.p("sparse"))
    assert s.st_size == GiB + 3 and s.st_blocks < 1024


def read_range(path, off, n):
    fd = os.open(path, os.O_RDONLY)
    try:
        return pread_all(fd, n, off)
    finally:
        os.close(fd)


def test_close_and_flush(view):
    res = run_parity(view, [
        opened("a", "f", os.O_RDWR | os.O_CREAT),
        ("dup", lambda b: b.fds.__setitem__("dup", os.dup(b.fd("a")))),
        ("write via dup", lambda b: os.write(b.fd("dup"), b"one ")),
        ("close dup", closed("dup")),
        ("original still works", lambda b: os.write(b.fd("a"), b"two ")),
        ("visible to a new fd before close", content("f")),
        ("close", closed("a")),
        ("after close", content("f")),
        ("python file object", lambda b: _pyfile(b.p("g"))),
        content("g"),
        ("close twice", lambda b: (b.open("x", "f", os.O_RDONLY), os.close(b.fd("x")), os.close(b.fds.pop("x")))),
    ])
    assert res["after close"] == b"one two "
    assert res["python file object"] == len("buffered text")
    assert res["content('g')"] == b"buffered text"
    assert res["close twice"] == err(errno.EBADF)


def _pyfile(path):
    with open(path, "w") as f:
        f.write("buffered ")
        f.flush()
        f.write("text")
    return os.stat(path).st_size


def _daemon_fds(view):
    """Node fds and others, not what threads keep (threads added under load
    keep theirs: see daemon_fds)."""
    f = daemon_fds(view.mount.pid, view.mount.mountpoint)
    return f["other"] + f["node"]


def test_open_close_releases_resources(view):
    """Opening and closing files many times (and creating/removing them)
    must not leave descriptors behind in the daemon."""
    write_file(view.p("f"), b"x")
    for i in range(20):
        os.close(os.open(view.p("f"), os.O_RDONLY))
    wait_released(view.mount.mountpoint)
    base = _daemon_fds(view)
    for i in range(500):
        os.close(os.open(view.p("f"), os.O_RDWR if i % 2 else os.O_RDONLY))
    for i in range(100):
        os.close(os.open(view.p("d%d" % i), os.O_WRONLY | os.O_CREAT, 0o644))
        os.unlink(view.p("d%d" % i))
    now = [None]

    def back():
        now[0] = _daemon_fds(view)
        return now[0] <= base + 8
    assert wait_for(back, timeout=10), (
        "daemon holds %d descriptors, %d before 600 open/close cycles" % (now[0], base))


def test_fsync_fdatasync(view):
    res = run_parity(view, [
        opened("w", "f", os.O_RDWR | os.O_CREAT),
        lambda b: os.write(b.fd("w"), b"data" * 1000),
        ("fsync rw", lambda b: os.fsync(b.fd("w"))),
        ("fdatasync rw", lambda b: os.fdatasync(b.fd("w"))),
        opened("r", "f", os.O_RDONLY),
        ("fsync rdonly", lambda b: os.fsync(b.fd("r"))),
        ("fdatasync rdonly", lambda b: os.fdatasync(b.fd("r"))),
        lambda b: os.mkdir(b.p("d")),
        opened("d", "d", os.O_RDONLY | os.O_DIRECTORY),
        ("fsync dir", lambda b: os.fsync(b.fd("d"))),
        ("fdatasync dir", lambda b: os.fdatasync(b.fd("d"))),
        opened("root", ".", os.O_RDONLY | os.O_DIRECTORY),
        ("fsync root dir", lambda b: os.fsync(b.fd("root"))),
        ("syncfs-ish: os.sync", lambda b: os.sync()),
        st("f"),
    ])
    for label in ("fsync rw", "fdatasync rw", "fsync rdonly", "fdatasync rdonly", "fsync dir",
                  "fdatasync dir", "fsync root dir"):
        assert res[label] is None, label
    if view.backing:
        assert read_file(os.path.join(view.backing, "f")) == b"data" * 1000


def test_mmap_shared_write(view):
    path = view.p("m")
    size = 3 * mmap.PAGESIZE + 100
    write_file(path, bytes(size))
    fd = os.open(path, os.O_RDWR)
    m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        m[0:5] = b"hello"
        m[mmap.PAGESIZE - 2:mmap.PAGESIZE + 3] = b"cross"
        m[size - 4:size] = b"last"
        m.flush()  # msync(MS_SYNC)
        fd2 = os.open(path, os.O_RDONLY)
        try:
            assert os.pread(fd2, 5, 0) == b"hello"
            assert os.pread(fd2, 5, mmap.PAGESIZE - 2) == b"cross"
            assert os.pread(fd2, 10, size - 4) == b"last"
        finally:
            os.close(fd2)
        # a write(2) is visible through the mapping
        os.pwrite(fd, b"WRITE", 2 * mmap.PAGESIZE)
        assert m[2 * mmap.PAGESIZE:2 * mmap.PAGESIZE + 5] == b"WRITE"
        m[10:13] = b"abc"
    finally:
        m.close()
        os.close(fd)
    # after munmap + close, reopen: everything is there
    data = read_file(path)
    assert len(data) == size
    assert data[0:5] == b"hello" and data[10:13] == b"abc"
    assert data[mmap.PAGESIZE - 2:mmap.PAGESIZE + 3] == b"cross"
    assert data[2 * mmap.PAGESIZE:2 * mmap.PAGESIZE + 5] == b"WRITE"
    assert data[size - 4:] == b"last"
    assert os.stat(path).st_mtime_ns > 0
    if view.backing:
        assert read_file(os.path.join(view.backing, "m")) == data


def test_mmap_private_does_not_write_back(view):
    path = view.p("p")
    write_file(path, b"original" * 1000)
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 8000, mmap.MAP_PRIVATE, mmap.PROT_READ | mmap.PROT_WRITE)
        m[0:8] = b"CHANGED!"
        assert m[0:8] == b"CHANGED!"
        m.close()
    finally:
        os.close(fd)
    assert read_file(path) == b"original" * 1000


def test_mmap_grow_with_ftruncate(view):
    path = view.p("g")
    write_file(path, b"a" * 100)
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, 2 * mmap.PAGESIZE)
        m = mmap.mmap(fd, 2 * mmap.PAGESIZE, mmap.MAP_SHARED)
        m[mmap.PAGESIZE:mmap.PAGESIZE + 4] = b"grow"
        m.flush()
        m.close()
    finally:
        os.close(fd)
    data = read_file(path)
    assert data[:100] == b"a" * 100
    assert data[100:mmap.PAGESIZE] == bytes(mmap.PAGESIZE - 100)
    assert data[mmap.PAGESIZE:mmap.PAGESIZE + 4] == b"grow"
