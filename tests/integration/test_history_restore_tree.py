"""History (issue 17 item 6): prismfs restore of a directory subtree, of a
symlink, of a path made since the snapshot, and of everything, each path
atomically. The expected trees are cp -a copies of SOURCE made when the
test takes each snapshot (real files, never prismfs's answers); a reader
running during a restore sees the old tree or the restored one, never a
mix; the automatic pre-restore snapshot undoes it; a restore killed with
SIGKILL leaves the old or the new tree plus a temporary that the next
restore removes."""
import os
import signal
import stat
import subprocess
import threading
import time

import pytest

from prism_helpers import PRISMFS, assert_one_error_line, cli

TMP = ".prismfs-restore."


def record(root):
    """{rel: (type, mode, uid, gid, content or target, mtime_ns)}; not a
    directory's mtime: the history keeps none (docs/HISTORY.md, Browse)."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, st.st_uid, st.st_gid, os.readlink(p), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, None, None)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("f", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, f.read(),
                                st.st_mtime_ns)
    return out


def same(got, want):
    assert sorted(got) == sorted(want), sorted(set(got) ^ set(want))
    for k in want:
        assert got[k] == want[k], (k, got[k], want[k])


def write(p, data, mode="wb"):
    with open(p, mode) as f:
        f.write(data)


def copy(workdir, path, name):
    """cp -a of a real path (SOURCE), recorded."""
    dest = os.path.join(workdir, "copy-" + name)
    r = subprocess.run(["cp", "-a", path, dest], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return record(dest) if os.path.isdir(dest) and not os.path.islink(dest) else dest


def snap(mnt, name):
    r = cli("snapshot", mnt, "--name", name)
    assert r.returncode == 0, r.stderr


def undo_name(r):
    for line in r.stdout.splitlines():
        if line.startswith("took snapshot before-restore-"):
            return line.split()[2]
    raise AssertionError(r.stdout)


def no_temporaries(root):
    for d, dirs, files in os.walk(root):
        assert not [n for n in dirs + files if n.startswith(TMP)], (d, dirs + files)


@pytest.fixture
def hist(workdir, trees, mounter):
    src, mnt = trees
    mounter(src, mnt, "--history", os.path.join(workdir, "hist"))
    return src, mnt


def make_tree(p):
    os.makedirs(p("proj", "sub", "deep"))
    os.makedirs(p("proj", "empty"))
    for rel, data in [("a", b"alpha"), ("b", b"bravo\n" * 1000), ("sub/c", b"charlie"),
                      ("sub/deep/d", b"delta"), ("sub/ren", b"renamed later"),
                      ("gone", b"deleted later")]:
        write(p("proj", rel), data)
    os.chmod(p("proj", "a"), 0o600)
    os.chmod(p("proj", "sub"), 0o751)
    os.chmod(p("proj", "sub", "deep", "d"), 0o755)
    os.symlink("sub/c", p("proj", "link"))
    os.symlink("nowhere", p("proj", "dangling"))
    os.utime(p("proj", "a"), ns=(1_400_000_000_111_111_111,) * 2)
    os.utime(p("proj", "sub", "deep"), ns=(1_300_000_000_222_222_222,) * 2)


def change_tree(p):
    write(p("proj", "a"), b"edited, longer than before")
    os.chmod(p("proj", "a"), 0o644)
    os.truncate(p("proj", "b"), 10)
    os.unlink(p("proj", "gone"))
    os.rename(p("proj", "sub", "ren"), p("proj", "renamed"))
    os.rename(p("proj", "sub", "deep"), p("proj", "deep-moved"))
    write(p("proj", "deep-moved", "new-in-moved"), b"new")
    os.rmdir(p("proj", "empty"))
    os.makedirs(p("proj", "added", "x"))
    write(p("proj", "added", "x", "f"), b"added file")
    os.unlink(p("proj", "link"))
    os.symlink("renamed", p("proj", "link"))
    os.chmod(p("proj", "sub"), 0o700)


def test_subtree_restore_is_the_snapshot_and_undoes(workdir, hist):
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    make_tree(p)
    write(p("outside"), b"not under proj")
    snap(mnt, "s1")
    at_s1 = copy(workdir, os.path.join(src, "proj"), "s1")
    change_tree(p)
    write(p("outside"), b"changed outside proj")
    changed = copy(workdir, os.path.join(src, "proj"), "changed")

    r = cli("restore", mnt, "s1", p("proj"))
    assert r.returncode == 0, r.stderr
    same(record(p("proj")), at_s1)                     # through the mount
    same(record(os.path.join(src, "proj")), at_s1)     # and in SOURCE
    assert open(p("outside"), "rb").read() == b"changed outside proj"
    no_temporaries(mnt)
    # the restore is journaled: its exchange is a rename by prismfs
    r2 = cli("log", mnt, "--since", "s1")
    assert r2.returncode == 0 and "proj" in r2.stdout, r2.stdout

    # undo: the snapshot taken just before gives back the changed tree
    r = cli("restore", mnt, undo_name(r), "proj")
    assert r.returncode == 0, r.stderr
    same(record(p("proj")), changed)
    no_temporaries(mnt)


def test_reader_sees_the_old_or_the_restored_tree_never_a_mix(workdir, hist):
    """The reader opens the directory once per round (the one lookup of
    PATH) and reads everything beneath relative to it: every file and the
    marker must be of one generation. The tree it opened before the
    exchange is removed afterwards, so that round may see fewer of the old
    files (never a new one); a round on the restored tree sees all of it."""
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("proj", "d1", "d2"))
    names = ["MARKER"] + ["f%03d" % i for i in range(60)] + \
        ["d1/g%02d" % i for i in range(20)] + ["d1/d2/h%02d" % i for i in range(20)]
    for n in names:
        write(p("proj", n), b"gen-A")
    snap(mnt, "s1")
    want_a = record(os.path.join(src, "proj"))
    for n in names:
        write(p("proj", n), b"gen-B")
    for i in range(10):
        write(p("proj", "extra%d" % i), b"gen-B")

    rounds, errors, stop = [], [], threading.Event()

    def one_round():
        fd = os.open(p("proj"), os.O_RDONLY | os.O_DIRECTORY)
        seen = {}
        try:
            for d, _dirs, files, dfd in os.fwalk(".", dir_fd=fd):
                for n in files:
                    try:
                        f = os.open(n, os.O_RDONLY, dir_fd=dfd)
                    except FileNotFoundError:
                        continue  # the old tree being removed
                    with os.fdopen(f, "rb") as fo:
                        seen[os.path.normpath(os.path.join(d, n))] = fo.read()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
        return seen

    def reader():
        try:
            while not stop.is_set():
                rounds.append(one_round())
        except Exception as e:  # reported by the test, not lost
            errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        while not rounds and t.is_alive():
            time.sleep(0.01)
        r = cli("restore", mnt, "s1", "proj")
        n = len(rounds)
        while len(rounds) <= n + 1 and t.is_alive():
            time.sleep(0.01)
    finally:
        stop.set()
        t.join()
    assert r.returncode == 0, r.stderr
    assert not errors, errors
    gens = []
    for seen in rounds:
        values = set(seen.values())
        assert len(values) <= 1, ("a mix", sorted(values))
        gens.append(values.pop() if values else None)
        if gens[-1] == b"gen-A":
            assert sorted(seen) == sorted(k for k, v in want_a.items() if v[0] == "f")
        if gens[-1] == b"gen-A" or "MARKER" in seen:
            assert seen.get("MARKER") == gens[-1]
    assert gens[0] == b"gen-B" and gens[-1] == b"gen-A", gens
    # once restored, no round goes back to the old tree
    first_a = gens.index(b"gen-A")
    assert all(g == b"gen-A" for g in gens[first_a:]), gens
    same(record(p("proj")), want_a)


def test_symlinks_and_paths_made_since(workdir, hist):
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    write(p("target-a"), b"a")
    write(p("target-b"), b"b")
    os.symlink("target-a", p("link"))
    os.symlink("target-a", p("link-deleted"))
    write(p("file-then-dir"), b"a file at s1")
    snap(mnt, "s1")
    link_at_s1 = os.lstat(os.path.join(src, "link"))
    fd_copy = copy(workdir, os.path.join(src, "file-then-dir"), "ftd")
    os.unlink(p("link"))
    os.symlink("target-b", p("link"))
    os.unlink(p("link-deleted"))
    os.unlink(p("file-then-dir"))
    os.makedirs(p("file-then-dir", "x"))
    os.makedirs(p("made-since", "sub"))
    write(p("made-since", "sub", "f"), b"new")

    r = cli("restore", mnt, "s1", "link", "link-deleted", "file-then-dir", "made-since")
    assert r.returncode == 0, r.stderr
    assert os.readlink(p("link")) == "target-a"
    assert os.lstat(p("link")).st_mtime_ns == link_at_s1.st_mtime_ns
    assert os.readlink(p("link-deleted")) == "target-a"
    assert open(p("file-then-dir"), "rb").read() == open(fd_copy, "rb").read()
    assert stat.S_IMODE(os.stat(p("file-then-dir")).st_mode) == \
        stat.S_IMODE(os.stat(fd_copy).st_mode)
    assert not os.path.lexists(p("made-since"))
    assert "removed made-since" in r.stdout, r.stdout
    no_temporaries(mnt)
    # a path there neither then nor now: one line, nothing done
    r = cli("restore", mnt, "s1", "never")
    assert_one_error_line(r, "restore of a path that never was")
    assert r.returncode == 1 and "never" in r.stderr


@pytest.mark.parametrize("how", [[], ["/"]])
def test_restore_everything(workdir, hist, how):
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    make_tree(p)
    write(p("top"), b"top file")
    os.symlink("proj/a", p("toplink"))
    os.mkdir(p("topdir"))
    snap(mnt, "s1")
    at_s1 = copy(workdir, src, "s1")
    change_tree(p)
    os.unlink(p("top"))
    os.unlink(p("toplink"))
    os.rmdir(p("topdir"))
    write(p("toplink"), b"a file where a symlink was")
    os.makedirs(p("newtop", "x"))
    write(p("newfile"), b"new")

    r = cli("restore", mnt, "s1", *[p(x) for x in how])
    assert r.returncode == 0, r.stderr
    assert "the root as a whole not" in r.stdout, r.stdout
    same(record(mnt), at_s1)
    same(record(src), at_s1)
    assert os.path.isdir(p(".history", "s1"))           # the past is left alone
    no_temporaries(mnt)


def kill_midway_env(step):
    env = dict(os.environ)
    env["PRISMFS_TEST_CRASH"] = step
    return env


@pytest.mark.parametrize("step,restored", [("restore-built", False),
                                           ("restore-exchanged", True)])
def test_killed_restore_leaves_old_or_new_and_is_swept(workdir, hist, step, restored):
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    make_tree(p)
    snap(mnt, "s1")
    at_s1 = copy(workdir, os.path.join(src, "proj"), "s1")
    change_tree(p)
    changed = copy(workdir, os.path.join(src, "proj"), "changed")

    r = cli("restore", mnt, "s1", "proj", env=kill_midway_env(step))
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    same(record(p("proj")), at_s1 if restored else changed)
    left = [n for n in os.listdir(mnt) if n.startswith(TMP)]
    assert len(left) == 1, os.listdir(mnt)
    same(record(p(left[0])), changed if restored else at_s1)

    r = cli("restore", mnt, "s1", "proj")
    assert r.returncode == 0, r.stderr
    assert "left by an interrupted restore" in r.stdout, r.stdout
    same(record(p("proj")), at_s1)
    no_temporaries(mnt)


def test_kill_9_from_outside_midway(workdir, hist):
    """A real kill -9 at an arbitrary point of a restore of many files."""
    src, mnt = hist
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("proj", "d"))
    for i in range(400):
        write(p("proj", "d", "f%03d" % i), b"old %d\n" % i * 50)
    snap(mnt, "s1")
    at_s1 = copy(workdir, os.path.join(src, "proj"), "s1")
    for i in range(0, 400, 2):
        os.unlink(p("proj", "d", "f%03d" % i))
    write(p("proj", "new"), b"new")
    changed = copy(workdir, os.path.join(src, "proj"), "changed")

    proc = subprocess.Popen([PRISMFS, "restore", mnt, "s1", "proj"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        # wait until the temporary holds part of the copy, then kill
        while proc.poll() is None:
            left = [n for n in os.listdir(mnt) if n.startswith(TMP)]
            if left and os.path.isdir(p(left[0], "d")) and len(os.listdir(p(left[0], "d"))) > 50:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    got = record(p("proj"))
    assert got in (at_s1, changed), sorted(set(got) ^ set(at_s1))
    r = cli("restore", mnt, "s1", "proj")
    assert r.returncode == 0, r.stderr
    same(record(p("proj")), at_s1)
    no_temporaries(mnt)
