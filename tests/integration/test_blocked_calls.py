"""A call that blocks in the source holds one daemon thread, not the mount.

The blocking source is real: another FUSE filesystem (a second prismfs)
mounted inside the source, whose daemon is stopped with SIGSTOP, so that a
lookup through the mount under test waits in that filesystem until it is
continued.  Meanwhile other calls made from the same CPU (the CPU a request
comes from picks its queue when requests arrive over io_uring) must be
answered, and once the inner filesystem runs again the blocked calls must
complete with the right result."""
import os
import signal
import subprocess
import sys

from prism_helpers import check_fds_back, daemon_fds, wait_for

BLOCKED = 3  # more than the threads a queue starts with over io_uring

STAT_ON_CPU = ("import os, sys\n"
               "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
               "os.stat(sys.argv[2])\n")


READ_ON_CPU = ("import os, sys\n"
               "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
               "sys.stdout.buffer.write(open(sys.argv[2], 'rb').read())\n")


def stat_on_cpu(cpu, path):
    return subprocess.Popen([sys.executable, "-c", STAT_ON_CPU, str(cpu), path],
                            stderr=subprocess.PIPE)


def waiting_in_fuse(pid):
    """The process sleeps in a FUSE request (its wait channel says so)."""
    try:
        with open("/proc/%d/wchan" % pid) as f:
            chan = f.read()
    except OSError:
        return False
    return "request_wait_answer" in chan or "fuse" in chan


def test_a_call_blocked_in_the_source_does_not_stall_others(workdir, mounter):
    src, inner, mnt = (os.path.join(workdir, d) for d in ("src", "inner", "mnt"))
    for d in (os.path.join(src, "slow"), inner, mnt):
        os.makedirs(d)
    for i in range(BLOCKED):
        with open(os.path.join(inner, "x%d" % i), "w") as f:
            f.write("inner")
    with open(os.path.join(src, "ok"), "w") as f:
        f.write("ok")
    # Nothing cached by either kernel mount: every stat is a request.
    slow = mounter(inner, os.path.join(src, "slow"), "--timeout", "0")
    outer = mounter(src, mnt, "--timeout", "0")
    assert os.path.getsize(os.path.join(mnt, "slow", "x0")) == 5

    cpu = sorted(os.sched_getaffinity(0))[0]
    blocked, free = [], None
    os.kill(slow.pid, signal.SIGSTOP)
    try:
        blocked = [stat_on_cpu(cpu, os.path.join(mnt, "slow", "x%d" % i))
                   for i in range(BLOCKED)]
        assert wait_for(lambda: all(waiting_in_fuse(p.pid) for p in blocked), timeout=20), \
            "the callers never reached the stopped filesystem"
        free = stat_on_cpu(cpu, os.path.join(mnt, "ok"))
        try:
            rc = free.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError("a stat of an unrelated name waited for the calls "
                                 "blocked in the source")
        assert rc == 0, free.stderr.read()
        assert all(p.poll() is None for p in blocked), \
            "a blocked caller returned while its filesystem was stopped"
    finally:
        os.kill(slow.pid, signal.SIGCONT)
        for p in blocked + ([free] if free else []):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        # The outer mount holds the inner one's root: it goes first.
        outer.stop()
    assert [p.returncode for p in blocked] == [0] * BLOCKED, \
        [p.stderr.read() for p in blocked]


GROW = 6  # blocked calls: a queue over io_uring starts with two threads


def test_threads_added_for_blocked_calls_keep_only_their_own_fds(workdir, mounter):
    """Calls blocked in the source make the daemon add threads, one after
    another, each serving a read (daemon data path: a spliced reply) while
    the others wait. Once the calls are through, the daemon holds the fds it
    held before, but for what each thread keeps: its io_uring instance (over
    io_uring) and libfuse's splice pipe, within the --threads bound."""
    src, inner, mnt = (os.path.join(workdir, d) for d in ("src", "inner", "mnt"))
    for d in (os.path.join(src, "slow"), inner, mnt):
        os.makedirs(d)
    for i in range(GROW):
        with open(os.path.join(inner, "x%d" % i), "w") as f:
            f.write("inner")
        with open(os.path.join(src, "r%d" % i), "w") as f:
            f.write("r%d" % i * 100000)
    threads = 8
    slow = mounter(inner, os.path.join(src, "slow"), "--timeout", "0")
    outer = mounter(src, mnt, "--timeout", "0", "--threads", str(threads))
    try:
        assert os.path.getsize(os.path.join(mnt, "slow", "x0")) == 5
        idle = daemon_fds(outer.pid, mnt)
        grow_threads(slow, mnt)
        now = check_fds_back(outer.pid, mnt, idle, threads)
        assert now["threads"] > idle["threads"], "sanity: the daemon added threads: %r" % now
    finally:
        # The outer mount holds the inner one's root: it goes first.
        outer.stop()
    outer.check_clean_exit()


def grow_threads(slow, mnt):
    """GROW calls made one after another from one CPU (over io_uring: to
    one queue) wait in the stopped filesystem `slow`; after each, a read
    through mnt is answered meanwhile. Then `slow` runs again and the
    calls complete."""
    cpu = sorted(os.sched_getaffinity(0))[0]
    blocked = []
    os.kill(slow.pid, signal.SIGSTOP)
    try:
        for i in range(GROW):
            blocked.append(stat_on_cpu(cpu, os.path.join(mnt, "slow", "x%d" % i)))
            assert wait_for(lambda: waiting_in_fuse(blocked[-1].pid), timeout=20), \
                "the caller never reached the stopped filesystem"
            # Answered by a thread other than the blocked ones.
            rd = subprocess.run([sys.executable, "-c", READ_ON_CPU, str(cpu),
                                 os.path.join(mnt, "r%d" % i)],
                                capture_output=True, timeout=60)
            assert rd.returncode == 0 and rd.stdout == b"r%d" % i * 100000, rd.stderr
    finally:
        os.kill(slow.pid, signal.SIGCONT)
        for p in blocked:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    assert [p.returncode for p in blocked] == [0] * GROW, [p.stderr.read() for p in blocked]
