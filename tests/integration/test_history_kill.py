"""Issue 17, Tests: kill -9 of the daemon during heavy writes and during
a snapshot. Afterwards every kept snapshot reads back (under .history)
exactly as it was when it was taken -- the test records each snapshot's
tree, read natively from SOURCE while the writer is stopped, when it takes
it -- the live tree is the last acknowledged state (the one change in
flight made or not), and the journal agrees with both: every entry in
SOURCE has the change that made it, every snapshot taken is listed."""
import hashlib
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import Mount
from prism_helpers import cli, wait_for, history_rows

# The writer: deterministic changes, each logged before ("B i") and after
# ("A i") it is made, the log flushed at once (the writer is not killed).
WRITER = textwrap.dedent(r"""
    import os, sys
    d, log = sys.argv[1], open(sys.argv[2], "w", buffering=1)
    for i in range(1000000):
        log.write("B %d\n" % i)
        a = os.path.join(d, "d%d" % (i % 5), "f%d" % (i % 37))
        try:
            if i % 11 == 10:
                os.rename(a, os.path.join(d, "d%d" % ((i + 2) % 5), "f%d" % ((i * 7) % 37)))
            elif i % 4 == 3:
                os.unlink(a)
            else:
                with open(a, "w") as f:
                    f.write("v%d\n" % i * (i % 50 + 1))
        except FileNotFoundError:
            pass
        except OSError:
            break
        log.write("A %d\n" % i)
""")


def model(n):
    """The tree after the writer's changes 0..n-1: {relpath: content}."""
    t = {}
    for i in range(n):
        a = "d%d/f%d" % (i % 5, i % 37)
        if i % 11 == 10:
            if a in t:
                t["d%d/f%d" % ((i + 2) % 5, (i * 7) % 37)] = t.pop(a)
        elif i % 4 == 3:
            t.pop(a, None)
        else:
            t[a] = "v%d\n" % i * (i % 50 + 1)
    return t


def tree(root):
    """{relpath: content} of the files below root (directories d0..d4)."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            with open(p) as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


def acked(log):
    """(changes acknowledged, whether one more had begun)."""
    try:
        with open(log) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:  # the writer has not started yet
        return 0, False
    done = sum(1 for ln in lines if ln.startswith("A "))
    return done, any(ln == "B %d" % done for ln in lines)


def digest(t):
    return hashlib.sha256(repr(sorted(t.items())).encode()).hexdigest()


def check_after(src, mnt, hdir, taken, n_done, inflight):
    """The checks of the module's docstring, on a new mount of src."""
    for name, want in taken.items():
        got = tree(os.path.join(mnt, ".history", name))
        if got != want:
            bad = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            seq = history_rows(hdir, "SELECT seq FROM snapshots WHERE name = '%s'" % name)
            rows = history_rows(hdir, "SELECT seq, kind, path, path2, arg, state FROM changes")
            rel = [r for r in rows if any(b in (r[2], r[3]) for b in bad)]
            vers = history_rows(hdir, "SELECT snap, seq, path, size FROM versions")
            raise AssertionError("%s at %s differs at %s: got %s want %s live %s rows %s"
                                 " versions %s" % (
                                     name, seq, bad, [got.get(b) for b in bad],
                                     [want.get(b) for b in bad],
                                     [tree(src).get(b) for b in bad], rel,
                                     [v for v in vers if v[2] in bad]))
    live = tree(src)
    ok = [model(n_done)] + ([model(n_done + 1)] if inflight else [])
    if inflight:  # a write cut short: the file truncated, not yet written
        i = n_done
        if i % 11 != 10 and i % 4 != 3:
            cut = dict(model(n_done))
            cut["d%d/f%d" % (i % 5, i % 37)] = ""
            ok.append(cut)
    assert live in ok, "live tree is no acknowledged state (%d done)" % n_done
    made = set()
    for kind, path, path2 in history_rows(hdir, "SELECT kind, path, path2 FROM changes"):
        made.add(path2 if kind in ("rename", "link") else path)
    assert not [p for p in live if p not in made]
    names = {n for (n,) in history_rows(hdir, "SELECT name FROM snapshots")}
    assert set(taken) <= names, (taken.keys(), names)


