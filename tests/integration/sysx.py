"""ctypes wrappers for the system calls Python's os module does not expose
(or does not expose with the knobs the tests need).  Every wrapper raises
OSError(errno) on failure, like the os module, so the parity harness records
errors from both the same way."""
import ctypes
import fcntl
import os
import platform

libc = ctypes.CDLL(None, use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2

# utimensat(2): special tv_nsec values.
UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2

# fallocate(2) modes.
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

XATTR_CREATE = 1
XATTR_REPLACE = 2

# d_type values (dirent.h).
DT_UNKNOWN, DT_FIFO, DT_CHR, DT_DIR, DT_BLK, DT_REG, DT_LNK, DT_SOCK = 0, 1, 2, 4, 6, 8, 10, 12

_SYS_RENAMEAT2 = {"x86_64": 316, "aarch64": 276, "riscv64": 276, "i686": 353,
                  "i386": 353, "ppc64le": 357, "s390x": 347}


def _raise():
    e = ctypes.get_errno()
    raise OSError(e, "%s" % os.strerror(e))


def _path(p):
    return None if p is None else os.fsencode(p)


def renameat2(old, new, flags, olddirfd=AT_FDCWD, newdirfd=AT_FDCWD):
    """renameat2(2) through the raw system call (no glibc dependency)."""
    nr = _SYS_RENAMEAT2[platform.machine()]
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), ctypes.c_int(olddirfd), ctypes.c_char_p(_path(old)),
                     ctypes.c_int(newdirfd), ctypes.c_char_p(_path(new)),
                     ctypes.c_uint(flags))
    if r != 0:
        _raise()


class Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


NOW = "now"    # utimensat: set this time to the current time (UTIME_NOW)
OMIT = "omit"  # utimensat: leave this time alone (UTIME_OMIT)


def _timespec(v):
    if v == NOW:
        return Timespec(0, UTIME_NOW)
    if v == OMIT:
        return Timespec(0, UTIME_OMIT)
    sec, nsec = divmod(int(v), 10 ** 9)
    return Timespec(sec, nsec)


def utimensat(path, atime, mtime, dirfd=AT_FDCWD, flags=0):
    """utimensat(2).  atime/mtime: integer nanoseconds since the epoch, NOW
    or OMIT.  path=None with dirfd=fd behaves as futimens(fd)."""
    ts = (Timespec * 2)(_timespec(atime), _timespec(mtime))
    libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(Timespec),
                               ctypes.c_int]
    ctypes.set_errno(0)
    if libc.utimensat(dirfd, _path(path), ts, flags) != 0:
        _raise()


def futimens(fd, atime, mtime):
    ts = (Timespec * 2)(_timespec(atime), _timespec(mtime))
    libc.futimens.argtypes = [ctypes.c_int, ctypes.POINTER(Timespec)]
    ctypes.set_errno(0)
    if libc.futimens(fd, ts) != 0:
        _raise()


def fallocate(fd, mode, offset, length):
    libc.fallocate64.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    ctypes.set_errno(0)
    if libc.fallocate64(fd, mode, offset, length) != 0:
        _raise()


def getxattr(path, name, size, follow=True):
    """getxattr(2)/lgetxattr(2) with an explicit buffer size.  size 0 returns
    the needed length (int); otherwise the value (bytes)."""
    fn = libc.getxattr if follow else libc.lgetxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_ssize_t
    buf = ctypes.create_string_buffer(max(size, 1))
    ctypes.set_errno(0)
    r = fn(_path(path), _path(name), buf if size else None, size)
    if r < 0:
        _raise()
    return r if size == 0 else buf.raw[:r]


def listxattr(path, size, follow=True):
    """listxattr(2) with an explicit buffer size.  size 0 returns the needed
    length (int); otherwise the raw NUL-separated name list (bytes)."""
    fn = libc.listxattr if follow else libc.llistxattr
    fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
    fn.restype = ctypes.c_ssize_t
    buf = ctypes.create_string_buffer(max(size, 1))
    ctypes.set_errno(0)
    r = fn(_path(path), buf if size else None, size)
    if r < 0:
        _raise()
    return r if size == 0 else buf.raw[:r]


class Flock(ctypes.Structure):
    """struct flock (64-bit off_t)."""
    _fields_ = [("l_type", ctypes.c_short), ("l_whence", ctypes.c_short),
                ("l_start", ctypes.c_int64), ("l_len", ctypes.c_int64),
                ("l_pid", ctypes.c_int)]


def getlk(fd, ltype, start=0, length=0, whence=os.SEEK_SET):
    """fcntl(F_GETLK): returns the resulting struct Flock."""
    fl = Flock(ltype, whence, start, length, 0)
    out = fcntl.fcntl(fd, fcntl.F_GETLK, bytes(fl))
    return Flock.from_buffer_copy(out)


