"""Counting what a process does to a directory tree, seen by the kernel.

inotify(7) watches on every directory of a tree report each open
(IN_OPEN) and each read of data (IN_ACCESS) of the files in it, whoever
makes them: a count that owes nothing to the counters of the program
under test. A read of a file's data is an IN_ACCESS event; stat(2),
listxattr(2) and opens with O_PATH make none.
"""
import ctypes
import ctypes.util
import errno
import os
import struct

IN_ACCESS = 0x00000001
IN_OPEN = 0x00000020
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.inotify_init1.argtypes = [ctypes.c_int]
_libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
_EVENT = struct.Struct("iIII")


class TreeReads:
    """Opens and data reads of the files of a tree (its directories as they
    are when it is made), per path relative to the tree's root."""

    def __init__(self, root):
        self.root = root
        self.fd = _libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            e = ctypes.get_errno()
            raise OSError(e, "inotify_init1: " + os.strerror(e))
        self.dirs = {}
        try:
            for d, _, _ in os.walk(root):
                wd = _libc.inotify_add_watch(self.fd, os.fsencode(d), IN_OPEN | IN_ACCESS)
                if wd < 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "inotify_add_watch %s: %s" % (d, os.strerror(e)))
                self.dirs[wd] = os.path.relpath(d, root)
        except BaseException:
            os.close(self.fd)
            raise
        self.reset()

    def reset(self):
        """Forget what was seen so far (after reading what is queued)."""
        self.opened, self.read, self.dirs_opened = {}, {}, {}
        self.take()
        self.opened, self.read, self.dirs_opened = {}, {}, {}

    def take(self):
        """Read every event queued so far: the kernel queues them before
        the system call that made them returns."""
        while True:
            try:
                buf = os.read(self.fd, 1 << 20)
            except OSError as e:
                if e.errno == errno.EAGAIN:
                    return
                raise
            off = 0
            while off < len(buf):
                wd, mask, _, n = _EVENT.unpack_from(buf, off)
                name = buf[off + _EVENT.size:off + _EVENT.size + n].rstrip(b"\0")
                off += _EVENT.size + n
                if mask & IN_Q_OVERFLOW:
                    raise AssertionError("inotify queue overflowed: more than %s events "
                                         "on %s" % (open("/proc/sys/fs/inotify/"
                                                         "max_queued_events").read().strip(),
                                                    self.root))
                if mask & IN_IGNORED or wd not in self.dirs:
                    continue
                if not name:  # the watched directory itself (its parent saw it too)
                    continue
                path = os.path.normpath(os.path.join(self.dirs[wd], os.fsdecode(name)))
                if mask & IN_ISDIR:
                    if mask & IN_OPEN:
                        self.dirs_opened[path] = self.dirs_opened.get(path, 0) + 1
                    continue
                if mask & IN_OPEN:
                    self.opened[path] = self.opened.get(path, 0) + 1
                if mask & IN_ACCESS:
                    self.read[path] = self.read.get(path, 0) + 1

    def files(self):
        """(files opened, files whose data was read) since the last call
        (or reset), each with its count; forgotten once returned."""
        self.take()
        out = (self.opened, self.read)
        self.opened, self.read = {}, {}
        return out

    def close(self):
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
