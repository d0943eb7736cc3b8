"""History (issue 17): rows of changes made in parallel are committed
together (group commit: one writer commits every row queued meanwhile in
one transaction, the others wait for theirs), yet each row is still
committed before its change is made. The daemon is killed with SIGKILL
while several processes write at once; every entry then in SOURCE must
have its row, and every file with data its open for writing."""
import os
import signal
import subprocess
import sys
import textwrap

from conftest import Mount
from prism_helpers import wait_for, history_rows

WRITERS = 6

WRITER = textwrap.dedent(r"""
    import os, sys
    d = sys.argv[1]
    os.mkdir(d)
    i = 0
    while True:
        try:
            sub = os.path.join(d, "d%d" % (i // 20))
            if i % 20 == 0:
                os.mkdir(sub)
            f = os.path.join(sub, "f%d" % i)
            with open(f, "w") as fh:
                fh.write("x" * (i % 100 + 1))
            if i % 3 == 0:
                os.rename(f, os.path.join(sub, "r%d" % i))
            if i % 5 == 0:
                os.link(os.path.join(sub, "r%d" % (i - i % 3) if i % 3 == 0 else "f%d" % i),
                        os.path.join(sub, "l%d" % i))
            if i % 7 == 0:
                os.chmod(sub, 0o750)
        except OSError:
            break
        i += 1
    """)


def entries(src):
    out = []
    for d, dirs, files in os.walk(src):
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), src))
    return out


def test_kill_9_during_parallel_writers_leaves_every_entry_in_the_journal(workdir, trees,
                                                                          mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, os.path.join(mnt, "w%d" % k)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for k in range(WRITERS)]
    try:
        # Kill once every writer is well under way (no timing: counts).
        wait_for(lambda: all(len(os.listdir(os.path.join(src, "w%d" % k))) >= 3
                             if os.path.isdir(os.path.join(src, "w%d" % k)) else False
                             for k in range(WRITERS)), timeout=120)
        os.kill(m.pid, signal.SIGKILL)
        for w in writers:
            w.wait(timeout=60)
    finally:
        # The daemon first (see test_history.py: a writer waiting on a dead
        # daemon's request waits until the connection is aborted).
        for w in writers:
            if w.poll() is None:
                w.kill()
        m.kill()
        for w in writers:
            w.wait()
    made = set()
    for kind, path, path2 in history_rows(hdir, "SELECT kind, path, path2 FROM changes"):
        if kind in ("create", "mkdir", "mknod", "symlink"):
            made.add(path)
        elif kind in ("rename", "link"):
            made.add(path2)
    present = entries(src)
    assert len(present) >= WRITERS * 3
    missing = sorted(p for p in present if p not in made)
    assert not missing, "in SOURCE but not in the journal: %s" % missing
    # Each file's data got there after an open for writing in the journal
    # (under its name then: follow renames and links back).
    opened = {p for (p,) in history_rows(hdir, "SELECT path FROM changes WHERE kind IN"
                                    " ('create', 'open-write', 'truncate')")}
    came_from = dict(history_rows(hdir, "SELECT path2, path FROM changes WHERE kind IN"
                             " ('rename', 'link')"))
    for p in present:
        full = os.path.join(src, p)
        if os.path.isfile(full) and os.path.getsize(full):
            q, seen = p, set()
            while q not in opened and q in came_from and q not in seen:
                seen.add(q)
                q = came_from[q]
            assert q in opened, p
    # Rows are in seq order without gaps: a batch is one transaction.
    seqs = [s for (s,) in history_rows(hdir, "SELECT seq FROM changes ORDER BY seq")]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gaps in the journal"
    # The next mount with DIR marks what the dead daemon never finished.
    m2 = Mount(src, mnt, ["--history", hdir]).start()
    try:
        assert history_rows(hdir, "SELECT count(*) FROM changes WHERE state = 0")[0][0] == 0
    finally:
        m2.stop()
        m2.cleanup()
    m2.check_clean_exit()
