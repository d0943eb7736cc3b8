"""Random sequences of data operations on one file, through the mount and on
a native file side by side (in the spirit of fsx): writes past EOF, reads,
truncates, the fallocate modes, shared mmap writes, copy_file_range inside
the file, appends, reopens and syncs, on two descriptors at once.  After every
step the outcome (value or errno) must be the native one; a read must return
the native bytes.  At the end the file's bytes through the mount, and in the
directory the mount writes to, must be the native file's.

The sequences are fixed by their seeds, so a failure names a step that can be
replayed; the whole suite runs them once per data path (passthrough on and
off), and each seed runs on a plain mount, on a mount over its own source, on
a --volatile mount and on a copy-on-write mount whose file starts in a lower
layer (copied up by the first open for writing)."""
import errno
import mmap
import os
import random

import pytest

import sysx

KiB = 1024
MAX_SIZE = 3 * 1024 * KiB    # the sequences keep the file below this (or so)
STEPS = 1500
SEEDS = (1, 2, 3)
FALLOC_MODES = (
    0,
    sysx.FALLOC_FL_KEEP_SIZE,
    sysx.FALLOC_FL_PUNCH_HOLE | sysx.FALLOC_FL_KEEP_SIZE,
    sysx.FALLOC_FL_ZERO_RANGE,
    sysx.FALLOC_FL_ZERO_RANGE | sysx.FALLOC_FL_KEEP_SIZE,
)


def outcome(fn):
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


class Side:
    """One file and its two descriptors, "a" and "b" (opened by the names
    path and path_b, which may be two names of the file)."""

    def __init__(self, path, path_b=None):
        self.path = path
        self.names = {"a": path, "b": path_b or path}
        self.fds = {}
        self.flags = {}

    def open(self, key, flags):
        self.close(key)
        self.fds[key] = os.open(self.names[key], flags)
        self.flags[key] = flags
        return True

    def close(self, key):
        fd = self.fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def close_all(self):
        for key in list(self.fds):
            self.close(key)

    def fd(self, key):
        return self.fds[key]


def rand_bytes(rng, n):
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


def pick_len(rng):
    # Mostly small, sometimes page-sized or large, to cross page and
    # request boundaries (128 KiB is a common max_write).
    r = rng.random()
    if r < 0.5:
        return rng.randint(1, 5000)
    if r < 0.8:
        return rng.choice((4096, 8192, 65536, 131072)) + rng.randint(-3, 3)
    return rng.randint(1, 400 * KiB)


