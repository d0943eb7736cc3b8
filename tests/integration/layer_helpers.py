"""Helpers for the layered-mount parity suite (test_layers_*.py).

The suite is written against kernel overlayfs (Documentation/filesystems/
overlayfs.rst), not against prismfs: every test builds the same layer trees
(two read-only lowers L1 over L2, an upper U, a work dir W), mounts them at M
with one *backend*, performs real system calls on M and asserts outcomes that
kernel overlayfs satisfies.  The backends:

  kernel   mount -t overlay overlay -o lowerdir=L1:L2,upperdir=U,workdir=W M
  prismfs  prismfs mount -f --upper U --work W --lower L2 [--whiteout F] L1 M
  fuse-overlayfs  (opt-in) fuse-overlayfs -o lowerdir=L1:L2,upperdir=U,workdir=W M:
           another FUSE implementation, to see that a test asks for the
           kernel's behaviour and not for one implementation's details

PRISMFS_LAYER_BACKENDS (default "kernel,prismfs") selects the backends, e.g.
PRISMFS_LAYER_BACKENDS=kernel to check the tests themselves against the
kernel.  PRISMFS_LAYER_KERNEL_OPTS adds mount options for the kernel backend
(e.g. "redirect_dir=on" to exercise the branches the default kernel
configuration does not take).  The prismfs backend honours
PRISMFS_TEST_PASSTHROUGH like the rest of the integration suite.

Tests that ask for more than the kernel gives (OCI `.wh.` whiteouts in
lowers, `--whiteout file`) are decorated with @prismfs_only: they are only
generated for the prismfs backend, so no kernel variant exists (with
PRISMFS_LAYER_BACKENDS=kernel pytest reports them as skipped, "empty
parameter set").

Test modules import `pytest_generate_tests` from here (pytest honours the
hook in a test module), which parametrizes the `backend` argument (and the
`writer`/`reader` pair of the cross-backend tests).  The `ovl` fixture
yields an `Overlay`; every mount it makes is unmounted in teardown, even
when the test fails; a prismfs daemon must then have exited cleanly (status
0, no sanitizer report).
"""
import errno
import hashlib
import os
import stat
import subprocess

import pytest

from conftest import Mount

# --------------------------------------------------------------------------
# backends

ALL_BACKENDS = ("kernel", "prismfs", "fuse-overlayfs")


def _backends_from_env():
    raw = os.environ.get("PRISMFS_LAYER_BACKENDS", "kernel,prismfs")
    out = []
    for b in raw.split(","):
        b = b.strip()
        if not b:
            continue
        if b not in ALL_BACKENDS:
            raise ValueError("PRISMFS_LAYER_BACKENDS: unknown backend %r (known: %s)"
                             % (b, ", ".join(ALL_BACKENDS)))
        if b not in out:
            out.append(b)
    return out


BACKENDS = _backends_from_env()
KERNEL_OPTS = os.environ.get("PRISMFS_LAYER_KERNEL_OPTS", "").strip(",")


def prismfs_only(fn):
    """Generate this test only for the prismfs backend: it asks for more
    than kernel overlayfs does (the reason belongs in the docstring)."""
    fn._layer_backends = ("prismfs",)
    return fn


def pytest_generate_tests(metafunc):
    """Import into each test_layers_*.py module."""
    allowed = getattr(metafunc.function, "_layer_backends", ALL_BACKENDS)
    names = [b for b in BACKENDS if b in allowed]
    if "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", names)
    if "writer" in metafunc.fixturenames and "reader" in metafunc.fixturenames:
        pairs = [(w, r) for w in names for r in names]
        metafunc.parametrize(("writer", "reader"), pairs,
                             ids=["%s-then-%s" % p for p in pairs])


def _run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                     res.stderr.strip()))
    return res


