"""An in-place commit killed at any moment, then resumed in any of the three
ways (the next mount of the same upper, the same commit again, prismfs
recover), leaves the lower equal to the view that was committed.

The uppers are made by the kernel (mount -t overlay) with what makes a
re-apply dangerous: opaque directories (removed and made again through the
mount, one nested in a merged directory), whiteouts of files and trees,
hard-link groups (new ones spanning an opaque directory, one split off a
lower pair, a new name for a lower file), renames of files and of a
directory (copied, as mv does without redirect_dir), type changes.

Kills are real: PRISMFS_TEST_CRASH=<step>:<N> makes the commit SIGKILL
itself the Nth time it reaches a step, at every step of every phase
(applying, making durable, emptying the upper); and a timed SIGKILL from
outside lands at random moments of a larger commit.  The commit is started
offline, by `prismfs unmount --action commit` and by `--on-unmount commit`.
After the resume the lower must be exactly the recorded view (type, mode,
owner, times, content, symlink targets, xattrs, hard-link groups) and the
upper empty; or, where the kill came before anything was applied, the lower
untouched and the upper whole, which the commit then completes.
"""
import os
import random
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import PASSTHROUGH, PRISMFS, force_unmount, is_mounted
from prism_helpers import assert_one_error_line, cli, wait_for
from test_commit import (Layers, assert_clean_lower, assert_empty, assert_same_tree,
                         check_no_sanitizer, env_with, run, snapshot, strip_ino, umount_all,
                         write, PRIVATE_XATTR)

MARK = "prismfs.commit"


@pytest.fixture
def lay(workdir):
    base = os.path.join(workdir, "layers")
    os.makedirs(base)
    lay = Layers(base)
    lay.mounts = []
    try:
        yield lay
    finally:
        for mp in lay.mounts:
            if is_mounted(mp):
                subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        umount_all(workdir)
        subprocess.run(["rm", "-rf", base])


@pytest.fixture
def tmpfs_lay(workdir):
    """Layers on a tmpfs: fsync costs nothing, so a big commit is quick."""
    base = os.path.join(workdir, "t")
    os.makedirs(base)
    run("mount", "-t", "tmpfs", "-o", "size=512m", "tmpfs", base)
    try:
        yield base
    finally:
        umount_all(workdir)


# --------------------------------------------------------------------------
# the tree

def populate(L):
    def w(rel, data=b"", mode=0o644):
        write(os.path.join(L, rel), data)
        os.chmod(os.path.join(L, rel), mode)

    w("keep.txt", b"untouched\n")
    w("modify.txt", b"old content\n")
    w("chmod.txt", b"chmod only\n")
    for i in range(4):
        w("opaque/old%d.txt" % i, b"gone after rmdir+mkdir %d\n" % i)
    w("opaque/sub/old.txt", b"gone too\n")
    w("merged/lower.txt", b"stays\n")
    w("merged/inner/old.txt", b"gone: inner is made again\n")
    w("del.txt", b"deleted\n")
    w("deltree/a/b.txt", b"deleted tree\n")
    w("rename-me.txt", b"renamed\n")
    w("movedir/f1.txt", b"moved dir 1\n")
    w("movedir/sub/f2.txt", b"moved dir 2\n")
    w("pair-a.txt", b"a lower pair, one side chmodded\n")
    os.link(os.path.join(L, "pair-a.txt"), os.path.join(L, "pair-b.txt"))
    w("link-to-lower.txt", b"gets a second name\n")
    os.symlink("keep.txt", os.path.join(L, "sym"))
    w("file-to-dir", b"becomes a directory\n")
    w("dir-to-file/x.txt", b"x\n")


