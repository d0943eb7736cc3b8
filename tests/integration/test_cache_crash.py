"""Crash safety of the memory cache (prismfs mount --mirror M --journal DIR).

The daemon is killed for real: at named crash points in the write-back and
the journal (PRISMFS_TEST_CRASH=<step>[:N] makes it SIGKILL itself the Nth
time the step is reached), and by kill -9 at random moments while a writer
works through the mount. The writer records every call the mount
acknowledged and repeats it on a plain reference directory; after each
kill the next mount with the same journal replays what was pending,
`prismfs sync` and a clean unmount follow, and the mirror must equal the
reference: types, content, modes, symlink targets, which names share an
inode. The one call in flight when the daemon died may or may not have
happened (it was never acknowledged): the mirror may show it whole, or the
states its system calls went through, and nothing else.

Without a journal, a crash loses what was not written back, but the
mirror is never in a state that no sequence of acknowledged calls
produces: after a kill in the middle of a directory rename or of a file's
write-back, the mirror equals the reference as it was after some prefix
of the calls.
"""
import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time

import pytest

from conftest import Mount
from conftest import force_unmount
from prism_helpers import (assert_one_error_line, cli, prismfs_daemons_for, process_gone,
                           wait_for)

HERE = os.path.dirname(os.path.abspath(__file__))
# What a call on a mount whose daemon died fails with. Over FUSE over
# io_uring, a request in flight on a ring when the daemon dies ends with the
# ring's cancellation: ECANCELED.
DEAD = (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO, errno.ENODEV, errno.ECANCELED)


# ----------------------------------------------------------------------
# calls, applied the same way to the mount and to the reference

