"""Attributes stay true when data bypasses the daemon.

After a write by any path -- write(2), pwrite, writev, splice, a shared
mapping (with msync, with munmap only, after its fd was closed, in a child),
fallocate (extend, keep size, punch hole), copy_file_range, ftruncate,
truncate, open with O_TRUNC -- stat through the mount shows what stat of the
backing file shows (size, mtime_ns, ctime_ns) at the latest at the point a
native filesystem promises it: right after the call for the calls that
write, after msync(MS_SYNC) for a shared mapping (POSIX: by then the last
data modification and file status change timestamps are marked for update),
and again after fsync, munmap and close. Checked from the writing process
(by path and by fd) and from another process, on a plain mount, a layered
mount (--upper) and mapped names (a graft and a file key of --map, each
written and also seen at the other and at the target's own path).

The suite runs with kernel passthrough on and off, and these tests hold
under both: with passthrough the kernel writes to the backing file without
the daemon hearing of it (a mapping's pages even at msync), and a file key
that shows the file with its own mode is a kernel inode of its own that
hears of no write made through the other names.

Every check first lets the kernel cache the attributes (a stat through the
mount after the open and after mmap), so that a stale cache shows.
"""
import ctypes
import json
import mmap
import os
import subprocess
import sys

import pytest

from prism_helpers import status_json, wait_for, wait_released

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.splice.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                         ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t, ctypes.c_uint]
_libc.splice.restype = ctypes.c_ssize_t
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
OLD_NS = 1_500_000_000 * 10**9  # a time no write can leave in place
SIZE = 3 * 4096

# statx(2) asking for size, mtime and ctime only, as ls -l and others do: the
# kernel then refreshes its attributes only if those are stale (stat(2) asks
# for the access time too, which a mapping of the file marks stale).
_STATX = r'''
import ctypes, os, struct
_sx_libc = ctypes.CDLL(None, use_errno=True)
STATX_NARROW = 0x200 | 0x40 | 0x80  # STATX_SIZE | STATX_MTIME | STATX_CTIME

def statx_narrow(path):
    buf = ctypes.create_string_buffer(256)
    if _sx_libc.statx(-100, os.fsencode(path), 0, STATX_NARROW, buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), path)
    size, = struct.unpack_from("Q", buf, 40)
    ct_s, ct_n = struct.unpack_from("qI", buf, 96)
    mt_s, mt_n = struct.unpack_from("qI", buf, 112)
    return (size, mt_s * 10**9 + mt_n, ct_s * 10**9 + ct_n)
'''
exec(_STATX)

_PEER = _STATX + r'''
import sys
for line in sys.stdin:
    how, p = line.rstrip("\n").split(" ", 1)
    try:
        if how == "x":
            print(*statx_narrow(p), flush=True)
        else:
            s = os.stat(p)
            print(s.st_size, s.st_mtime_ns, s.st_ctime_ns, flush=True)
    except OSError as e:
        print("ERR", e.errno, flush=True)
'''