def change(M):
    def p(*x):
        return os.path.join(M, *x)

    with open(p("modify.txt"), "ab") as f:
        f.write(b"appended\n")
    os.chmod(p("chmod.txt"), 0o600)
    shutil.rmtree(p("opaque"))
    os.makedirs(p("opaque/sub"))
    for i in range(6):
        write(p("opaque/new%d.txt" % i), b"new child %d\n" % i)
    write(p("opaque/sub/deeper.txt"), b"new deeper\n")
    shutil.rmtree(p("merged/inner"))
    os.makedirs(p("merged/inner"))
    write(p("merged/inner/fresh.txt"), b"fresh\n")
    write(p("merged/upper.txt"), b"added to a merged dir\n")
    os.unlink(p("del.txt"))
    shutil.rmtree(p("deltree"))
    os.rename(p("rename-me.txt"), p("renamed.txt"))
    shutil.move(p("movedir"), p("moved"))  # EXDEV without redirect_dir: copied
    os.chmod(p("pair-b.txt"), 0o640)
    os.makedirs(p("newdir"))
    write(p("hl-1.txt"), b"a new hard-link group\n")
    os.link(p("hl-1.txt"), p("newdir/hl-2.txt"))
    os.link(p("hl-1.txt"), p("opaque/hl-3.txt"))
    os.link(p("link-to-lower.txt"), p("newdir/second-name.txt"))
    os.unlink(p("sym"))
    os.symlink("modify.txt", p("sym"))
    os.unlink(p("file-to-dir"))
    os.makedirs(p("file-to-dir/inside"))
    write(p("file-to-dir/inside/f.txt"), b"in a dir that was a file\n")
    shutil.rmtree(p("dir-to-file"))
    write(p("dir-to-file"), b"was a directory\n")


def kernel_upper(lay, populate=populate, change=change):
    """(the lower before, what the overlay showed, the raw upper)."""
    populate(lay.L)
    before = snapshot(lay.L)
    lay.mount("redirect_dir=off")
    try:
        change(lay.M)
        merged = snapshot(lay.M)
    finally:
        lay.umount()
    return before, merged, raw_upper(lay)


def raw_upper(lay):
    """The upper as it is on disk, without the commit's own mark."""
    snap = snapshot(lay.U, private=True)
    for e in snap["entries"].values():
        for x in [x for x in e["xattrs"] if x.endswith("overlay." + MARK)]:
            del e["xattrs"][x]
    return snap


def marked(path):
    return [x for x in os.listxattr(path) if x.startswith(PRIVATE_XATTR) and
            x.endswith(MARK)]


def view_of(snap):
    """What a mount shows that this test compares: type, mode, content,
    symlink targets, hard-link groups."""
    keep = ("type", "mode", "size", "sha256", "target", "rdev")
    return {"entries": {k: {f: e[f] for f in keep if f in e}
                        for k, e in snap["entries"].items()},
            "links": snap["links"]}


# --------------------------------------------------------------------------
# counting where the steps are

def upper_counts(U, W):
    """How many times each repeated step is reached for this upper."""
    n = {"inplace-whiteout": 0, "inplace-file": 0, "inplace-dir": 1,
         "inplace-dropped": 0, "inplace-emptying": 0}
    todo = [(U, False)]
    while todo:
        d, replaced = todo.pop()
        for name in os.listdir(d):
            p = os.path.join(d, name)
            st = os.lstat(p)
            n["inplace-emptying"] += 1
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                n["inplace-whiteout"] += 1
            elif stat.S_ISDIR(st.st_mode):
                n["inplace-dir"] += 1
                opaque = any(os.getxattr(p, x, follow_symlinks=False) == b"y"
                             for x in os.listxattr(p) if x.endswith("overlay.opaque"))
                if replaced or opaque:
                    n["inplace-dropped"] += 1
                todo.append((p, replaced or opaque))
            else:
                n["inplace-file"] += 1
    for _, dirs, files in os.walk(W):
        n["inplace-emptying"] += len(dirs) + len(files)
    return n


# (step, which time it is reached: first, mid, last or once). Every step of
# every phase; the ones each phase turns on are resumed in all three ways,
# the others in one way each, in turn.
PHASE_STEPS = [
    ("inplace-journal", None),       # journal written, upper not marked yet
    ("inplace-marked", None),        # marked, nothing applied
    ("inplace-file", "mid"),         # applying
    ("inplace-synced", None),        # all applied and durable, not recorded
    ("inplace-applied", None),       # recorded: from here on only emptying
    ("inplace-emptying", "first"),
    ("inplace-emptying", "mid"),     # the opaque directory half emptied
    ("inplace-emptying", "last"),
    ("inplace-unmarked", None),      # only the journal is left
]
OTHER_STEPS = [
    ("inplace-dropped", "first"),    # an opaque directory's lower children gone
    ("inplace-dropped", "last"),
    ("inplace-whiteout", "first"),
    ("inplace-whiteout", "last"),
    ("inplace-file", "first"),
    ("inplace-file", "last"),
    ("inplace-dir", "first"),
    ("inplace-dir", "last"),         # the root's metadata applied
    ("inplace-emptied", None),       # upper and work empty, still marked
]
WAYS = ["mount", "commit", "recover"]
CASES = ([(s, w, way) for s, w in PHASE_STEPS for way in WAYS] +
         [(s, w, WAYS[i % len(WAYS)]) for i, (s, w) in enumerate(OTHER_STEPS)])


