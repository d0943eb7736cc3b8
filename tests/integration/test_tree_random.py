"""Random sequences of namespace operations (create, mkdir, rmdir, unlink,
rename with its flags, link, symlink, chmod, truncate, append, xattrs, reads
and listings) run side by side on two trees, with every outcome (value or
errno) compared step by step and the whole trees compared every few steps:

- a prismfs mirror against a plain native directory with the same content;
- a prismfs copy-on-write mount (two lowers and an upper) against kernel
  overlayfs mounted on an identical copy of the same layers: the kernel is
  the reference for what a layered view must do (overlayfs.rst), including
  its errors (EXDEV for renaming a directory that has lower parts).

The sequences are fixed by their seeds, so a failure names a replayable step.
"""
import contextlib
import errno
import hashlib
import os
import random
import stat

import pytest

import sysx
from layer_helpers import Overlay, mkdir, mkfile, mksymlink

STEPS = 800
CHECK_EVERY = 30
PARENTS = ("", "a", "b", "a/c", "a/c/d", "e")
NAMES = ("a", "b", "c", "d", "e", "x", "y", "z")


def outcome(fn):
    try:
        return ("ok", fn())
    except OSError as e:
        return ("err", errno.errorcode.get(e.errno, e.errno))


def rand_path(rng):
    parent = rng.choice(PARENTS)
    return os.path.join(parent, rng.choice(NAMES)) if parent else rng.choice(NAMES)


def existing_paths(root):
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        out += [os.path.normpath(os.path.join(rel_dir, n)) for n in sorted(dirnames + filenames)]
    return out


