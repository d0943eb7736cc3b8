"""A commit never changes what the view showed, however many lowers there are.

With `--upper U --lower L2 --lower L3 L1`, a commit applies U to L1 (the top
lower) only; L2 and L3 stay below it.  Kernel overlayfs is the specification
(Documentation/filesystems/overlayfs.rst): a whiteout or an opaque directory
in a lower layer hides the layers below it.  So whatever the view hid from
L2..Ln -- names deleted through the mount, directories removed and made
again -- must stay hidden by L1 after the commit.

The class covered: for 1, 2 and 3 lowers, every non-empty subset of lowers
holding a name, at the root and two levels down in a directory merged from
every lower: files deleted, directories removed, directories removed and
made again (opaque), a file replaced by a directory and a directory by a
file, a child of a merged directory deleted, and lowers that are themselves
merged (the top and middle lowers carry whiteouts and opaque directories of
their own).  For each: in-place and atomic commits, at unmount and offline
(`prismfs commit` naming the lowers below); the view before the unmount must
equal the view of the committed lowers, read by prismfs (a fresh upper) and
by kernel overlayfs (mount -t overlay, lowerdir=L1:L2:L3).
"""
import itertools
import os
import signal
import stat
import subprocess

import pytest

from conftest import PRISMFS, Mount
from prism_helpers import assert_one_error_line, cli

WH_XATTRS = ("trusted.overlay.", "user.overlay.")


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(data)


def whiteout(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))


def opaque(path):
    os.makedirs(path, exist_ok=True)
    os.setxattr(path, "trusted.overlay.opaque", b"y")


def subsets(k):
    """Every non-empty subset of lowers 1..k, as a name tag ('1', '13', ...)."""
    out = []
    for r in range(1, k + 1):
        out += ["".join(map(str, c)) for c in itertools.combinations(range(1, k + 1), r)]
    return out


# Where the names live: the root and a directory two levels down that every
# lower has (so the view merges it from all of them).
PLACES = ("", "deep/a")


def populate(lowers):
    """Fill lowers[0..k) (L1 first).  Name kinds, for each subset S of
    lowers holding them:
      f_S  file, deleted through the mount
      g_S  file, left alone
      r_S  directory with a child from each lower, removed
      o_S  directory, removed and made again with one new file (opaque)
      x_S  file, replaced by a directory holding a file
      y_S  directory, replaced by a file
      m_S  directory, merged: gets a new file, and loses the child of its
           lowest lower
    """
    k = len(lowers)
    for place in PLACES:
        for i, L in enumerate(lowers, 1):
            os.makedirs(os.path.join(L, place), exist_ok=True)
        for s in subsets(k):
            for i in map(int, s):
                base = os.path.join(lowers[i - 1], place)
                write(os.path.join(base, "f_" + s), "L%d f_%s\n" % (i, s))
                write(os.path.join(base, "g_" + s), "L%d g_%s\n" % (i, s))
                write(os.path.join(base, "x_" + s), "L%d x_%s\n" % (i, s))
                for kind in ("r", "o", "y", "m"):
                    write(os.path.join(base, "%s_%s" % (kind, s), "c%d" % i),
                          "L%d %s_%s\n" % (i, kind, s))
    # Lowers that are merged themselves: each lower but the last hides
    # names and directory contents of the ones below it.
    for i in range(k - 1):
        upper, below = lowers[i], lowers[i + 1:]
        for place in PLACES:
            tag = "L%d" % (i + 1)
            for L in below:
                write(os.path.join(L, place, "hid" + tag), "hidden by %s\n" % tag)
                write(os.path.join(L, place, "op" + tag, "under"), "hidden by %s\n" % tag)
            whiteout(os.path.join(upper, place, "hid" + tag))
            opaque(os.path.join(upper, place, "op" + tag))
            write(os.path.join(upper, place, "op" + tag, "own"), "%s's own\n" % tag)