def start(src, mnt, hdir, env=None):
    return Mount(src, mnt, ["--history", hdir], env=env).start()


def end(w, m):
    """Teardown, also when the test failed: the writer (stopped or not),
    then the daemon and its mount."""
    if w.poll() is None:
        os.kill(w.pid, signal.SIGCONT)
        w.kill()
    m.kill()
    w.wait()
    m.cleanup()


def stop_writer(w):
    os.kill(w.pid, signal.SIGSTOP)
    wait_for(lambda: open("/proc/%d/stat" % w.pid).read().split(")")[1].split()[0] == "T",
             timeout=30)


@pytest.fixture
def setup(workdir, trees):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    for d in range(5):
        os.mkdir(os.path.join(src, "d%d" % d))
    return src, mnt, hdir, os.path.join(workdir, "writer.log")


def test_kill_9_during_heavy_writes_with_snapshots(setup):
    src, mnt, hdir, log = setup
    m = start(src, mnt, hdir)
    w = subprocess.Popen([sys.executable, "-c", WRITER, mnt, log],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    taken = {}
    try:
        for k in range(4):
            # a count, not a time: the writer is well on between snapshots
            wait_for(lambda: acked(log)[0] >= 150 * (k + 1), timeout=120)
            stop_writer(w)
            want = tree(src)  # natively: what the snapshot must show
            r = cli("snapshot", mnt, "--name", "s%d" % k)
            assert r.returncode == 0, r.stderr
            taken["s%d" % k] = want
            os.kill(w.pid, signal.SIGCONT)
        wait_for(lambda: acked(log)[0] >= 750, timeout=120)
        os.kill(m.pid, signal.SIGKILL)
        w.wait(timeout=60)
    finally:
        end(w, m)
    n_done, inflight = acked(log)
    assert n_done >= 750
    m2 = start(src, mnt, hdir)
    try:
        check_after(src, mnt, hdir, taken, n_done, inflight)
        # and the mount goes on: a snapshot, a change, its version saved
        before = tree(src)
        assert cli("snapshot", mnt, "--name", "after").returncode == 0
        with open(os.path.join(mnt, "d0", "new"), "w") as f:
            f.write("x")
        if before:
            with open(os.path.join(mnt, sorted(before)[0]), "w") as f:
                f.write("changed after the snapshot")
        assert tree(os.path.join(mnt, ".history", "after")) == before
    finally:
        m2.stop()
        m2.cleanup()
    m2.check_clean_exit()


@pytest.mark.parametrize("point", ["snapshot-before-insert", "snapshot-inserted",
                                   "snapshot-committed"])
def test_kill_9_during_a_snapshot(setup, point):
    src, mnt, hdir, log = setup
    m = start(src, mnt, hdir, env={"PRISMFS_TEST_CRASH": point})
    w = subprocess.Popen([sys.executable, "-c", WRITER, mnt, log],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: acked(log)[0] >= 200, timeout=120)
        stop_writer(w)
        want = tree(src)
        r = cli("snapshot", mnt, "--name", "s")
        assert r.returncode != 0  # the daemon died answering
        wait_for(lambda: m.proc.poll() is not None, timeout=30)
        assert m.proc.poll() == -signal.SIGKILL, "the crash point was not reached"
    finally:
        end(w, m)
    n_done, inflight = acked(log)
    m2 = start(src, mnt, hdir)
    try:
        names = {n for (n,) in history_rows(hdir, "SELECT name FROM snapshots")}
        if point != "snapshot-committed":  # not committed: no snapshot
            assert "s" not in names
            check_after(src, mnt, hdir, {}, n_done, inflight)
        else:  # committed before the daemon died: it is a whole snapshot
            assert "s" in names
            check_after(src, mnt, hdir, {"s": want}, n_done, inflight)
    finally:
        m2.stop()
        m2.cleanup()
    m2.check_clean_exit()