def make_step(rng, existing):
    """One random operation, as (description, fn(root) -> comparable value).
    Paths are drawn from a small fixed set, and often from what exists now
    (in the reference tree), so that most operations reach real objects."""
    kind = rng.choices(
        ("create", "mkdir", "rmdir", "unlink", "rename", "link", "symlink", "chmod",
         "truncate", "append", "otrunc", "read", "readlink", "lstat", "listdir",
         "setxattr", "getxattr", "removexattr", "utime", "mkfifo", "chown", "openrw"),
        weights=(14, 9, 4, 6, 16, 5, 4, 4, 3, 4, 2, 5, 2, 6, 5, 3, 2, 1, 2, 2, 3, 2))[0]
    # Operations that make a name mostly get a new one; the others mostly
    # an existing object (and rename's target often one too).
    makes = kind in ("create", "mkdir", "symlink", "mkfifo")
    p = (rng.choice(existing) if existing and rng.random() < (0.2 if makes else 0.7)
         else rand_path(rng))
    q = (rng.choice(existing) if existing and rng.random() < (0.4 if kind == "rename" else 0.1)
         else rand_path(rng))
    data = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))

    if kind == "create":
        mode = rng.choice((0o644, 0o600, 0o755))
        excl = rng.random() < 0.5

        def create(r):
            fd = os.open(os.path.join(r, p), os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK
                         | (os.O_EXCL if excl else 0), mode)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)
        return "create%s %s (%d bytes)" % (" O_EXCL" if excl else "", p, len(data)), create
    if kind == "mkdir":
        return "mkdir %s" % p, lambda r: os.mkdir(os.path.join(r, p), 0o755)
    if kind == "rmdir":
        return "rmdir %s" % p, lambda r: os.rmdir(os.path.join(r, p))
    if kind == "unlink":
        return "unlink %s" % p, lambda r: os.unlink(os.path.join(r, p))
    if kind == "rename":
        flags = rng.choices((0, sysx.RENAME_NOREPLACE, sysx.RENAME_EXCHANGE),
                            weights=(6, 2, 2))[0]
        name = {0: "rename", sysx.RENAME_NOREPLACE: "rename NOREPLACE",
                sysx.RENAME_EXCHANGE: "rename EXCHANGE"}[flags]
        return ("%s %s -> %s" % (name, p, q),
                lambda r: sysx.renameat2(os.path.join(r, p), os.path.join(r, q), flags))
    if kind == "link":
        return "link %s -> %s" % (p, q), lambda r: os.link(os.path.join(r, p),
                                                           os.path.join(r, q))
    if kind == "symlink":
        target = rng.choice(("x", "../a", "/nonexistent", "a/c", "z" * 40))
        return ("symlink %s = %s" % (p, target),
                lambda r: os.symlink(target, os.path.join(r, p)))
    if kind == "chmod":
        mode = rng.choice((0o600, 0o644, 0o700, 0o755, 0o1777, 0o2755))
        return "chmod %o %s" % (mode, p), lambda r: os.chmod(os.path.join(r, p), mode)
    if kind == "truncate":
        size = rng.choice((0, 1, 100, 5000))
        return "truncate %s %d" % (p, size), lambda r: os.truncate(os.path.join(r, p), size)
    if kind in ("append", "otrunc"):
        # (O_NONBLOCK: a FIFO must not wait for a reader.)
        flags = os.O_WRONLY | os.O_NONBLOCK | (os.O_APPEND if kind == "append" else os.O_TRUNC)

        def write(r):
            fd = os.open(os.path.join(r, p), flags)
            try:
                return os.write(fd, data)
            finally:
                os.close(fd)
        return "%s %s (%d bytes)" % (kind, p, len(data)), write
    if kind == "read":
        def read(r):
            fd = os.open(os.path.join(r, p), os.O_RDONLY | os.O_NONBLOCK)
            try:
                chunks = []
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        return hashlib.sha256(b"".join(chunks)).hexdigest()
                    chunks.append(chunk)
            finally:
                os.close(fd)
        return "read %s" % p, read
    if kind == "readlink":
        return "readlink %s" % p, lambda r: os.readlink(os.path.join(r, p))
    if kind == "lstat":
        return "lstat %s" % p, lambda r: describe(os.path.join(r, p))
    if kind == "listdir":
        parent = rng.choice(PARENTS)
        return "listdir /%s" % parent, lambda r: sorted(os.listdir(os.path.join(r, parent)))
    if kind == "setxattr":
        value = data[:20]
        return ("setxattr %s user.t (%d bytes)" % (p, len(value)),
                lambda r: os.setxattr(os.path.join(r, p), "user.t", value,
                                      follow_symlinks=False))
    if kind == "getxattr":
        return "getxattr %s user.t" % p, lambda r: os.getxattr(os.path.join(r, p), "user.t",
                                                                follow_symlinks=False)
    if kind == "removexattr":
        return "removexattr %s user.t" % p, lambda r: os.removexattr(
            os.path.join(r, p), "user.t", follow_symlinks=False)
    if kind == "mkfifo":
        return "mkfifo %s" % p, lambda r: os.mkfifo(os.path.join(r, p), 0o640)
    if kind == "chown":
        uid, gid = rng.choice((0, 1000, 5)), rng.choice((0, 1000, 5, -1))
        return ("lchown %s %d:%d" % (p, uid, gid),
                lambda r: os.chown(os.path.join(r, p), uid, gid, follow_symlinks=False))
    if kind == "openrw":
        def openrw(r):
            fd = os.open(os.path.join(r, p), os.O_RDWR | os.O_NONBLOCK)
            os.close(fd)
            return True
        return "open O_RDWR and close %s" % p, openrw
    ns = rng.choice((1_500_000_000_123_456_789, 1_234_567_890_000_000_001))
    return ("utime %s %d" % (p, ns),
            lambda r: os.utime(os.path.join(r, p), ns=(ns, ns), follow_symlinks=False))


def describe(path, dir_nlink=True):
    """What must agree between the two trees for one object (not times,
    devices or inode numbers, which legitimately differ)."""
    st = os.lstat(path)
    d = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
         "uid": st.st_uid, "gid": st.st_gid}
    if not stat.S_ISDIR(st.st_mode) or dir_nlink:
        d["nlink"] = st.st_nlink
    if stat.S_ISREG(st.st_mode):
        d["size"] = st.st_size  # (only files are opened: a FIFO would wait)
        d["sha"] = outcome(lambda: sha_of(path))  # (a user may not read it)
    if stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(path)
        d.pop("mode")  # symlink modes are always 0777
    else:
        d["xattr"] = outcome(lambda: sorted(x for x in os.listxattr(path, follow_symlinks=False)
                                            if x.startswith("user.")))
        d["mtime_ns"] = st.st_mtime_ns if st.st_mtime_ns in UTIMES else None
    return d


def sha_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