def crash_at(step, which, counts):
    if which is None:
        return step
    total = counts[step]
    assert total > 0, "the tree reaches %s no time" % step
    n = {"first": 1, "mid": (total + 1) // 2, "last": total}[which]
    return "%s:%d" % (step, n)


def killed(res, what):
    check_no_sanitizer(res)
    assert res.returncode == -signal.SIGKILL, (
        "%s: expected the commit to be killed, it exited %d: %s"
        % (what, res.returncode, res.stderr))


# --------------------------------------------------------------------------
# resuming

def mount_prismfs(lay, *extra, env=None):
    lay.mounts.append(lay.M)
    if PASSTHROUGH:
        extra += ("--passthrough", PASSTHROUGH)
    res = cli("mount", "--upper", lay.U, *extra, lay.L, lay.M, env=env, timeout=60)
    check_no_sanitizer(res)
    return res


def unmount_prismfs(lay, *extra):
    res = cli("unmount", *extra, lay.M, timeout=60)
    check_no_sanitizer(res)
    return res


def resume(lay, way, merged):
    """Resume the interrupted commit one way; return the mount's view for
    "mount" (checked by the caller), else None."""
    if way == "commit":
        res = cli("commit", "--upper", lay.U, "--lower", lay.L, timeout=120)
        check_no_sanitizer(res)
        assert res.returncode == 0, "the commit run again exited %d: %s" % (
            res.returncode, res.stderr)
        return
    if way == "recover":
        res = cli("recover", "--lower", lay.L, timeout=120)
        check_no_sanitizer(res)
        assert res.returncode == 0, "prismfs recover exited %d: %s" % (
            res.returncode, res.stderr)
        return
    was_marked = marked(lay.U)
    res = mount_prismfs(lay)
    assert res.returncode == 0, "the mount of the same upper failed: %s" % res.stderr
    if was_marked:
        assert "completed the interrupted in-place commit of %s" % lay.L in res.stderr, \
            "the mount should say it completed the commit: %r" % res.stderr
    try:
        # The mount never shows anything but the committed view.
        got = view_of(snapshot(lay.M))
        d = diff_views(view_of(merged), got)
        assert not d, "the mount after the crash shows another view:\n  " + "\n  ".join(d[:30])
    finally:
        res = unmount_prismfs(lay)
    assert res.returncode == 0, "prismfs unmount: %s" % res.stderr


def diff_views(want, got):
    from test_commit import diff
    return diff(want, got)


def without_root_times(snap):
    snap = {"entries": dict(snap["entries"]), "links": snap["links"]}
    snap["entries"]["."] = {f: v for f, v in snap["entries"]["."].items() if f != "mtime_ns"}
    return snap


def assert_resumed(lay, before, merged, raw, what, full=True, root_times=True):
    """Either the commit is complete, or (killed before anything was
    applied) nothing changed and the commit completes it. root_times False:
    the commit had ended before the kill, and a commit of the emptied upper
    gives the lower's root the empty upper root's times (test_commit.py,
    test_commit_twice_is_harmless)."""
    if full and root_times:
        cmp = assert_same_tree
    elif full:
        def cmp(w, g, m):
            assert_same_tree(without_root_times(w), without_root_times(g), m)
    else:
        def cmp(w, g, m):
            assert_same_tree(view_of(w), view_of(g), m)
    if os.listdir(lay.U):
        cmp(before, snapshot(lay.L), "%s: the upper is kept, so the lower should be "
            "untouched" % what)
        if raw is not None:
            assert_same_tree(raw, raw_upper(lay), "%s: the upper is kept but changed" % what)
        assert not marked(lay.U), "%s: the kept upper is still marked" % what
        res = cli("commit", "--upper", lay.U, "--lower", lay.L, timeout=120)
        check_no_sanitizer(res)
        assert res.returncode == 0, "%s: the commit afterwards: %s" % (what, res.stderr)
    cmp(merged, snapshot(lay.L), "%s: the lower is not the committed view" % what)
    assert_empty(lay.U, "the upper")
    assert not marked(lay.U), "%s: the emptied upper is still marked" % what
    assert_clean_lower(lay)  # the journal too


@pytest.mark.parametrize("step,which,way", CASES)
def test_inplace_killed_at_step_then_resumed(lay, step, which, way):
    before, merged, raw = kernel_upper(lay)
    counts = upper_counts(lay.U, lay.W)
    at = crash_at(step, which, counts)
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W, timeout=120,
              env=env_with(PRISMFS_TEST_CRASH=at))
    killed(res, "PRISMFS_TEST_CRASH=" + at)
    resume(lay, way, merged)
    assert_resumed(lay, strip_ino(before), merged, raw, "killed at %s, resumed by %s"
                   % (at, way))


