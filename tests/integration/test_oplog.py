"""The operation log (--log FILE|-, --log-format text|json): every operation
with its arguments and result, in order, well formed, and a log that nobody
reads never stalls I/O (records are dropped and counted instead)."""
import errno
import os
import select
import threading
import time

import pytest

from conftest import is_mounted
from prism_helpers import (arg_int, arg_mode, bg, cli, make_dirs, parse_log,  # noqa: F401
                           parse_ts, status_json, process_gone)

FORMATS = ["text", "json"]


def _safe(pred):
    def wrapped(r):
        try:
            return bool(pred(r))
        except (KeyError, ValueError, TypeError, AttributeError):
            return False
    return wrapped


def _read_checked_log(logpath, fmt, src, mnt, t0, t1):
    """The log's text and its parsed records, once its framing, paths and
    times have been checked."""
    with open(logpath, errors="replace") as f:
        text = f.read()
    log = parse_log(text, fmt)
    _check_header_and_end(log, fmt, src, mnt)
    _check_paths_and_times(log, src, t0, t1)
    return text, log


def _check_header_and_end(log, fmt, src, mnt):
    assert not log.problems, "the log is malformed:\n" + "\n".join(log.problems[:30])
    if fmt == "text":
        want = "# prismfs 0.1.0 op log: source=%s mountpoint=%s" % (
            os.path.realpath(src), os.path.realpath(mnt))
        assert log.header == want, "first line is %r, expected %r" % (log.header, want)
    else:
        h = log.header
        assert h is not None and h.get("version") == "0.1.0" and \
            h.get("source") == os.path.realpath(src) and \
            h.get("mountpoint") == os.path.realpath(mnt), "the start record is %r" % (h,)
    assert log.end is not None, "no end record"
    rec, dropped = log.end.get("records"), log.end.get("dropped")
    assert isinstance(rec, int) and isinstance(dropped, int) and dropped >= 0 and rec >= 0, \
        "the end record is %r" % (log.end,)
    n = len(log.records)
    if fmt == "json":
        assert rec == n, "the end record says records=%d but the log has %d op objects" % (rec, n)
    else:
        assert rec == n, "the end record says records=%d but the log has %d operations" % (
            rec, n)


def _check_paths_and_times(log, src, t0, t1):
    srcabs = os.path.realpath(src)
    for r in log.records:
        for key in ("path", "path2"):
            p = r.get(key)
            if p is None:
                continue
            assert p.startswith("/") and not p.startswith(srcabs) and "//" not in p, \
                "%s %r of %s is not a virtual path from the mount root" % (key, p, r["op"])
        t = parse_ts(r["time"])
        assert t0 - 2 <= t <= t1 + 2, (
            "time stamp %s of %s %s is not the current UTC time" % (r["time"], r["op"], r["path"]))


def _walk_sequence(log, steps):
    """steps: (description, ops, path, predicate).  Each must be found after
    the previous one."""
    pos = 0
    prev = "the start"
    for desc, ops, path, pred in steps:
        i = log.find(ops, path, pos, _safe(pred))
        if i is None:
            near = log.find(ops, path, 0)
            hint = ""
            if near is not None:
                r = log.records[near]
                hint = "\na record for %s %s exists at position %d: args %r result %r errno %r" % (
                    r["op"], r["path"], near, r["args"], r["result"], r["errno"])
            raise AssertionError(
                "after %s the log has no %s%s\nrecords from there on:\n%s"
                % (prev, desc, hint, log.describe(pos)))
        pos = i + 1
        prev = desc