def change(M, k):
    for place in PLACES:
        p = lambda *x: os.path.join(M, place, *x)  # noqa: E731
        for s in subsets(k):
            os.unlink(p("f_" + s))
            subprocess.run(["rm", "-rf", p("r_" + s)], check=True)
            subprocess.run(["rm", "-rf", p("o_" + s)], check=True)
            os.mkdir(p("o_" + s))
            write(p("o_" + s, "new"), "made through the mount\n")
            os.unlink(p("x_" + s))
            os.mkdir(p("x_" + s))
            write(p("x_" + s, "in"), "a directory now\n")
            subprocess.run(["rm", "-rf", p("y_" + s)], check=True)
            write(p("y_" + s), "a file now\n")
            write(p("m_" + s, "added"), "added\n")
            os.unlink(p("m_" + s, "c%s" % s[-1]))
        # The lowers' own hidden things: the view writes next to them.
        for i in range(k - 1):
            tag = "L%d" % (i + 1)
            write(p("op" + tag, "added"), "added\n")
            write(p("hid" + tag), "made again\n")
            os.unlink(p("hid" + tag))
        # Gone at once, in a directory that is then removed.
        if place:
            write(p("only-upper"), "x\n")
            os.unlink(p("only-upper"))


def view(root):
    """The tree a mount shows: path -> 'd', 'f:content' or 'l:target'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            r = os.path.normpath(os.path.join(rel, n))
            st = os.lstat(p)
            if stat.S_ISDIR(st.st_mode):
                out[r] = "d"
            elif stat.S_ISLNK(st.st_mode):
                out[r] = "l:" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                with open(p) as f:
                    out[r] = "f:" + f.read()
            else:
                out[r] = "other:%o" % st.st_mode
    return out


def diff(want, got):
    lines = []
    for k in sorted(set(want) | set(got)):
        if want.get(k) != got.get(k):
            lines.append("%s: view showed %r, now %r" % (k, want.get(k), got.get(k)))
    return "\n  ".join(lines[:40])


def bookkeeping(L):
    """Whiteouts, .wh. names and overlay xattrs in a directory tree."""
    found = []
    for dirpath, dirnames, filenames in os.walk(L):
        for n in dirnames + filenames + [""]:
            p = os.path.join(dirpath, n) if n else dirpath
            st = os.lstat(p)
            if n.startswith(".wh.") or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0):
                found.append(os.path.relpath(p, L))
            if not stat.S_ISLNK(st.st_mode):
                if any(x.startswith(WH_XATTRS) for x in os.listxattr(p, follow_symlinks=False)):
                    found.append(os.path.relpath(p, L) + " (xattr)")
    return sorted(set(found))


class Stack:
    def __init__(self, base, k):
        self.base = base
        self.lowers = [os.path.join(base, "L%d" % i) for i in range(1, k + 1)]
        self.U = os.path.join(base, "U")
        self.W = os.path.join(base, "W")
        self.M = os.path.join(base, "M")
        for d in self.lowers + [self.U, self.W, self.M]:
            os.makedirs(d, exist_ok=True)
        self.mounts = []
        self.kernel = []

    def mount(self, upper=None, work=None, extra=()):
        args = ["--upper", upper or self.U, "--work", work or self.W]
        for L in self.lowers[1:]:
            args += ["--lower", L]
        m = Mount(self.lowers[0], self.M, args + list(extra))
        self.mounts.append(m)
        return m.start()

    def fresh(self, name):
        d = os.path.join(self.base, name)
        os.makedirs(d)
        return d

    def kernel_mount(self, upper, work, mp):
        opts = "lowerdir=%s,upperdir=%s,workdir=%s" % (":".join(self.lowers), upper, work)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, mp], check=True)
        self.kernel.append(mp)

    def kernel_umount(self, mp):
        subprocess.run(["umount", mp], check=True)
        self.kernel.remove(mp)

    def kernel_view(self):
        """The committed lowers as kernel overlayfs shows them (an empty
        upper: the kernel wants one with fewer than two lowers)."""
        n = len([d for d in os.listdir(self.base) if d.startswith("KM")])
        up, wk, mp = self.fresh("KU%d" % n), self.fresh("KW%d" % n), self.fresh("KM%d" % n)
        self.kernel_mount(up, wk, mp)
        try:
            return view(mp)
        finally:
            self.kernel_umount(mp)

    def cleanup(self):
        for m in self.mounts:
            m.cleanup()
        for mp in self.kernel:
            subprocess.run(["umount", "-l", mp])


@pytest.fixture
def stack_of(workdir):
    made = []

    def make(k):
        s = Stack(workdir, k)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


def finish(st, m, how, action):
    """End the mount m and commit its upper into L1: at unmount, or
    offline afterwards naming the lowers below."""
    if how == "unmount":
        res = cli("unmount", "--action", action, st.M, timeout=120)
        assert res.returncode == 0, res.stderr
        m.wait()
    else:
        if m:
            m.stop()
        args = ["commit", "--upper", st.U, "--work", st.W]
        for L in st.lowers:
            args += ["--lower", L]
        if action == "commit-atomic":
            args.append("--atomic")
        res = cli(*args, timeout=120)
        assert res.returncode == 0, res.stderr
    if m:
        m.check_clean_exit()
    assert os.listdir(st.U) == [], "the upper was not emptied"


@pytest.mark.parametrize("how", ["unmount", "offline"])
@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_commit_keeps_the_view(stack_of, k, action, how):
    st = stack_of(k)
    populate(st.lowers)
    m = st.mount()
    change(st.M, k)
    before = view(st.M)
    # The scenario does what it says: names of every subset are gone.
    assert "f_%d" % k not in before and "deep/a/r_%d" % k not in before
    finish(st, m, how, action)

    m2 = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m2.stop()
    m2.check_clean_exit()
    assert after == before, "prismfs shows another view after the commit:\n  " + \
        diff(before, after)
    kview = st.kernel_view()
    assert kview == before, "kernel overlayfs shows another view of the committed " \
        "lowers:\n  " + diff(before, kview)

    # Bookkeeping only where something below would show through.
    marks = bookkeeping(st.lowers[0])
    if k == 1:
        assert marks == [], "a lone lower got overlay bookkeeping: %s" % marks
    for place in PLACES:
        for s in subsets(k):
            if s == "1":  # in L1 alone: nothing below to hide
                for kind in ("f_", "r_", "o_", "x_", "y_"):
                    rel = os.path.join(place, kind + s)
                    assert not any(x.startswith(rel + " ") or x == rel for x in marks), \
                        "%s needs no bookkeeping, has %s" % (rel, marks)


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic"])
@pytest.mark.parametrize("k", [2, 3])
def test_commit_kernel_upper_keeps_the_view(stack_of, k, atomic):
    """The same changes made through kernel overlayfs over the same lowers;
    the upper committed offline into L1, naming the lowers below."""
    st = stack_of(k)
    populate(st.lowers)
    st.kernel_mount(st.U, st.W, st.M)
    try:
        change(st.M, k)
        before = view(st.M)
    finally:
        st.kernel_umount(st.M)
    args = ["commit", "--upper", st.U, "--work", st.W]
    for L in st.lowers:
        args += ["--lower", L]
    res = cli(*args, *(["--atomic"] if atomic else []), timeout=120)
    assert res.returncode == 0, res.stderr
    kview = st.kernel_view()
    assert kview == before, "kernel overlayfs shows another view of the committed " \
        "lowers:\n  " + diff(before, kview)
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, "prismfs shows another view after the commit:\n  " + \
        diff(before, after)


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "atomic"])
def test_commit_hand_made_upper(stack_of, atomic):
    """Forms neither mount writes but the format allows, each hiding
    something of L2 in the view: a plain (not opaque) directory over L1's
    file, over L1's whiteout; an upper
    whiteout over L1's whiteout; `.wh.NAME` and opaque-marker forms in the
    upper.  The view before is prismfs's of U over L1:L2."""
    st = stack_of(2)
    L1, L2 = st.lowers
    for name in ("dirfile", "dirwh", "whwh", "ociwh", "ociopq", "userop"):
        write(os.path.join(L2, name, "below"), "L2\n")
    write(os.path.join(L1, "dirfile"), "L1 file\n")
    os.makedirs(os.path.join(st.U, "dirfile"))
    write(os.path.join(st.U, "dirfile", "u"), "U\n")
    whiteout(os.path.join(L1, "dirwh"))
    write(os.path.join(st.U, "dirwh", "u"), "U\n")
    whiteout(os.path.join(L1, "whwh"))
    whiteout(os.path.join(st.U, "whwh"))
    write(os.path.join(L1, "ociwh", "l1"), "L1\n")
    write(os.path.join(st.U, ".wh.ociwh"), "")
    write(os.path.join(L1, "ociopq", "l1"), "L1\n")
    write(os.path.join(st.U, "ociopq", ".wh..wh..opq"), "")
    write(os.path.join(st.U, "ociopq", "u"), "U\n")
    write(os.path.join(st.U, "userop", "u"), "U\n")
    os.setxattr(os.path.join(st.U, "userop"), "user.overlay.opaque", b"y")
    m = st.mount()
    before = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert "dirfile/below" not in before and "ociwh" not in before, before
    args = ["commit", "--upper", st.U, "--work", st.W, "--lower", L1, "--lower", L2]
    res = cli(*args, *(["--atomic"] if atomic else []), timeout=120)
    assert res.returncode == 0, res.stderr
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, "prismfs shows another view after the commit:\n  " + \
        diff(before, after)