# Killed, then killed again while resuming (the resume is the same protocol):
# (first kill, the way that is killed in turn, its kill).
TWICE = [("inplace-file:5", "recover", "inplace-emptying:6"),
         ("inplace-emptying:6", "commit", "inplace-emptying:3"),
         ("inplace-marked", "recover", "inplace-file:2"),
         ("inplace-file:5", "mount", "inplace-applied")]


@pytest.mark.parametrize("first,way,second", TWICE)
def test_inplace_killed_while_resuming(lay, first, way, second):
    before, merged, raw = kernel_upper(lay)
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W, timeout=120,
              env=env_with(PRISMFS_TEST_CRASH=first))
    killed(res, "PRISMFS_TEST_CRASH=" + first)
    env = env_with(PRISMFS_TEST_CRASH=second)
    if way == "recover":
        res = cli("recover", "--lower", lay.L, env=env, timeout=120)
    elif way == "commit":
        res = cli("commit", "--upper", lay.U, "--lower", lay.L, env=env, timeout=120)
    else:
        res = mount_prismfs(lay, env=env)
    killed(res, "the %s resuming it, PRISMFS_TEST_CRASH=%s" % (way, second))
    # Another way resumes it now.
    resume(lay, WAYS[(WAYS.index(way) + 1) % len(WAYS)], merged)
    assert_resumed(lay, strip_ino(before), merged, raw, "killed at %s, then at %s while "
                   "%s resumed it" % (first, second, way))


# --------------------------------------------------------------------------
# the commit run by the daemon at unmount

def prismfs_upper(lay, action_opt=(), env=None):
    """Populate L, change it through a prismfs mount with an upper; return
    (the lower before, the view) with the mount still up."""
    populate(lay.L)
    before = snapshot(lay.L)
    res = mount_prismfs(lay, *action_opt, env=env)
    assert res.returncode == 0, res.stderr
    change(lay.M)
    return before, snapshot(lay.M)


# One step of each phase, each resumed another way (every way is tried at
# every phase above; here it is the commit's origin that differs).
UNMOUNT_CASES = [("inplace-file:3", "mount"), ("inplace-applied", "recover"),
                 ("inplace-emptying:5", "commit"), ("inplace-emptying:9", "mount")]


@pytest.mark.parametrize("at,way", UNMOUNT_CASES)
def test_unmount_commit_killed_then_resumed(lay, at, way):
    before, view = prismfs_upper(lay, env=env_with(PRISMFS_TEST_CRASH=at))
    res = unmount_prismfs(lay, "--action", "commit")
    assert res.returncode != 0, "the daemon was not killed at %s: %s" % (at, res.stdout)
    assert wait_for(lambda: not is_mounted(lay.M), 20), "the mount is still there"
    force_unmount(lay.M)
    resume(lay, way, view)
    assert_resumed(lay, before, view, None, "unmount --action commit killed at %s, "
                   "resumed by %s" % (at, way), full=False)