class Peer:
    """Another process that stats paths on request."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _PEER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, close_fds=True,
                                     cwd="/")

    def stat(self, path, narrow=False):
        self.proc.stdin.write(("x " if narrow else "s ") + path + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline().split()
        assert out and out[0] != "ERR", "stat %s in another process: %r" % (path, out)
        return tuple(int(x) for x in out)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def attrs(st):
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Place:
    """A mount of one kind: `names(f)` the paths through the mount that show
    file f (the first is the one written), `backing(f)` where its data
    lives once written."""

    def __init__(self, kind, workdir, mounter, peer):
        self.kind = kind
        self.peer = peer
        self.src = os.path.join(workdir, "src")
        self.mnt = os.path.join(workdir, "mnt")
        self.upper = os.path.join(workdir, "upper")
        os.makedirs(os.path.join(self.src, "files"))
        os.makedirs(self.mnt)
        args = []
        if kind == "upper":
            os.makedirs(self.upper)
            args = ["--upper", self.upper]
        elif kind.startswith("map"):
            # A graft of the whole directory, and a file key for each name
            # that shows it with another mode: a node (a kernel inode) of
            # its own, beside the one the graft and the own path share.
            table = {"/graft": {"target": "files"}}
            for f in NAMES:
                table["/keys/" + f] = {"target": "files/" + f, "mode": "0666"}
            path = os.path.join(workdir, "map.json")
            with open(path, "w") as fh:
                json.dump(table, fh)
            args = ["--map", path]
        self.extra = args
        self.mounter = mounter

    def start(self, *more):
        self.mount = self.mounter(self.src, self.mnt, *self.extra, *more)
        return self

    def make(self, f, data=b"a" * SIZE):
        p = os.path.join(self.src, "files", f)
        with open(p, "wb") as fh:
            fh.write(data)
        os.utime(p, ns=(OLD_NS, OLD_NS))
        return p

    def names(self, f):
        """The name written first, then the other places of the object."""
        own = os.path.join(self.mnt, "files", f)
        graft = os.path.join(self.mnt, "graft", f)
        key = os.path.join(self.mnt, "keys", f)
        if self.kind == "map-graft":
            return [graft, own, key]
        if self.kind == "map-key":
            return [key, own, graft]
        return [own]

    def backing(self, f):
        if self.kind == "upper":
            return os.path.join(self.upper, "files", f)
        return os.path.join(self.src, "files", f)

    def cache(self, f, fd=None):
        """Stat every name (here and in the peer) so the kernel caches it."""
        for n in self.names(f):
            os.stat(n)
            self.peer.stat(n)
        if fd is not None:
            os.fstat(fd)

    def check(self, f, when, fd=None, changed=True, names=None):
        want = attrs(os.stat(self.backing(f)))
        if changed:
            assert want[1] != OLD_NS, "%s: the backing file's mtime did not change" % when
        for n in names or self.names(f):
            # The narrow ones first: a stat(2) would refresh what they show.
            got = statx_narrow(n)
            assert got == want, ("%s: statx(size, mtime, ctime) of %s in the writer shows "
                                 "%r, the backing file %r" % (when, n, got, want))
            got = self.peer.stat(n, narrow=True)
            assert got == want, ("%s: statx(size, mtime, ctime) of %s in another process "
                                 "shows %r, the backing file %r" % (when, n, got, want))
            got = attrs(os.stat(n))
            assert got == want, ("%s: stat %s in the writer shows (size, mtime_ns, "
                                 "ctime_ns) %r, the backing file %r" % (when, n, got, want))
            got = self.peer.stat(n)
            assert got == want, ("%s: stat %s in another process shows %r, the backing "
                                 "file %r" % (when, n, got, want))
        if fd is not None:
            got = attrs(os.fstat(fd))
            assert got == want, "%s: fstat in the writer shows %r, the backing file %r" % (
                when, got, want)


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


@pytest.fixture(params=["plain", "upper", "map-graft", "map-key"])
def place(request, workdir, mounter, peer):
    return Place(request.param, workdir, mounter, peer)


# --------------------------------------------------------------------------
# every call that writes: what it does to an open fd (the name, for truncate)

def _splice(fd, name):
    r, w = os.pipe()
    try:
        os.write(w, b"s" * 5000)
        os.close(w)
        w = -1
        # splice(2) from a pipe: the kernel's splice_write of the file.
        off = ctypes.c_int64(SIZE + 100)
        n = _libc.splice(r, None, fd, ctypes.byref(off), 5000, 0)
        assert n > 0, "splice: %s" % os.strerror(ctypes.get_errno())
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def _fallocate(mode, off, length):
    def run(fd, name):
        if _libc.fallocate(fd, mode, off, length) != 0:
            e = ctypes.get_errno()
            if mode and e == 95:
                pytest.skip("the backing filesystem has no fallocate mode %d" % mode)
            raise OSError(e, os.strerror(e))
    return run


def _copy_file_range(fd, name):
    # In the mount's own "files" directory, whatever name is written.
    src = os.path.join(os.path.dirname(os.path.dirname(name)), "files", "cfr-source")
    with open(src, "wb") as f:
        f.write(os.urandom(20000))
    r = os.open(src, os.O_RDONLY)
    try:
        done = 0
        while done < 20000:
            n = os.copy_file_range(r, fd, 20000 - done, done, 4096 + done)
            assert n > 0
            done += n
    finally:
        os.close(r)


WRITES = {
    "write": lambda fd, name: os.write(fd, b"w" * 100),
    "pwrite_extends": lambda fd, name: os.pwrite(fd, b"p" * 100, SIZE + 4000),
    "pwrite_inside": lambda fd, name: os.pwrite(fd, b"p" * 100, 10),
    "writev": lambda fd, name: os.writev(fd, [b"v" * 10, b"x" * 5000]),
    "splice": _splice,
    "fallocate_extends": _fallocate(0, 0, 1 << 20),
    "fallocate_keep_size": _fallocate(FALLOC_FL_KEEP_SIZE, 0, 1 << 20),
    "fallocate_punch_hole": _fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096),
    "copy_file_range": _copy_file_range,
    "ftruncate_shrinks": lambda fd, name: os.ftruncate(fd, 100),
    "ftruncate_extends": lambda fd, name: os.ftruncate(fd, SIZE * 5),
    "truncate_by_name": lambda fd, name: os.truncate(name, 777),
}


# Every file the tests write (the mapped mounts give each a file key).
NAMES = ["f-" + how for how in WRITES] + ["t", "m", "u", "b", "o", "c", "l"]


@pytest.mark.parametrize("how", sorted(WRITES))
def test_calls_that_write(place, how):
    """Each writing call: the change shows at once, and after fsync and close."""
    place.start()
    f = "f-" + how
    place.make(f)
    name = place.names(f)[0]
    fd = os.open(name, os.O_RDWR)
    try:
        place.cache(f, fd)
        WRITES[how](fd, name)
        place.check(f, "after %s" % how, fd, changed=how != "fallocate_keep_size")
        os.fsync(fd)
        place.check(f, "after %s and fsync" % how, fd, changed=how != "fallocate_keep_size")
    finally:
        os.close(fd)
    place.check(f, "after %s and close" % how, changed=how != "fallocate_keep_size")


def test_open_with_o_trunc(place):
    place.start()
    place.make("t")
    name = place.names("t")[0]
    place.cache("t")
    fd = os.open(name, os.O_WRONLY | os.O_TRUNC)
    try:
        place.check("t", "after open(O_TRUNC)", fd)
        place.cache("t", fd)
        os.write(fd, b"new")
        place.check("t", "after open(O_TRUNC) and write", fd)
    finally:
        os.close(fd)
    place.check("t", "after open(O_TRUNC), write and close")


# --------------------------------------------------------------------------
# shared mappings: the kernel writes the pages (with passthrough, straight
# to the backing file); msync(MS_SYNC) is the point where POSIX has the
# times marked, munmap and close the later ones.

def test_mmap_msync(place):
    """Each msync shows the writes before it, however many times the
    attributes were looked at in between."""
    place.start()
    place.make("m")
    name = place.names("m")[0]
    fd = os.open(name, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, SIZE)
        try:
            for round_ in range(3):
                place.cache("m", fd)
                mm[round_ * 100:round_ * 100 + 5] = b"hello"
                mm.flush()  # msync(MS_SYNC)
                place.check("m", "after mmap write %d and msync" % round_, fd)
                os.utime(name, ns=(OLD_NS, OLD_NS))  # so that the next one shows
                place.cache("m", fd)
            mm[4000:4003] = b"end"
            mm.flush()
        finally:
            mm.close()
        place.check("m", "after msync and munmap", fd)
        os.fsync(fd)
        place.check("m", "after munmap and fsync", fd)
    finally:
        os.close(fd)
    place.check("m", "after munmap and close")


def test_mmap_munmap_without_msync(place):
    """No msync: munmap, fsync and close are the points."""
    place.start()
    place.make("u")
    name = place.names("u")[0]
    fd = os.open(name, os.O_RDWR)
    try:
        mm = mmap.mmap(fd, SIZE)
        place.cache("u", fd)
        mm[SIZE - 5:SIZE] = b"tail!"
        mm.close()
        os.fsync(fd)
        place.check("u", "after mmap write, munmap and fsync", fd)
    finally:
        os.close(fd)
    place.check("u", "after munmap and close")


class Mapping:
    """A shared, writable mapping made by mmap(2) itself: Python's mmap
    module keeps a duplicate of the fd open, which would hide what happens
    once the fd is closed."""
    PROT_RW, MAP_SHARED, MS_SYNC = 3, 1, 4

    def __init__(self, fd, size):
        self.size = size
        self.addr = _libc.mmap(None, size, self.PROT_RW, self.MAP_SHARED, fd, 0)
        assert self.addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())

    def write(self, off, data):
        ctypes.memmove(self.addr + off, data, len(data))

    def msync(self):
        assert _libc.msync(self.addr, self.size, self.MS_SYNC) == 0

    def unmap(self):
        assert _libc.munmap(self.addr, self.size) == 0


def test_mmap_attributes_cached_only_before_the_open(place):
    """The attributes were cached before the open and not looked at since
    (mmap(2) marks only the access time stale, which statx for size and
    times does not ask for): msync still shows the change."""
    place.start()
    place.make("b")
    name = place.names("b")[0]
    place.cache("b")
    fd = os.open(name, os.O_RDWR)
    try:
        mm = Mapping(fd, SIZE)
        try:
            mm.write(10, b"before")
            mm.msync()
            place.check("b", "after open, mmap write and msync")
        finally:
            mm.unmap()
    finally:
        os.close(fd)
    place.check("b", "after munmap and close")


def test_mmap_outlives_its_fd(place):
    """The mapping is written after its fd was closed: msync, then munmap
    still show the change (with passthrough the daemon hears of neither)."""
    place.start()
    place.make("o")
    name = place.names("o")[0]
    fd = os.open(name, os.O_RDWR)
    mm = Mapping(fd, SIZE)
    os.close(fd)
    try:
        place.cache("o")
        mm.write(100, b"linked")
        mm.msync()
        place.check("o", "after close, mmap write and msync")
        os.utime(name, ns=(OLD_NS, OLD_NS))
        place.cache("o")
        mm.write(200, b"again!")
        mm.msync()
        place.check("o", "after close, a second mmap write and msync")
        os.utime(name, ns=(OLD_NS, OLD_NS))
        place.cache("o")
        mm.write(300, b"last")
    finally:
        mm.unmap()
    place.check("o", "after close, a third mmap write and munmap")


def test_mmap_in_a_child_after_the_parent_closed(place):
    """A mapping inherited by a child process and written there after the
    parent closed the fd and unmapped: the parent sees the change once the
    child has called msync and exited."""
    place.start()
    place.make("c")
    name = place.names("c")[0]
    fd = os.open(name, os.O_RDWR)
    mm = Mapping(fd, SIZE)
    os.close(fd)
    place.cache("c")
    pid = os.fork()
    if pid == 0:
        try:
            mm.write(0, b"child")
            mm.msync()
        finally:
            os._exit(0)
    mm.unmap()
    _, status = os.waitpid(pid, 0)
    assert status == 0
    place.check("c", "after a child wrote the mapping, called msync and exited")


def test_linker_output(place):
    """As lld writes its output: a new temporary file sized with ftruncate,
    mapped, its fd closed, written through the mapping, unmapped, renamed
    over the final name (which make had stat'ed before)."""
    # Under a file key (whose directory is the table's own) the linker works
    # in the target's directory; the key must show the new file too.
    place.start()
    place.make("l")
    final = place.names("l")[1 if place.kind == "map-key" else 0]
    tmp = os.path.join(os.path.dirname(final), "l.tmp")
    place.cache("l")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o755)
    os.ftruncate(fd, 3 * SIZE)
    mm = Mapping(fd, 3 * SIZE)
    os.close(fd)
    os.stat(tmp)
    place.peer.stat(tmp)
    mm.write(0, b"\x7fELF")
    mm.write(2 * SIZE, b"section")
    mm.unmap()
    os.rename(tmp, final)
    place.check("l", "after the linker's output was renamed into place")