@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
def test_commit_keeps_the_view_wh_files(stack_of, action):
    """A mount with --whiteout file: the whiteouts kept in L1 are `.wh.NAME`
    files too (prismfs reads them; the kernel does not, so no kernel view)."""
    st = stack_of(2)
    populate(st.lowers)
    m = st.mount(extra=["--whiteout", "file"])
    change(st.M, 2)
    before = view(st.M)
    finish(st, m, "unmount", action)
    chardevs = [x for x in bookkeeping(st.lowers[0])
                if not x.endswith("(xattr)") and "/.wh." not in "/" + x
                and not os.path.basename(x).startswith("hidL")]
    assert chardevs == [], "whiteout devices made with --whiteout file: %s" % chardevs
    m2 = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m2.stop()
    m2.check_clean_exit()
    assert after == before, "prismfs shows another view after the commit:\n  " + \
        diff(before, after)


def test_commit_bad_lower_below(stack_of):
    """A lower below that is not there: one line, nothing changed."""
    st = stack_of(2)
    populate(st.lowers)
    write(os.path.join(st.U, "new"), "x\n")
    whiteout(os.path.join(st.U, "f_2"))
    snap = view(st.lowers[0])
    for what, below in (("a missing lower below", os.path.join(st.base, "missing")),
                        ("the lower below is the lower", st.lowers[0] + "/."),
                        ("the lower below is the upper", st.U),
                        ("a file as the lower below", os.path.join(st.lowers[1], "g_2"))):
        for extra in ([], ["--atomic"]):
            res = cli("commit", "--upper", st.U, "--lower", st.lowers[0], "--lower", below,
                      *extra)
            assert_one_error_line(res, what)
            assert view(st.lowers[0]) == snap, what
            assert sorted(os.listdir(st.U)) == ["f_2", "new"], what