UTIMES = (1_500_000_000_123_456_789, 1_234_567_890_000_000_001)


def snapshot(root, dir_nlink=True):
    """Every object below root, by path, plus which paths share an inode."""
    out = {}
    by_ino = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames + filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            full = os.path.join(dirpath, name)
            # (A user may list a directory it cannot search.)
            out[rel] = outcome(lambda: describe(full, dir_nlink))
            if out[rel][0] == "err":
                continue
            st = os.lstat(full)
            if not stat.S_ISDIR(st.st_mode):
                by_ino.setdefault(st.st_ino, []).append(rel)
    links = sorted(tuple(sorted(v)) for v in by_ino.values() if len(v) > 1)
    return out, links


def compare_trees(seed, step, got_root, want_root, history, dir_nlink=True):
    got, got_links = snapshot(got_root, dir_nlink)
    want, want_links = snapshot(want_root, dir_nlink)
    diffs = []
    for k in sorted(set(got) | set(want)):
        if got.get(k) != want.get(k):
            diffs.append("  %s\n    prismfs:   %s\n    reference: %s" % (k, got.get(k),
                                                                         want.get(k)))
    if got_links != want_links:
        diffs.append("  hard links: prismfs %s, reference %s" % (got_links, want_links))
    assert not diffs, ("seed %d, trees differ after step %d:\n%s\n  last steps:\n    %s"
                       % (seed, step, "\n".join(diffs[:10]), "\n    ".join(history[-15:])))


def run_sequence(seed, got_root, want_root, dir_nlink=True):
    rng = random.Random(seed)
    history = []
    for step in range(STEPS):
        what, fn = make_step(rng, existing_paths(want_root))
        history.append("%d: %s" % (step, what))
        got = outcome(lambda: fn(got_root))
        want = outcome(lambda: fn(want_root))
        if not dir_nlink and what.startswith("lstat") and got[0] == want[0] == "ok" \
                and got[1]["type"] == stat.S_IFDIR:
            got[1].pop("nlink")
            want[1].pop("nlink")
        assert got == want, ("seed %d step %d: %s\n  prismfs:   %r\n  reference: %r\n"
                             "  steps before:\n    %s"
                             % (seed, step, what, got, want, "\n    ".join(history[-15:-1])))
        if step % CHECK_EVERY == CHECK_EVERY - 1:
            compare_trees(seed, step, got_root, want_root, history, dir_nlink)
    compare_trees(seed, STEPS, got_root, want_root, history, dir_nlink)


def populate_plain(d):
    mkfile(os.path.join(d, "x"), b"top x\n")
    mkfile(os.path.join(d, "a", "y"), b"a/y\n" * 100, mode=0o600)
    mkfile(os.path.join(d, "a", "c", "z"), b"")
    mkfile(os.path.join(d, "e", "x"), b"e/x", mode=0o4755)
    mkdir(os.path.join(d, "b"))
    mksymlink(os.path.join(d, "a", "b"), "../x")
    os.link(os.path.join(d, "x"), os.path.join(d, "b", "x"))


@pytest.mark.parametrize("seed", (11, 12, 13, 14))
@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_random_tree_operations(make_view, seed, mode):
    v = make_view(mode, populate=populate_plain)
    run_sequence(seed, v.path, v.native)


def populate_layers(o):
    # L2, the lowest layer: a directory merged with L1's, a file L1 hides
    # under a directory, and files only it has.
    mkfile(o.l2("a", "x"), b"L2 a/x\n" * 50)
    mkfile(o.l2("a", "c", "d", "y"), b"L2 deep\n", mode=0o600)
    mkfile(o.l2("b"), b"L2 b is a file\n")
    mkfile(o.l2("e", "z"), b"L2 e/z\n", mode=0o755)
    mkdir(o.l2("e", "b"))
    # L1, the highest lower (prismfs's SOURCE).
    mkfile(o.l1("a", "y"), b"L1 a/y\n")
    mkdir(o.l1("b"))
    mkfile(o.l1("b", "x"), b"L1 b/x\n")
    mksymlink(o.l1("a", "z"), "y")
    mkfile(o.l1("x"), b"L1 x\n" * 1000)
    mkfile(o.l1("a", "c", "e"), b"L1 a/c/e\n", xattrs={"user.t": b"from L1"})


