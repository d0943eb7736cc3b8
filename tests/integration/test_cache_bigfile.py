"""A single file larger than the memory cache and than its dirty limit
(prismfs mount --mirror --cache-size --cache-max-dirty): written through the
mount with sequential writes, it must neither fail with ENOSPC nor grow the
cache past its size, must read back whole through the mount, and must be
whole on the mirror after `prismfs sync` and after unmount.

The file is three times the cache. While it is written, the open file's
attributes (fstat) are checked against the name's (stat): the inode number
shown stays the mount's, and the size follows the writes.
"""
import hashlib
import os

import pytest

from prism_helpers import cli, status_json
from test_cache_bounded import OVERHEAD, rss, sanitized

MiB = 1 << 20
CACHE = 8 * MiB
DIRTY = 4 * MiB
BIG = 3 * CACHE
CHUNK = 128 * 1024


def cached(mounter, mirror, mnt, *args):
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    return mounter(mirror, mnt, "--cache-size", "8M", "--cache-max-dirty", "4M", *args,
                   "--mirror", env=env)


def chunk(i):
    """Distinct bytes per chunk: a lost, repeated or zeroed chunk shows."""
    block = (b"%08d." % i) * 16
    return (block * (CHUNK // len(block) + 1))[:CHUNK]


def expected(size=BIG):
    h = hashlib.sha256()
    for i in range(size // CHUNK):
        h.update(chunk(i))
    return h.hexdigest()


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def check_bounded(mnt):
    c = status_json(mnt)["cache"]
    assert c["cache_used"] <= c["cache_size"] == CACHE, c
    return c


def write_big(mnt, path, sample=True):
    with open(path, "wb", buffering=0) as f:
        for i in range(BIG // CHUNK):
            assert f.write(chunk(i)) == CHUNK
            if sample and i % 16 == 15:
                check_bounded(mnt)
                fst, st = os.fstat(f.fileno()), os.stat(path)
                assert fst.st_ino == st.st_ino, (fst, st)
                assert fst.st_size == st.st_size == (i + 1) * CHUNK, (fst, st)


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_a_file_three_times_the_cache_is_written_whole(dirs, mounter, passthrough):
    mirror, mnt = dirs
    m = cached(mounter, mirror, mnt, "--passthrough", passthrough)
    base = rss(m.proc.pid)
    os.mkdir(os.path.join(mnt, "d"))
    path = os.path.join(mnt, "d", "big")
    write_big(mnt, path)
    want = expected()
    assert os.stat(path).st_size == BIG
    assert digest(path) == want
    check_bounded(mnt)
    # The daemon holds none of the data it moved (README: a fixed overhead).
    peak = rss(m.proc.pid)
    assert peak - base <= OVERHEAD, (base, peak)
    if not sanitized(m.proc.pid):
        assert peak <= OVERHEAD, peak
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    assert digest(os.path.join(mirror, "d", "big")) == want
    # Read again through the mount once written back, then appended to
    # (its data cannot be loaded into memory: the writer works beside the
    # mirror from the start).
    assert digest(path) == want
    c = check_bounded(mnt)
    assert c["pending_ops"] == 0, c
    with open(path, "ab", buffering=0) as f:
        assert f.write(chunk(BIG // CHUNK)) == CHUNK
        assert os.fstat(f.fileno()).st_size == os.stat(path).st_size == BIG + CHUNK
        assert os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
    want = expected(BIG + CHUNK)
    assert digest(path) == want
    check_bounded(mnt)
    assert m.stop() == 0
    assert digest(os.path.join(mirror, "d", "big")) == want
    assert not [n for n in os.listdir(os.path.join(mirror, "d")) if n != "big"]


def test_unmount_writes_a_large_file_back_without_sync(dirs, mounter):
    mirror, mnt = dirs
    m = cached(mounter, mirror, mnt, "--write-back", "3600")
    write_big(mnt, os.path.join(mnt, "big"), sample=False)
    assert m.stop() == 0
    assert digest(os.path.join(mirror, "big")) == expected()


def test_fsync_of_a_large_file_puts_it_on_the_mirror(dirs, mounter):
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--write-back", "3600")
    path = os.path.join(mnt, "big")
    with open(path, "wb", buffering=0) as f:
        for i in range(BIG // CHUNK):
            f.write(chunk(i))
        os.fsync(f.fileno())
        assert digest(os.path.join(mirror, "big")) == expected()
        f.write(chunk(BIG // CHUNK))
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    assert digest(os.path.join(mirror, "big")) == expected(BIG + CHUNK)
    assert digest(path) == expected(BIG + CHUNK)


def test_writers_past_the_dirty_limit_wait_and_finish(dirs, mounter):
    """Many files, together three times the cache and six times the dirty
    limit, with a write-back delay far longer than the test: the writers
    must wait for write-back at the limit (which then goes at once) rather
    than fill the cache or deadlock."""
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--write-back", "3600")
    n = BIG // MiB
    peak = 0
    for i in range(n):
        with open(os.path.join(mnt, "f%02d" % i), "wb") as f:
            for j in range(MiB // CHUNK):
                f.write(chunk(i * 100 + j))
        c = check_bounded(mnt)
        peak = max(peak, c["pending_bytes"])
    # Held at the limit: what waits is at most the limit and the one file
    # that went through it.
    assert peak <= DIRTY + MiB, peak
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for i in range(n):
        data = b"".join(chunk(i * 100 + j) for j in range(MiB // CHUNK))
        for root in (mnt, mirror):
            with open(os.path.join(root, "f%02d" % i), "rb") as f:
                assert f.read() == data, (root, i)


def test_a_large_file_truncated_while_written_is_right_everywhere(dirs, mounter):
    mirror, mnt = dirs
    cached(mounter, mirror, mnt)
    path = os.path.join(mnt, "big")
    with open(path, "w+b", buffering=0) as f:
        for i in range(BIG // CHUNK):
            f.write(chunk(i))
        f.truncate(2 * CACHE)  # ftruncate(2) of the open, spilled file
        assert os.fstat(f.fileno()).st_size == os.stat(path).st_size == 2 * CACHE
        f.seek(0)
        assert hashlib.sha256(f.read()).hexdigest() == expected(2 * CACHE)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for root in (mnt, mirror):
        assert os.stat(os.path.join(root, "big")).st_size == 2 * CACHE
        assert digest(os.path.join(root, "big")) == expected(2 * CACHE), root


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_opens_of_a_large_file_while_it_is_written_see_its_data(dirs, mounter, passthrough):
    """A reader and a second writer opened while the first writer has the
    file out of memory: they read and write the same data it does."""
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--passthrough", passthrough)
    path = os.path.join(mnt, "big")
    n = BIG // CHUNK
    with open(path, "wb", buffering=0) as w:
        for i in range(n):
            w.write(chunk(i))
        with open(path, "rb") as r:
            assert hashlib.sha256(r.read()).hexdigest() == expected()
        with open(path, "ab", buffering=0) as a:
            assert a.write(chunk(n)) == CHUNK
        w.seek(0, os.SEEK_END)
        assert w.write(chunk(n + 1)) == CHUNK
        assert os.stat(path).st_size == BIG + 2 * CHUNK
        with open(path, "rb") as r:
            assert hashlib.sha256(r.read()).hexdigest() == expected(BIG + 2 * CHUNK)
    check_bounded(mnt)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for root in (mnt, mirror):
        assert digest(os.path.join(root, "big")) == expected(BIG + 2 * CHUNK), root


def test_copy_file_range_and_fallocate_into_the_cache_are_bounded(dirs, mounter):
    """copy_file_range(2) of a mirror file three times the cache into a new
    file, and fallocate(2) growing another past the cache: no ENOSPC, whole
    everywhere."""
    mirror, mnt = dirs
    with open(os.path.join(mirror, "src"), "wb") as f:
        for i in range(BIG // CHUNK):
            f.write(chunk(i))
    cached(mounter, mirror, mnt)
    with open(os.path.join(mnt, "src"), "rb") as s, \
            open(os.path.join(mnt, "dst"), "wb") as d:
        done = 0
        while done < BIG:
            n = os.copy_file_range(s.fileno(), d.fileno(), 1 << 30, done, done)
            assert n > 0, done
            done += n
            check_bounded(mnt)
        assert os.fstat(d.fileno()).st_size == os.stat(os.path.join(mnt, "dst")).st_size == BIG
    with open(os.path.join(mnt, "alloc"), "wb") as f:
        os.posix_fallocate(f.fileno(), 0, BIG)
        assert os.stat(os.path.join(mnt, "alloc")).st_size == BIG
        check_bounded(mnt)
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    zeros = hashlib.sha256(bytes(BIG)).hexdigest()
    for root in (mnt, mirror):
        assert digest(os.path.join(root, "dst")) == expected(), root
        assert digest(os.path.join(root, "alloc")) == zeros, root
