"""A writer on a cached mount with kernel passthrough (prismfs mount
--mirror --journal J --cache-size 4M --cache-max-dirty 2M --passthrough on)
opened right after a reader of the same file closed it: its writes must
still be served by the daemon, so that a write three times the cache
leaves memory for J/spill instead of stopping short when memory is full
(write(2) returns the whole count: README, the cache, files larger than
the cache).

close(2) returns before the kernel's RELEASE of the reader reaches the
daemon (it is sent in the background); the writer's open must not be
given the reader's passthrough backing meanwhile.
"""
import os

import pytest

from prism_helpers import cli

MiB = 1 << 20
CACHE = 4 * MiB
BIG = 3 * CACHE
FILES = 6
READERS = 64
ROUNDS = 16


def payload(i, n):
    block = (b"%04d-" % i) * 1024
    return (block * (n // len(block) + 1))[:n]


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_a_writer_opened_right_after_a_reader_closed_writes_whole(dirs, mounter, passthrough):
    mirror, mnt = dirs
    for i in range(FILES):
        with open(os.path.join(mirror, "f%d" % i), "wb") as f:
            f.write(b"small %d" % i)
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    mounter(mirror, mnt, "--cache-size", "4M", "--cache-max-dirty", "2M",
            "--journal", os.path.join(os.path.dirname(mnt), "journal"),
            "--passthrough", passthrough, "--mirror", env=env)
    want = {}
    for i in range(FILES):
        path = os.path.join(mnt, "f%d" % i)
        # Readers closed before the writer opens: the kernel sends their
        # RELEASEs in the background (max_background at a time), and the
        # writer's OPEN may go ahead of those still queued.
        readers = [os.open(path, os.O_RDONLY) for _ in range(READERS)]
        for r in readers:
            assert os.read(r, 64) == b"small %d" % i
        for r in readers:
            os.close(r)
        data = payload(i, BIG - i * 4096)
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        try:
            assert os.pwrite(fd, data, 0) == len(data), i
            assert os.fstat(fd).st_size == len(data)
        finally:
            os.close(fd)
        want["f%d" % i] = data
    for name, data in want.items():
        with open(os.path.join(mnt, name), "rb") as r:
            assert r.read() == data, name
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for name, data in want.items():
        with open(os.path.join(mirror, name), "rb") as f:
            assert f.read() == data, name


def test_a_large_file_renamed_over_another_and_reopened_is_no_conflict(dirs, mounter):
    """A file larger than the cache, written (it leaves memory), closed,
    read at once (the last writer's release still on its way: the reader
    must get the file's data, not the punched-out memory file), renamed
    over a small file and opened for writing again at once, while its
    write-back and the rename may still be queued: the mount's own
    write-back is no change behind the mount (README, conflicts: no
    NAME.prismfs-conflict-* copy), and the file reads whole through the
    mount (no ENOSPC) and on the mirror."""
    mirror, mnt = dirs
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    mounter(mirror, mnt, "--cache-size", "4M", "--cache-max-dirty", "2M",
            "--journal", os.path.join(os.path.dirname(mnt), "journal"),
            "--passthrough", "off", "--mirror", env=env)
    c, e = os.path.join(mnt, "c"), os.path.join(mnt, "e")
    # close(2) returns before the daemon hears of the release of this last
    # writer; the reader opens at once (a few rounds: the window is short).
    for i in range(ROUNDS):
        data = payload(i, 2 * CACHE + 12345 * i)
        fd = os.open(c, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, data, 0) == len(data)
        finally:
            os.close(fd)
        with open(c, "rb") as r:
            assert r.read() == data, i
    with open(e, "wb") as f:
        f.write(b"small e")
    os.rename(c, e)
    fd = os.open(e, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        assert os.pwrite(fd, b"tail", len(data)) == 4
    finally:
        os.close(fd)
    data += b"tail"
    with open(e, "rb") as r:
        assert r.read() == data
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    assert sorted(os.listdir(mirror)) == ["e"]
    with open(os.path.join(mirror, "e"), "rb") as f:
        assert f.read() == data