@pytest.mark.parametrize("fmt", FORMATS)
def test_scripted_sequence(workdir, mounter, fmt):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "r.txt"), "wb") as f:
        f.write(b"r" * 3000)
    logpath = os.path.join(workdir, "op.log")
    t0 = time.time()
    # Data records exist only on the daemon data path.
    m = mounter(src, mnt, "--passthrough", "off", "--log", logpath, "--log-format", fmt)
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    old = os.umask(0o022)
    try:
        os.mkdir(p("d"), 0o755)
        fd = os.open(p("d", "f"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        assert os.write(fd, b"a" * 100) == 100
        os.fsync(fd)
        assert os.pwrite(fd, b"b" * 50, 4096) == 50
        os.fsync(fd)
        os.close(fd)
        fd = os.open(p("r.txt"), os.O_RDONLY)
        assert os.read(fd, 1000) == b"r" * 1000
        os.close(fd)
        os.rename(p("d", "f"), p("d", "g"))
        with pytest.raises(FileNotFoundError):
            os.unlink(p("d", "missing"))
        os.setxattr(p("d", "g"), "user.prism", b"val")
        os.chmod(p("d", "g"), 0o600)
    finally:
        os.umask(old)
    assert m.stop() == 0, "the daemon exited %r: %s" % (m.returncode, m.stderr())
    m.check_clean_exit()
    t1 = time.time()
    text, log = _read_checked_log(logpath, fmt, src, mnt, t0, t1)

    def is_to(r, want):
        return r["path2"] == want

    def read_ok(r):
        size, off = arg_int(r["args"]["size"]), arg_int(r["args"]["offset"])
        return off == 0 and size >= 1000 and r["result"] == min(size, 3000)

    _walk_sequence(log, [
        ("mkdir /d with mode=0755 and result 0", "mkdir", "/d",
         lambda r: arg_mode(r["args"]["mode"]) == 0o755 and r["result"] == 0),
        ("create /d/f with mode 0644 and a non-negative result", "create", "/d/f",
         lambda r: arg_mode(r["args"]["mode"]) == 0o644 and r["result"] >= 0),
        ("write /d/f size=100 offset=0 = 100", "write", "/d/f",
         lambda r: arg_int(r["args"]["size"]) == 100 and arg_int(r["args"]["offset"]) == 0
         and r["result"] == 100),
        ("write /d/f size=50 offset=4096 = 50", "write", "/d/f",
         lambda r: arg_int(r["args"]["size"]) == 50 and arg_int(r["args"]["offset"]) == 4096
         and r["result"] == 50),
        ("read /r.txt at offset 0 returning the bytes read", "read", "/r.txt", read_ok),
        ("rename /d/f to=/d/g = 0", "rename", "/d/f",
         lambda r: is_to(r, "/d/g") and r["result"] == 0),
        ("lookup (or unlink) of /d/missing = -ENOENT", ("lookup", "unlink"), "/d/missing",
         lambda r: r["errno"] == "ENOENT" and r["result"] == -errno.ENOENT),
        ("setxattr /d/g of user.prism = 0", "setxattr", "/d/g",
         lambda r: "user.prism" in [str(v) for v in r["args"].values()] and r["result"] == 0),
        ("setattr /d/g with mode 0600 = 0", "setattr", "/d/g",
         lambda r: arg_mode(r["args"]["mode"]) == 0o600 and r["result"] == 0),
    ])
    if fmt == "text":
        # both lines of each pair are there, with the same op and path
        assert " <- mkdir /d = 0\n" in text, "no '<- mkdir /d = 0' line"
        assert " <- lookup /d/missing = -ENOENT\n" in text or \
            " <- unlink /d/missing = -ENOENT\n" in text, "no '= -ENOENT' line for /d/missing"


ALL_OPS = ["lookup", "getattr", "setattr", "readlink", "mknod", "mkdir", "unlink", "rmdir",
           "symlink", "rename", "link", "open", "read", "write", "flush", "release", "fsync",
           "opendir", "releasedir", "fsyncdir", "statfs", "setxattr", "getxattr",
           "listxattr", "removexattr", "create", "fallocate", "copy_file_range", "lseek"]


def test_every_operation_is_logged(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "r.txt"), "wb") as f:
        f.write(b"r" * 5000)
    logpath = os.path.join(workdir, "op.jsonl")
    m = mounter(src, mnt, "--passthrough", "off", "--log", logpath, "--log-format", "json")
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    old = os.umask(0o022)
    try:
        _every_op_script(p, mnt)
    finally:
        os.umask(old)
    assert m.stop() == 0, "the daemon exited %r: %s" % (m.returncode, m.stderr())
    m.check_clean_exit()
    with open(logpath, errors="replace") as f:
        log = parse_log(f.read(), "json")
    _check_every_op(log, src, mnt)


def _every_op_script(p, mnt):
    os.stat(mnt)
    os.statvfs(mnt)
    os.mkdir(p("d"), 0o750)
    fd = os.open(p("d", "a"), os.O_CREAT | os.O_RDWR, 0o644)
    os.write(fd, b"x" * 8192)
    os.fsync(fd)
    os.posix_fallocate(fd, 0, 16384)
    os.lseek(fd, 0, os.SEEK_DATA)
    fd2 = os.open(p("d", "b"), os.O_CREAT | os.O_RDWR, 0o644)
    assert os.copy_file_range(fd, fd2, 4096, 0, 0) == 4096
    os.close(fd2)
    os.close(fd)
    with open(p("r.txt"), "rb") as f:
        assert f.read() == b"r" * 5000
    os.chmod(p("d", "a"), 0o600)
    os.symlink("a", p("d", "s"))
    assert os.readlink(p("d", "s")) == "a"
    os.link(p("d", "a"), p("d", "h"))
    os.mkfifo(p("d", "p"), 0o640)
    os.rename(p("d", "h"), p("d", "h2"))
    os.unlink(p("d", "h2"))
    os.setxattr(p("d", "b"), "user.x", b"1")
    assert os.getxattr(p("d", "b"), "user.x") == b"1"
    assert "user.x" in os.listxattr(p("d", "b"))
    os.removexattr(p("d", "b"), "user.x")
    assert sorted(os.listdir(p("d"))) == ["a", "b", "p", "s"]
    dfd = os.open(p("d"), os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dfd)
    os.close(dfd)
    os.mkdir(p("d", "e"))
    os.rmdir(p("d", "e"))


def _check_every_op(log, src, mnt):
    _check_header_and_end(log, "json", src, mnt)
    seen = {r["op"] for r in log.records}
    missing = [op for op in ALL_OPS if op not in seen]
    if "readdir" not in seen and "readdirplus" not in seen:
        missing.append("readdir/readdirplus")
    assert not missing, "operations missing from the log: %s (logged: %s)" % (
        ", ".join(missing), ", ".join(sorted(seen)))
    want = [
        ("statfs /", "statfs", "/", lambda r: r["result"] == 0),
        ("mkdir /d mode 0750", "mkdir", "/d",
         lambda r: arg_mode(r["args"]["mode"]) == 0o750 and r["result"] == 0),
        ("fsync /d/a = 0", "fsync", "/d/a", lambda r: r["result"] == 0),
        ("fallocate /d/a = 0", "fallocate", "/d/a", lambda r: r["result"] == 0),
        ("lseek /d/a", "lseek", "/d/a", lambda r: r["result"] == 0),
        ("copy_file_range of 4096 bytes", "copy_file_range", None,
         lambda r: r["path"] in ("/d/a", "/d/b") and r["result"] == 4096),
        ("open /r.txt", "open", "/r.txt", lambda r: r["result"] >= 0),
        ("symlink /d/s", "symlink", "/d/s", lambda r: r["result"] == 0),
        ("readlink /d/s", "readlink", "/d/s", lambda r: r["result"] >= 0),
        ("link /d/a to /d/h", "link", "/d/a",
         lambda r: r["path2"] == "/d/h" and r["result"] == 0),
        ("mknod /d/p", "mknod", "/d/p", lambda r: arg_mode(r["args"]["mode"]) == 0o640
         and r["result"] == 0),
        ("rename /d/h to /d/h2", "rename", "/d/h",
         lambda r: r["path2"] == "/d/h2" and r["result"] == 0),
        ("unlink /d/h2 = 0", "unlink", "/d/h2", lambda r: r["result"] == 0),
        ("setxattr /d/b name user.x", "setxattr", "/d/b",
         lambda r: "user.x" in [str(v) for v in r["args"].values()] and r["result"] == 0),
        ("getxattr /d/b of user.x returning 1 byte", "getxattr", "/d/b",
         lambda r: "user.x" in [str(v) for v in r["args"].values()] and r["result"] == 1),
        ("listxattr /d/b", "listxattr", "/d/b", lambda r: r["result"] > 0),
        ("removexattr /d/b", "removexattr", "/d/b", lambda r: r["result"] == 0),
        ("opendir /d", "opendir", "/d", lambda r: r["result"] >= 0),
        ("readdir /d", ("readdir", "readdirplus"), "/d", lambda r: r["result"] >= 0),
        ("fsyncdir /d = 0", "fsyncdir", "/d", lambda r: r["result"] == 0),
        ("rmdir /d/e = 0", "rmdir", "/d/e", lambda r: r["result"] == 0),
        ("release of /d/a", "release", "/d/a", lambda r: r["result"] == 0),
        ("flush of /d/a", "flush", "/d/a", lambda r: r["result"] == 0),
        ("getattr /", "getattr", "/", lambda r: r["result"] == 0),
    ]
    absent = []
    for desc, ops, path, pred in want:
        if log.find(ops, path, 0, _safe(pred)) is None:
            absent.append(desc)
    assert not absent, "records not found (with the right path/args/result): %s\nlog:\n%s" % (
        "; ".join(absent), log.describe(0, 200))


def test_logged_path_follows_renames_and_unlinks(workdir, mounter):
    """The path logged for an inode is a current name of it: after a rename
    the new name, and after one of two hard links is removed, the other."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    logpath = os.path.join(workdir, "op.jsonl")
    m = mounter(src, mnt, "--log", logpath, "--log-format", "json")
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    os.mkdir(p("d"))
    with open(p("d", "a"), "w") as f:
        f.write("a")
    os.link(p("d", "a"), p("d", "h"))
    os.unlink(p("d", "h"))
    os.chmod(p("d", "a"), 0o640)            # setattr: only /d/a is left
    os.rename(p("d"), p("e"))
    os.chmod(p("e", "a"), 0o600)            # setattr: the directory was renamed
    os.link(p("e", "a"), p("e", "k"))
    os.rename(p("e", "a"), p("e", "b"))     # now /e/b and /e/k
    os.unlink(p("e", "k"))
    os.chmod(p("e", "b"), 0o644)            # setattr: only /e/b is left
    os.link(p("e", "b"), p("e", "h"))
    os.rename(p("e", "h"), p("e", "h2"))
    os.unlink(p("e", "h2"))
    os.chmod(p("e", "b"), 0o664)            # setattr: /e/b again
    assert m.stop() == 0, "the daemon exited %r: %s" % (m.returncode, m.stderr())
    m.check_clean_exit()
    with open(logpath, errors="replace") as f:
        log = parse_log(f.read(), "json")
    _check_header_and_end(log, "json", src, mnt)
    setattrs = [(r["path"], "%04o" % arg_mode(r["args"]["mode"])) for r in log.records
                if r["op"] == "setattr" and "mode" in r["args"]]
    want = [("/d/a", "0640"), ("/e/a", "0600"), ("/e/b", "0644"), ("/e/b", "0664")]
    assert setattrs == want, (
        "the chmods were logged as (path, mode) %r, expected %r" % (setattrs, want))


@pytest.mark.parametrize("fmt", FORMATS)
def test_background_mount_log(workdir, bg, fmt):
    """In background mode the log has one start record, the operations and
    one end record, written when the daemon ends."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    logpath = os.path.join(workdir, "op.log")
    t0 = time.time()
    res = bg.mount(src, mnt, "--passthrough", "off", "--log", logpath, "--log-format", fmt)
    assert res.returncode == 0, "prismfs mount failed (%d): %s" % (res.returncode, res.stderr)
    pid = status_json(mnt)["pid"]
    bg.remember_pid(pid)
    with open(os.path.join(mnt, "f")) as f:
        assert f.read() == "x"
    os.mkdir(os.path.join(mnt, "newdir"))
    res = cli("unmount", mnt)
    assert res.returncode == 0, "prismfs unmount failed (%d): %s" % (res.returncode, res.stderr)
    assert process_gone(pid), "unmount returned before the daemon exited"
    t1 = time.time()
    text, log = _read_checked_log(logpath, fmt, src, mnt, t0, t1)
    marker = '"event":"end"' if fmt == "json" else "# prismfs op log end:"
    assert text.count(marker) == 1, "the log has %d end records:\n%s" % (
        text.count(marker), text[:1500])
    _walk_sequence(log, [
        ("open /f", "open", "/f", lambda r: r["result"] >= 0),
        ("read /f = 1", "read", "/f", lambda r: r["result"] == 1),
        ("mkdir /newdir = 0", "mkdir", "/newdir", lambda r: r["result"] == 0),
    ])


def _drain(fd, chunks, stop, deadline):
    """Read fd (non-blocking) until EOF, stop is set, or deadline passes."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while time.monotonic() < deadline and not stop.is_set():
        try:
            ev = poller.poll(100)
        except (OSError, ValueError):
            return
        if not ev:
            continue
        try:
            data = os.read(fd, 1 << 20)
        except BlockingIOError:
            continue
        except OSError:
            return
        if not data:
            return
        chunks.append(data)


@pytest.mark.parametrize("fmt", FORMATS)
def test_unread_log_does_not_stall(workdir, mounter, fmt):
    src, mnt = make_dirs(workdir, "src", "mnt")
    fifo = os.path.join(workdir, "log.fifo")
    os.mkfifo(fifo)
    # a reader exists (so the daemon can open the FIFO) but reads nothing yet
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    stop = threading.Event()
    chunks = []
    reader = None
    try:
        m = mounter(src, mnt, "--log", fifo, "--log-format", fmt)
        # The brief's example is 20,000 operations; the daemon's queue holds
        # 65,536 records (src/cli/daemon.c), so the burst must be larger than
        # that for anything to be dropped.
        n = 50000
        done = threading.Event()
        errors = []

        def burst():
            try:
                for i in range(n):
                    try:
                        os.stat(os.path.join(mnt, "missing%d" % i))
                    except FileNotFoundError:
                        pass
                    os.statvfs(mnt)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                done.set()

        t = threading.Thread(target=burst, daemon=True)
        start = time.monotonic()
        t.start()
        finished = done.wait(60)
        elapsed = time.monotonic() - start
        # now read the FIFO (this also unblocks a daemon that stalled)
        reader = threading.Thread(target=_drain, args=(rfd, chunks, stop,
                                                       time.monotonic() + 90), daemon=True)
        reader.start()
        if not finished:
            done.wait(30)
        assert finished, ("%d operations did not finish within 60 s while the log FIFO was "
                          "not read: logging stalls I/O" % (2 * n))
        assert not errors, "the burst failed: %r" % errors[0]
        assert elapsed < 30, ("%d operations took %.1f s while the log FIFO was not read: "
                              "logging slows I/O down" % (2 * n, elapsed))
        assert is_mounted(mnt), "the mount disappeared during the burst"
        os.stat(mnt)
        assert m.stop() == 0, "the daemon exited %r: %s" % (m.returncode, m.stderr())
        m.check_clean_exit()
        reader.join(60)
        assert not reader.is_alive(), "the log FIFO was not closed after unmount"
    finally:
        stop.set()
        if reader is not None:
            reader.join(5)
        os.close(rfd)
    data = b"".join(chunks).decode(errors="replace")
    log = parse_log(data, fmt)
    _check_header_and_end(log, fmt, src, mnt)
    assert log.end["dropped"] > 0, (
        "nothing was dropped although %d operations were logged to a FIFO nobody read "
        "(the end record is %r, %d records arrived)" % (2 * n, log.end, len(log.records)))
    assert len(log.records) + log.end["dropped"] >= 2 * n, (
        "records (%d) + dropped (%d) is less than the %d operations made" % (
            len(log.records), log.end["dropped"], 2 * n))


@pytest.mark.parametrize("fmt", FORMATS)
def test_passthrough_log_says_data_is_not_seen(workdir, mounter, fmt):
    """With kernel passthrough the daemon never sees reads and writes of
    regular files: the log says so at its start, and still records the open,
    the release and every metadata operation."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    logpath = os.path.join(workdir, "op.log")
    m = mounter(src, mnt, "--passthrough", "on", "--log", logpath, "--log-format", fmt)
    with open(os.path.join(mnt, "f"), "w") as f:
        f.write("data")
    with open(os.path.join(mnt, "f")) as f:
        assert f.read() == "data"
    os.chmod(os.path.join(mnt, "f"), 0o600)
    assert m.stop() == 0, m.stderr()
    with open(logpath) as f:
        text = f.read()
    head = text.split("\n", 2)[:2]
    assert any("passthrough" in line and "not logged" in line for line in head), (
        "the log's start does not say that passthrough reads and writes are not logged:\n%s"
        % "\n".join(head))
    log = parse_log(text, fmt)
    ops = [r["op"] for r in log.records]
    for op in ("create", "open", "release", "setattr"):
        assert op in ops, "%s is missing from a passthrough log: %r" % (op, ops)
    assert "read" not in ops and "write" not in ops, (
        "reads or writes of a passthrough file reached the daemon: %r" % ops)