def make_step(rng, size):
    """One random operation, as (description, fn(side) -> value)."""
    key = rng.choice("ab")
    other = "b" if key == "a" else "a"
    kind = rng.choices(
        ("pwrite", "pread", "truncate", "fallocate", "mmap_write", "mmap_read",
         "copy_range", "append", "reopen", "fsync", "fstat", "read_fresh"),
        weights=(20, 20, 6, 8, 6, 5, 4, 4, 4, 3, 4, 3))[0]
    off = rng.randint(0, size + 64 * KiB) if rng.random() < 0.8 else rng.randint(0, MAX_SIZE)
    n = pick_len(rng)
    if kind == "pwrite":
        data = rand_bytes(rng, min(n, MAX_SIZE - min(off, MAX_SIZE - 1)))
        return ("pwrite(%s, %d bytes at %d)" % (key, len(data), off),
                lambda s: os.pwrite(s.fd(key), data, off))
    if kind == "pread":
        return ("pread(%s, %d at %d)" % (key, n, off),
                lambda s: os.pread(s.fd(key), n, off))
    if kind == "truncate":
        new = rng.choice((0, rng.randint(0, size + 1), rng.randint(0, MAX_SIZE),
                          size + rng.randint(1, 70000)))
        return ("ftruncate(%s, %d)" % (key, new), lambda s: os.ftruncate(s.fd(key), new))
    if kind == "fallocate":
        mode = rng.choice(FALLOC_MODES)
        length = n if rng.random() < 0.95 else 0   # 0 is EINVAL
        return ("fallocate(%s, mode %#x, %d at %d)" % (key, mode, length, off),
                lambda s: sysx.fallocate(s.fd(key), mode, off, length))
    if kind in ("mmap_write", "mmap_read"):
        if size == 0:
            return ("fstat(%s).st_size" % key, lambda s: os.fstat(s.fd(key)).st_size)
        start = rng.randint(0, size - 1)
        count = min(n, size - start)
        data = rand_bytes(rng, count)
        sync = rng.random() < 0.5
        write = kind == "mmap_write"

        def via_mmap(s):
            m = mmap.mmap(s.fd(key), size, mmap.MAP_SHARED,
                          mmap.PROT_READ | (mmap.PROT_WRITE if write else 0))
            try:
                if not write:
                    return m[start:start + count]
                m[start:start + count] = data
                if sync:
                    m.flush()
                return True
            finally:
                m.close()
        return ("%s(%s, %d at %d of %d%s)" % (kind, key, count, start, size,
                                              ", msync" if sync and write else ""), via_mmap)
    if kind == "copy_range":
        src = rng.randint(0, size + 10) if size else 0
        dst = rng.randint(0, size + 70000)
        # Overlapping ranges in one file are EINVAL; that is checked too.
        return ("copy_file_range(%s->%s, %d from %d to %d)" % (key, other, n, src, dst),
                lambda s: os.copy_file_range(s.fd(key), s.fd(other), n, src, dst))
    if kind == "append":
        data = rand_bytes(rng, min(n, 20000))

        def append(s):
            fd = os.open(s.path, os.O_WRONLY | os.O_APPEND)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)
        return ("append %d bytes" % len(data), append)
    if kind == "reopen":
        flags = os.O_RDWR
        if rng.random() < 0.1:
            flags |= os.O_TRUNC
        return ("reopen(%s%s)" % (key, ", O_TRUNC" if flags & os.O_TRUNC else ""),
                lambda s: s.open(key, flags))
    if kind == "fsync":
        fn = rng.choice((os.fsync, os.fdatasync))
        return ("%s(%s)" % (fn.__name__, key), lambda s: fn(s.fd(key)))
    if kind == "fstat":
        return ("fstat(%s).st_size" % key, lambda s: os.fstat(s.fd(key)).st_size)

    def read_fresh(s):
        with open(s.path, "rb") as f:
            f.seek(off)
            return f.read(n)
    return ("read %d at %d through a new open" % (n, off), read_fresh)


def run_sequence(seed, mounted_path, native_path, mounted_path_b=None):
    rng = random.Random(seed)
    sides = (Side(mounted_path, mounted_path_b), Side(native_path))
    history = []
    try:
        for s in sides:
            s.open("a", os.O_RDWR)
            s.open("b", os.O_RDWR)
        size = os.fstat(sides[1].fd("a")).st_size
        for step in range(STEPS):
            what, fn = make_step(rng, size)
            history.append("%d: %s" % (step, what))
            got, want = (outcome(lambda: fn(s)) for s in sides)
            assert got == want, (
                "seed %d step %d: %s\n  mount:  %s\n  native: %s\n  %s\n  steps before:\n    %s"
                % (seed, step, what, short(got), short(want), first_difference(got, want),
                   "\n    ".join(history[-12:-1])))
            size = os.fstat(sides[1].fd("a")).st_size
        for s in sides:
            os.fsync(s.fd("a"))
    finally:
        for s in sides:
            s.close_all()
    return history


def short(o):
    kind, v = o
    if isinstance(v, bytes):
        return "%s: %d bytes" % (kind, len(v))
    return "%s: %r" % (kind, v)


def first_difference(got, want):
    a, b = got[1], want[1]
    if not (isinstance(a, bytes) and isinstance(b, bytes)):
        return ""
    i = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return "first difference at byte %d of the result" % i


