"""History (issue 17 item 7): pruning and files with hard links. "Pinned
snapshots are never pruned; pruning never deletes the last copy of a
version that is kept": every kept snapshot reads back as it was when
taken, through every name of a file (POSIX link(2): the names are one
file, a change through one is a change of all). The test records each
snapshot's tree by reading SOURCE when it takes it, makes changes that
reach a file through a name that another object had before (so the
version of the file and the versions of that name tell different
stories), prunes, and reads each kept snapshot back under .history, by
prismfs export, and (the same) after a kill -9 in the middle of the
prune."""
import os
import subprocess

import pytest

from conftest import Mount
from prism_helpers import cli, history_rows, wait_for
from test_history_browse import record, same, write


def snap(mnt, name, records, src, pin=False):
    r = cli("snapshot", mnt, "--name", name, *(["--pin"] if pin else []))
    assert r.returncode == 0, r.stderr
    records[name] = record(src)


def build(mnt, src, remount):
    """Snapshots s1 (pinned) .. s4; returns {name: record of SOURCE}.
    remount() mounts again: the daemon then meets a file first by the
    name a change goes through next, the name its rows are under."""
    p = lambda *x: os.path.join(mnt, *x)
    records = {}
    write(p("a"), b"a's own file at s1")
    write(p("b"), b"b and c at s1")
    os.link(p("b"), p("c"))
    write(p("x"), b"x's own file at s1")
    write(p("y"), b"y and z at s1")
    os.link(p("y"), p("z"))
    write(p("f"), b"f at s1")
    snap(mnt, "s1", records, src, pin=True)
    # a: the name of another file, then of b's: the change through a is
    # b's (and c's) first since s1, saved under s1 after a's own past.
    os.unlink(p("a"))
    os.link(p("b"), p("a"))
    remount()
    write(p("a"), b"rewritten through a")
    write(p("f"), b"f at s2")
    snap(mnt, "s2", records, src)
    os.unlink(p("x"))                   # x's own past, saved under s2
    os.link(p("y"), p("x"))
    write(p("f"), b"f at s3")
    snap(mnt, "s3", records, src)
    remount()
    write(p("x"), b"rewritten through x")  # y's and z's first since s1
    write(p("f"), b"f at s4")
    snap(mnt, "s4", records, src)
    write(p("f"), b"f now")
    return records


def check(mnt, workdir, records, kept):
    for name in kept:
        same(record(os.path.join(mnt, ".history", name)), records[name])
        out = os.path.join(workdir, name + ".tar")
        r = cli("export", mnt, name, "-o", out)
        assert r.returncode == 0, r.stderr
        dest = os.path.join(workdir, "x-" + name)
        subprocess.run(["rm", "-rf", dest], check=True)
        os.makedirs(dest)
        subprocess.run(["tar", "-x", "-f", out, "-C", dest], check=True, timeout=60)
        got = record(dest)
        assert sorted(got) == sorted(records[name])
        for k, want in records[name].items():
            assert got[k][5] == want[5], (name, k, got[k][5], want[5])


def consistent(hdir):
    """Every saved version a row names is there, and nothing else is."""
    named = {f for (f,) in history_rows(hdir, "SELECT file FROM versions WHERE file IS NOT NULL")}
    there = set(os.listdir(os.path.join(hdir, "versions")))
    assert named == there, (sorted(named - there), sorted(there - named))


def test_prune_keeps_what_every_name_of_a_kept_snapshot_needs(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    ms = [mounter(src, mnt, "--history", hdir)]

    def remount():
        ms[-1].stop()
        ms.append(mounter(src, mnt, "--history", hdir))

    records = build(mnt, src, remount)
    # no --keep: every manual snapshot stays; the versions none needs go
    r = cli("prune", mnt)
    assert r.returncode == 0, r.stderr
    check(mnt, workdir, records, ["s1", "s2", "s3", "s4"])
    # s2 and s3 go; s1 (pinned) and s4 (the newest) stay
    r = cli("prune", mnt, "--keep", "manual=1")
    assert r.returncode == 0, r.stderr
    assert [n for (n,) in history_rows(hdir, "SELECT name FROM snapshots ORDER BY id")] == \
        ["s1", "s4"]
    check(mnt, workdir, records, ["s1", "s4"])
    consistent(hdir)
    # a restore of a kept snapshot by name still takes each name's own past
    r = cli("restore", mnt, "s1", os.path.join(mnt, "a"), os.path.join(mnt, "x"))
    assert r.returncode == 0, r.stderr
    for n in ("a", "x"):
        with open(os.path.join(mnt, n), "rb") as f:
            assert f.read() == records["s1"][n][5]
    # nothing cached: the same after a remount
    remount()
    for n in ("b", "c", "y", "z"):
        same({n: record(os.path.join(mnt, ".history", "s1"))[n]}, {n: records["s1"][n]})


@pytest.mark.parametrize("point", ["prune-before-commit", "prune-committed",
                                   "prune-committed:2"])
def test_kill_9_during_a_prune_keeps_every_name(workdir, trees, mounter, point):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    env = {"PRISMFS_TEST_CRASH": point}
    ms = [Mount(src, mnt, ["--history", hdir], env=env).start()]

    def remount():
        ms[-1].stop()
        ms[-1].cleanup()
        ms.append(Mount(src, mnt, ["--history", hdir], env=env).start())

    try:
        records = build(mnt, src, remount)
        r = cli("prune", mnt, "--keep", "manual=1")
        assert r.returncode != 0  # the daemon died answering
        wait_for(lambda: ms[-1].proc.poll() is not None, timeout=30)
        assert ms[-1].proc.poll() is not None, "the crash point was not reached"
    finally:
        ms[-1].kill()
        ms[-1].cleanup()
    m2 = mounter(src, mnt, "--history", hdir)
    kept = [n for (n,) in history_rows(hdir, "SELECT name FROM snapshots ORDER BY id")]
    assert kept == (["s1", "s2", "s3", "s4"] if point == "prune-before-commit"
                    else ["s1", "s4"])
    consistent(hdir)  # the next start swept what the kill left
    check(mnt, workdir, records, kept)
    r = cli("prune", mnt, "--keep", "manual=1")
    assert r.returncode == 0, r.stderr
    check(mnt, workdir, records, ["s1", "s4"])
    consistent(hdir)
    m2.stop()
    m2.check_clean_exit()
