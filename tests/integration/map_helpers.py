"""Helpers for the live path mapping tests (test_map_*.py).

A mapped mount is made through the `mounter` fixture (so it is stopped in
teardown and must exit cleanly); PassthroughFS-style command lines, which
stay in the foreground, are started by the `compat` fixture here, which
unmounts and ends them in teardown even when the test fails.
"""
import ctypes
import errno
import json
import os
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import PASSTHROUGH, PRISMFS, TEST_ROOT, force_unmount, is_mounted
from prism_helpers import cli, status_json, wait_for

_libc = ctypes.CDLL(None, use_errno=True)

# How long an update may take to be applied before a test gives up waiting
# (the spec says "at once, within ~0.5 s"; the deadline is generous so that a
# slow sanitizer build does not fail; test_map_reload checks the latency).
APPLY_DEADLINE = 5.0


# --------------------------------------------------------------------------
# small utilities

def err(fn, *args):
    """'ok' (closing any fd returned) or the errno name fn(*args) failed with."""
    try:
        r = fn(*args)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    if isinstance(r, int) and fn is os.open:
        os.close(r)
    return "ok"


def access_errno(path, mode):
    """access(2) giving the errno name (os.access only says True/False)."""
    ctypes.set_errno(0)
    r = _libc.access(os.fsencode(path), ctypes.c_int(mode))
    if r == 0:
        return "ok"
    return errno.errorcode.get(ctypes.get_errno(), str(ctypes.get_errno()))


def write_file(path, data, mode=None, owner=None):
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)
    if owner is not None:
        os.chown(path, *owner)
    if mode is not None:
        os.chmod(path, mode)
    return path


def read_file(path):
    with open(path, "rb") as f:
        return f.read().decode()


def mkdirs(*paths, mode=0o755):
    for p in paths:
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
    return paths[0] if len(paths) == 1 else paths


def ls(path):
    return sorted(os.listdir(path))


# --------------------------------------------------------------------------
# the mapping table: files and pipe messages

def table_bytes(table):
    if isinstance(table, (bytes, bytearray)):
        return bytes(table)
    if isinstance(table, str):
        return table.encode()
    return json.dumps(table, indent=1).encode()


def write_map_in_place(path, table):
    """Rewrite the map file in place (same inode): truncate, one write."""
    ino = os.stat(path).st_ino if os.path.exists(path) else None
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, 0o644)
    try:
        os.write(fd, table_bytes(table))
    finally:
        os.close(fd)
    if ino is not None:
        assert os.stat(path).st_ino == ino, "sanity: the in-place write changed the inode"


def write_map_by_rename(path, table):
    """Replace the map file atomically: a new file renamed over it."""
    tmp = "%s.tmp-%s" % (path, uuid.uuid4().hex[:8])
    with open(tmp, "wb") as f:
        f.write(table_bytes(table))
    os.rename(tmp, path)


def frame(table):
    """One pipe message: 4-byte big-endian length, then the JSON."""
    data = table_bytes(table)
    return struct.pack(">I", len(data)) + data


class PipeWriter:
    """A writer of the mapping pipe (a context manager; closes on exit)."""

    def __init__(self, path, timeout=10):
        # Opening a FIFO for writing blocks until there is a reader: the
        # daemon must be reading it; do not hang the test if it is not.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as e:
                if e.errno != errno.ENXIO or time.monotonic() > deadline:
                    raise AssertionError("nobody reads the mapping pipe %s (%s)" % (path, e))
                time.sleep(0.02)
        # back to blocking writes
        import fcntl
        fl = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, fl & ~os.O_NONBLOCK)

    def write(self, data):
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]

    def send(self, table):
        self.write(frame(table))

    def unread(self):
        """Bytes written but not yet read by the daemon (FIONREAD)."""
        import fcntl
        import termios
        buf = bytearray(4)
        fcntl.ioctl(self.fd, termios.FIONREAD, buf)
        return struct.unpack("i", bytes(buf))[0]

    def drain(self, timeout=10):
        """Wait until the daemon has read everything written so far."""
        assert wait_for(lambda: self.unread() == 0, timeout), \
            "the daemon did not read the mapping pipe (%d bytes left)" % self.unread()

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()


def send_messages(fifo, *tables):
    """One writer: send each table as a message, then close."""
    with PipeWriter(fifo) as w:
        for t in tables:
            w.send(t)
        w.drain()


# --------------------------------------------------------------------------
# status

def mapping_status(mnt):
    st = status_json(mnt)
    assert isinstance(st.get("mapping"), dict), \
        "status --json has no \"mapping\" object: %r" % st
    return st["mapping"]


def wait_mapping(mnt, pred, what, timeout=APPLY_DEADLINE):
    """Poll the mapping status until pred(mapping) is true; returns it."""
    last = [None]

    def check():
        last[0] = mapping_status(mnt)
        return pred(last[0])
    if not wait_for(check, timeout, step=0.02):
        raise AssertionError("%s: not seen within %ss; mapping status is %r"
                             % (what, timeout, last[0]))
    return last[0]