def test_offline_commit_must_name_the_lowers_below(stack_of):
    """An upper last mounted over lowers below SOURCE is not committed into
    SOURCE alone (what it hid from them would show again): one line naming
    them, nothing changed.  Named, it commits; a later mount over SOURCE
    alone drops the record again."""
    st = stack_of(3)
    populate(st.lowers)
    m = st.mount()
    change(st.M, 3)
    before = view(st.M)
    m.stop()
    m.check_clean_exit()
    lsnap, usnap = view(st.lowers[0]), sorted(os.listdir(st.U))
    for extra in ([], ["--atomic"]):
        res = cli("commit", "--upper", st.U, "--lower", st.lowers[0], "--work", st.W, *extra)
        assert_one_error_line(res, "a commit without the lowers below")
        assert st.lowers[1] in res.stderr and st.lowers[2] in res.stderr, res.stderr
        assert view(st.lowers[0]) == lsnap and sorted(os.listdir(st.U)) == usnap
    finish(st, None, "offline-named", "commit")
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, diff(before, after)

    # Mounted over L1 alone, the upper holds no record: L1 alone commits.
    one = Mount(st.lowers[0], st.M, ["--upper", st.U, "--work", st.W])
    st.mounts.append(one)
    one.start()
    write(os.path.join(st.M, "one"), "1\n")
    one.stop()
    one.check_clean_exit()
    res = cli("commit", "--upper", st.U, "--lower", st.lowers[0], "--work", st.W)
    assert res.returncode == 0, res.stderr
    with open(os.path.join(st.lowers[0], "one")) as f:
        assert f.read() == "1\n"