@pytest.mark.parametrize("way", ["mount", "recover"])
def test_on_unmount_commit_killed_then_resumed(lay, way):
    before, view = prismfs_upper(lay, ("--on-unmount", "commit"),
                                 env=env_with(PRISMFS_TEST_CRASH="inplace-emptying:7"))
    subprocess.run(["umount", lay.M], check=True)
    # The daemon dies in its unmount action, after the kernel let go.
    assert wait_for(lambda: os.path.exists(os.path.join(
        os.path.dirname(lay.L), ".L.prismfs-inplace")) and not [
            p for p in os.listdir("/proc") if p.isdigit() and _is_daemon_of(p, lay.M)], 30), \
        "the daemon neither died nor left the journal"
    resume(lay, way, view)
    assert_resumed(lay, before, view, None, "--on-unmount commit killed while emptying, "
                   "resumed by %s" % way, full=False)


def _is_daemon_of(pid, mnt):
    try:
        with open("/proc/%s/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return bool(args) and os.path.basename(args[0]) == b"prismfs" and \
        os.fsencode(mnt) in args


# --------------------------------------------------------------------------
# an upper cut short is nobody else's

def test_upper_cut_short_is_refused_elsewhere(lay, workdir):
    """While the commit is cut short in its emptying, the upper is neither
    mounted over another lower, committed into one, nor discarded: each says
    in one line what completes it, and changes nothing."""
    before, merged, _ = kernel_upper(lay)
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W,
              env=env_with(PRISMFS_TEST_CRASH="inplace-emptying:4"))
    killed(res, "inplace-emptying:4")
    other = os.path.join(workdir, "other")
    os.makedirs(other)
    write(os.path.join(other, "o.txt"), b"other lower\n")
    left = raw_upper(lay)
    res = cli("commit", "--upper", lay.U, "--lower", other)
    assert_one_error_line(res, "commit of a cut-short upper into another lower")
    assert "prismfs recover --lower %s" % lay.L in res.stderr, res.stderr
    res = cli("discard", "--upper", lay.U)
    assert_one_error_line(res, "discard of a cut-short upper")
    assert "prismfs recover --lower %s" % lay.L in res.stderr, res.stderr
    mnt = os.path.join(workdir, "m2")
    os.makedirs(mnt)
    lay.mounts.append(mnt)
    res = cli("mount", "--upper", lay.U, other, mnt)
    assert_one_error_line(res, "mount of a cut-short upper over another lower")
    assert "prismfs recover --lower %s" % lay.L in res.stderr, res.stderr
    assert not is_mounted(mnt)
    assert_same_tree(left, raw_upper(lay), "a refusal changed the upper")
    assert os.listdir(other) == ["o.txt"]
    res = cli("recover", "--lower", lay.L)
    assert res.returncode == 0 and "completed" in res.stdout, res.stdout + res.stderr
    assert_same_tree(merged, snapshot(lay.L), "recover after the refusals")
    assert_empty(lay.U, "the upper")


