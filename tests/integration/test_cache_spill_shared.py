"""Two descriptors of one file while it leaves memory (prismfs mount --mirror
--cache-size 8M --cache-max-dirty 4M, with and without --journal DIR).

A file of the memory cache that grows too large for memory moves out of it
while it is written. Descriptors of the file opened before that must go on
seeing the file: POSIX (read(2), write(2)) — after a write() to a regular
file has returned, any read() of those bytes returns the data written,
through any descriptor of the file; and what is written through any of them
is the file's data, on the mirror after `prismfs sync` and after unmount.

Fd A is opened first (read-write, or read-only), fd B writes the file past
the size at which it leaves memory, then A reads B's data and (read-write)
writes into it; B and fresh opens see A's write, and so does the mirror.
"""
import contextlib
import os

import pytest

from prism_helpers import cli
from test_cache_bigfile import CHUNK, chunk
from test_cache_crash import unmount_tree

MiB = 1 << 20
SIZE = 16 * MiB  # twice the cache: it must leave memory
N = SIZE // CHUNK
MARK = b"A-was-here" * 100


@pytest.fixture
def jdir(workdir):
    d = os.path.join(workdir, "journal")
    yield d
    unmount_tree(d)


def mount(mounter, dirs, jdir, journal, passthrough="off"):
    mirror, mnt = dirs
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    extra = ["--journal", jdir] if journal else []
    return mounter(mirror, mnt, "--cache-size", "8M", "--cache-max-dirty", "4M",
                   "--passthrough", passthrough, *extra, "--mirror", env=env)


def want_chunk(i, marks):
    b = bytearray(chunk(i))
    for off in marks:
        if i * CHUNK <= off < (i + 1) * CHUNK:
            o = off - i * CHUNK
            b[o:o + len(MARK)] = MARK
    return bytes(b)


def check_file(path, marks):
    with open(path, "rb") as f:
        for i in range(N):
            got = f.read(CHUNK)
            assert got == want_chunk(i, marks), "chunk %d of %s differs" % (i, path)
        assert f.read(1) == b""


@pytest.fixture
def fds():
    """Descriptors closed in teardown too (an open one would keep the
    unmount from being clean after a failed assertion)."""
    opened = []

    def op(path, flags):
        fd = os.open(path, flags)
        opened.append(fd)
        return fd

    def close(fd):
        opened.remove(fd)
        os.close(fd)

    op.close = close
    yield op
    for fd in opened:
        with contextlib.suppress(OSError):
            os.close(fd)


def write_b(fds, path):
    """B: writes the whole file (it leaves memory on the way)."""
    b = fds(path, os.O_WRONLY)
    for i in range(N):
        assert os.pwrite(b, chunk(i), i * CHUNK) == CHUNK
    return b


def check_a_reads(a):
    for i in (0, 1, N // 2, N - 1):
        assert os.pread(a, CHUNK, i * CHUNK) == chunk(i), "A reads chunk %d wrong" % i
    assert os.fstat(a).st_size == SIZE


@pytest.mark.parametrize("journal", [False, True], ids=["plain", "journal"])
@pytest.mark.parametrize("passthrough", ["off", "on"])
def test_a_writer_opened_before_the_move_sees_and_writes_the_file(
        mounter, dirs, jdir, fds, journal, passthrough):
    mirror, mnt = dirs
    m = mount(mounter, dirs, jdir, journal, passthrough)
    path = os.path.join(mnt, "f")
    with open(path, "wb") as f:
        f.write(b"x" * CHUNK)
    a = fds(path, os.O_RDWR)
    b = write_b(fds, path)
    check_a_reads(a)
    marks = [3 * CHUNK + 5, (N // 2) * CHUNK + 100, SIZE - len(MARK)]
    for off in marks:
        assert os.pwrite(a, MARK, off) == len(MARK)
    c = fds(path, os.O_RDONLY)
    for off in marks:
        assert os.pread(c, len(MARK), off) == MARK, "a new open misses A's write"
        assert os.pread(a, len(MARK), off) == MARK, "A misses its own write"
    fds.close(c)
    fds.close(b)
    fds.close(a)
    check_file(path, marks)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    check_file(os.path.join(mirror, "f"), marks)
    assert m.stop() == 0
    check_file(os.path.join(mirror, "f"), marks)


@pytest.mark.parametrize("journal", [False, True], ids=["plain", "journal"])
def test_a_reader_opened_before_the_move_reads_the_data(mounter, dirs, jdir, fds, journal):
    """The daemon's data path (--passthrough off): the reader is served by
    the daemon. (A reader opened by kernel passthrough keeps its backing
    file: README, "Files too large for memory".)"""
    mirror, mnt = dirs
    m = mount(mounter, dirs, jdir, journal)
    path = os.path.join(mnt, "f")
    with open(path, "wb") as f:
        f.write(b"x" * CHUNK)
    a = fds(path, os.O_RDONLY)
    b = write_b(fds, path)
    check_a_reads(a)
    os.pwrite(b, MARK, 7)
    assert os.pread(a, len(MARK), 7) == MARK, "A misses B's later write"
    fds.close(b)
    assert os.pread(a, len(MARK), 7) == MARK
    fds.close(a)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    check_file(os.path.join(mirror, "f"), [7])
    assert m.stop() == 0
    check_file(os.path.join(mirror, "f"), [7])