@pytest.mark.parametrize("atomic,step,resume", [
    (False, "inplace-file", "again"), (False, "inplace-file", "recover"),
    (False, "inplace-file", "mount"), (False, "inplace-synced", "again"),
    (False, "inplace-synced", "recover"), (False, "inplace-synced", "mount"),
    (True, "atomic-build", "again"), (True, "atomic-swapped", "again"),
    (True, "atomic-swapped", "recover")])
def test_commit_killed_then_again_keeps_the_view(stack_of, atomic, step, resume):
    """A commit killed partway (the in-place one with part of L1 already
    changed) and resumed by running it again, by prismfs recover (which is
    given only L1) or by the next mount of L1: the whiteouts and opaque
    directories it keeps are decided alike on the second run, and the view
    is still the one the mount showed."""
    st = stack_of(3)
    populate(st.lowers)
    m = st.mount()
    change(st.M, 3)
    before = view(st.M)
    m.stop()
    m.check_clean_exit()
    args = ["commit", "--upper", st.U, "--work", st.W]
    for L in st.lowers:
        args += ["--lower", L]
    if atomic:
        args.append("--atomic")
    env = dict(os.environ, PRISMFS_TEST_CRASH=step)
    res = cli(*args, env=env, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    if resume == "again":
        res = cli(*args, timeout=120)
        assert res.returncode == 0, res.stderr
    elif resume == "recover":
        res = cli("recover", "--lower", st.lowers[0], timeout=120)
        assert res.returncode == 0, res.stderr
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, diff(before, after)
    kview = st.kernel_view()
    assert kview == before, diff(before, kview)


def test_commit_redirect_with_lowers_below_refused(stack_of):
    """A directory renamed by kernel overlayfs (redirect_dir=on): the lowers
    below would still be looked up at its new name, so a commit into L1 is
    refused, in one line, before anything changes."""
    st = stack_of(2)
    L1, L2 = st.lowers
    write(os.path.join(L1, "d", "f1"), "L1\n")
    write(os.path.join(L2, "d", "f2"), "L2\n")
    opts = "lowerdir=%s:%s,upperdir=%s,workdir=%s,redirect_dir=on" % (L1, L2, st.U, st.W)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, st.M], check=True)
    st.kernel.append(st.M)
    try:
        os.rename(os.path.join(st.M, "d"), os.path.join(st.M, "e"))
    finally:
        st.kernel_umount(st.M)
    lsnap = view(L1)
    for extra in ([], ["--atomic"]):
        res = cli("commit", "--upper", st.U, "--work", st.W, "--lower", L1, "--lower", L2,
                  *extra)
        assert_one_error_line(res, "a redirect with lowers below")
        assert "redirect" in res.stderr, res.stderr
        assert view(L1) == lsnap
        assert "e" in os.listdir(st.U)


