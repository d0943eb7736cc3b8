"""File locks: flock(2) between open file descriptions and processes, POSIX
record locks (F_SETLK/F_SETLKW/F_GETLK, lockf) between processes."""
import errno
import fcntl
import os
import select
import subprocess
import sys
import threading

import pytest

import sysx
from parity import err, run_parity, write_file

# A helper process that takes a lock on argv[1] and holds it until told to
# release ("unlock") or to exit (EOF on stdin).
CHILD = r"""
import fcntl, os, sys
path, kind = sys.argv[1], sys.argv[2]
start, length = int(sys.argv[3]), int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
def lock(op):
    if kind == "flock-ex":
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if op else fcntl.LOCK_UN)
    elif kind == "flock-sh":
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB if op else fcntl.LOCK_UN)
    elif kind == "posix-w":
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB if op else fcntl.LOCK_UN, length, start)
    elif kind == "posix-r":
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB if op else fcntl.LOCK_UN, length, start)
try:
    lock(True)
except OSError as e:
    print("failed", e.errno, flush=True)
    sys.exit(0)
print("locked", os.getpid(), flush=True)
for line in sys.stdin:
    if line.strip() == "unlock":
        lock(False)
        print("unlocked", flush=True)
"""


class Holder:
    """A separate process holding a lock on path."""

    def __init__(self, path, kind, start=0, length=0):
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, path, kind, str(start), str(length)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._line()
        if not line.startswith("locked"):
            self.close()
            raise OSError(int(line.split()[1]) if line.startswith("failed") else errno.EIO,
                          "helper could not lock: %r" % line)
        self.pid = int(line.split()[1])

    def _line(self, timeout=15):
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not r:
            self.proc.kill()
            raise AssertionError("lock helper did not answer within %ss" % timeout)
        return self.proc.stdout.readline().strip()

    def unlock(self):
        self.proc.stdin.write("unlock\n")
        self.proc.stdin.flush()
        assert self._line() == "unlocked"

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def try_flock(fd, op):
    try:
        fcntl.flock(fd, op)
        return "ok"
    except OSError as e:
        return err(e.errno)


def try_setlk(fd, ltype, start=0, length=0):
    try:
        sysx.setlk(fd, ltype, start, length)
        return "ok"
    except OSError as e:
        # POSIX allows EACCES or EAGAIN for a conflicting F_SETLK
        return err(errno.EAGAIN) if e.errno == errno.EACCES else err(e.errno)


def test_flock_between_open_file_descriptions(view):
    EXNB, SHNB = fcntl.LOCK_EX | fcntl.LOCK_NB, fcntl.LOCK_SH | fcntl.LOCK_NB

    def scenario(b):
        write_file(b.p("f"), b"x")
        fd1 = os.open(b.p("f"), os.O_RDWR)
        fd2 = os.open(b.p("f"), os.O_RDWR)
        fd1dup = os.dup(fd1)
        out = []
        try:
            out.append(("ex fd1", try_flock(fd1, EXNB)))
            out.append(("ex fd2", try_flock(fd2, EXNB)))
            out.append(("sh fd2", try_flock(fd2, SHNB)))
            out.append(("ex dup of fd1 (same description)", try_flock(fd1dup, EXNB)))
            out.append(("unlock fd1", try_flock(fd1, fcntl.LOCK_UN)))
            out.append(("ex fd2 after unlock", try_flock(fd2, EXNB)))
            out.append(("sh fd1 while fd2 ex", try_flock(fd1, SHNB)))
            out.append(("downgrade fd2", try_flock(fd2, SHNB)))
            out.append(("sh fd1 now", try_flock(fd1, SHNB)))
            out.append(("ex fd2 while fd1 sh", try_flock(fd2, EXNB)))
            os.close(fd1)
            os.close(fd1dup)
            fd1 = fd1dup = -1
            out.append(("ex fd2 after closing fd1", try_flock(fd2, EXNB)))
        finally:
            for fd in (fd1, fd1dup, fd2):
                if fd >= 0:
                    os.close(fd)
        return out

    res = run_parity(view, [("flock scenario", scenario)])
    got = dict(res["flock scenario"])
    assert got["ex fd1"] == "ok"
    assert got["ex fd2"] == err(errno.EWOULDBLOCK)
    assert got["sh fd2"] == err(errno.EWOULDBLOCK)
    assert got["ex dup of fd1 (same description)"] == "ok"
    assert got["ex fd2 after unlock"] == "ok"
    assert got["ex fd2 while fd1 sh"] == err(errno.EWOULDBLOCK)
    assert got["ex fd2 after closing fd1"] == "ok"