def read_all(path):
    with open(path, "rb") as f:
        return f.read()


def initial(seed):
    rng = random.Random(seed * 7919)
    return rand_bytes(rng, rng.randint(0, 300 * KiB))


def check_end(seed, view_file, native_file, written_file):
    want = read_all(native_file)
    got = read_all(view_file)
    assert len(got) == len(want) and got == want, (
        "seed %d: the file through the mount differs from the native one (%d vs %d bytes)"
        % (seed, len(got), len(want)))
    on_disk = read_all(written_file)
    assert on_disk == want, (
        "seed %d: the file the mount wrote to differs from the native one (%d vs %d bytes)"
        % (seed, len(on_disk), len(want)))


def write_file(path, data):
    with open(path, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["plain", "oversrc", "volatile", "cached"])
def test_random_data_operations(make_view, seed, mode):
    data = initial(seed)

    def populate(d):
        write_file(os.path.join(d, "f"), data)
    if mode == "volatile":
        v = make_view("plain", "--volatile", populate=populate)
    else:
        v = make_view(mode, populate=populate)
    run_sequence(seed, v.p("f"), os.path.join(v.native, "f"))
    backing = os.path.join(v.backing, "f") if v.backing else None
    if backing is None:
        # Mounted over its source: what reached the source is seen once the
        # mount is gone.
        v.mount.stop()
        v.mount.check_clean_exit()
        backing = os.path.join(v.source, "f")
        assert read_all(backing) == read_all(os.path.join(v.native, "f")), (
            "seed %d: the source under the mount differs from the native file" % seed)
        return
    check_end(seed, v.p("f"), os.path.join(v.native, "f"), backing)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_data_operations_on_a_lower_file(workdir, mounter, seed):
    """The file is in a read-only lower: the first open for writing copies it
    up, and every later byte lands in the upper; the lower never changes."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root")
    data = initial(seed)
    dirs = {k: os.path.join(workdir, k) for k in ("src", "lower", "upper", "mnt", "native")}
    for d in dirs.values():
        os.makedirs(d)
    write_file(os.path.join(dirs["lower"], "f"), data)
    write_file(os.path.join(dirs["native"], "f"), data)
    mounter(dirs["src"], dirs["mnt"], "--lower", dirs["lower"], "--upper", dirs["upper"])
    run_sequence(seed, os.path.join(dirs["mnt"], "f"), os.path.join(dirs["native"], "f"))
    check_end(seed, os.path.join(dirs["mnt"], "f"), os.path.join(dirs["native"], "f"),
              os.path.join(dirs["upper"], "f"))
    assert read_all(os.path.join(dirs["lower"], "f")) == data, "the lower file changed"


@pytest.mark.parametrize("seed", SEEDS)
def test_random_data_operations_on_a_file_mapped_twice(workdir, mounter, seed):
    """The file is seen at two places of a mapping table (a grafted
    directory and a remapped name); descriptor "a" is opened by one name,
    "b" by the other, and appends and fresh reads use the first."""
    data = initial(seed)
    src, mnt, native = (os.path.join(workdir, k) for k in ("src", "mnt", "native"))
    for d in (src, mnt, native, os.path.join(src, "real")):
        os.makedirs(d)
    write_file(os.path.join(src, "real", "f"), data)
    write_file(os.path.join(native, "f"), data)
    table = os.path.join(workdir, "map.json")
    with open(table, "w") as f:
        f.write('{"/g": {"target": "real"}, "/alias": {"target": "real/f"}}')
    mounter(src, mnt, "--map", table)
    run_sequence(seed, os.path.join(mnt, "g", "f"), os.path.join(native, "f"),
                 os.path.join(mnt, "alias"))
    check_end(seed, os.path.join(mnt, "alias"), os.path.join(native, "f"),
              os.path.join(src, "real", "f"))
