"""History (issue 17, first slice): prismfs mount --history DIR on a plain
mount journals every change made through it in DIR/history.db, before
the change is made, with the requester's uid, pid and command name;
prismfs log shows it; prismfs snapshot marks the journal's position and
the first change of an object after it saves the object's previous
version into DIR/versions.

Real mounts and real system calls: a process of the test's own (with a
command name and a uid of its choosing) makes the changes; the journal is
compared with what it did. The daemon is killed with SIGKILL in the middle
of a workload, and every entry then in SOURCE must have its change in the
journal."""
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from conftest import Mount
from prism_helpers import assert_one_error_line, cli, wait_for, history_rows

NOBODY = 65534

# The child that makes the changes: names itself (comm), becomes NOBODY,
# and makes each change through the mount, one system call each.
CHILD = textwrap.dedent(r"""
    import os, sys
    with open("/proc/self/comm", "w") as f:
        f.write(sys.argv[2])
    os.setgid(%d)
    os.setuid(%d)
    d = sys.argv[1]
    p = lambda *x: os.path.join(d, *x)
    fd = os.open(p("a"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, b"hello")
    os.close(fd)
    os.mkdir(p("sub"))
    os.rename(p("a"), p("sub", "b"))
    os.link(p("sub", "b"), p("c"))
    os.unlink(p("c"))
    os.chmod(p("sub", "b"), 0o600)
    os.utime(p("sub", "b"), (1000000000, 1000000000))
    os.setxattr(p("sub", "b"), "user.note", b"x")
    os.removexattr(p("sub", "b"), "user.note")
    os.truncate(p("sub", "b"), 2)
    os.symlink("sub/b", p("l"))
    os.mkdir(p("gone"))
    os.rmdir(p("gone"))
    print(os.getpid(), flush=True)
""" % (NOBODY, NOBODY))


