"""Shared helpers for test_cli, test_lifecycle, test_oplog and test_users.

Background-mode mounts (no -f) are tracked by the `bg` fixture defined here
(re-exported by the test modules) so that every one of them is unmounted and
its daemon ended in teardown, even when the test fails.
"""
import calendar
import contextlib
import errno
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import tempfile
import time

import pytest

from conftest import PRISMFS, TEST_ROOT, force_unmount, is_mounted, mounts_under

SETPRIV = "/usr/bin/setpriv"
PY = "/usr/bin/python3"


# --------------------------------------------------------------------------
# small utilities

def wait_for(cond, timeout=10.0, step=0.02):
    """Poll cond() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def stderr_lines(text):
    return text.rstrip("\n").split("\n") if text else []


def assert_one_error_line(res, what):
    """A refused command: non-zero exit and exactly one stderr line starting
    with 'prismfs: '."""
    assert res.returncode != 0, (
        "%s: expected a non-zero exit status, got 0 (stdout %r, stderr %r)"
        % (what, res.stdout, res.stderr))
    lines = stderr_lines(res.stderr)
    assert len(lines) == 1, (
        "%s: expected exactly one line on stderr, got %d: %r"
        % (what, len(lines), res.stderr))
    assert lines[0].startswith("prismfs: "), (
        "%s: the error line should start with 'prismfs: ', got %r" % (what, lines[0]))
    assert len(lines[0]) > len("prismfs: "), "%s: the error line is empty" % what


def proc_state(pid):
    """The state letter of /proc/PID/stat, or None when the process is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(")") + 2]


def process_gone(pid):
    """True when pid has exited (no process at all, or an unreaped zombie:
    a daemonized process is reaped by whatever adopts it, not by us)."""
    return proc_state(pid) in (None, "Z")


def pids_mentioning(text):
    """Processes (other than this one) whose command line contains text."""
    out = []
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and proc_state(int(name)) not in (None, "Z"):
            out.append(int(name))
    return out