def test_commit_unprivileged_keeps_the_view(stack_of):
    """A commit by a user without CAP_MKNOD and without trusted.* xattrs:
    opaque directories carry user.overlay.opaque, whiteouts are 0/0 devices
    where the kernel lets users make them (Linux >= 5.8), else `.wh.NAME`
    files (--whiteout auto)."""
    st = stack_of(2)
    L1, L2 = st.lowers
    for name in ("gone", "again"):
        write(os.path.join(L2, name, "below"), "L2\n")
    write(os.path.join(L1, "gone", "l1"), "L1\n")
    whiteout(os.path.join(st.U, "gone"))
    write(os.path.join(st.U, "again", "u"), "U\n")
    try:
        os.setxattr(os.path.join(st.U, "again"), "user.overlay.opaque", b"y")
        os.setxattr(L1, "user.prismfs-test", b"1")
        os.removexattr(L1, "user.prismfs-test")
    except OSError as e:
        pytest.skip("no user.* xattrs here: %s" % e)
    m = st.mount()
    before = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert "gone" not in before and "again/below" not in before, before
    uid = 65534
    for d in (st.base, *st.lowers, st.U, st.W):
        for dirpath, dirnames, filenames in os.walk(d):
            for n in [""] + dirnames + filenames:
                os.lchown(os.path.join(dirpath, n), uid, uid)

    def as_user(*args):
        return subprocess.run(["setpriv", "--reuid=%d" % uid, "--regid=%d" % uid,
                               "--clear-groups", PRISMFS, *args],
                              capture_output=True, text=True, timeout=120)

    args = ["commit", "--upper", st.U, "--work", st.W, "--lower", L1, "--lower", L2]
    res = as_user(*args)
    assert res.returncode == 0, res.stderr
    wh = os.path.join(L1, "gone")
    assert os.path.exists(os.path.join(L1, ".wh.gone")) or (
        os.path.lexists(wh) and stat.S_ISCHR(os.lstat(wh).st_mode)
        and os.lstat(wh).st_rdev == 0), os.listdir(L1)
    assert os.getxattr(os.path.join(L1, "again"), "user.overlay.opaque") == b"y"
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, diff(before, after)


@pytest.mark.parametrize("action", ["commit", "commit-atomic"])
def test_commit_deep_keeps_the_view(stack_of, action):
    """Deeper than a commit walk keeps descriptors open (and than its first
    allocations): a whiteout and an opaque directory 40 levels down, with
    the lower below holding the names all the way."""
    st = stack_of(2)
    L1, L2 = st.lowers
    deep = os.path.join(*["d%02d" % i for i in range(40)])
    for L in (L1, L2):
        write(os.path.join(L, deep, "keep"), "%s\n" % os.path.basename(L))
    write(os.path.join(L2, deep, "gone"), "L2\n")
    write(os.path.join(L2, deep, "again", "below"), "L2\n")
    write(os.path.join(L1, deep, "again", "l1"), "L1\n")
    m = st.mount()
    os.unlink(os.path.join(st.M, deep, "gone"))
    subprocess.run(["rm", "-rf", os.path.join(st.M, deep, "again")], check=True)
    write(os.path.join(st.M, deep, "again", "new"), "new\n")
    before = view(st.M)
    finish(st, m, "unmount", action)
    m = st.mount(st.fresh("U2"), st.fresh("W2"))
    after = view(st.M)
    m.stop()
    m.check_clean_exit()
    assert after == before, diff(before, after)
    kview = st.kernel_view()
    assert kview == before, diff(before, kview)