def log_json(mnt, *args):
    r = cli("log", mnt, *args, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def hist(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    m = mounter(src, mnt, "--history", hdir)
    return src, mnt, hdir, m


def test_the_journal_says_what_a_process_did(hist):
    src, mnt, hdir, m = hist
    d = os.path.join(mnt, "w")
    os.mkdir(d)
    os.chown(d, NOBODY, NOBODY)
    res = subprocess.run([sys.executable, "-c", CHILD, d, "histwriter"], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    pid = int(res.stdout.split()[0])
    # The release after the child's close reaches the daemon after close
    # returned: wait for its "write" row.
    wait_for(lambda: any(r["kind"] == "write" and r["path"] == "w/a"
                         for r in log_json(mnt)), timeout=10)
    rows = [r for r in log_json(mnt) if r["comm"] == "histwriter"]
    assert rows, log_json(mnt)
    for r in rows:
        assert (r["uid"], r["gid"], r["pid"]) == (NOBODY, NOBODY, pid), r
        assert r["state"] == "done", r
    got = [(r["kind"], r["path"], r["path2"]) for r in rows if r["kind"] != "write"]
    want = [("create", "w/a", None), ("mkdir", "w/sub", None),
            ("rename", "w/a", "w/sub/b"), ("link", "w/sub/b", "w/c"),
            ("unlink", "w/c", None), ("chmod", "w/sub/b", None),
            ("utimes", "w/sub/b", None), ("setxattr", "w/sub/b", "user.note"),
            ("removexattr", "w/sub/b", "user.note"), ("truncate", "w/sub/b", None),
            ("symlink", "w/l", "sub/b"), ("mkdir", "w/gone", None),
            ("rmdir", "w/gone", None)]
    # The kernel may add calls of its own (an open for writing before a
    # truncate); what the child did is there, in its order.
    it = iter(got)
    missing = [w for w in want if w not in it]
    assert not missing, "missing %s in %s" % (missing, got)
    writes = [r for r in rows if r["kind"] == "write"]
    assert [r["path"] for r in writes][:1] == ["w/a"], rows
    # The test's own mkdir and chown: root, and this process's command.
    mine = [r for r in log_json(mnt) if r["path"] == "w" and r["kind"] in ("mkdir", "chown")]
    assert [r["kind"] for r in mine] == ["mkdir", "chown"]
    assert all(r["uid"] == 0 and r["pid"] == os.getpid() for r in mine), mine
    # PATH and --since narrow it; the text form has a line per row.
    sub = log_json(mnt, os.path.join(mnt, "w", "sub"))
    assert sub and all(r["path"].startswith("w/sub") or
                       (r["path2"] or "").startswith("w/sub") for r in sub), sub
    assert len(log_json(mnt, "w/sub")) == len(sub)
    text = cli("log", mnt)
    assert text.returncode == 0 and len(text.stdout.splitlines()) == len(log_json(mnt))


def test_kill_9_during_a_workload_leaves_everything_in_source_in_the_journal(hist):
    src, mnt, hdir, m = hist
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(r"""
        import os, sys
        d = sys.argv[1]
        i = 0
        while True:
            try:
                sub = os.path.join(d, "d%d" % (i // 10))
                if i % 10 == 0:
                    os.mkdir(sub)
                f = os.path.join(sub, "f%d" % i)
                with open(f, "w") as fh:
                    fh.write("x" * i)
                if i % 3 == 0:
                    os.rename(f, os.path.join(sub, "r%d" % i))
                if i % 7 == 0:
                    os.chmod(sub, 0o750)
            except OSError:
                break
            i += 1
        """), mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Kill once the workload is well under way (no timing: a count).
        wait_for(lambda: len(os.listdir(src)) >= 20, timeout=60)
        os.kill(m.pid, signal.SIGKILL)
        writer.wait(timeout=60)
    finally:
        # The daemon first: a writer waiting on a request of a daemon that
        # never finishes dying (over io_uring a killed daemon's thread can
        # stay in the kernel) waits uninterruptibly until m.kill() aborts
        # the connection; waiting for the writer first hung the whole run.
        if writer.poll() is None:
            writer.kill()
        m.kill()
        writer.wait()
    made = set()
    for kind, path, path2 in history_rows(hdir, "SELECT kind, path, path2 FROM changes"):
        if kind in ("create", "mkdir", "mknod", "symlink"):
            made.add(path)
        elif kind in ("rename", "link"):
            made.add(path2)
    present = []
    for d, dirs, files in os.walk(src):
        for n in dirs + files:
            present.append(os.path.relpath(os.path.join(d, n), src))
    assert len(present) >= 20
    missing = sorted(p for p in present if p not in made)
    assert not missing, "in SOURCE but not in the journal: %s" % missing
    # Each file's content got there after an open for writing in the journal.
    opened = {p for (p,) in history_rows(hdir, "SELECT path FROM changes WHERE kind IN"
                                    " ('create', 'open-write', 'truncate')")}
    renamed = dict(history_rows(hdir, "SELECT path2, path FROM changes WHERE kind = 'rename'"))
    for p in present:
        if os.path.isfile(os.path.join(src, p)) and os.path.getsize(os.path.join(src, p)):
            assert p in opened or renamed.get(p) in opened, p
    # The next mount with DIR settles what the dead daemon never finished:
    # done where the tree shows it made, else interrupted; none unknown.
    unknown = history_rows(hdir, "SELECT count(*) FROM changes WHERE state = 0")[0][0]
    m2 = Mount(src, mnt, ["--history", hdir]).start()
    try:
        states = [r["state"] for r in log_json(mnt)]
        assert "unknown" not in states, states
        assert states.count("interrupted") <= unknown, (states, unknown)
    finally:
        m2.stop()
        m2.cleanup()
    m2.check_clean_exit()


def test_every_change_is_in_the_database_when_its_call_returns(hist):
    """The daemon's connection keeps its read transaction between commits
    (history_db.c, hold): another connection still reads each change's row
    as soon as the change's system call returned, also across the WAL's
    checkpoints (1,000 pages), and a write by another connection in between
    does not make the next change fail."""
    src, mnt, hdir, m = hist
    for i in range(1200):  # one commit each: past the first checkpoint
        os.mkdir(os.path.join(mnt, "d%d" % i))
        if i % 150 == 0 or i == 1199:
            got = history_rows(hdir, "SELECT path FROM changes WHERE kind = 'mkdir'"
                                     " ORDER BY seq")
            assert [p for (p,) in got] == ["d%d" % j for j in range(i + 1)]
    db = sqlite3.connect(os.path.join(hdir, "history.db"), timeout=10)
    try:
        db.execute("INSERT OR REPLACE INTO meta VALUES('another-writer', 'x')")
        db.commit()
    finally:
        db.close()
    os.mkdir(os.path.join(mnt, "after"))
    with open(os.path.join(mnt, "after", "f"), "w") as f:
        f.write("x")
    assert history_rows(hdir, "SELECT kind, path FROM changes WHERE path LIKE 'after%'"
                              " AND kind != 'write' ORDER BY seq") == [
        ("mkdir", "after"), ("create", "after/f")]
    rows = log_json(mnt)
    assert len(rows) == 1200 + 3, rows[-5:]
    assert all(r["state"] == "done" for r in rows), [r for r in rows if r["state"] != "done"]


def test_a_snapshot_saves_the_previous_version_before_a_change(hist):
    src, mnt, hdir, m = hist
    f, g = os.path.join(mnt, "f"), os.path.join(mnt, "g")
    with open(f, "w") as fh:
        fh.write("version one")
    with open(g, "w") as fh:
        fh.write("to be removed")
    r = cli("snapshot", mnt, "--name", "s1", "--pin")
    assert r.returncode == 0, r.stderr
    with open(f, "w") as fh:      # truncates: the first change after s1
        fh.write("version two")
    with open(f, "a") as fh:      # not saved again under s1
        fh.write("!")
    os.unlink(g)
    assert open(os.path.join(src, "f")).read() == "version two!"
    rows = history_rows(hdir, "SELECT v.path, v.file FROM versions v JOIN snapshots s"
                   " ON v.snap = s.id WHERE s.name = 's1' ORDER BY v.rowid")
    assert [p for p, _ in rows] == ["f", "g"], rows
    saved = {p: open(os.path.join(hdir, "versions", file)).read() for p, file in rows}
    assert saved == {"f": "version one", "g": "to be removed"}
    # A second snapshot saves the version as it is then.
    assert cli("snapshot", mnt, "--name", "s2").returncode == 0
    os.truncate(f, 0)
    rows = history_rows(hdir, "SELECT v.file FROM versions v JOIN snapshots s ON v.snap = s.id"
                   " WHERE s.name = 's2' AND v.path = 'f'")
    assert len(rows) == 1
    assert open(os.path.join(hdir, "versions", rows[0][0])).read() == "version two!"
    snaps = json.loads(cli("snapshots", mnt, "--json").stdout)
    assert [(s["name"], s["pinned"], s["versions"]) for s in snaps] == [
        ("s1", True, 2), ("s2", False, 1)]
    # A name is taken once; --since a snapshot shows what came after it.
    r = cli("snapshot", mnt, "--name", "s1")
    assert_one_error_line(r, "a snapshot name taken twice")
    after = log_json(mnt, "--since", "s2")
    # (truncate(2) reaches the daemon as an open for writing, then a truncate)
    assert ("truncate", "f") in [(x["kind"], x["path"]) for x in after], after
    assert {x["path"] for x in after} == {"f"}, after


def test_history_is_refused_where_it_does_not_work_yet(workdir, trees):
    src, mnt = trees
    for extra in (["--mirror", os.path.join(workdir, "m")],):
        r = cli("mount", "--history", os.path.join(workdir, "h"), *extra, src, mnt)
        assert_one_error_line(r, "--history with %s" % extra[0])
    r = cli("mount", "--history", os.path.join(src, "h"), src, mnt)
    assert_one_error_line(r, "--history inside SOURCE")
    assert not os.path.exists(os.path.join(src, "h"))
    assert not os.path.ismount(mnt)


def test_a_history_belongs_to_one_mount_and_one_source(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "h")
    other, mnt2 = os.path.join(workdir, "other"), os.path.join(workdir, "mnt2")
    os.mkdir(other)
    os.mkdir(mnt2)
    mounter(src, mnt, "--history", hdir)
    r = cli("mount", "--history", hdir, src, mnt2)
    assert_one_error_line(r, "a history used by another mount")
    assert "another mount" in r.stderr
    assert cli("unmount", mnt).returncode == 0
    r = cli("mount", "--history", hdir, other, mnt2)
    assert_one_error_line(r, "the history of another source")
    assert not os.path.ismount(mnt2)
    r = cli("mount", "--history", hdir, src, mnt2)
    assert r.returncode == 0, r.stderr
    assert cli("unmount", mnt2).returncode == 0


def test_log_of_a_mount_without_history_says_so(trees, mounter):
    src, mnt = trees
    mounter(src, mnt)
    assert_one_error_line(cli("log", mnt), "log without --history")
    assert_one_error_line(cli("snapshot", mnt), "snapshot without --history")


def test_a_change_that_cannot_be_recorded_is_not_made(workdir, trees, mounter):
    # DIR on a full filesystem: the journal cannot grow, so the change
    # fails with its error and SOURCE is left as it was; with room again,
    # changes are recorded and made.
    src, mnt = trees
    small = os.path.join(workdir, "small")
    os.mkdir(small)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", small], check=True)
    try:
        hdir = os.path.join(small, "h")
        mounter(src, mnt, "--history", hdir)
        fill = os.path.join(small, "fill")
        fd = os.open(fill, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(OSError) as e:
            os.mkdir(os.path.join(mnt, "d"))
        assert e.value.errno == errno.ENOSPC
        assert os.listdir(src) == []
        os.unlink(fill)
        os.mkdir(os.path.join(mnt, "d"))
        assert os.path.isdir(os.path.join(src, "d"))
        assert [(r["kind"], r["path"], r["state"]) for r in log_json(mnt)][-1:] == [
            ("mkdir", "d", "done")]
        cli("unmount", mnt)
    finally:
        subprocess.run(["umount", "-l", small])


def test_bad_usage_of_the_history_commands_is_one_line(hist):
    src, mnt, hdir, m = hist
    for args, code in ((["log"], 2), (["log", mnt, "--since", "no-such-snapshot"], 1),
                       (["log", mnt, "--frob"], 2), (["snapshot", mnt, "--name", ""], 2),
                       (["snapshot", mnt, "--name"], 2), (["snapshots", mnt, "x"], 2)):
        r = cli(*args)
        assert_one_error_line(r, " ".join(args))
        assert r.returncode == code, (args, r.returncode, r.stderr)
    assert history_rows(hdir, "SELECT count(*) FROM snapshots")[0][0] == 0