def prismfs_daemons_for(path):
    """Running prismfs processes whose command line names path."""
    out = []
    for pid in pids_mentioning(path):
        try:
            with open("/proc/%d/cmdline" % pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if os.path.basename(argv0) == "prismfs" or argv0 == PRISMFS:
            out.append(pid)
    return out


def mount_count(path):
    rp = os.path.realpath(path)
    return mounts_under(rp).count(rp)


def mountinfo_entry(path):
    """(mount options, fstype, super options) of the topmost mount at path."""
    rp = os.path.realpath(path)
    found = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            sep = parts.index("-")
            if parts[4].replace("\\040", " ") == rp:
                found = (parts[5].split(","), parts[sep + 1], parts[sep + 3].split(","))
    return found


def cli(*args, timeout=30, cwd=None, env=None):
    """Run prismfs with stdout/stderr captured through files (not pipes), so
    a background daemon that keeps an inherited descriptor cannot hang the
    test; returns a CompletedProcess with text stdout/stderr."""
    with tempfile.TemporaryFile(dir=TEST_ROOT) as out, \
            tempfile.TemporaryFile(dir=TEST_ROOT) as err:
        p = subprocess.Popen([PRISMFS, *args], stdin=subprocess.DEVNULL,
                             stdout=out, stderr=err, cwd=cwd, env=env)
        try:
            rc = p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise AssertionError("prismfs %s did not return within %ss"
                                 % (" ".join(args), timeout))
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(
            [PRISMFS, *args], rc, out.read().decode(errors="replace"),
            err.read().decode(errors="replace"))


def status_json(mnt):
    res = cli("status", "--json", mnt, timeout=15)
    assert res.returncode == 0, "prismfs status --json %s failed (%d): %s" % (
        mnt, res.returncode, res.stderr)
    try:
        obj = json.loads(res.stdout)
    except ValueError:
        raise AssertionError("prismfs status --json printed something that is not JSON: %r"
                             % res.stdout)
    assert isinstance(obj, dict), "status --json should print a JSON object, got %r" % obj
    return obj


def wait_released(mnt, timeout=10.0):
    """close(2) returns before the kernel's RELEASE reaches the daemon: wait
    until the daemon holds no file handle, and return its status."""
    st = wait_for(lambda: (lambda s: s if s["files_open"] == 0 else None)(status_json(mnt)),
                  timeout=timeout)
    assert st, "the daemon still holds file handles: %s" % status_json(mnt)
    return st


# --------------------------------------------------------------------------
# the daemon's file descriptors

def _fd_kinds(pid):
    ring = pipe = total = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except FileNotFoundError:  # closed meanwhile: the caller looks again
            continue
        total += 1
        ring += target == "anon_inode:[io_uring]"
        pipe += target.startswith("pipe:")
    return total, ring, pipe


def daemon_fds(pid, mnt, timeout=10.0):
    """The fds of the daemon `pid` serving `mnt`, by what holds them, from a
    settled look (two looks alike, status included):

    - node: node fds (status node_fds.open), which the node fd budget
      closes and opens again;
    - ring: io_uring instances, one per io_uring thread (status
      uring_threads). A queue starts with two threads and gets another
      while all of its threads are stuck in slow calls (or starved of CPU),
      up to --threads; the kernel cannot take a ring entry back, so those
      threads and their rings stay until unmount (src/fuse/uring.c);
    - pipe: pipes: the daemon's own, and the one libfuse keeps for each
      thread that has spliced a reply (2 fds), until the thread ends;
    - other: everything else (/dev/fuse, the source, the control socket,
      open files and directories, ...);
    - threads: the process's threads.
    Growth of ring and pipe is bounded by the threads, not by the requests:
    check_fds_back says how much."""
    def look():
        st = status_json(mnt)
        total, ring, pipe = _fd_kinds(pid)
        return {"node": st["node_fds"]["open"], "ring": ring, "pipe": pipe,
                "other": total - ring - pipe - st["node_fds"]["open"],
                "threads": len(os.listdir("/proc/%d/task" % pid)),
                "uring_threads": st["uring_threads"], "uring_queues": st["uring_queues"]}

    last = [None]

    def settled():
        a, b = look(), look()
        last[0] = b
        return b if a == b else None
    got = wait_for(settled, timeout=timeout, step=0.05)
    assert got, "the daemon's fds did not settle: last %r" % last[0]
    return got


def check_fds_back(pid, mnt, idle, max_threads, timeout=10.0):
    """After work that has ended: the daemon holds the fds it held at `idle`
    (a daemon_fds result) but for node fds and what its threads keep: one
    ring per io_uring thread, at most max_threads (--threads) per queue, and
    at most one pipe per thread more than at idle. Returns the last look."""
    last = [None]

    def back():
        last[0] = daemon_fds(pid, mnt, timeout=timeout)
        return last[0]["other"] == idle["other"]
    assert wait_for(back, timeout=timeout), (
        "the daemon holds other fds than before: %r, idle %r" % (last[0], idle))
    now = last[0]
    assert now["ring"] == now["uring_threads"], "one io_uring instance per thread: %r" % now
    assert now["uring_threads"] <= now["uring_queues"] * max_threads, now
    assert now["pipe"] <= idle["pipe"] + 2 * now["threads"], (
        "pipes beyond one per thread: %r, idle %r" % (now, idle))
    return now


# --------------------------------------------------------------------------
# background mounts

class BackgroundMounts:
    """Mounts made with `prismfs mount` without -f.  Teardown unmounts every
    one that is still mounted and ends any daemon left running for it."""

    def __init__(self):
        self.mountpoints = []
        self.pids = set()

    def mount(self, source, mountpoint, *args, timeout=30, cwd=None):
        mp = os.path.realpath(os.path.join(cwd or ".", mountpoint))
        self.mountpoints.append(mp)
        return cli("mount", *args, source, mountpoint, timeout=timeout, cwd=cwd)

    def remember_pid(self, pid):
        self.pids.add(pid)

    def cleanup(self):
        for mp in reversed(self.mountpoints):
            pids = set(prismfs_daemons_for(mp))
            if is_mounted(mp):
                try:
                    obj = status_json(mp)
                    if isinstance(obj.get("pid"), int):
                        pids.add(obj["pid"])
                except Exception:
                    pass
                try:
                    subprocess.run([PRISMFS, "unmount", mp], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=20)
                except Exception:
                    pass
            force_unmount(mp)
            self.pids |= pids
        for pid in self.pids:
            # Only processes this test started: prismfs daemons for our paths.
            if proc_state(pid) in (None, "Z"):
                continue
            if not wait_for(lambda: process_gone(pid), 5):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def bg(workdir):
    b = BackgroundMounts()
    try:
        yield b
    finally:
        b.cleanup()


def make_dirs(workdir, *names, mode=0o755):
    out = []
    for n in names:
        p = os.path.join(workdir, n)
        os.makedirs(p, exist_ok=True)
        os.chmod(p, mode)
        out.append(p)
    return out


# --------------------------------------------------------------------------
# running code as another user

def run_as(uid, gid, groups, code, arg=None, timeout=60, umask=0o022):
    """Run python code as uid/gid (supplementary groups `groups`, a list)
    through setpriv; `arg` is passed as JSON on stdin, and the code's stdout
    is returned parsed as JSON."""
    cmd = [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % gid]
    if groups:
        cmd.append("--groups=" + ",".join(str(g) for g in groups))
    else:
        cmd.append("--clear-groups")
    cmd += [PY, "-I", "-c", "import os; os.umask(%d)\n" % umask + code]
    res = subprocess.run(cmd, input=json.dumps(arg), capture_output=True, text=True,
                         timeout=timeout, cwd="/",
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    assert res.returncode == 0, "the helper running as uid %d failed (%d): %s" % (
        uid, res.returncode, res.stderr)
    return json.loads(res.stdout)


# --------------------------------------------------------------------------
# operation log parsing

TS_RE = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
CALL_RE = re.compile(r"^(" + TS_RE + r") -> (\S+) (/\S*)((?: \S+)*)$")
RET_RE = re.compile(r"^(" + TS_RE + r") <- (\S+) (/\S*) = (\d+|-E[A-Z0-9]+)$")
END_TEXT_RE = re.compile(r"^# prismfs op log end: records=(\d+) dropped=(\d+)$")


def parse_ts(ts):
    """Seconds since the epoch of a log time stamp (UTC)."""
    base, frac = ts[:-1].split(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) + int(frac) / 1e6


class OpLog:
    """A parsed operation log.  records: dicts with op, path, path2, args,
    result, errno, time; problems: format violations found while parsing."""

    def __init__(self):
        self.header = None
        self.end = None         # {"records": N, "dropped": M} or None
        self.records = []
        self.problems = []
        self.comments = []
        self.lines = 0

    def find(self, op, path=None, start=0, pred=None):
        """Index of the first record at or after start matching op/path/pred."""
        ops = (op,) if isinstance(op, str) else tuple(op)
        for i in range(start, len(self.records)):
            r = self.records[i]
            if r["op"] in ops and (path is None or r["path"] == path) and \
                    (pred is None or pred(r)):
                return i
        return None

    def describe(self, start=0, limit=60):
        out = []
        for r in self.records[start:start + limit]:
            out.append("%s %s%s %s = %s" % (
                r["op"], r["path"], " -> " + r["path2"] if r["path2"] else "",
                " ".join("%s=%s" % kv for kv in sorted(r["args"].items())),
                r["errno"] and "-" + r["errno"] or r["result"]))
        return "\n".join(out)


def parse_text_log(text):
    log = OpLog()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    log.lines = len(lines)
    if not lines:
        log.problems.append("the log is empty")
        return log
    log.header = lines[0]
    m = END_TEXT_RE.match(lines[-1])
    if m:
        log.end = {"records": int(m.group(1)), "dropped": int(m.group(2))}
        body = lines[1:-1]
    else:
        log.problems.append("the last line is not the end record: %r" % lines[-1])
        body = lines[1:]
    pending = {}
    for n, line in enumerate(body, 2):
        m = CALL_RE.match(line)
        if m:
            ts, op, path, rest = m.groups()
            args = {}
            for tok in rest.split():
                if "=" not in tok:
                    log.problems.append("line %d: argument %r is not key=value" % (n, tok))
                    continue
                k, v = tok.split("=", 1)
                args[k] = v
            rec = {"op": op, "path": path, "path2": args.get("to"), "args": args,
                   "result": None, "errno": None, "time": ts, "line": n}
            log.records.append(rec)
            pending.setdefault((op, path), []).append(rec)
            continue
        m = RET_RE.match(line)
        if m:
            ts, op, path, res = m.groups()
            q = pending.get((op, path))
            if not q:
                log.problems.append("line %d: a result line without a call line before it: %r"
                                    % (n, line))
                continue
            rec = q.pop(0)
            rec["rtime"] = ts
            if res.startswith("-"):
                name = res[1:]
                if not hasattr(errno, name):
                    log.problems.append("line %d: %r is not an errno name" % (n, name))
                rec["errno"] = name
                rec["result"] = -getattr(errno, name, 0)
            else:
                rec["result"] = int(res)
            continue
        if line.startswith("# "):
            # a comment line (like the header and the end line): not an op
            log.comments.append(line)
            continue
        log.problems.append("line %d is neither a call nor a result line: %r" % (n, line))
    for q in pending.values():
        for rec in q:
            log.problems.append("line %d: call line without a result line: %s %s"
                                % (rec["line"], rec["op"], rec["path"]))
    return log


def parse_json_log(text):
    log = OpLog()
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    log.lines = len(lines)
    objs = []
    for n, line in enumerate(lines, 1):
        try:
            o = json.loads(line)
        except ValueError:
            log.problems.append("line %d is not valid JSON: %r" % (n, line[:200]))
            continue
        if not isinstance(o, dict):
            log.problems.append("line %d is not a JSON object: %r" % (n, line[:200]))
            continue
        objs.append((n, o))
    if not objs:
        log.problems.append("the log has no JSON lines")
        return log
    n, first = objs[0]
    if first.get("event") == "start":
        log.header = first
        objs = objs[1:]
    else:
        log.problems.append("the first line is not the start event: %r" % first)
    if objs and objs[-1][1].get("event") == "end":
        log.end = objs[-1][1]
        objs = objs[:-1]
    else:
        log.problems.append("the last line is not the end event")
    for n, o in objs:
        bad = []
        for key, typ in (("time", str), ("op", str), ("path", str), ("args", dict),
                         ("result", int), ("duration_us", int)):
            if key not in o:
                bad.append("missing %r" % key)
            elif not isinstance(o[key], typ) or isinstance(o[key], bool):
                bad.append("%r has the wrong type (%r)" % (key, o[key]))
        if "errno" not in o:
            bad.append("missing 'errno'")
        if not bad:
            if not re.match("^" + TS_RE + "$", o["time"]):
                bad.append("time %r is not like 2026-11-21T14:00:00.123456Z" % o["time"])
            if not o["path"].startswith("/"):
                bad.append("path %r does not start with /" % o["path"])
            if o["duration_us"] < 0:
                bad.append("negative duration_us")
            if o["result"] < 0:
                want = errno.errorcode.get(-o["result"])
                if o["errno"] != want:
                    bad.append("result %d but errno %r (expected %r)"
                               % (o["result"], o["errno"], want))
            elif o["errno"] is not None:
                bad.append("result %d is not an error but errno is %r" % (o["result"], o["errno"]))
            if o["op"] in ("rename", "link") and not isinstance(o.get("path2"), str):
                bad.append("a %s record has no path2" % o["op"])
        if bad:
            log.problems.append("line %d: %s: %s" % (n, "; ".join(bad), json.dumps(o)[:300]))
            continue
        log.records.append({"op": o["op"], "path": o["path"], "path2": o.get("path2"),
                            "args": o["args"], "result": o["result"], "errno": o["errno"],
                            "time": o["time"], "line": n})
    return log


def parse_log(text, fmt):
    return parse_json_log(text) if fmt == "json" else parse_text_log(text)


def arg_int(value, base=10):
    """An argument value as an integer (JSON numbers or strings)."""
    if isinstance(value, int):
        return value
    return int(str(value), base)


def arg_mode(value):
    """Permission bits of a mode argument ("0755", "0100644" or a number)."""
    if isinstance(value, int):
        return value & 0o7777
    return int(str(value), 8) & 0o7777


def run_on_a_terminal(args, timeout=120, env=None):
    """Run prismfs with its stderr on a pseudo-terminal and its stdout on a
    file: returns (exit status, stdout, everything the terminal received)."""
    master, slave = os.openpty()
    got = b""
    with tempfile.TemporaryFile(dir=TEST_ROOT) as out:
        try:
            p = subprocess.Popen([PRISMFS, *args], stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=slave, env=env)
            os.close(slave)
            slave = -1
            # Read until the terminal's last writer is gone (EIO on Linux):
            # the client must never block on a full terminal.
            while True:
                r, _, _ = select.select([master], [], [], 1.0)
                if not r:
                    if p.poll() is not None:
                        break
                    continue
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                got += chunk
            rc = p.wait(timeout)
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)
        out.seek(0)
        return rc, out.read().decode(errors="replace"), got.decode(errors="replace")


@contextlib.contextmanager
def xfs_reflink(workdir, size=512 << 20):
    """An XFS filesystem with reflinks on a loop device at workdir/xfs
    (xfsprogs is installed by the README's set-up), unmounted after, also
    when the test fails. Yields its mount point."""
    img = os.path.join(workdir, "xfs.img")
    mnt = os.path.join(workdir, "xfs")
    os.makedirs(mnt)
    with open(img, "wb") as f:
        f.truncate(size)
    for cmd in (["mkfs.xfs", "-q", "-m", "reflink=1", img], ["mount", "-o", "loop", img, mnt]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, "%s: %s" % (" ".join(cmd), r.stderr.strip())
    try:
        yield mnt
    finally:
        for mp in sorted(mounts_under(mnt), key=len, reverse=True):
            force_unmount(mp)
        subprocess.run(["umount", "-l", mnt], capture_output=True)


def history_rows(hdir, sql, *params):
    """Rows of sql on DIR/history.db of a mount with --history DIR, read
    as prismfs log reads it (read-only: the daemon may be writing)."""
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(hdir, "history.db"), uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()
