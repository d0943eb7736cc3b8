"""A memory cache bounded by --cache-size (prismfs mount --mirror): clean data
is evicted least recently used, dirty data and open files never are.

Through a mount with a small cache (8 MiB), real system calls write and read
three times the cache size; every byte is checked through the mount and on
the mirror, and the real bounds are asserted: the cache's memory filesystem
never holds more than the cache size (status cache.cache_used), and the
daemon's own memory (VmRSS in /proc/PID/status) does not grow with the data
moved — it stays within the fixed overhead the README states.
"""
import mmap
import os

from prism_helpers import cli, status_json

MiB = 1 << 20
CACHE = 8 * MiB
FILE = 256 * 1024
COUNT = 3 * CACHE // FILE          # three times the cache, in files
OVERHEAD = 16 * MiB                # README: the daemon's fixed overhead


def cached(mounter, mirror, mnt, *args):
    # Under ASan, freed memory waits in a quarantine of up to 256 MiB before
    # reuse: kept small here, so what is measured is the daemon's own growth
    # (ignored by a build without ASan).
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    return mounter(mirror, mnt, "--cache-size", "8M", *args, "--mirror", env=env)


def content(i):
    """Distinct bytes per file and per offset: a punched hole or a
    neighbour's data reads differently."""
    block = (b"%08d:" % i) * 8
    return (block * (FILE // len(block) + 1))[:FILE]


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for %d" % pid)


def sanitized(pid):
    with open("/proc/%d/maps" % pid) as f:
        return any("libasan" in line or "libubsan" in line for line in f)


class Bounds:
    """Samples the cache's use and the daemon's memory."""

    def __init__(self, mnt, pid):
        self.mnt, self.pid = mnt, pid
        self.base = rss(pid)
        self.peak = self.base
        self.used = 0

    def sample(self):
        self.peak = max(self.peak, rss(self.pid))
        c = status_json(self.mnt)["cache"]
        self.used = max(self.used, c["cache_used"])
        assert c["cache_used"] <= c["cache_size"] == CACHE, c
        return c

    def check(self):
        # The data moved is 6x the cache; the daemon holds none of it.
        assert self.peak - self.base <= OVERHEAD, (self.base, self.peak)
        if not sanitized(self.pid):  # a sanitizer adds its own shadow memory
            assert self.peak <= OVERHEAD, self.peak
        assert 0 < self.used <= CACHE


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_reading_three_times_the_cache_evicts_least_recently_used(dirs, mounter):
    mirror, mnt = dirs
    for i in range(COUNT):
        with open(os.path.join(mirror, "f%03d" % i), "wb") as f:
            f.write(content(i))
    m = cached(mounter, mirror, mnt)
    b = Bounds(mnt, m.proc.pid)
    for i in range(COUNT):
        assert read(os.path.join(mnt, "f%03d" % i)) == content(i), i
        if i % 8 == 0:
            b.sample()
    c = b.sample()
    assert c["files_loaded"] == COUNT and c["evictions"] > 0, c
    assert c["bytes_evicted"] >= (COUNT * FILE - CACHE), c

    # The last file read is still cached (no load); the first was evicted
    # (loaded again), and reads back whole.
    assert read(os.path.join(mnt, "f%03d" % (COUNT - 1))) == content(COUNT - 1)
    assert status_json(mnt)["cache"]["files_loaded"] == COUNT
    assert read(os.path.join(mnt, "f000")) == content(0)
    assert status_json(mnt)["cache"]["files_loaded"] == COUNT + 1
    # An evicted file is a stub: its size and times are the mirror's.
    for i in range(COUNT):
        st, mst = os.stat(os.path.join(mnt, "f%03d" % i)), os.stat(os.path.join(mirror, "f%03d" % i))
        assert (st.st_size, st.st_mtime_ns) == (mst.st_size, mst.st_mtime_ns), i
    b.check()
    text = cli("status", mnt)
    assert text.returncode == 0 and "cache.evictions" in text.stdout, text


def test_writing_three_times_the_cache_reaches_the_mirror_whole(dirs, mounter):
    mirror, mnt = dirs
    m = cached(mounter, mirror, mnt, "--write-back", "0.2")
    b = Bounds(mnt, m.proc.pid)
    os.mkdir(os.path.join(mnt, "w"))
    for i in range(COUNT):
        with open(os.path.join(mnt, "w", "f%03d" % i), "wb") as f:
            f.write(content(i))
        if i % 8 == 0:
            b.sample()
    # Everything readable through the mount (evicted files load again)...
    for i in range(COUNT):
        assert read(os.path.join(mnt, "w", "f%03d" % i)) == content(i), i
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    # ... and whole on the mirror: nothing was punched before written back.
    for i in range(COUNT):
        assert read(os.path.join(mirror, "w", "f%03d" % i)) == content(i), i
    c = b.sample()
    assert c["evictions"] > 0 and c["pending_ops"] == 0, c
    b.check()


def test_open_and_mapped_files_are_not_punched_under_their_readers(dirs, mounter):
    mirror, mnt = dirs
    for i in range(COUNT):
        with open(os.path.join(mirror, "f%03d" % i), "wb") as f:
            f.write(content(i))
    cached(mounter, mirror, mnt)
    held = open(os.path.join(mnt, "f000"), "rb")
    first = held.read(FILE // 2)
    with open(os.path.join(mnt, "f001"), "rb") as f:
        mapped = mmap.mmap(f.fileno(), FILE, prot=mmap.PROT_READ)
    # Written and still open: dirty, not yet queued.
    writer = open(os.path.join(mnt, "new"), "wb")
    writer.write(content(9999))
    writer.flush()
    try:
        for i in range(2, COUNT):
            assert read(os.path.join(mnt, "f%03d" % i)) == content(i), i
        assert status_json(mnt)["cache"]["evictions"] > 0
        assert first + held.read() == content(0)
        assert mapped[:] == content(1)
    finally:
        held.close()
        mapped.close()
        writer.close()
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    assert read(os.path.join(mirror, "new")) == content(9999)
    assert read(os.path.join(mnt, "new")) == content(9999)


def test_dirty_data_is_never_evicted_before_it_is_written_back(dirs, mounter):
    """Files waiting for their write-back (a long delay) made the least
    recently used: later writers needing room must skip them, or the mirror
    would get their holes."""
    mirror, mnt = dirs
    clean = 20
    for i in range(clean):
        with open(os.path.join(mirror, "c%03d" % i), "wb") as f:
            f.write(content(i))
    m = cached(mounter, mirror, mnt, "--write-back", "3600", "--cache-max-dirty", "6M")
    b = Bounds(mnt, m.proc.pid)
    for i in range(clean):  # loaded: clean, in the cache
        assert read(os.path.join(mnt, "c%03d" % i)) == content(i)
    for i in range(4):      # dirty, closed, queued
        with open(os.path.join(mnt, "d%03d" % i), "wb") as f:
            f.write(content(1000 + i))
    for i in range(clean):  # used again: the dirty ones are the oldest now
        assert read(os.path.join(mnt, "c%03d" % i)) == content(i)
    assert status_json(mnt)["cache"]["files_loaded"] == clean
    for i in range(COUNT):  # writers needing room
        with open(os.path.join(mnt, "e%03d" % i), "wb") as f:
            f.write(content(2000 + i))
        if i % 8 == 0:
            b.sample()
    c = b.sample()
    assert c["evictions"] > 0, c
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for name, data in [("d%03d" % i, content(1000 + i)) for i in range(4)] + \
                      [("e%03d" % i, content(2000 + i)) for i in range(COUNT)] + \
                      [("c%03d" % i, content(i)) for i in range(clean)]:
        assert read(os.path.join(mirror, name)) == data, name
        assert read(os.path.join(mnt, name)) == data, name
    b.check()


def test_an_evicted_file_changed_again_is_whole_everywhere(dirs, mounter):
    """Evicted files (stubs again) reached by another name, renamed and
    appended to: each loads again from the mirror, where the earlier
    changes went first."""
    mirror, mnt = dirs
    for i in range(COUNT):
        with open(os.path.join(mirror, "f%03d" % i), "wb") as f:
            f.write(content(i))
    cached(mounter, mirror, mnt)
    assert read(os.path.join(mnt, "f000")) == content(0)
    assert read(os.path.join(mnt, "f001")) == content(1)
    os.link(os.path.join(mnt, "f000"), os.path.join(mnt, "hard"))
    os.rename(os.path.join(mnt, "f001"), os.path.join(mnt, "moved"))
    for i in range(2, COUNT):  # f000 and moved are evicted meanwhile
        assert read(os.path.join(mnt, "f%03d" % i)) == content(i), i
    before = status_json(mnt)["cache"]
    assert before["evictions"] > 0, before
    assert read(os.path.join(mnt, "hard")) == content(0)
    with open(os.path.join(mnt, "moved"), "ab") as f:
        f.write(b"tail")
    assert status_json(mnt)["cache"]["files_loaded"] >= before["files_loaded"] + 2
    res = cli("sync", mnt, timeout=120)
    assert res.returncode == 0, res
    for root in (mnt, mirror):
        assert read(os.path.join(root, "f000")) == content(0)
        assert read(os.path.join(root, "hard")) == content(0)
        assert read(os.path.join(root, "moved")) == content(1) + b"tail"
        assert not os.path.exists(os.path.join(root, "f001"))
    assert os.stat(os.path.join(mirror, "hard")).st_ino == \
        os.stat(os.path.join(mirror, "f000")).st_ino