def wait_generation(mnt, gen, timeout=APPLY_DEADLINE):
    st = wait_mapping(mnt, lambda m: m["generation"] >= gen,
                      "mapping generation %d" % gen, timeout)
    assert st["generation"] == gen, "generation went past %d: %r" % (gen, st)
    return st


def wait_rejected(mnt, count, timeout=APPLY_DEADLINE):
    st = wait_mapping(mnt, lambda m: m["rejected"] >= count,
                      "mapping rejection #%d" % count, timeout)
    assert st["rejected"] == count, "more rejections than expected: %r" % st
    return st


# --------------------------------------------------------------------------
# a mapped mount

class Mapped:
    """src/ and mnt/ under workdir, mounted with --map FILE (or a FIFO)."""

    def __init__(self, workdir, mount, src, mnt, mapfile):
        self.workdir = workdir
        self.mount = mount
        self.src = src
        self.mnt = mnt
        self.mapfile = mapfile

    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def s(self, *parts):
        return os.path.join(self.src, *parts)

    def status(self):
        return mapping_status(self.mnt)

    def update(self, table, how="rename"):
        """Write a new table to the map file and wait until it is applied
        (generation + 1, no new rejection); returns the mapping status."""
        before = self.status()
        (write_map_by_rename if how == "rename" else write_map_in_place)(self.mapfile, table)
        st = wait_mapping(self.mnt, lambda m: m["generation"] > before["generation"],
                          "the update of %s (%s)" % (self.mapfile, how))
        assert st["generation"] == before["generation"] + 1, (before, st)
        return st


def make_mapped(workdir, mounter, table, *args, populate=None, fifo=False, name="map.json"):
    src = mkdirs(os.path.join(workdir, "src"))
    mnt = mkdirs(os.path.join(workdir, "mnt"))
    if populate:
        populate(src)
    mapfile = os.path.join(workdir, name)
    if fifo:
        os.mkfifo(mapfile, 0o600)
    else:
        with open(mapfile, "wb") as f:
            f.write(table_bytes(table))
    m = mounter(src, mnt, "--map", mapfile, *args)
    return Mapped(workdir, m, src, mnt, mapfile)


@pytest.fixture
def shm_dir():
    """A directory on another filesystem (tmpfs) than the test trees."""
    base = "/dev/shm"
    if not os.path.isdir(base) or os.stat(base).st_dev == os.stat(TEST_ROOT).st_dev:
        pytest.skip("no second filesystem at /dev/shm")
    d = os.path.join(base, "prismfs-map-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8]))
    os.makedirs(d)
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# PassthroughFS's command line (foreground daemon)

class CompatRun:
    def __init__(self, args, mountpoint, log):
        self.args = args
        self.mountpoint = mountpoint
        self.log = log
        self.proc = None

    def output(self):
        with open(self.log, errors="replace") as f:
            return f.read()


class CompatRuns:
    """Starts `prismfs ARGS` (PassthroughFS's command line); teardown
    unmounts the mount point and ends the process if it is still there."""

    def __init__(self):
        self.runs = []

    def start(self, args, mountpoint, timeout=20):
        fd, log = tempfile.mkstemp(prefix="prismfs-compat-", dir=TEST_ROOT)
        run = CompatRun(args, mountpoint, log)
        self.runs.append(run)
        extra = []
        if PASSTHROUGH:
            extra = ["--passthrough", PASSTHROUGH]
        run.proc = subprocess.Popen([PRISMFS, *args, *extra], stdin=subprocess.DEVNULL,
                                    stdout=fd, stderr=fd)
        os.close(fd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if run.proc.poll() is not None:
                raise AssertionError("prismfs %s exited %d without staying mounted: %s"
                                     % (" ".join(args), run.proc.returncode, run.output()))
            if is_mounted(mountpoint):
                os.stat(mountpoint)
                return run
            time.sleep(0.02)
        raise AssertionError("prismfs %s did not mount within %ss: %s"
                             % (" ".join(args), timeout, run.output()))

    def cleanup(self):
        for run in reversed(self.runs):
            try:
                if is_mounted(run.mountpoint):
                    subprocess.run([PRISMFS, "unmount", run.mountpoint],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=20)
            except Exception:
                pass
            force_unmount(run.mountpoint)
            if run.proc is not None and run.proc.poll() is None:
                try:
                    run.proc.wait(5)
                except subprocess.TimeoutExpired:
                    run.proc.send_signal(signal.SIGKILL)
                    run.proc.wait()
            if os.path.exists(run.log):
                os.unlink(run.log)


@pytest.fixture
def compat():
    c = CompatRuns()
    try:
        yield c
    finally:
        c.cleanup()


__all__ = ["APPLY_DEADLINE", "CompatRuns", "Mapped", "PipeWriter", "access_errno", "cli",
           "compat", "err", "frame", "ls", "make_mapped", "mapping_status", "mkdirs",
           "read_file", "send_messages", "shm_dir", "status_json", "table_bytes", "wait_for",
           "wait_generation", "wait_mapping", "wait_rejected", "write_file",
           "write_map_by_rename", "write_map_in_place"]