def test_clean_failure_keeps_upper_unmarked(lay):
    """A failure the commit sees (not a kill) leaves no journal and no mark:
    the upper is whole and as usable as before."""
    _, merged, raw = kernel_upper(lay)
    locked = lay.l("merged")
    if subprocess.run(["chattr", "+i", locked], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        res = cli("commit", "--upper", lay.U, "--lower", lay.L)
        assert_one_error_line(res, "commit into an immutable directory")
        assert "upper is kept" in res.stderr, res.stderr
    finally:
        subprocess.run(["chattr", "-i", locked])
    assert not marked(lay.U), "a failed commit left its mark on the upper"
    assert lay.siblings() == [], "a failed commit left %s" % lay.siblings()
    assert_same_tree(raw, raw_upper(lay), "a failed commit changed the upper")
    res = cli("discard", "--upper", lay.U, "--work", lay.W)
    assert res.returncode == 0, res.stderr


# --------------------------------------------------------------------------
# timed kills from outside on a larger tree

NEW_FILES = 600


def big_populate(L):
    for i in range(40):
        write(os.path.join(L, "opaque", "old%03d.txt" % i), b"old %d\n" % i)
    for i in range(200):
        write(os.path.join(L, "gone", "g%03d.txt" % i), b"to be deleted %d\n" % i)
    write(os.path.join(L, "pair-a.txt"), b"pair\n")
    os.link(os.path.join(L, "pair-a.txt"), os.path.join(L, "pair-b.txt"))


def big_change(M):
    shutil.rmtree(os.path.join(M, "opaque"))
    os.makedirs(os.path.join(M, "opaque"))
    for i in range(NEW_FILES):
        write(os.path.join(M, "opaque", "n%05d.txt" % i), b"new %d\n" % i)
    for i in range(0, 200, 2):
        os.unlink(os.path.join(M, "gone", "g%03d.txt" % i))
    os.link(os.path.join(M, "opaque", "n00000.txt"), os.path.join(M, "hl.txt"))
    os.rename(os.path.join(M, "gone", "g001.txt"), os.path.join(M, "opaque", "moved.txt"))
    os.chmod(os.path.join(M, "pair-b.txt"), 0o600)


def when_applying(lay):
    # The lower's opaque directory has lost its old children.
    return lambda: not os.path.exists(lay.l("opaque", "old000.txt"))


def when_emptying(lay):
    # The upper's opaque directory has begun to lose its children (a tmpfs
    # directory's size counts its entries).
    full = os.stat(lay.u("opaque")).st_size

    def cond():
        try:
            return os.stat(lay.u("opaque")).st_size < full
        except FileNotFoundError:
            return True
    return cond


def busy_wait(cond, p, timeout=60):
    """Poll without sleeping: the moment is what this test is about."""
    end = time.monotonic() + timeout
    while p.poll() is None and not cond() and time.monotonic() < end:
        pass


@pytest.mark.parametrize("way", WAYS)
def test_inplace_timed_kill_then_resumed(tmpfs_lay, way):
    rnd = random.Random()
    for phase, cond in [("emptying", when_emptying), ("applying", when_applying),
                        ("any", None)]:
        base = os.path.join(tmpfs_lay, phase)
        os.makedirs(base)
        lay = Layers(base)
        lay.mounts = []
        try:
            before, merged, raw = kernel_upper(lay, big_populate, big_change)
            ready = cond(lay) if cond else None
            p = subprocess.Popen([PRISMFS, "commit",
                                  "--upper", lay.U, "--lower", lay.L, "--work", lay.W],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                if ready is None:
                    time.sleep(rnd.uniform(0, 0.2))
                else:
                    busy_wait(ready, p)
                    time.sleep(rnd.uniform(0, 0.001))
                p.send_signal(signal.SIGKILL)
            finally:
                _, err = p.communicate(timeout=60)
            assert b"Sanitizer" not in err and b"runtime error" not in err, err
            what = "timed kill (%s, exit %s), resumed by %s" % (phase, p.returncode, way)
            # Killed after the end (ASan's exit checks take a while), or not at all.
            ended = not os.listdir(lay.U) and not lay.siblings()
            resume(lay, way, merged)
            assert_resumed(lay, strip_ino(before), merged, raw, what, root_times=not ended)
        finally:
            for mp in lay.mounts:
                force_unmount(mp)
            shutil.rmtree(base, ignore_errors=True)



# --------------------------------------------------------------------------
# a user's commit: the mark goes under user.overlay.

NOBODY = 65534


def user_upper(base):
    """L and an upper as a user writes one (user.overlay.opaque, as with
    userxattr; an OCI .wh.NAME whiteout), owned by nobody."""
    L, U = os.path.join(base, "L"), os.path.join(base, "U")
    for i in range(4):
        write(os.path.join(L, "op", "old%d.txt" % i), b"old %d\n" % i)
    write(os.path.join(L, "del.txt"), b"deleted\n")
    write(os.path.join(L, "keep.txt"), b"kept\n")
    os.makedirs(os.path.join(U, "op"))
    os.setxattr(os.path.join(U, "op"), "user.overlay.opaque", b"y")
    for i in range(20):
        write(os.path.join(U, "op", "new%02d.txt" % i), b"new %d\n" % i)
    write(os.path.join(U, ".wh.del.txt"), b"")
    write(os.path.join(U, "hl-1.txt"), b"a group\n")
    os.link(os.path.join(U, "hl-1.txt"), os.path.join(U, "op", "hl-2.txt"))
    subprocess.run(["chown", "-R", "%d:%d" % (NOBODY, NOBODY), base], check=True)
    return L, U


def as_nobody(*args, env=None):
    from prism_helpers import SETPRIV
    res = subprocess.run([SETPRIV, "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                          "--clear-groups", PRISMFS, *args], capture_output=True, text=True,
                         timeout=120, cwd="/", env=env or dict(os.environ))
    check_no_sanitizer(res)
    return res


@pytest.mark.parametrize("way", ["commit", "recover"])
def test_inplace_killed_as_a_user_then_resumed(workdir, way):
    want_base = os.path.join(workdir, "want")
    os.makedirs(want_base)
    os.chmod(workdir, 0o755)
    wL, wU = user_upper(want_base)
    res = as_nobody("commit", "--upper", wU, "--lower", wL)
    assert res.returncode == 0, res.stderr
    want = snapshot(wL)
    assert sorted(want["entries"]) == [".", "hl-1.txt", "keep.txt", "op", "op/hl-2.txt"] + \
        ["op/new%02d.txt" % i for i in range(20)], sorted(want["entries"])
    assert want["links"] == [["hl-1.txt", "op/hl-2.txt"]]

    base = os.path.join(workdir, "cut")
    os.makedirs(base)
    L, U = user_upper(base)
    # Whatever the order of removal, op is then half emptied.
    res = as_nobody("commit", "--upper", U, "--lower", L,
                    env=env_with(PRISMFS_TEST_CRASH="inplace-emptying:12"))
    assert res.returncode == -signal.SIGKILL, res.stderr
    mark = [x for x in os.listxattr(U) if x.endswith(MARK)]
    if way == "commit":
        res = as_nobody("commit", "--upper", U, "--lower", L)
    else:
        res = as_nobody("recover", "--lower", L)
    assert res.returncode == 0, res.stderr
    got = snapshot(L)
    # The two trees were made at different times: all but times and owners.
    assert_same_tree(view_of(want), view_of(got),
                     "a user's commit killed while emptying, resumed by %s" % way)
    assert os.listdir(U) == [] and not marked(U)
    assert sorted(os.listdir(base)) == ["L", "U"]
    assert mark == ["user.overlay." + MARK], "the cut-short upper was marked %s" % mark


@pytest.mark.parametrize("at", ["inplace-file:5", "inplace-emptying:6"])
def test_mount_with_another_upper_completes_first(lay, workdir, at):
    """A mount of L with another upper completes the commit cut short first,
    then shows the committed view through its own (empty) upper."""
    before, merged, _ = kernel_upper(lay)
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W,
              env=env_with(PRISMFS_TEST_CRASH=at))
    killed(res, at)
    u2 = os.path.join(workdir, "U2")
    os.makedirs(u2)
    lay.mounts.append(lay.M)
    res = cli("mount", "--upper", u2, lay.L, lay.M, timeout=60)
    check_no_sanitizer(res)
    assert res.returncode == 0, res.stderr
    try:
        assert "completed the interrupted in-place commit" in res.stderr, res.stderr
        d = diff_views(view_of(merged), view_of(snapshot(lay.M)))
        assert not d, "the mount shows another view:\n  " + "\n  ".join(d[:30])
    finally:
        res = unmount_prismfs(lay)
    assert res.returncode == 0, res.stderr
    assert_same_tree(merged, snapshot(lay.L), "the lower after the mount completed the commit")
    assert_empty(lay.U, "the upper")
    assert_clean_lower(lay)


def test_resume_that_fails_keeps_upper_whole(lay):
    """A resume that fails on its own (not killed) while applying says so in
    one line and leaves the upper whole and unmarked; fixed, the commit
    completes."""
    before, merged, raw = kernel_upper(lay)
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W,
              env=env_with(PRISMFS_TEST_CRASH="inplace-dropped:1"))
    killed(res, "inplace-dropped:1")
    locked = lay.l("newdir")  # made by the commit, filled later
    os.makedirs(locked, exist_ok=True)
    if subprocess.run(["chattr", "+i", locked], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported here")
    try:
        res = cli("recover", "--lower", lay.L)
        assert_one_error_line(res, "a recovery that cannot apply")
        assert "prismfs commit --upper %s --lower %s" % (lay.U, lay.L) in res.stderr, \
            res.stderr
    finally:
        subprocess.run(["chattr", "-i", locked])
    assert not marked(lay.U), "the failed resume left its mark"
    assert lay.siblings() == [], "the failed resume left %s" % lay.siblings()
    assert_same_tree(raw, raw_upper(lay), "the failed resume changed the upper")
    res = cli("commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.W)
    assert res.returncode == 0, res.stderr
    assert_same_tree(merged, snapshot(lay.L), "the commit after the failed resume")
    assert_empty(lay.U, "the upper")