def _mounted_at(path):
    """The filesystem type mounted exactly at path, or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        found = None
        for line in f:
            parts = line.split()
            mp = parts[4].replace("\\040", " ")
            if mp == path:
                found = parts[parts.index("-") + 1]
    return found


class Overlay:
    """Layer directories L1 (SOURCE, the highest lower), L2 (below it), U
    (upper), W (work) and M (mount point) under one base directory, and the
    mount of them by one backend at a time."""

    def __init__(self, base, backend):
        self.base = base
        self.backend = backend          # default backend for mount()
        self.L1 = os.path.join(base, "L1")
        self.L2 = os.path.join(base, "L2")
        self.U = os.path.join(base, "U")
        self.W = os.path.join(base, "W")
        self.M = os.path.join(base, "M")
        for d in (self.L1, self.L2, self.U, self.W, self.M):
            os.makedirs(d)
            os.chmod(d, 0o755)
        self.current = None             # backend mounted now, or None
        self.whiteout = None
        self.allow_other = False
        self._prism = None              # conftest.Mount of the prismfs backend

    # paths
    def l1(self, *p):
        return os.path.join(self.L1, *p)

    def l2(self, *p):
        return os.path.join(self.L2, *p)

    def u(self, *p):
        return os.path.join(self.U, *p)

    def m(self, *p):
        return os.path.join(self.M, *p)

    # mounting
    def mount(self, backend=None, whiteout=None, allow_other=False, extra=(), kernel_opts=""):
        """Mount the layers at M with backend (default: the test's).
        whiteout: None (the backend's default), or "chardev"/"file"/"auto"
        (prismfs only: --whiteout).  allow_other: let users other than root
        in (FUSE backends: -o allow_other; the kernel's mount always does,
        and so does prismfs's when run as root unless --private).  extra:
        more arguments for prismfs.  kernel_opts: more -o options for the
        kernel backend ("redirect_dir=on")."""
        assert self.current is None, "already mounted by %s" % self.current
        backend = backend or self.backend
        if backend == "kernel":
            assert whiteout in (None, "chardev"), "the kernel only writes 0/0 whiteouts"
            opts = "lowerdir=%s:%s,upperdir=%s,workdir=%s" % (self.L1, self.L2, self.U, self.W)
            if KERNEL_OPTS:
                opts += "," + KERNEL_OPTS
            if kernel_opts:
                opts += "," + kernel_opts
            _run(["mount", "-t", "overlay", "overlay", "-o", opts, self.M])
        elif backend == "prismfs":
            args = ["--upper", self.U, "--work", self.W, "--lower", self.L2]
            # The kernel's redirect_dir= of PRISMFS_LAYER_KERNEL_OPTS, so
            # both backends take the same branches.
            for item in KERNEL_OPTS.split(","):
                if item.startswith("redirect_dir="):
                    args += ["-o", item]
            if whiteout:
                args += ["--whiteout", whiteout]
            if allow_other:
                args += ["-o", "allow_other"]
            self._prism = Mount(self.L1, self.M, args + list(extra))
            try:
                self._prism.start()
            except Exception:
                self._prism.cleanup()
                self._prism = None
                raise
        elif backend == "fuse-overlayfs":
            assert whiteout in (None, "chardev"), "no --whiteout option in fuse-overlayfs"
            _run(["fuse-overlayfs", "-o", "lowerdir=%s:%s,upperdir=%s,workdir=%s%s"
                  % (self.L1, self.L2, self.U, self.W,
                     ",allow_other" if allow_other else ""), self.M])
            os.stat(self.M)
        else:
            raise ValueError(backend)
        self.current = backend
        self.whiteout = whiteout
        self.allow_other = allow_other
        return self

    def umount(self):
        """Unmount cleanly (prismfs: `prismfs unmount`, preserving the
        upper; the daemon must exit 0 without a sanitizer report)."""
        backend, self.current = self.current, None
        if backend == "kernel":
            _run(["umount", self.M])
        elif backend == "fuse-overlayfs":
            _run(["fusermount3", "-u", self.M])
        elif backend == "prismfs":
            m, self._prism = self._prism, None
            try:
                m.stop()
                m.check_clean_exit()
            finally:
                m.cleanup()

    def remount(self, backend=None, whiteout="same"):
        """Unmount and mount again (same backend and whiteout option unless
        told otherwise)."""
        prev_backend, prev_wh, prev_ao = self.current, self.whiteout, self.allow_other
        self.umount()
        self.mount(backend or prev_backend, prev_wh if whiteout == "same" else whiteout,
                   prev_ao)

    def cleanup(self):
        """Teardown: unmount whatever is still mounted, even after a failure."""
        failure = None
        if self._prism is not None:
            m, self._prism = self._prism, None
            try:
                m.stop()
                m.check_clean_exit()
            except Exception as e:
                failure = e
            finally:
                m.cleanup()
        for _ in range(3):
            if _mounted_at(self.M) is None:
                break
            r = subprocess.run(["umount", self.M], capture_output=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", self.M], capture_output=True)
        self.current = None
        if failure:
            raise failure


@pytest.fixture
def ovl(workdir, backend):
    """An Overlay for this test's backend, not yet mounted: build the layer
    trees with the helpers below, then ovl.mount()."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay, mknod)")
    o = Overlay(os.path.join(workdir, "layers"), backend)
    try:
        yield o
    finally:
        o.cleanup()


@pytest.fixture
def layers(workdir):
    """An Overlay without a default backend (cross-backend tests mount with
    an explicit backend)."""
    if os.geteuid() != 0:
        pytest.skip("layered mounts are tested as root (mount -t overlay, mknod)")
    o = Overlay(os.path.join(workdir, "layers"), None)
    try:
        yield o
    finally:
        o.cleanup()


# --------------------------------------------------------------------------
# building layer trees (directly in L1, L2 or U, before mounting)

T0 = 1_500_000_000_123_456_789    # a fixed past mtime with nanoseconds
T1 = 1_600_000_000_987_654_321
T2 = 1_400_000_000_000_000_007


def _parent(path):
    d = os.path.dirname(path)
    if not os.path.isdir(d):
        os.makedirs(d, mode=0o755)


def _owner_times_xattrs(path, uid, gid, mtime_ns, xattrs, follow=False):
    for k, v in (xattrs or {}).items():
        os.setxattr(path, k, v, follow_symlinks=follow)
    if uid is not None or gid is not None:
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid,
                 follow_symlinks=follow)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns), follow_symlinks=follow)