# --------------------------------------------------------------------------
# the fix keeps the kernel's attribute cache for files nobody is writing

def getattrs_logged(log, suffix):
    n = 0
    with open(log) as f:
        for line in f:
            r = json.loads(line)
            if r.get("op") == "getattr" and r.get("path", "").endswith(suffix):
                n += 1
    return n


@pytest.mark.parametrize("kind", ["plain", "map-key"])
def test_files_not_being_written_keep_their_cached_attributes(workdir, mounter, kind):
    """Stat of a file that nobody has open for writing is answered by the
    kernel's cache (the daemon is not asked each time), also once a writer
    has come and gone, and once a mapping that outlived its fd is gone --
    with a table, also when the writer used another name of the file (a
    file key showing it with its own mode, a kernel inode of its own)."""
    src = os.path.join(workdir, "src")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(src)
    os.makedirs(mnt)
    log = os.path.join(workdir, "ops.jsonl")
    with open(os.path.join(src, "quiet"), "wb") as f:
        f.write(b"q" * 100)
    args = ["--log", log, "--log-format", "json"]
    if kind == "map-key":
        table = os.path.join(workdir, "map.json")
        with open(table, "w") as f:
            json.dump({"/key": {"target": "quiet", "mode": "0666"}}, f)
        args += ["--map", table]
    mounter(src, mnt, *args)
    p = os.path.join(mnt, "quiet")
    w = os.path.join(mnt, "key") if kind == "map-key" else p

    def asked(what):
        wait_released(mnt)
        before = getattrs_logged(log, "/quiet")
        for _ in range(50):
            os.stat(p)
        # The log is written by its own thread: give it time to catch up.
        wait_for(lambda: getattrs_logged(log, "/quiet") > before, timeout=0.5)
        n = getattrs_logged(log, "/quiet") - before
        # One answer, or two when the first raced the end of writing (whose
        # invalidation makes the kernel drop an answer made before it).
        assert n <= 2, "50 stats of a file %s asked the daemon %d times" % (what, n)

    asked("never written")
    fd = os.open(w, os.O_RDWR)
    os.write(fd, b"w")
    os.close(fd)
    asked("whose writer has gone")
    fd = os.open(w, os.O_RDWR)
    mm = Mapping(fd, 100)
    os.close(fd)
    mm.write(0, b"m")
    mm.msync()
    os.stat(p)
    mm.unmap()
    asked("whose mapping has gone")
    assert status_json(mnt)["files_open"] == 0