def layer_files(o):
    """Every lower file's bytes and mode, to see that no lower changed."""
    out = {}
    for root in (o.L1, o.L2):
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                full = os.path.join(dirpath, name)
                out[full[len(o.base):]] = describe(full)
    return out


USER = 1000


def give_some_to_user(root):
    """Part of the tree (the root, "a", "c", "e" and every name whose
    characters sum odd) to USER, the rest to root: the user's operations
    then meet both their own objects and objects they may not change."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            if name in ("a", "c", "e") or sum(name.encode()) % 2:
                os.chown(os.path.join(dirpath, name), USER, USER, follow_symlinks=False)
    os.chown(root, USER, USER)


def as_user(fn):
    """Run fn in a child process as USER (no supplementary groups); an
    assertion or error there fails the test with its message."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setresgid(USER, USER, USER)
            os.setresuid(USER, USER, USER)
            fn()
        except BaseException as e:  # noqa: B902 (reported to the parent)
            os.write(w, ("%s: %s" % (type(e).__name__, e)).encode()[:60000])
            code = 1
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        msg = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, msg or "the child failed"


@pytest.mark.parametrize("seed", (31, 32))
@pytest.mark.parametrize("mode", ["plain", "cached"])
def test_random_tree_operations_as_a_user(make_view, seed, mode):
    """The same sequences run by an unprivileged user, through allow_other,
    on a tree partly the user's: permission errors, sticky and set-group-ID
    directories and ownership must come out as on the native tree."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become another user")

    def populate(d):
        populate_plain(d)
        give_some_to_user(d)
    v = make_view(mode, "-o", "allow_other", populate=populate)
    as_user(lambda: run_sequence(seed, v.path, v.native))


@contextlib.contextmanager
def two_overlays(workdir, user=False):
    """The same layers twice, populated, for prismfs ("p") and the kernel
    ("k"); with user, partly USER's. Unmounted in the end, even on failure."""
    ours = Overlay(os.path.join(workdir, "p"), "prismfs")
    kernel = Overlay(os.path.join(workdir, "k"), "kernel")
    try:
        for o in (ours, kernel):
            populate_layers(o)
            if user:
                give_some_to_user(o.L1)
                give_some_to_user(o.L2)
                os.chown(o.U, USER, USER)
        yield ours, kernel
    finally:
        ours.cleanup()
        kernel.cleanup()


@pytest.mark.parametrize("seed,user", [(21, False), (22, False), (23, False), (24, False),
                                       (41, True), (42, True)])
def test_random_tree_operations_on_layers(workdir, seed, user):
    """prismfs's layered view against kernel overlayfs on the same layers,
    run by root, or by an unprivileged user on layers partly the user's.
    Directory link counts are not compared: overlayfs reports 1 for a merged
    directory (it does not count the lowers' subdirectories)."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay)")
    with two_overlays(workdir, user) as (ours, kernel):
        before = layer_files(ours)
        ours.mount(allow_other=user)
        kernel.mount(allow_other=user)
        if user:
            as_user(lambda: run_sequence(seed, ours.M, kernel.M, dir_nlink=False))
        else:
            run_sequence(seed, ours.M, kernel.M, dir_nlink=False)
        ours.umount()
        kernel.umount()
        assert layer_files(ours) == before, "a lower layer changed"


@pytest.mark.parametrize("seed", (51, 52))
def test_random_tree_layers_read_back_by_the_other(workdir, seed):
    """After the same sequence, the layers prismfs wrote (its upper, in the
    kernel's format) mounted by kernel overlayfs show the tree that the
    kernel's own layers, mounted by prismfs, show; and each reads back its
    own after a remount."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay)")
    with two_overlays(workdir) as (ours, kernel):
        ours.mount()
        kernel.mount()
        run_sequence(seed, ours.M, kernel.M, dir_nlink=False)
        for mine, theirs, what in (("kernel", "prismfs", "each one's layers by the other"),
                                   ("prismfs", "kernel", "each one's layers remounted")):
            ours.umount()
            kernel.umount()
            ours.mount(backend=mine)
            kernel.mount(backend=theirs)
            compare_trees(seed, STEPS, ours.M, kernel.M, ["(%s)" % what], dir_nlink=False)