def mkfile(path, data=b"", mode=0o644, uid=None, gid=None, mtime_ns=None, xattrs=None):
    _parent(path)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    _owner_times_xattrs(path, uid, gid, mtime_ns, xattrs)
    return path


def mkdir(path, mode=0o755, uid=None, gid=None, mtime_ns=None, xattrs=None):
    """mkdir -p, then the attributes of the last component.  Set mtime_ns
    only after the directory's children exist (or use settime later)."""
    _parent(path)
    if not os.path.isdir(path):
        os.mkdir(path)
    os.chmod(path, mode)
    _owner_times_xattrs(path, uid, gid, mtime_ns, xattrs)
    return path


def mksymlink(path, target, uid=None, gid=None, mtime_ns=None):
    _parent(path)
    os.symlink(target, path)
    _owner_times_xattrs(path, uid, gid, mtime_ns, None)
    return path


def mkwhiteout(path):
    """A kernel-format whiteout: a 0/0 character device."""
    _parent(path)
    os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))
    return path


def mkoci_whiteout(path):
    """An OCI/Docker image whiteout for path: the empty file .wh.NAME beside
    it (kernel overlayfs does not honour these)."""
    d, name = os.path.split(path)
    return mkfile(os.path.join(d, ".wh." + name), b"", 0o644)


def set_opaque(path, form="trusted"):
    """Mark directory path opaque: trusted.overlay.opaque=y (the kernel's),
    user.overlay.opaque=y, or the OCI marker file .wh..wh..opq."""
    if form == "trusted":
        os.setxattr(path, "trusted.overlay.opaque", b"y")
    elif form == "user":
        os.setxattr(path, "user.overlay.opaque", b"y")
    elif form == "wh_opq":
        mkfile(os.path.join(path, ".wh..wh..opq"))
    else:
        raise ValueError(form)


def settime(path, ns, follow=False):
    os.utime(path, ns=(ns, ns), follow_symlinks=follow)