def test_flock_blocking_io_error(view):
    """The Python-level symptom programs see: BlockingIOError."""
    path = view.p("f")
    write_file(path, b"x")
    fd1 = os.open(path, os.O_RDONLY)
    fd2 = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd1, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd2, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd1)
        os.close(fd2)


def test_flock_between_processes(view):
    def scenario(b):
        write_file(b.p("f"), b"x")
        fd = os.open(b.p("f"), os.O_RDWR)
        out = []
        try:
            with Holder(b.p("f"), "flock-ex") as h:
                out.append(try_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
                out.append(try_flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))
                h.unlock()
                out.append(try_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
            fcntl.flock(fd, fcntl.LOCK_UN)
            with Holder(b.p("f"), "flock-sh"):
                out.append(try_flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB))
                out.append(try_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
            # the holder exited: its lock is gone
            out.append(try_flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB))
        finally:
            os.close(fd)
        return out

    res = run_parity(view, [("scenario", scenario)])
    assert res["scenario"] == [err(errno.EWOULDBLOCK), err(errno.EWOULDBLOCK), "ok", "ok",
                               err(errno.EWOULDBLOCK), "ok"]


def test_posix_locks_between_processes(view):
    def scenario(b):
        write_file(b.p("f"), b"x" * 1000)
        fd = os.open(b.p("f"), os.O_RDWR)
        out = {}
        try:
            with Holder(b.p("f"), "posix-w", 0, 100) as h:
                out["wr overlapping"] = try_setlk(fd, fcntl.F_WRLCK, 50, 10)
                out["rd overlapping"] = try_setlk(fd, fcntl.F_RDLCK, 0, 1)
                out["wr whole file"] = try_setlk(fd, fcntl.F_WRLCK, 0, 0)
                out["wr adjacent"] = try_setlk(fd, fcntl.F_WRLCK, 100, 100)
                g = sysx.getlk(fd, fcntl.F_WRLCK, 50, 10)
                out["getlk"] = (g.l_type == fcntl.F_WRLCK, g.l_pid == h.pid, g.l_start, g.l_len,
                                g.l_whence)
                g = sysx.getlk(fd, fcntl.F_WRLCK, 500, 10)
                out["getlk free range"] = (g.l_type == fcntl.F_UNLCK,)
                # lockf(3) sees the same conflict
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 10, 20)
                    out["lockf"] = "ok"
                except OSError as e:
                    out["lockf"] = err(errno.EAGAIN) if e.errno == errno.EACCES else err(e.errno)
                h.unlock()
                out["wr after unlock"] = try_setlk(fd, fcntl.F_WRLCK, 0, 100)
                sysx.setlk(fd, fcntl.F_UNLCK, 0, 0)
            with Holder(b.p("f"), "posix-r", 0, 100) as h:
                out["rd vs rd"] = try_setlk(fd, fcntl.F_RDLCK, 0, 100)
                out["wr vs rd"] = try_setlk(fd, fcntl.F_WRLCK, 10, 10)
                g = sysx.getlk(fd, fcntl.F_WRLCK, 10, 10)
                out["getlk rd holder"] = (g.l_type == fcntl.F_RDLCK, g.l_pid == h.pid)
                sysx.setlk(fd, fcntl.F_UNLCK, 0, 0)
            # the holder exited: its locks are gone
            out["wr after exit"] = try_setlk(fd, fcntl.F_WRLCK, 0, 0)
        finally:
            os.close(fd)
        return out

    res = run_parity(view, [("scenario", scenario)])
    got = res["scenario"]
    assert got["wr overlapping"] == err(errno.EAGAIN)
    assert got["rd overlapping"] == err(errno.EAGAIN)
    assert got["wr whole file"] == err(errno.EAGAIN)
    assert got["wr adjacent"] == "ok"
    assert got["getlk"] == (True, True, 0, 100, os.SEEK_SET), "F_GETLK must report the holder"
    assert got["getlk free range"] == (True,)
    assert got["lockf"] == err(errno.EAGAIN)
    assert got["wr after unlock"] == "ok"
    assert got["rd vs rd"] == "ok"
    assert got["wr vs rd"] == err(errno.EAGAIN)
    assert got["getlk rd holder"] == (True, True)
    assert got["wr after exit"] == "ok"