def setlk(fd, ltype, start=0, length=0, whence=os.SEEK_SET):
    """fcntl(F_SETLK) (non-blocking)."""
    fcntl.fcntl(fd, fcntl.F_SETLK, bytes(Flock(ltype, whence, start, length, 0)))


class Dirent64(ctypes.Structure):
    _fields_ = [("d_ino", ctypes.c_uint64), ("d_off", ctypes.c_int64),
                ("d_reclen", ctypes.c_ushort), ("d_type", ctypes.c_ubyte),
                ("d_name", ctypes.c_char * 256)]


libc.opendir.argtypes = [ctypes.c_char_p]
libc.opendir.restype = ctypes.c_void_p
libc.readdir64.argtypes = [ctypes.c_void_p]
libc.readdir64.restype = ctypes.POINTER(Dirent64)
libc.closedir.argtypes = [ctypes.c_void_p]
libc.rewinddir.argtypes = [ctypes.c_void_p]
libc.telldir.argtypes = [ctypes.c_void_p]
libc.telldir.restype = ctypes.c_long
libc.seekdir.argtypes = [ctypes.c_void_p, ctypes.c_long]


class DirStream:
    """opendir(3)/readdir(3) with every entry, "." and ".." included, and the
    raw d_type and d_ino.  Use as a context manager."""

    def __init__(self, path):
        ctypes.set_errno(0)
        self._d = libc.opendir(_path(path))
        if not self._d:
            _raise()

    def read(self):
        """Next (name, d_type, d_ino) or None at the end."""
        ctypes.set_errno(0)
        ent = libc.readdir64(self._d)
        if not ent:
            if ctypes.get_errno():
                _raise()
            return None
        e = ent.contents
        return (os.fsdecode(e.d_name), e.d_type, e.d_ino)

    def __iter__(self):
        while True:
            e = self.read()
            if e is None:
                return
            yield e

    def rewind(self):
        libc.rewinddir(self._d)

    def tell(self):
        return libc.telldir(self._d)

    def seek(self, pos):
        libc.seekdir(self._d, pos)

    def close(self):
        if self._d:
            libc.closedir(self._d)
            self._d = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def readdir_all(path):
    """Every entry of a directory, "." and ".." included: list of
    (name, d_type, d_ino) in readdir order."""
    with DirStream(path) as d:
        return list(d)


# open_tree(2), move_mount(2), mount_setattr(2): the same numbers on every
# architecture (added after the syscall tables were unified).
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442
OPEN_TREE_CLONE = 1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_IDMAP = 0x00100000


def idmapped_bind(src, dst, uidmap, gidmap):
    """Bind src at dst as a kernel idmapped mount (mount_setattr(2),
    MOUNT_ATTR_IDMAP) whose user namespace maps as uidmapping=/gidmapping=
    are written: CONTAINERID:HOSTID:SIZE[:...] (an id CONTAINERID+k on disk
    shows as HOSTID+k). Needs root; the namespace's holder is ended once
    the mount holds it."""
    import subprocess
    import struct
    import time
    holder = subprocess.Popen(["unshare", "-U", "sleep", "1000000"])
    ns = fd = -1
    try:
        me = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + 10
        while os.readlink("/proc/%d/ns/user" % holder.pid) == me:
            if time.monotonic() > deadline:
                raise RuntimeError("unshare -U did not start")
            time.sleep(0.01)
        for kind, spec in (("uid", uidmap), ("gid", gidmap)):
            v = [int(x) for x in spec.split(":")]
            with open("/proc/%d/%s_map" % (holder.pid, kind), "w") as f:
                f.write("".join("%d %d %d\n" % tuple(v[i:i + 3]) for i in range(0, len(v), 3)))
        ns = os.open("/proc/%d/ns/user" % holder.pid, os.O_RDONLY | os.O_CLOEXEC)
        L = ctypes.c_long  # syscall(2) reads every argument as a long
        fd = libc.syscall(L(SYS_OPEN_TREE), L(AT_FDCWD), _path(src),
                          L(OPEN_TREE_CLONE | os.O_CLOEXEC))
        if fd < 0:
            _raise()
        attr = ctypes.create_string_buffer(struct.pack("<QQQQ", MOUNT_ATTR_IDMAP, 0, 0, ns))
        if libc.syscall(L(SYS_MOUNT_SETATTR), L(fd), b"", L(AT_EMPTY_PATH), attr, L(32)) < 0:
            _raise()
        if libc.syscall(L(SYS_MOVE_MOUNT), L(fd), b"", L(AT_FDCWD), _path(dst),
                        L(MOVE_MOUNT_F_EMPTY_PATH)) < 0:
            _raise()
    finally:
        for f in (fd, ns):
            if f >= 0:
                os.close(f)
        holder.kill()
        holder.wait()