def pattern(n, seed=0):
    """n deterministic, non-repeating-looking bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
        i += 1
    return bytes(out[:n])


# --------------------------------------------------------------------------
# looking at the upper directly

WH_XATTRS = ("trusted.overlay.whiteout", "user.overlay.whiteout")
OPAQUE_XATTRS = ("trusted.overlay.opaque", "user.overlay.opaque")


def _lstat(p):
    try:
        return os.lstat(p)
    except FileNotFoundError:
        return None


def whiteout_form(upper_path):
    """How the upper records that the name upper_path is deleted:
    "chardev" (0/0 character device, the kernel's form), "xattr" (an empty
    regular file with an overlay.whiteout xattr), "wh_file" (an empty
    regular .wh.NAME beside it) or None (no whiteout)."""
    st = _lstat(upper_path)
    if st is not None:
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0):
            return "chardev"
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            names = os.listxattr(upper_path, follow_symlinks=False)
            if any(n in names for n in WH_XATTRS):
                return "xattr"
    d, name = os.path.split(upper_path)
    wst = _lstat(os.path.join(d, ".wh." + name))
    if wst is not None and stat.S_ISREG(wst.st_mode) and wst.st_size == 0:
        return "wh_file"
    return None


def assert_whiteout(upper_path, whiteout=None):
    """upper_path is whited out in the form the mount's whiteout option asks
    for: a 0/0 character device by default and with "chardev" (the form the
    kernel reads), a .wh.NAME file with "file", either with "auto"."""
    form = whiteout_form(upper_path)
    want = {None: ("chardev",), "chardev": ("chardev",), "file": ("wh_file",),
            "auto": ("chardev", "wh_file")}[whiteout]
    assert form in want, "%s: expected a whiteout (%s) in the upper, found %s (%s)" % (
        upper_path, " or ".join(want), form, describe(upper_path))
    if whiteout == "file":
        st = _lstat(upper_path)
        assert st is None, "%s: with --whiteout file the name itself should not exist " \
            "in the upper (found %s)" % (upper_path, describe(upper_path))


def assert_upper_data(upper_path, data):
    """The upper file holds data, unless it is a metadata-only copy-up
    (kernel overlayfs metacopy=on: the trusted.overlay.metacopy xattr says
    the data is still the lower file's; issue 5 allows chmod/chown/utimes
    without copying data)."""
    if "trusted.overlay.metacopy" in os.listxattr(upper_path, follow_symlinks=False):
        return
    assert read(upper_path) == data, "%s: the upper file's data" % upper_path


def assert_no_whiteout(upper_path):
    """Neither the name (in any form) nor a .wh.NAME marker is in the upper."""
    d, name = os.path.split(upper_path)
    assert _lstat(upper_path) is None, "%s should not exist in the upper: %s" % (
        upper_path, describe(upper_path))
    assert _lstat(os.path.join(d, ".wh." + name)) is None, \
        "%s: unexpected .wh.%s marker in the upper" % (d, name)


def opaque_form(upper_dir):
    """How upper_dir is marked opaque, or None: the xattr name
    (trusted.overlay.opaque / user.overlay.opaque, value "y") or
    ".wh..wh..opq" (marker file inside)."""
    names = os.listxattr(upper_dir, follow_symlinks=False)
    for x in OPAQUE_XATTRS:
        if x in names and os.getxattr(upper_dir, x, follow_symlinks=False) == b"y":
            return x
    st = _lstat(os.path.join(upper_dir, ".wh..wh..opq"))
    if st is not None and stat.S_ISREG(st.st_mode):
        return ".wh..wh..opq"
    return None


def describe(path):
    st = _lstat(path)
    if st is None:
        return "absent"
    s = "%s mode %o uid %d gid %d size %d" % (TYPES.get(stat.S_IFMT(st.st_mode), "?"),
                                              stat.S_IMODE(st.st_mode), st.st_uid,
                                              st.st_gid, st.st_size)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        s += " rdev %d:%d" % (os.major(st.st_rdev), os.minor(st.st_rdev))
    return s


def char_devices(root):
    """Relative paths of every character device below root."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if stat.S_ISCHR(os.lstat(p).st_mode):
                out.append(os.path.relpath(p, root))
    return sorted(out)