def apply_op(root, op, keep=None, upto=None):
    """Make the call op under root. keep: a list to keep a 'writeopen'
    descriptor open in (else it is closed). upto: stop after that many of
    the op's system calls (the states a call in flight goes through)."""
    def p(x):
        return os.path.join(root, x)

    k = op["k"]
    if k in ("write", "writeopen"):
        fd = os.open(p(op["a"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if upto == 1:
                return
            data = op["data"].encode()
            while data:
                data = data[os.write(fd, data):]
        finally:
            if keep is None or k == "write":
                os.close(fd)
            else:
                keep.append(fd)
    elif k == "mkdir":
        os.mkdir(p(op["a"]))
    elif k == "rename":
        os.rename(p(op["a"]), p(op["b"]))
    elif k == "unlink":
        os.unlink(p(op["a"]))
    elif k == "link":
        os.link(p(op["a"]), p(op["b"]))
    elif k == "symlink":
        os.symlink(op["t"], p(op["a"]))
    elif k == "chmod":
        os.chmod(p(op["a"]), op["m"])
    elif k == "chown":
        os.chown(p(op["a"]), op["u"], op["u"])
    elif k == "utime":
        if op.get("t"):
            os.utime(p(op["a"]), ns=(op["t"], op["t"]))
        else:
            os.utime(p(op["a"]))  # now
    elif k == "setxattr":
        os.setxattr(p(op["a"]), op["n"], op["v"].encode())
    elif k == "rmxattr":
        os.removexattr(p(op["a"]), op["n"])
    elif k == "truncate":
        os.truncate(p(op["a"]), op["n"])
    elif k == "mkfifo":
        os.mkfifo(p(op["a"]), 0o640)
    elif k == "rmdir":
        os.rmdir(p(op["a"]))
    elif k == "rename2":  # renameat2 with flags (RENAME_NOREPLACE 1, RENAME_EXCHANGE 2)
        renameat2(p(op["a"]), p(op["b"]), op["f"])
    else:
        raise ValueError(op)


def partial_states(op):
    """How many system calls of op can have happened when the daemon died
    in the middle of it (None: all of them)."""
    return [1, None] if op["k"] in ("write", "writeopen") else [None]


def listing(root):
    files, dirs = [], []
    for d, subdirs, names in os.walk(root):
        rel = os.path.relpath(d, root)
        for n in names:
            q = n if rel == "." else os.path.join(rel, n)
            if stat.S_ISREG(os.lstat(os.path.join(root, q)).st_mode):
                files.append(q)
        for n in subdirs:
            dirs.append(n if rel == "." else os.path.join(rel, n))
    return sorted(files), sorted(dirs)


def next_op(rng, ref, i):
    """A random call that is valid on the reference as it is now. A file
    with several names is not written nor chmod'ed: the cache loads the
    names of one mirror file as files of their own (a parity gap of the
    cache, not of its crash safety), so after a remount a change through
    one name would not show through the others. Nor is one of its names
    removed (unlinked, renamed over): a later link through the file, which
    the view makes through the name it first reached it by, is then not
    written back (another gap of the cache, reported)."""
    files, dirs = listing(ref)
    single = [f for f in files if os.lstat(os.path.join(ref, f)).st_nlink == 1]

    def new():
        return os.path.join(rng.choice([""] + dirs), "n%s" % i)

    def data():
        return ("%s." % i) * rng.choice([0, 3, 700, 9000])

    kinds = ["write"] * 4 + ["mkdir"] * 2 + ["writeopen", "symlink"]
    if files:
        kinds += ["rename", "rename", "unlink", "link"]
    if single:
        kinds += ["write", "chmod"]
    if dirs:
        kinds += ["dirrename"] * 2
    k = rng.choice(kinds)
    if k == "write":
        return {"k": k, "a": rng.choice(single) if single and rng.random() < 0.4 else new(),
                "data": data()}
    if k == "writeopen":
        return {"k": k, "a": new(), "data": data() or "x"}
    if k == "mkdir":
        return {"k": k, "a": new()}
    if k == "symlink":
        return {"k": k, "a": new(), "t": "target-%s" % i}
    if k == "rename":
        a = rng.choice(files)
        over = [f for f in single if f != a]
        b = rng.choice(over) if over and rng.random() < 0.3 else new()
        return {"k": k, "a": a, "b": b}
    if k == "unlink" and single:
        return {"k": k, "a": rng.choice(single)}
    if k == "unlink":
        return {"k": "mkdir", "a": new()}
    if k == "link":
        return {"k": k, "a": rng.choice(files), "b": new()}
    if k == "chmod":
        return {"k": k, "a": rng.choice(single), "m": rng.choice([0o600, 0o640, 0o755])}
    a = rng.choice(dirs)
    into = [d for d in [""] + dirs if d != a and not d.startswith(a + "/")]
    return {"k": "rename", "a": a, "b": os.path.join(rng.choice(into), "n%s" % i)}


def writer_main(mnt, ref, seed, log, count):
    """The timed-kill writer (a process of its own): each call on the mount,
    then on the reference once acknowledged, logged around."""
    rng = random.Random(seed)
    keep = []
    with open(log, "a") as lf:
        for i in range(count):
            op = next_op(rng, ref, "%d_%d" % (seed, i))
            lf.write("B %s\n" % json.dumps(op))
            lf.flush()
            try:
                apply_op(mnt, op, keep)
            except OSError as e:
                lf.write("E %d %s\n" % (e.errno, e))
                lf.flush()
                return
            apply_op(ref, op)
            lf.write("D\n")
            lf.flush()


# ----------------------------------------------------------------------
# comparing trees

def snapshot(root, skip_temporaries=False):
    """Per path: type, mode, content or target; and which paths share an
    inode."""
    out, inodes = {}, {}
    for d, subdirs, files in os.walk(root):
        for name in subdirs + files:
            if skip_temporaries and name.startswith(".prismfs-wb."):
                continue
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    what = ("file", stat.S_IMODE(st.st_mode), f.read())
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                what = ("symlink", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", stat.S_IMODE(st.st_mode))
            else:
                what = ("other", st.st_mode)
            out[rel] = what
    return out, sorted(sorted(v) for v in inodes.values() if len(v) > 1)


def diff(got, want):
    (g, gl), (w, wl) = got, want
    lines = []
    for k in sorted(set(g) | set(w)):
        if g.get(k) != w.get(k):
            lines.append("  %s: mirror %s, expected %s" % (k, short(g.get(k)), short(w.get(k))))
    if gl != wl:
        lines.append("  hard links: mirror %s, expected %s" % (gl, wl))
    return "\n".join(lines[:20])


def short(v):
    if v and v[0] == "file":
        return "file %o %d bytes %r" % (v[1], len(v[2]), v[2][:24])
    return repr(v)


def copy_tree(src, dst):
    subprocess.run(["rm", "-rf", dst], check=True)
    subprocess.run(["cp", "-a", src, dst], check=True)  # keeps hard links


def settle(mirror, ref, inflight, scratch):
    """Assert the mirror is the reference, or the reference with the call
    in flight done (whole or in part); bring the reference to it."""
    got = snapshot(mirror)
    want = snapshot(ref)
    if got == want:
        return
    for upto in partial_states(inflight) if inflight else []:
        copy_tree(ref, scratch)
        try:
            apply_op(scratch, inflight, upto=upto)
        except OSError:
            continue
        if snapshot(scratch) == got:
            copy_tree(scratch, ref)
            return
    pytest.fail("the mirror is not the acknowledged state%s:\n%s" % (
        " (nor with the call in flight, %s)" % json.dumps(inflight) if inflight else "",
        diff(got, want)))


# ----------------------------------------------------------------------
# mounts

def journal_dirs(workdir, made=(), named=()):
    """The places of a journaled cache mount: mirror, mnt and the dirs in
    made (created), journal and the names in named (left to be made);
    "mounts" collects the Mounts started, cleaned up at the end with the
    journal's tree (a generator for a fixture to yield from)."""
    d = {k: os.path.join(workdir, k) for k in ("mirror", "mnt", "journal") + made + named}
    for k in ("mirror", "mnt") + made:
        os.makedirs(d[k])
    d["mounts"] = []
    yield d
    for m in d["mounts"]:
        m.cleanup()
    unmount_tree(d["journal"])


@pytest.fixture
def cd(workdir):
    yield from journal_dirs(workdir, made=("ref",), named=("scratch",))


def tree_mounted(journal):
    try:
        return os.stat(os.path.join(journal, "tree")).st_dev != os.stat(journal).st_dev
    except FileNotFoundError:
        return False


def unmount_tree(journal):
    for _ in range(5):
        if not tree_mounted(journal):
            return
        subprocess.run(["umount", "-l", os.path.join(journal, "tree")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start(cd, *args, journal=True, crash=None, wb="0"):
    extra = ["--journal", cd["journal"]] if journal else []
    m = Mount(cd["mirror"], cd["mnt"], [*extra, "--write-back", wb, *args, "--mirror"],
              env={"PRISMFS_TEST_CRASH": crash} if crash else None)
    cd["mounts"].append(m)
    return m.start()


def died(m, timeout=20):
    """The daemon killed itself (or was killed): clear its mount."""
    assert wait_for(lambda: m.proc.poll() is not None, timeout), \
        "the daemon did not reach its crash point: %s" % m.stderr()
    assert m.proc.returncode == -signal.SIGKILL, (m.proc.returncode, m.stderr())
    m.kill()


def recover(cd):
    """The next mount with the journal: replay, sync, clean unmount."""
    m = start(cd)
    res = cli("sync", cd["mnt"], timeout=60)
    assert res.returncode == 0, "prismfs sync after the replay: %s" % res.stderr
    assert m.stop() == 0
    m.check_clean_exit()
    assert not tree_mounted(cd["journal"]), "the journal's tree is left mounted"


def seed(root):
    os.makedirs(os.path.join(root, "old/deep"))
    with open(os.path.join(root, "old/f"), "w") as f:
        f.write("old file\n" * 100)
    with open(os.path.join(root, "old/deep/g"), "w") as f:
        f.write("deep\n")
    os.symlink("old/f", os.path.join(root, "lnk"))


# A workload touching every kind of change; each file's content is written
# once, except a.txt (rewritten after its directory moved, hard-linked).
WORKLOAD = [
    {"k": "mkdir", "a": "d1"},
    {"k": "write", "a": "d1/a.txt", "data": "A" * 5000},
    {"k": "write", "a": "d1/b", "data": "B"},
    {"k": "mkdir", "a": "d1/sub"},
    {"k": "write", "a": "d1/sub/c", "data": "C" * 300},
    {"k": "rename", "a": "d1/b", "b": "d1/b2"},
    {"k": "rename", "a": "d1", "b": "d2"},
    {"k": "rename", "a": "old", "b": "d2/sub/old"},
    {"k": "link", "a": "d2/a.txt", "b": "d2/a_link"},
    {"k": "unlink", "a": "d2/b2"},
    {"k": "symlink", "a": "d2/s", "t": "a.txt"},
    {"k": "chmod", "a": "d2/sub/c", "m": 0o600},
    {"k": "write", "a": "top", "data": "T" * 70000},
    {"k": "rename", "a": "top", "b": "d2/sub/top"},
    {"k": "write", "a": "d2/a.txt", "data": "rewritten"},
    {"k": "writeopen", "a": "d2/open", "data": "O" * 3000},
    {"k": "mkdir", "a": "z"},
]


def run_workload(cd, m, ops, keep):
    """The calls, each on the reference once the mount acknowledged it;
    returns the call in flight when the daemon died (or None), and the
    reference's state after every call acknowledged so far."""
    states = [snapshot(cd["ref"])]
    for op in ops:
        try:
            apply_op(cd["mnt"], op, keep)
        except OSError as e:
            assert e.errno in DEAD, "%s failed on the mount: %s" % (json.dumps(op), e)
            return op, states
        apply_op(cd["ref"], op)
        states.append(snapshot(cd["ref"]))
    return None, states


def close_all(keep):
    for fd in keep:
        try:
            os.close(fd)
        except OSError:
            pass
    keep.clear()


# ----------------------------------------------------------------------
# with the journal: kill at crash points

CRASH_POINTS = [
    "journal-recorded-rename:2",  # a directory rename recorded, not answered
    "journal-recorded-data:1",
    "wb-apply-rename:2",          # before the directory rename reaches the mirror
    "wb-applied-rename:2",        # applied, its record not yet deleted
    "wb-apply-data:1",
    "wb-data-tmp:1",              # temporary written, not renamed
    "wb-data-tmp:3",
    "wb-applied-data:2",
    "wb-applied-create:1",
    "wb-applied-mkdir:2",
    "wb-applied-link:1",
    "wb-applied-unlink:1",
    "wb-applied-symlink:1",
    "wb-applied-attr:1",
]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_kill_at_a_crash_point_loses_nothing_acknowledged(cd, point):
    seed(cd["mirror"])
    seed(cd["ref"])
    m = start(cd, crash=point)
    keep = []
    inflight, _ = run_workload(cd, m, WORKLOAD, keep)
    if inflight is None:  # the worker has not reached it yet: make it
        cli("sync", cd["mnt"], timeout=60)
    died(m)
    close_all(keep)
    recover(cd)
    settle(cd["mirror"], cd["ref"], inflight, cd["scratch"])


def renameat2(a, b, flags):
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    AT_FDCWD = -100
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


@pytest.mark.parametrize("point", ["wb-apply-rename:1", "wb-applied-rename:1"])
def test_an_exchange_cut_short_is_not_exchanged_twice(cd, point):
    """RENAME_EXCHANGE is the one change that is not idempotent: applied
    again after a crash it would swap the names back. The worker only
    sees an op once it is recorded, so when it dies the exchange is in the
    journal, answered or not: it must be done exactly once."""
    os.makedirs(os.path.join(cd["mirror"], "x"))
    with open(os.path.join(cd["mirror"], "f"), "w") as f:
        f.write("file f\n")
    m = start(cd, crash=point)
    try:  # RENAME_EXCHANGE; the worker may die before the reply
        renameat2(os.path.join(cd["mnt"], "x"), os.path.join(cd["mnt"], "f"), 2)
    except OSError as e:
        assert e.errno in DEAD, e
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    recover(cd)
    assert os.path.isdir(os.path.join(cd["mirror"], "f"))
    with open(os.path.join(cd["mirror"], "x")) as f:
        assert f.read() == "file f\n"


def test_a_kill_during_the_replay_is_replayed_again(cd):
    # Everything pending (a long delay; an empty mirror, so that no
    # directory is filled from it, which waits for the queue), then killed
    # before any of it is applied.
    m = start(cd, crash="wb-apply-mkdir:1", wb="600")
    keep = []
    inflight, _ = run_workload(cd, m, [op for op in WORKLOAD if op.get("a") != "old"], keep)
    assert inflight is None
    cli("sync", cd["mnt"], timeout=60)
    died(m)
    close_all(keep)
    for at in ("replay-applied:3", "wb-data-tmp:1", "replay-applied:5"):
        with pytest.raises(RuntimeError, match="before mounting"):
            start(cd, crash=at)
        assert tree_mounted(cd["journal"]), "the tree went before the replay was done"
    recover(cd)
    settle(cd["mirror"], cd["ref"], None, cd["scratch"])


# ----------------------------------------------------------------------
# with the journal: real kills at random moments

def test_timed_kills_during_a_workload_lose_nothing_acknowledged(cd):
    seed(cd["mirror"])
    seed(cd["ref"])
    rng = random.Random(20261206)
    log = os.path.join(os.path.dirname(cd["mirror"]), "writer.log")
    for rnd in range(9):
        m = start(cd, wb=["0", "0.05", "30"][rnd % 3])
        open(log, "w").close()
        w = subprocess.Popen(
            [sys.executable, "-c", "import sys; sys.path.insert(0, %r); "
             "import test_cache_crash as t; "
             "t.writer_main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], "
             "int(sys.argv[5]))" % HERE, cd["mnt"], cd["ref"], str(rnd), log, "5000"],
            stdin=subprocess.DEVNULL)
        # Killed at a random moment once the writer has begun.
        assert wait_for(lambda: os.path.getsize(log) > 0 or w.poll() is not None, 60)
        time.sleep(rng.uniform(0.0, 0.8))
        os.kill(m.pid, signal.SIGKILL)
        try:
            w.wait(60)
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
        m.kill()
        assert w.returncode == 0, "the writer failed (see its traceback above)"
        with open(log) as f:
            lines = f.read().splitlines()
        inflight = None
        if lines and lines[-1].startswith("E "):
            assert int(lines[-1].split()[1]) in DEAD, "the writer failed: %s" % lines[-1]
            inflight = json.loads(lines[-2][2:])
        elif lines and lines[-1].startswith("B "):
            pytest.fail("the writer stopped in the middle of a call: %s" % lines[-1])
        acked = sum(1 for x in lines if x == "D")
        recover(cd)
        settle(cd["mirror"], cd["ref"], inflight, cd["scratch"])
        assert acked or inflight, "round %d: the writer did nothing" % rnd


def test_a_daemon_in_the_background_killed_loses_nothing(cd):
    """Without -f the journal is set up by a process that forks the daemon
    and exits: what the daemon records must outlive that process."""
    seed(cd["mirror"])
    seed(cd["ref"])
    res = cli("mount", "--journal", cd["journal"], "--write-back", "600", "--mirror",
              cd["mirror"], cd["mnt"])
    assert res.returncode == 0, res.stderr
    try:
        pids = prismfs_daemons_for(cd["mnt"])
        assert len(pids) == 1, pids
        keep = []
        inflight, _ = run_workload(cd, None, [op for op in WORKLOAD if op.get("a") != "old"],
                                   keep)
        assert inflight is None
        os.kill(pids[0], signal.SIGKILL)
        assert wait_for(lambda: process_gone(pids[0]), 20)
        close_all(keep)
    finally:
        force_unmount(cd["mnt"])
    recover(cd)
    settle(cd["mirror"], cd["ref"], None, cd["scratch"])


def test_a_tree_lost_with_the_machine_is_said_and_the_rest_replayed(cd):
    """The journal is for a crash of the daemon: a restart of the machine
    takes DIR/tree (memory) with it. The names still reach the mirror, and
    the mount says which data is lost instead of hiding it."""
    m = start(cd, wb="600")
    os.mkdir(os.path.join(cd["mnt"], "d"))
    with open(os.path.join(cd["mnt"], "d/f"), "w") as f:
        f.write("gone with the machine\n")
    os.kill(m.pid, signal.SIGKILL)
    m.kill()
    unmount_tree(cd["journal"])  # what a restart does
    m = start(cd)
    assert os.path.isfile(os.path.join(cd["mirror"], "d/f"))
    assert "is gone (the machine restarted?)" in m.stderr()
    assert m.stop() == 0
    m.check_clean_exit()


# ----------------------------------------------------------------------
# with the journal: killed between a change of the cache's tree and its
# record. The tree (DIR/tree) outlives the daemon and holds what the view
# showed; the change in flight was never acknowledged and may go either
# way, but the same way in the tree and on the mirror: after the replay
# the mirror must be that tree (and the data of a file open for writing
# must follow it to the name the tree has).

TREE_BASE = [
    {"k": "mkdir", "a": "d"},
    {"k": "write", "a": "d/a", "data": "A" * 4000},
    {"k": "write", "a": "d/b", "data": "B"},
    {"k": "mkdir", "a": "e"},
    {"k": "chmod", "a": "e", "m": 0o2775},  # set-group-ID: what is made in it inherits
    {"k": "mkdir", "a": "gone"},
    {"k": "setxattr", "a": "d/b", "n": "user.k", "v": "kept"},
    {"k": "writeopen", "a": "d/o", "data": "O" * 3000},  # kept open
]

TREE_CUTS = [
    ("cache-changed-rename:1", {"k": "rename", "a": "d/o", "b": "e/o2"}),
    ("cache-changed-rename:1", {"k": "rename", "a": "d", "b": "e/d2"}),
    ("cache-changed-rename:1", {"k": "rename2", "a": "d/b", "b": "e/b2", "f": 1}),
    ("cache-changed-rename:1", {"k": "rename2", "a": "d/o", "b": "e", "f": 2}),
    ("cache-changed-link:1", {"k": "link", "a": "d/o", "b": "e/ol"}),
    ("cache-changed-unlink:1", {"k": "unlink", "a": "d/a"}),
    ("cache-changed-rmdir:1", {"k": "rmdir", "a": "gone"}),
    ("cache-changed-mkdir:4", {"k": "mkdir", "a": "e/new"}),
    ("cache-changed-symlink:1", {"k": "symlink", "a": "e/sl", "t": "../d/a"}),
    ("cache-changed-mknod:1", {"k": "mkfifo", "a": "e/fifo"}),
    ("cache-changed-create:4", {"k": "writeopen", "a": "e/new2", "data": "N"}),
    ("cache-changed-data:1", {"k": "truncate", "a": "d/a", "n": 10}),
    ("cache-changed-attr:2", {"k": "chmod", "a": "d/a", "m": 0o600}),
    ("cache-changed-attr:2", {"k": "chown", "a": "d/a", "u": 1234}),
    ("cache-changed-attr:2", {"k": "utime", "a": "d/a", "t": 10 ** 18 + 7}),
    ("cache-changed-attr:2", {"k": "utime", "a": "d/a"}),  # now
    ("cache-changed-setxattr:2", {"k": "setxattr", "a": "d/a", "n": "user.k", "v": "new"}),
    ("cache-changed-removexattr:1", {"k": "rmxattr", "a": "d/b", "n": "user.k"}),
    # recorded, the tree not changed yet: not to reach the mirror either
    ("journal-recorded-mkdir:4", {"k": "mkdir", "a": "e/new"}),
    ("journal-recorded-symlink:1", {"k": "symlink", "a": "e/sl", "t": "../d/a"}),
    ("journal-recorded-create:4", {"k": "writeopen", "a": "e/new2", "data": "N"}),
    ("journal-recorded-attr:2", {"k": "chmod", "a": "d/a", "m": 0o600}),
    ("journal-recorded-attr:2", {"k": "utime", "a": "d/a", "t": 10 ** 18 + 7}),
    ("journal-recorded-setxattr:2", {"k": "setxattr", "a": "d/a", "n": "user.k", "v": "new"}),
    ("journal-recorded-removexattr:1", {"k": "rmxattr", "a": "d/b", "n": "user.k"}),
    ("journal-recorded-rename:1", {"k": "rename", "a": "d/o", "b": "e/o2"}),
    ("journal-recorded-rename:1", {"k": "rename2", "a": "d/o", "b": "e", "f": 2}),
    ("journal-recorded-link:1", {"k": "link", "a": "d/o", "b": "e/ol"}),
    ("journal-recorded-unlink:1", {"k": "unlink", "a": "d/a"}),
    ("journal-recorded-rmdir:1", {"k": "rmdir", "a": "gone"}),
    # refused by the tree, its record not yet taken back
    ("cache-refused-rmdir:1", {"k": "rmdir", "a": "d"}),
    ("cache-refused-rename:1", {"k": "rename", "a": "gone", "b": "d"}),
]


@pytest.mark.parametrize("point,op", TREE_CUTS,
                         ids=["%s-%s" % (p, json.dumps(o)) for p, o in TREE_CUTS])
def test_a_kill_between_the_tree_and_the_journal_leaves_them_alike(cd, point, op):
    m = start(cd, crash=point)
    keep = []
    inflight, _ = run_workload(cd, m, TREE_BASE + [op], keep)
    assert inflight == op, "the daemon did not die at %s" % point
    died(m)
    tree = snapshot(os.path.join(cd["journal"], "tree"))
    tmeta = {p: meta(os.path.join(cd["journal"], "tree"), p) for p in ("d/a", "d/b")}
    close_all(keep)
    recover(cd)
    got = snapshot(cd["mirror"])
    assert got == tree, "the mirror is not the cache's tree:\n" + diff(got, tree)
    for p, want in tmeta.items():
        assert meta(cd["mirror"], p) == want, p
    settle(cd["mirror"], cd["ref"], inflight, cd["scratch"])


def meta(root, rel):
    """Owner, modification time and xattrs of rel (None: not there)."""
    p = os.path.join(root, rel)
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    return (st.st_uid, st.st_gid, st.st_mtime_ns,
            sorted((n, os.getxattr(p, n)) for n in os.listxattr(p) if n.startswith("user.")))


def test_a_change_the_tree_refuses_is_not_written_back(cd):
    """A change is recorded before the tree makes it: one the tree refuses
    (here rmdir of a directory not empty) must leave the journal and the
    queue, not reach the mirror nor hold back what follows."""
    m = start(cd, wb="0")
    keep = []
    inflight, _ = run_workload(cd, m, TREE_BASE, keep)
    assert inflight is None
    with pytest.raises(OSError) as e:
        os.rmdir(os.path.join(cd["mnt"], "d"))
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        renameat2(os.path.join(cd["mnt"], "d/a"), os.path.join(cd["mnt"], "d/b"), 1)
    assert e.value.errno == errno.EEXIST
    inflight, _ = run_workload(cd, m, [{"k": "rename", "a": "d/a", "b": "e/a2"}], keep)
    assert inflight is None
    close_all(keep)
    res = cli("sync", cd["mnt"], timeout=60)
    assert res.returncode == 0, res.stderr
    assert m.stop() == 0
    m.check_clean_exit()
    settle(cd["mirror"], cd["ref"], None, cd["scratch"])


# ----------------------------------------------------------------------
# the journal's own rules

def test_a_journal_of_another_mirror_or_in_use_is_refused(cd, workdir):
    seed(cd["mirror"])
    other = os.path.join(workdir, "other")
    mnt2 = os.path.join(workdir, "mnt2")
    os.makedirs(other)
    os.makedirs(mnt2)
    with open(os.path.join(other, "keep"), "w") as f:
        f.write("other\n")
    m = start(cd)
    with open(os.path.join(cd["mnt"], "new"), "w") as f:
        f.write("new\n")

    before = snapshot(other), sorted(os.listdir(cd["journal"]))
    res = cli("mount", "--mirror", other, "--journal", cd["journal"], mnt2)
    assert_one_error_line(res, "a journal in use by a running daemon")
    assert "in use" in res.stderr
    res = cli("mount", "--mirror", cd["mirror"], "--journal", cd["journal"], mnt2)
    assert_one_error_line(res, "a journal in use by a running daemon")
    assert (snapshot(other), sorted(os.listdir(cd["journal"]))) == before
    assert not os.listdir(mnt2)

    assert m.stop() == 0
    m.check_clean_exit()
    assert not tree_mounted(cd["journal"])
    with open(os.path.join(cd["journal"], "journal.db"), "rb") as f:
        db = f.read()
    res = cli("mount", "--mirror", other, "--journal", cd["journal"], mnt2)
    assert_one_error_line(res, "a journal of another mirror")
    assert cd["mirror"] in res.stderr and other in res.stderr
    assert snapshot(other) == before[0]
    with open(os.path.join(cd["journal"], "journal.db"), "rb") as f:
        assert f.read() == db
    assert not tree_mounted(cd["journal"])

    for inside in (os.path.join(cd["mirror"], "j"), os.path.join(mnt2, "j")):
        res = cli("mount", "--mirror", cd["mirror"], "--journal", inside, mnt2)
        assert_one_error_line(res, "a journal inside the mirror or the mount point")
        assert not os.path.exists(inside)

    res = cli("mount", "--journal", cd["journal"], cd["mirror"], mnt2)
    assert_one_error_line(res, "--journal without --mirror")
    assert "--journal" in res.stderr
    with open(os.path.join(cd["mirror"], "new")) as f:
        assert f.read() == "new\n"


# ----------------------------------------------------------------------
# without the journal: never a state no acknowledged calls produce

# Each file's content is written once: a write-back reads the file as it
# is then, so content written later could otherwise show early.
WORKLOAD_ONCE = [op for op in WORKLOAD
                 if op["k"] != "writeopen" and op.get("data") != "rewritten"]
WORKLOAD_ONCE += [{"k": "rename", "a": "d2", "b": "z/d3"},
                  {"k": "write", "a": "z/last", "data": "L" * 40000}]


def prefix_states(states, ops):
    """Every state the acknowledged calls went through, with a file made
    empty by its open before it was written."""
    out = [states[0]]
    for i, st in enumerate(states[1:]):
        if ops[i]["k"] == "write":
            files, links = st
            part = dict(files)
            old = part.get(ops[i]["a"])
            part[ops[i]["a"]] = ("file", old[1] if old else 0o644, b"")
            out.append((part, links))
        out.append(st)
    return out


@pytest.mark.parametrize("point", ["wb-data-tmp:2", "wb-data-tmp:4", "wb-apply-rename:2",
                                   "wb-applied-rename:2", "wb-apply-rename:4",
                                   "wb-applied-rename:4"])
def test_without_a_journal_the_mirror_is_a_prefix_of_the_calls(cd, point):
    seed(cd["mirror"])
    seed(cd["ref"])
    # Over the transport the run uses (PRISMFS_TEST_URING): a file's data
    # is queued at FLUSH, which close(2) waits for, so the caller's next
    # call (a mkdir) comes after it over io_uring too, where RELEASE comes
    # after close(2) returns (test_cache_order.py).
    m = start(cd, crash=point, journal=False)
    keep = []
    inflight, states = run_workload(cd, m, WORKLOAD_ONCE, keep)
    if inflight is None:
        cli("sync", cd["mnt"], timeout=60)
    died(m)
    got = snapshot(cd["mirror"], skip_temporaries=True)
    acked = WORKLOAD_ONCE[:len(states) - 1]
    cands = prefix_states(states, acked)
    if inflight:  # the call in flight, whole or in part
        for upto in partial_states(inflight):
            copy_tree(cd["ref"], cd["scratch"])
            apply_op(cd["scratch"], inflight, upto=upto)
            cands.append(snapshot(cd["scratch"]))
    nearest = min(cands, key=lambda c: len(diff(got, c).splitlines()))
    assert got in cands, ("after a kill at %s the mirror is in no state the calls went "
                          "through; nearest:\n%s" % (point, diff(got, nearest)))
    # A temporary left by the write-back cut short is never shown.
    m = start(cd, journal=False)
    for d, subdirs, files in os.walk(cd["mnt"]):
        assert not [n for n in subdirs + files if n.startswith(".prismfs-wb.")], d
    assert m.stop() == 0
    m.check_clean_exit()