def test_getlk_reports_holder_pid_directly(view):
    path = view.p("f")
    write_file(path, b"x" * 10)
    fd = os.open(path, os.O_RDWR)
    try:
        with Holder(path, "posix-w", 2, 3) as h:
            g = sysx.getlk(fd, fcntl.F_RDLCK, 0, 0)
            assert g.l_type == fcntl.F_WRLCK
            assert g.l_pid == h.pid, "F_GETLK l_pid %d, holder is %d" % (g.l_pid, h.pid)
            assert (g.l_start, g.l_len) == (2, 3)
    finally:
        os.close(fd)


def test_posix_lock_released_by_closing_any_fd(view):
    """POSIX: closing any descriptor of the file releases the process's
    record locks on it (a classic trap, but the defined behaviour)."""
    def scenario(b):
        write_file(b.p("f"), b"x")
        fd1 = os.open(b.p("f"), os.O_RDWR)
        out = []
        try:
            sysx.setlk(fd1, fcntl.F_WRLCK, 0, 0)
            probe = subprocess.run([sys.executable, "-c", CHILD, b.p("f"), "posix-w", "0", "0"],
                                   input="", capture_output=True, text=True, timeout=15)
            out.append(probe.stdout.split()[0:2])
            # same process, another fd: no conflict with itself
            fd2 = os.open(b.p("f"), os.O_RDWR)
            out.append(try_setlk(fd2, fcntl.F_WRLCK, 0, 0))
            os.close(fd2)
            probe = subprocess.run([sys.executable, "-c", CHILD, b.p("f"), "posix-w", "0", "0"],
                                   input="", capture_output=True, text=True, timeout=15)
            out.append(probe.stdout.split()[0])
        finally:
            os.close(fd1)
        return out

    res = run_parity(view, [("scenario", scenario)])
    got = res["scenario"]
    assert got[0][0] == "failed" and int(got[0][1]) in (errno.EAGAIN, errno.EACCES)
    assert got[1] == "ok"
    assert got[2] == "locked"


def test_setlkw_waits_for_release(view):
    path = view.p("f")
    write_file(path, b"x" * 100)
    fd = os.open(path, os.O_RDWR)
    try:
        with Holder(path, "posix-w", 0, 0) as h:
            done = threading.Event()
            errors = []

            def waiter():
                try:
                    fcntl.lockf(fd, fcntl.LOCK_EX, 0, 0)  # F_SETLKW
                    done.set()
                except Exception as e:
                    errors.append(e)

            t = threading.Thread(target=waiter, daemon=True)
            t.start()
            assert not done.wait(0.5), "F_SETLKW returned while the lock was held"
            h.unlock()
            assert done.wait(10), "F_SETLKW did not return after the holder released"
            t.join(5)
            assert not errors, errors
    finally:
        os.close(fd)