# --------------------------------------------------------------------------
# snapshots

TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk",
         stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock", stat.S_IFCHR: "chr",
         stat.S_IFBLK: "blk"}


def file_sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def user_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False)
            for n in sorted(names) if n.startswith("user.")}


def all_xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def walk(root):
    """Relative paths of root ("." included) and everything below it, sorted."""
    out = ["."]
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            out.append(os.path.relpath(os.path.join(dirpath, n), root))
    return sorted(out)


def entry(path, nlink_dirs=False):
    """What a program can tell about one path: type, mode, owner, size,
    nlink (not for directories: kernel overlayfs reports 1 for merged
    ones), mtime with nanoseconds, content hash, symlink target, device
    number, user.* xattrs."""
    st = os.lstat(path)
    fmt = stat.S_IFMT(st.st_mode)
    e = {"type": TYPES.get(fmt, oct(fmt)), "mode": oct(stat.S_IMODE(st.st_mode)),
         "uid": st.st_uid, "gid": st.st_gid, "mtime_ns": st.st_mtime_ns}
    if fmt != stat.S_IFDIR or nlink_dirs:
        e["nlink"] = st.st_nlink
    if fmt == stat.S_IFREG:
        e["size"] = st.st_size
        e["sha256"] = file_sha(path)
    elif fmt == stat.S_IFLNK:
        e["target"] = os.readlink(path)
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if fmt != stat.S_IFLNK:
        e["xattrs"] = user_xattrs(path)
    return e


def snapshot(root):
    """{relative path: entry()} for the whole tree, plus hard-link groups
    (names of non-directories sharing st_ino)."""
    entries = {}
    inodes = {}
    for rel in walk(root):
        p = os.path.normpath(os.path.join(root, rel))
        entries[rel] = entry(p)
        st = os.lstat(p)
        if not stat.S_ISDIR(st.st_mode):
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return {"entries": entries, "links": links}


def raw_snapshot(root):
    """A layer directory exactly: everything entry() has plus inode number,
    ctime and every xattr (trusted.* included).  Equal before and after
    means nothing touched the tree (reading does not change ctime)."""
    out = {}
    for rel in walk(root):
        p = os.path.normpath(os.path.join(root, rel))
        st = os.lstat(p)
        e = entry(p, nlink_dirs=True)
        e["ino"] = st.st_ino
        e["ctime_ns"] = st.st_ctime_ns
        e["xattrs"] = all_xattrs(p)
        out[rel] = e
    return out


def diff_snapshots(want, got):
    out = []
    we = want.get("entries", want)
    ge = got.get("entries", got)
    for k in sorted(set(we) | set(ge)):
        if k not in ge:
            out.append("missing: %s %s" % (k, we[k]))
        elif k not in we:
            out.append("unexpected: %s %s" % (k, ge[k]))
        elif we[k] != ge[k]:
            fields = sorted(f for f in set(we[k]) | set(ge[k]) if we[k].get(f) != ge[k].get(f))
            out.append("%s differs in %s: want %s, got %s" % (
                k, ", ".join(fields), {f: we[k].get(f) for f in fields},
                {f: ge[k].get(f) for f in fields}))
    if "links" in want and want.get("links") != got.get("links"):
        out.append("hard-link groups: want %s, got %s" % (want["links"], got["links"]))
    return out


def assert_same(want, got, what):
    d = diff_snapshots(want, got)
    assert not d, "%s:\n  %s" % (what, "\n  ".join(d[:40]))


class Untouched:
    """Records raw snapshots of the lowers; check() asserts they did not
    change (the lowers are read-only for every backend)."""

    def __init__(self, *roots):
        self.before = {r: raw_snapshot(r) for r in roots}

    def check(self):
        for r, snap in self.before.items():
            assert_same(snap, raw_snapshot(r), "lower layer %s was changed" % r)


def err_of(fn, *a, **kw):
    """Run fn; return None on success, else the errno name."""
    try:
        fn(*a, **kw)
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return None


def listing(path):
    return sorted(os.listdir(path))

