"""Finalizing a copy-on-write layer offline: prismfs commit (in place and
--atomic), discard and recover.

Uppers are made for real by the kernel: mount -t overlay, change things
through the mount, record what the merged view shows, unmount, commit, and
the lower must then be exactly that view — types, modes, owners, mtimes with
nanoseconds, contents, symlink targets, devices, xattrs and hard-link groups —
with no overlay bookkeeping left in it and the upper emptied.  Hand-made
uppers cover the OCI forms (.wh.NAME, .wh..wh..opq) and user.overlay.*.
Crashes are real: PRISMFS_TEST_CRASH=<step> makes the commit SIGKILL itself
at that step.  Every mount made here (overlay, bind, tmpfs, loop) is
unmounted in teardown, even when the test fails.
"""
import errno
import hashlib
import os
import shutil
import signal
import socket
import stat
import subprocess

import pytest

from conftest import PRISMFS, SANITIZER_MARKERS
from prism_helpers import assert_one_error_line, cli, run_on_a_terminal, xfs_reflink

PRIVATE_XATTR = ("trusted.overlay.", "user.overlay.")
SIBLING_SUFFIXES = (".prismfs-new", ".prismfs-commit", ".prismfs-commit.tmp", ".prismfs-inplace",
                    ".prismfs-inplace.tmp")


# --------------------------------------------------------------------------
# mounts

def mounts_below(prefix):
    """Mount points (any filesystem type) at or below prefix, deepest first."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ")
            if mp == prefix or mp.startswith(prefix + "/"):
                out.append(mp)
    return sorted(out, key=len, reverse=True)


def umount_all(prefix):
    for mp in mounts_below(os.path.realpath(prefix)):
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def run(*cmd, check=True, **kw):
    res = subprocess.run(list(cmd), capture_output=True, text=True, **kw)
    if check and res.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (" ".join(cmd), res.returncode,
                                                     res.stderr.strip()))
    return res


class Layers:
    """L (lower), U (upper), W (work), M (merged mount point) in one dir."""

    def __init__(self, base):
        self.base = base
        self.L = os.path.join(base, "L")
        self.U = os.path.join(base, "U")
        self.W = os.path.join(base, "W")
        self.M = os.path.join(base, "M")
        for d in (self.L, self.U, self.W, self.M):
            os.makedirs(d)

    def mount(self, opts=""):
        o = "lowerdir=%s,upperdir=%s,workdir=%s" % (self.L, self.U, self.W)
        if opts:
            o += "," + opts
        run("mount", "-t", "overlay", "overlay", "-o", o, self.M)

    def umount(self):
        run("umount", self.M)

    def l(self, *p):
        return os.path.join(self.L, *p)

    def u(self, *p):
        return os.path.join(self.U, *p)

    def m(self, *p):
        return os.path.join(self.M, *p)

    def siblings(self):
        parent, name = os.path.split(self.L)
        return sorted(n for n in os.listdir(parent)
                      if n.startswith("." + name + ".prismfs-"))


@pytest.fixture
def layers(workdir):
    base = os.path.join(workdir, "layers")
    os.makedirs(base)
    lay = Layers(base)
    try:
        yield lay
    finally:
        for d in (lay.L, lay.U):
            subprocess.run(["chattr", "-R", "-i", d], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        umount_all(workdir)
        # rm copes with trees deeper than Python's recursion limit.
        subprocess.run(["rm", "-rf", base])


# --------------------------------------------------------------------------
# snapshots of a tree

def xattrs(path, private=False):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return out
        raise
    for n in names:
        if not private and n.startswith(PRIVATE_XATTR):
            continue
        out[n] = os.getxattr(path, n, follow_symlinks=False)
    return out


def digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def snapshot(root, private=False, with_ino=False):
    """{relative path: attributes} for root and everything below it, and the
    hard-link groups (names sharing an inode) of non-directories."""
    entries = {}
    inodes = {}
    todo = ["."]
    while todo:
        rel = todo.pop()
        p = os.path.normpath(os.path.join(root, rel))
        st = os.lstat(p)
        e = {"type": stat.S_IFMT(st.st_mode), "uid": st.st_uid, "gid": st.st_gid,
             "mtime_ns": st.st_mtime_ns, "xattrs": xattrs(p, private)}
        if not stat.S_ISLNK(st.st_mode):
            e["mode"] = stat.S_IMODE(st.st_mode)
        if stat.S_ISREG(st.st_mode):
            e["size"] = st.st_size
            e["sha256"] = digest(p)
        elif stat.S_ISLNK(st.st_mode):
            e["target"] = os.readlink(p)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            e["rdev"] = st.st_rdev
        if with_ino:
            e["ino"] = st.st_ino
        entries[rel] = e
        if stat.S_ISDIR(st.st_mode):
            todo.extend(os.path.normpath(os.path.join(rel, n)) for n in os.listdir(p))
        else:
            inodes.setdefault((st.st_dev, st.st_ino), []).append(rel)
    groups = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return {"entries": entries, "links": groups}


def diff(want, got):
    """A readable list of differences between two snapshots."""
    out = []
    we, ge = want["entries"], got["entries"]
    for k in sorted(set(we) | set(ge)):
        if k not in ge:
            out.append("missing: %s" % k)
        elif k not in we:
            out.append("unexpected: %s" % k)
        elif we[k] != ge[k]:
            fields = sorted(f for f in set(we[k]) | set(ge[k]) if we[k].get(f) != ge[k].get(f))
            out.append("%s differs in %s: want %s, got %s" % (
                k, ", ".join(fields), {f: we[k].get(f) for f in fields},
                {f: ge[k].get(f) for f in fields}))
    if want["links"] != got["links"]:
        out.append("hard-link groups: want %s, got %s" % (want["links"], got["links"]))
    return out


def assert_same_tree(want, got, what):
    d = diff(want, got)
    assert not d, "%s:\n  %s" % (what, "\n  ".join(d[:40]))


def assert_clean_lower(lay):
    """No whiteout, no .wh. marker and no overlay xattr is left in the lower;
    nothing of the commit's is left beside it."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(lay.L):
        for name in [None] + dirnames + filenames:
            p = dirpath if name is None else os.path.join(dirpath, name)
            st = os.lstat(p)
            if name and name.startswith(".wh."):
                bad.append("marker %s" % p)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                bad.append("whiteout %s" % p)
            for x in xattrs(p, private=True):
                if x.startswith(PRIVATE_XATTR):
                    bad.append("xattr %s on %s" % (x, p))
            if name and name.startswith(".prismfs-tmp-"):
                bad.append("temporary file %s" % p)
    assert not bad, "overlay bookkeeping left in the lower:\n  " + "\n  ".join(bad)
    assert lay.siblings() == [], "left beside the lower: %s" % lay.siblings()


def assert_empty(path, what):
    left = os.listdir(path) if os.path.isdir(path) else []
    assert left == [], "%s %s should be empty after the commit, still has %s" % (
        what, path, sorted(left)[:10])


def check_no_sanitizer(res):
    for m in SANITIZER_MARKERS:
        assert m not in res.stderr, "sanitizer report from prismfs:\n" + res.stderr


def commit(lay, *extra, env=None, timeout=120):
    args = ["commit", "--upper", lay.U, "--lower", lay.L, *extra]
    res = cli(*args, timeout=timeout, env=env)
    check_no_sanitizer(res)
    return res


def assert_ok(res, what):
    assert res.returncode == 0, "%s exited %d: %s" % (what, res.returncode, res.stderr)
    assert res.stderr == "", "%s printed on stderr (not a terminal): %r" % (what, res.stderr)


def env_with(**kw):
    e = dict(os.environ)
    e.update(kw)
    return e


# --------------------------------------------------------------------------
# a lower, and changes through a kernel overlay

BIG = 8 << 20


def populate_lower(L):
    def w(rel, data, mode=0o644):
        p = os.path.join(L, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)
        os.chmod(p, mode)

    w("keep.txt", b"untouched\n")
    w("big.bin", os.urandom(BIG))
    w("modify.txt", b"old content\n")
    w("chmod.txt", b"chmod only\n")
    w("chown.txt", b"chown only\n")
    w("touch.txt", b"touch only\n")
    w("xattr.txt", b"gets an xattr\n")
    w("xattr-gone.txt", b"loses an xattr\n")
    os.setxattr(os.path.join(L, "xattr-gone.txt"), "user.y", b"bye")
    os.setxattr(os.path.join(L, "xattr-gone.txt"), "user.z", b"stays")
    w("same.txt", b"rewritten with the same bytes\n")
    w("delete.txt", b"deleted\n")
    w("tree/a/b/c.txt", b"deep\n")
    w("tree/a/d.txt", b"d\n")
    w("opaque/old1.txt", b"gone after rmdir+mkdir\n")
    w("opaque/sub/old2.txt", b"gone too\n")
    w("merge/lower-only.txt", b"stays in the merged dir\n")
    w("merge/sub/lower.txt", b"lower\n")
    w("rename-me.txt", b"renamed\n")
    w("to-symlink.txt", b"becomes a symlink\n")
    w("dir-to-file/x.txt", b"x\n")
    w("file-to-dir", b"becomes a directory\n")
    w("suid.bin", b"#!/bin/sh\n", 0o755)
    w("linked-a.txt", b"a lower hard link pair\n")
    os.link(os.path.join(L, "linked-a.txt"), os.path.join(L, "linked-b.txt"))
    w("split-a.txt", b"a pair one side of which is chmodded\n")
    os.link(os.path.join(L, "split-a.txt"), os.path.join(L, "split-b.txt"))
    w("link-to-lower.txt", b"gets a second name through the overlay\n")
    os.symlink("keep.txt", os.path.join(L, "old-symlink"))
    os.mkfifo(os.path.join(L, "old-fifo"))
    os.makedirs(os.path.join(L, "emptydir"))
    os.utime(os.path.join(L, "tree/a"), ns=(1_000_000_000, 1_100_000_001))


def change_through(M):
    def p(*x):
        return os.path.join(M, *x)

    with open(p("new.txt"), "wb") as f:
        f.write(b"brand new\n")
    os.makedirs(p("newdir/deeper"))
    with open(p("newdir/deeper/n.txt"), "wb") as f:
        f.write(b"nested new\n")
    os.makedirs(p("newdir/empty"))
    with open(p("modify.txt"), "ab") as f:
        f.write(b"appended\n")
    os.chmod(p("chmod.txt"), 0o600)
    os.chown(p("chown.txt"), 1234, 2345)
    os.utime(p("touch.txt"), ns=(1_234_567_890_123_456_789, 987_654_321_987_654_321))
    os.setxattr(p("xattr.txt"), "user.x", b"1")
    os.removexattr(p("xattr-gone.txt"), "user.y")
    with open(p("same.txt"), "r+b") as f:
        data = f.read()
        f.seek(0)
        f.write(data)
    os.unlink(p("delete.txt"))
    shutil.rmtree(p("tree"))
    shutil.rmtree(p("opaque"))
    os.makedirs(p("opaque"))
    with open(p("opaque/fresh.txt"), "wb") as f:
        f.write(b"the only child now\n")
    with open(p("merge/upper-only.txt"), "wb") as f:
        f.write(b"added to a merged dir\n")
    os.rename(p("rename-me.txt"), p("renamed.txt"))
    os.unlink(p("to-symlink.txt"))
    os.symlink("new.txt", p("to-symlink.txt"))
    shutil.rmtree(p("dir-to-file"))
    with open(p("dir-to-file"), "wb") as f:
        f.write(b"was a directory\n")
    os.unlink(p("file-to-dir"))
    os.makedirs(p("file-to-dir/inside"))
    os.chown(p("suid.bin"), 1234, 1234)
    os.chmod(p("suid.bin"), 0o4755)
    with open(p("hl-1.txt"), "wb") as f:
        f.write(b"an upper hard link group\n")
    os.link(p("hl-1.txt"), p("newdir/hl-2.txt"))
    os.link(p("hl-1.txt"), p("hl-3.txt"))
    os.link(p("link-to-lower.txt"), p("newdir/second-name.txt"))
    os.chmod(p("split-b.txt"), 0o640)
    os.symlink("../keep.txt", p("newdir/sym"))
    os.mkfifo(p("fifo"))
    os.mknod(p("null-dev"), 0o620 | stat.S_IFCHR, os.makedev(1, 3))
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(p("sock"))
    finally:
        s.close()
    if shutil.which("setfacl"):
        # An ACL is an xattr (system.posix_acl_access) that rewrites mode bits.
        run("setfacl", "-m", "u:1234:rw", p("chmod.txt"))
    os.utime(p("newdir/deeper"), ns=(5_000_000_000, 5_000_000_005))


def kernel_upper(lay, opts="", change=change_through, populate=populate_lower):
    """Populate L, change it through a kernel overlay, return (the lower
    before, what the overlay showed, the raw upper)."""
    populate(lay.L)
    before = snapshot(lay.L, with_ino=True)
    lay.mount(opts)
    try:
        change(lay.M)
        merged = snapshot(lay.M)
    finally:
        lay.umount()
    return before, merged, snapshot(lay.U, private=True)


def strip_ino(snap):
    return {"entries": {k: {f: v for f, v in e.items() if f != "ino"}
                        for k, e in snap["entries"].items()},
            "links": snap["links"]}


MODES = {"inplace": [], "atomic": ["--atomic"]}


# --------------------------------------------------------------------------
# commit of kernel-made uppers

@pytest.mark.parametrize("mode", sorted(MODES))
def test_commit_kernel_upper(layers, mode):
    lay = layers
    before, merged, raw = kernel_upper(lay)
    # The kernel wrote the forms under test.
    r = raw["entries"]
    assert r["delete.txt"]["type"] == stat.S_IFCHR and r["delete.txt"]["rdev"] == 0
    assert r["tree"]["type"] == stat.S_IFCHR, "a deleted lower tree is one whiteout"
    assert r["opaque"]["xattrs"].get("trusted.overlay.opaque") == b"y"
    assert "trusted.overlay.origin" in r["chmod.txt"]["xattrs"]
    assert ["hl-1.txt", "hl-3.txt", "newdir/hl-2.txt"] in raw["links"]
    if shutil.which("setfacl"):
        assert "system.posix_acl_access" in merged["entries"]["chmod.txt"]["xattrs"]
    res = commit(lay, "--work", lay.W, *MODES[mode])
    assert_ok(res, "prismfs commit %s" % mode)
    after = snapshot(lay.L, with_ino=True)
    assert_same_tree(merged, strip_ino(after), "the lower after the commit is not what the "
                     "overlay showed")
    assert_clean_lower(lay)
    assert_empty(lay.U, "the upper")
    assert_empty(lay.W, "the work directory")
    ino = {k: e["ino"] for k, e in after["entries"].items()}
    old = {k: e["ino"] for k, e in before["entries"].items()}
    # Unchanged files are never copied: in place they are left alone; the
    # atomic tree shares them (same inode = hard link on this filesystem).
    for k in ("big.bin", "keep.txt", "linked-a.txt", "old-symlink", "old-fifo"):
        assert ino[k] == old[k], "%s: the unchanged file was copied (inode %d -> %d)" % (
            k, old[k], ino[k])
    if mode == "inplace":
        # Same bytes, new metadata: kept in place, only the metadata applied.
        for k in ("same.txt", "chown.txt", "chmod.txt", "touch.txt", "xattr.txt"):
            assert ino[k] == old[k], "%s: identical content was rewritten" % k
        assert ino["modify.txt"] != old["modify.txt"], \
            "modify.txt: a changed file must be replaced by rename, not written in place"
        assert os.stat(lay.L).st_ino == old["."], "in place, the lower root stays the same inode"
    else:
        assert os.stat(lay.L).st_ino != old["."], "--atomic swaps in a new root directory"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_commit_twice_is_harmless(layers, mode):
    """Committing again (with the now empty upper) changes nothing but the
    root's metadata, which the empty upper root still defines."""
    lay = layers
    _, merged, _ = kernel_upper(lay)
    assert_ok(commit(lay, *MODES[mode]), "first commit")
    first = snapshot(lay.L)
    assert_ok(commit(lay, *MODES[mode]), "second commit")
    second = snapshot(lay.L)
    first["entries"].pop(".")
    second["entries"].pop(".")
    assert_same_tree(first, second, "a second commit of an empty upper changed the lower")


def test_commit_metacopy_in_place(layers):
    """metacopy=on: a chmod/chown copies up only metadata; the commit applies
    only metadata and keeps the lower's data and inode."""
    lay = layers

    def change(M):
        os.chmod(os.path.join(M, "big.bin"), 0o600)
        os.chown(os.path.join(M, "keep.txt"), 1234, 1234)

    before, merged, raw = kernel_upper(lay, "redirect_dir=on,metacopy=on", change)
    assert "trusted.overlay.metacopy" in raw["entries"]["big.bin"]["xattrs"], \
        "the kernel did not make a metadata-only copy (metacopy=on unsupported?)"
    assert raw["entries"]["big.bin"].get("sha256") != merged["entries"]["big.bin"]["sha256"], \
        "the metacopy upper file unexpectedly holds the data"
    res = commit(lay)
    assert_ok(res, "prismfs commit (metacopy)")
    after = snapshot(lay.L, with_ino=True)
    assert_same_tree(merged, strip_ino(after), "metacopy commit")
    assert after["entries"]["big.bin"]["ino"] == before["entries"]["big.bin"]["ino"]
    assert_clean_lower(lay)


def rename_changes(M):
    def p(*x):
        return os.path.join(M, *x)
    os.rename(p("merge"), p("merge-renamed"))                  # relative redirect
    os.rename(p("tree/a/b"), p("newplace"))                    # absolute redirect
    os.rename(p("big.bin"), p("big-renamed.bin"))              # plain copy-up + whiteout
    os.chmod(p("keep.txt"), 0o600)                             # metacopy
    os.rename(p("keep.txt"), p("newplace/keep-moved.txt"))      # metacopy + redirect
    os.makedirs(p("merge"))                                     # new dir where one was
    with open(p("merge/again.txt"), "wb") as f:
        f.write(b"again\n")
    shutil.rmtree(p("opaque"))
    os.makedirs(p("opaque"))                                    # opaque...
    os.rename(p("dir-to-file"), p("opaque/moved-in"))          # ...holding a redirect


def test_commit_redirect_in_place(layers):
    """In place too, redirects (relative and absolute, directories and
    metacopy files) give exactly the merged view (more cases:
    test_commit_redirect.py)."""
    lay = layers
    _, merged, raw = kernel_upper(lay, "redirect_dir=on,metacopy=on", rename_changes)
    assert any("trusted.overlay.redirect" in e["xattrs"] for e in raw["entries"].values()), \
        "the kernel wrote no redirect"
    assert "trusted.overlay.metacopy" in raw["entries"]["newplace/keep-moved.txt"]["xattrs"]
    res = commit(lay, "--work", lay.W)
    assert_ok(res, "prismfs commit (in place, redirects)")
    assert_same_tree(merged, snapshot(lay.L), "in-place commit with redirects")
    assert_clean_lower(lay)
    assert_empty(lay.U, "the upper")


def test_commit_redirect_atomic(layers):
    """--atomic follows redirects (relative and absolute, directories and
    metacopy files) and builds exactly the merged view."""
    lay = layers
    _, merged, _ = kernel_upper(lay, "redirect_dir=on,metacopy=on", rename_changes)
    assert "opaque/moved-in/x.txt" in merged["entries"], "the redirect below an opaque dir"
    res = commit(lay, "--atomic", "--work", lay.W)
    assert_ok(res, "prismfs commit --atomic (redirects)")
    assert_same_tree(merged, snapshot(lay.L), "atomic commit with redirects")
    assert_clean_lower(lay)
    assert_empty(lay.U, "the upper")


# --------------------------------------------------------------------------
# hand-made uppers: OCI markers, user.overlay.*, xattr whiteouts

def write(path, data=b"x\n"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def test_commit_oci_markers(layers):
    lay = layers
    for rel in ("gone.txt", "d/gone.txt", "d/kept.txt", "gonedir/a/b.txt", "opq/old.txt",
                "opq/sub/old.txt", "uopq/old.txt", "topq/old.txt", "fresh/old.txt",
                "xwh/gone.txt", "xwh/kept.txt", "keep.txt"):
        write(lay.l(rel), b"lower " + rel.encode() + b"\n")
    os.makedirs(lay.u("d"))
    write(lay.u(".wh.gone.txt"), b"")
    write(lay.u("d/.wh.gone.txt"), b"")
    write(lay.u(".wh.gonedir"), b"")
    write(lay.u("opq/.wh..wh..opq"), b"")
    write(lay.u("opq/new.txt"), b"new in opq\n")
    write(lay.u("uopq/new.txt"), b"new in uopq\n")
    os.setxattr(lay.u("uopq"), "user.overlay.opaque", b"y")
    write(lay.u("topq/new.txt"), b"new in topq\n")
    os.setxattr(lay.u("topq"), "trusted.overlay.opaque", b"y")
    # .wh.fresh next to fresh/: the lower fresh/ is gone, the upper one alone
    write(lay.u(".wh.fresh"), b"")
    write(lay.u("fresh/new.txt"), b"new in fresh\n")
    # an xattr whiteout in a dir marked opaque=x (which is not opaque)
    write(lay.u("xwh/gone.txt"), b"")
    os.setxattr(lay.u("xwh/gone.txt"), "trusted.overlay.whiteout", b"")
    os.setxattr(lay.u("xwh"), "trusted.overlay.opaque", b"x")
    write(lay.u("added.txt"), b"added\n")
    res = commit(lay)
    assert_ok(res, "prismfs commit (OCI markers)")
    got = sorted(os.path.relpath(os.path.join(d, f), lay.L)
                 for d, _, fs in os.walk(lay.L) for f in fs)
    assert got == sorted(["added.txt", "d/kept.txt", "fresh/new.txt", "keep.txt",
                          "opq/new.txt", "topq/new.txt", "uopq/new.txt", "xwh/kept.txt"]), got
    assert not os.path.exists(lay.l("opq/sub")), "opaque directory kept a lower subdirectory"
    assert not os.path.exists(lay.l("gonedir")), "a .wh. marker did not delete a lower tree"
    with open(lay.l("opq/new.txt"), "rb") as f:
        assert f.read() == b"new in opq\n"
    assert_clean_lower(lay)
    assert_empty(lay.U, "the upper")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_commit_deep_upper(layers, mode):
    """Deeper than PATH_MAX and than the walk's descriptor window."""
    lay = layers
    depth = 1500
    fd = os.open(lay.U, os.O_RDONLY)
    try:
        for i in range(depth):
            os.mkdir("d%d" % (i % 10), dir_fd=fd)
            nfd = os.open("d%d" % (i % 10), os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        w = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
        os.write(w, b"at the bottom\n")
        os.close(w)
    finally:
        os.close(fd)
    write(lay.l("sibling.txt"), b"lower\n")
    res = commit(lay, *MODES[mode])
    assert_ok(res, "prismfs commit of a deep upper (%s)" % mode)
    fd = os.open(lay.L, os.O_RDONLY)
    try:
        for i in range(depth):
            nfd = os.open("d%d" % (i % 10), os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nfd
        r = os.open("bottom.txt", os.O_RDONLY, dir_fd=fd)
        assert os.read(r, 100) == b"at the bottom\n"
        assert stat.S_IMODE(os.fstat(r).st_mode) == 0o640
        os.close(r)
    finally:
        os.close(fd)
    assert os.path.exists(lay.l("sibling.txt"))
    assert_empty(lay.U, "the upper")


# --------------------------------------------------------------------------
# refusing bad input: one line, non-zero, nothing changed

def test_commit_bad_input(layers, workdir):
    lay = layers
    write(lay.l("f.txt"))
    write(lay.u("g.txt"))
    afile = os.path.join(workdir, "afile")
    write(afile)
    missing = os.path.join(workdir, "missing")
    inner = lay.l("inner")
    os.makedirs(inner)
    inner_u = lay.u("inner")
    os.makedirs(inner_u)
    lsnap, usnap = snapshot(lay.L), snapshot(lay.U, private=True)
    cases = {
        "missing upper": ["commit", "--upper", missing, "--lower", lay.L],
        "missing lower": ["commit", "--upper", lay.U, "--lower", missing],
        "upper is a file": ["commit", "--upper", afile, "--lower", lay.L],
        "upper == lower": ["commit", "--upper", lay.L, "--lower", lay.L],
        "upper == lower by another path": ["commit", "--upper", lay.L + "/.",
                                           "--lower", lay.L],
        "upper inside lower": ["commit", "--upper", inner, "--lower", lay.L],
        "lower inside upper": ["commit", "--upper", lay.U, "--lower", inner_u],
        "work inside upper": ["commit", "--upper", lay.U, "--lower", lay.L, "--work", inner_u],
        "work is the lower": ["commit", "--upper", lay.U, "--lower", lay.L, "--work", lay.L],
        "lower is /": ["commit", "--upper", lay.U, "--lower", "/"],
        "missing work": ["commit", "--upper", lay.U, "--lower", lay.L, "--work", missing],
        "discard missing upper": ["discard", "--upper", missing],
        "discard /": ["discard", "--upper", "/"],
        "recover missing lower": ["recover", "--lower", missing],
        "no --lower": ["commit", "--upper", lay.U],
        "positional": ["commit", lay.U, lay.L],
        "unknown option": ["commit", "--upper", lay.U, "--lower", lay.L, "--frob"],
    }
    for what, args in cases.items():
        res = cli(*args)
        check_no_sanitizer(res)
        assert_one_error_line(res, what)
        assert_same_tree(lsnap, snapshot(lay.L), "%s changed the lower" % what)
        assert_same_tree(usnap, snapshot(lay.U, private=True), "%s changed the upper" % what)
    assert cli("commit", lay.U, lay.L).returncode == 2, "bad usage exits 2"


def test_commit_help():
    res = cli("commit", "--help")
    assert res.returncode == 0, res.stderr
    for word in ("--upper", "--lower", "--atomic", "--work", "discard", "recover"):
        assert word in res.stdout, "prismfs commit --help does not mention %s" % word
    res = cli("--help")
    for word in ("commit", "discard", "recover"):
        assert word in res.stdout, "prismfs --help does not mention %s" % word


def test_commit_one_at_a_time(layers):
    """A commit or recovery holds a lock on the lower's parent."""
    import fcntl
    lay = layers
    write(lay.u("f.txt"))
    fd = os.open(os.path.dirname(lay.L), os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        res = commit(lay)
        assert_one_error_line(res, "a commit while another holds the lock")
        assert "another prismfs commit" in res.stderr, res.stderr
        assert os.path.exists(lay.u("f.txt"))
    finally:
        os.close(fd)
    assert_ok(commit(lay), "the commit once the lock is free")
    assert os.path.exists(lay.l("f.txt"))


def test_commit_refuses_live_overlay(layers):
    lay = layers
    write(lay.l("f.txt"))
    lay.mount()
    try:
        write(lay.m("new.txt"))
        res = commit(lay)
        assert_one_error_line(res, "commit of a mounted upper")
        assert "in use" in res.stderr and lay.M in res.stderr, res.stderr
        assert not os.path.exists(lay.l("new.txt"))
        res = cli("discard", "--upper", lay.U)
        assert_one_error_line(res, "discard of a mounted upper")
    finally:
        lay.umount()


# --------------------------------------------------------------------------
# failing midway: the upper is kept, the error is one line

def chattr_works(path):
    return subprocess.run(["chattr", "+i", path], capture_output=True).returncode == 0


def test_commit_fails_midway_in_place(layers):
    lay = layers

    def populate(L):
        write(os.path.join(L, "a-first/f.txt"), b"old\n")
        write(os.path.join(L, "z-locked/f.txt"), b"old\n")

    def change(M):
        write(os.path.join(M, "a-first/f.txt"), b"new\n")
        write(os.path.join(M, "a-first/new.txt"), b"new\n")
        write(os.path.join(M, "z-locked/g.txt"), b"cannot be created\n")

    _, merged, raw = kernel_upper(lay, change=change, populate=populate)
    if not chattr_works(lay.l("z-locked")):
        pytest.skip("chattr +i is not supported here")
    try:
        res = commit(lay)
        assert_one_error_line(res, "commit into an immutable directory")
        assert "z-locked" in res.stderr, "the error should name the path: %r" % res.stderr
        assert "upper is kept" in res.stderr, res.stderr
        assert_same_tree(raw, snapshot(lay.U, private=True), "the failed commit changed the upper")
        with open(lay.l("a-first/f.txt"), "rb") as f:
            assert f.read() == b"new\n", "the commit should have got past a-first before failing"
    finally:
        subprocess.run(["chattr", "-i", lay.l("z-locked")])
    # The same commit again completes the job.
    assert_ok(commit(lay), "the commit run again")
    assert_same_tree(merged, snapshot(lay.L), "the completed commit")
    assert_clean_lower(lay)


def test_commit_fails_atomic_rolls_back(layers):
    lay = layers
    before, merged, raw = kernel_upper(lay)
    locked = lay.l("keep.txt")
    if not chattr_works(locked):
        pytest.skip("chattr +i is not supported here")
    try:
        # An immutable file cannot get another link: sharing it fails.
        res = commit(lay, "--atomic")
        assert_one_error_line(res, "atomic commit sharing an immutable file")
        assert "keep.txt" in res.stderr, res.stderr
        assert "unchanged" in res.stderr and "upper is kept" in res.stderr, res.stderr
        assert_same_tree(strip_ino(before), snapshot(lay.L), "a failed --atomic changed the lower")
        assert_same_tree(raw, snapshot(lay.U, private=True), "a failed --atomic changed the upper")
        assert lay.siblings() == [], "a failed --atomic left %s" % lay.siblings()
    finally:
        subprocess.run(["chattr", "-i", locked])
    assert_ok(commit(lay, "--atomic"), "the atomic commit run again")
    assert_same_tree(merged, snapshot(lay.L), "the atomic commit run again")


def test_commit_read_only_lower(layers):
    lay = layers
    before, _, raw = kernel_upper(lay)
    run("mount", "--bind", lay.L, lay.L)
    run("mount", "-o", "remount,bind,ro", lay.L)
    try:
        res = commit(lay)
        assert_one_error_line(res, "commit into a read-only lower")
        assert "Read-only file system" in res.stderr, res.stderr
    finally:
        run("umount", lay.L)
    assert_same_tree(strip_ino(before), snapshot(lay.L), "a read-only lower changed")
    assert_same_tree(raw, snapshot(lay.U, private=True), "the failed commit changed the upper")


# --------------------------------------------------------------------------
# crashes (SIGKILL at a named step) and recovery

ATOMIC_STEPS = [  # (step, which tree L holds after the crash)
    ("atomic-journal", "old"),
    ("atomic-mkdir", "old"),
    ("atomic-build", "old"),
    ("atomic-built", "old"),
    ("atomic-swapped", "new"),
    ("atomic-journal-swapped", "new"),
    ("atomic-old-removed", "new"),
    ("atomic-upper-removed", "new"),
]


def crash(lay, step, *extra):
    res = commit(lay, *extra, env=env_with(PRISMFS_TEST_CRASH=step))
    assert res.returncode == -signal.SIGKILL, (
        "PRISMFS_TEST_CRASH=%s: expected the commit to be killed, it exited %d: %s"
        % (step, res.returncode, res.stderr))


@pytest.mark.parametrize("step,expect", ATOMIC_STEPS)
def test_atomic_crash_and_recover(layers, step, expect):
    lay = layers
    before, merged, raw = kernel_upper(lay)
    old = strip_ino(before)
    crash(lay, step, "--atomic", "--work", lay.W)
    want = old if expect == "old" else merged
    assert_same_tree(want, snapshot(lay.L), "after a crash at %s, L should be the %s tree"
                     % (step, expect))
    if expect == "old":
        assert_same_tree(raw, snapshot(lay.U, private=True), "a crash before the swap "
                         "changed the upper")
    res = cli("recover", "--lower", lay.L)
    check_no_sanitizer(res)
    assert res.returncode == 0, "prismfs recover exited %d: %s" % (res.returncode, res.stderr)
    assert ("rolled back" if expect == "old" else "finished") in res.stdout, res.stdout
    assert_same_tree(want, snapshot(lay.L), "after recovery from %s" % step)
    assert lay.siblings() == [], "recovery left %s" % lay.siblings()
    if expect == "old":
        assert_same_tree(raw, snapshot(lay.U, private=True), "rollback changed the upper")
        assert_ok(commit(lay, "--atomic"), "the commit after the rollback")
        assert_same_tree(merged, snapshot(lay.L), "the commit after the rollback")
    else:
        assert_empty(lay.U, "the upper")
        assert_empty(lay.W, "the work directory")
        # A later commit works.
        write(lay.u("later.txt"), b"later\n")
        assert_ok(commit(lay, "--atomic"), "a later commit")
        assert os.path.exists(lay.l("later.txt"))
    assert_clean_lower(lay)
    res = cli("recover", "--lower", lay.L)
    assert res.returncode == 0 and "no interrupted commit" in res.stdout, res.stdout


@pytest.mark.parametrize("step,expect", [("atomic-build", "old"), ("atomic-swapped", "new")])
def test_atomic_crash_then_commit_recovers_first(layers, step, expect):
    """The next commit on the same lower runs the recovery itself."""
    lay = layers
    _, merged, _ = kernel_upper(lay)
    crash(lay, step, "--atomic")
    res = commit(lay, "--atomic")
    assert_ok(res, "the commit after a crash at %s" % step)
    assert_same_tree(merged, snapshot(lay.L), "the commit after a crash at %s" % step)
    assert lay.siblings() == []
    assert_empty(lay.U, "the upper")


@pytest.mark.parametrize("step", ["inplace-file", "inplace-synced"])
def test_in_place_crash_then_commit_again(layers, step):
    """In place is not atomic as a whole, but each file is, the upper is kept
    until the end, and the same commit again completes the job."""
    lay = layers
    _, merged, raw = kernel_upper(lay)
    crash(lay, step)
    # Only the commit's own mark (test_commit_crash.py) is added.
    left = snapshot(lay.U, private=True)
    for x in PRIVATE_XATTR:
        left["entries"]["."]["xattrs"].pop(x + "prismfs.commit", None)
    assert_same_tree(raw, left, "a crash changed the upper")
    assert_ok(commit(lay), "the commit after a crash at %s" % step)
    assert_same_tree(merged, snapshot(lay.L), "the commit after a crash at %s" % step)
    assert_clean_lower(lay)


def test_recover_refuses_stray_sibling(layers):
    lay = layers
    write(lay.l("f.txt"))
    stray = os.path.join(os.path.dirname(lay.L), ".L.prismfs-new")
    os.makedirs(stray)
    res = cli("recover", "--lower", lay.L)
    assert_one_error_line(res, "recover with a stray new tree and no journal")
    assert os.path.isdir(stray), "recover removed a directory no journal names"


# --------------------------------------------------------------------------
# discard

def test_discard_deep_tree(layers):
    lay = layers
    depth = 5000
    fd = os.open(lay.U, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            w = os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd)
            os.close(w)
            nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
    finally:
        os.close(fd)
    os.makedirs(os.path.join(lay.W, "work", "x"))
    os.chmod(os.path.join(lay.W, "work"), 0)
    res = cli("discard", "--upper", lay.U, "--work", lay.W, timeout=300)
    check_no_sanitizer(res)
    assert res.returncode == 0, "prismfs discard exited %d: %s" % (res.returncode, res.stderr)
    assert_empty(lay.U, "the upper")
    assert_empty(lay.W, "the work directory")


def test_discard_never_follows_symlinks(layers, workdir):
    lay = layers
    outside = os.path.join(workdir, "outside")
    write(os.path.join(outside, "precious.txt"))
    os.symlink(outside, lay.u("link-to-outside"))
    os.makedirs(lay.u("d"))
    os.symlink(outside, lay.u("d", "again"))
    res = cli("discard", "--upper", lay.U)
    assert res.returncode == 0, res.stderr
    assert_empty(lay.U, "the upper")
    assert os.path.exists(os.path.join(outside, "precious.txt")), "discard followed a symlink"


def test_discard_does_not_cross_mounts(layers):
    lay = layers
    mnt = lay.u("mnt")
    os.makedirs(mnt)
    write(lay.u("f.txt"))
    run("mount", "-t", "tmpfs", "tmpfs", mnt)
    try:
        write(os.path.join(mnt, "other-fs.txt"))
        res = cli("discard", "--upper", lay.U)
        assert_one_error_line(res, "discard of an upper with a mount inside")
        assert "mnt" in res.stderr, res.stderr
        assert os.path.exists(os.path.join(mnt, "other-fs.txt")), \
            "discard removed files of another filesystem"
    finally:
        run("umount", mnt)


# --------------------------------------------------------------------------
# progress

def test_progress_only_on_a_terminal(layers):
    lay = layers
    for i in range(200):
        write(lay.u("d%d" % (i % 10), "f%d" % i), b"x" * 1000)
    rc, _, text = run_on_a_terminal(["commit", "--upper", lay.U, "--lower", lay.L], timeout=60,
                                    env=env_with(PRISMFS_TEST_PROGRESS_MS="0"))
    assert rc == 0, text
    assert "\r" in text and "files" in text and "/200 files" in text, \
        "no progress line on the terminal: %r" % text[:300]
    assert "\n" not in text.replace("\r\n", ""), "progress must stay on one line: %r" % text[:300]
    assert text.endswith("\r\x1b[K"), "the progress line is not cleared at the end: %r" % text[-40:]
    # Not a terminal: nothing at all.
    for i in range(50):
        write(lay.u("f%d" % i))
    res = cli("commit", "--upper", lay.U, "--lower", lay.L,
              env=env_with(PRISMFS_TEST_PROGRESS_MS="0"))
    assert_ok(res, "commit without a terminal")


# --------------------------------------------------------------------------
# reflinks: a filesystem that has them (XFS on a loop device)

def fiemap_shared(path):
    """True when every extent of path is marked shared (filefrag -v)."""
    res = run("filefrag", "-v", path)
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()[:1].isdigit()]
    return bool(lines) and all("shared" in ln for ln in lines)


@pytest.fixture
def xfs(workdir):
    with xfs_reflink(workdir) as mnt:
        yield mnt


def populate_big(L):
    populate_lower(L)
    for name in ("big2.bin", "big3.bin"):
        with open(os.path.join(L, name), "wb") as f:
            f.write(os.urandom(BIG))


def change_big(M):
    change_through(M)
    os.chown(os.path.join(M, "big2.bin"), 1234, 1234)   # same bytes, new owner
    with open(os.path.join(M, "big3.bin"), "ab") as f:  # new bytes
        f.write(b"!")


def free_bytes(path):
    v = os.statvfs(path)
    return v.f_bfree * v.f_frsize


@pytest.mark.parametrize("mode", sorted(MODES))
def test_commit_reflink(xfs, mode):
    """Where the filesystem has reflinks, unchanged files are clones of the
    old ones and changed files clones of the upper's: no data is copied.
    Measured at the last step before the upper is removed."""
    lay = Layers(os.path.join(xfs, "layers"))
    _, merged, _ = kernel_upper(lay, change=change_big, populate=populate_big)
    free0 = free_bytes(xfs)
    crash(lay, "atomic-built" if mode == "atomic" else "inplace-synced", *MODES[mode])
    used = free0 - free_bytes(xfs)
    assert used < BIG // 2, "the commit used %d bytes: file data was copied" % used
    if mode == "atomic":
        new = os.path.join(xfs, "layers", ".L.prismfs-new")
        for name in ("big.bin", "big2.bin", "big3.bin"):
            assert os.stat(os.path.join(new, name)).st_ino != os.stat(lay.l(name)).st_ino
            assert fiemap_shared(os.path.join(new, name)), "%s is not a reflink" % name
    else:
        assert fiemap_shared(lay.l("big3.bin")), "big3.bin was not cloned from the upper"
    res = commit(lay, *MODES[mode])
    assert_ok(res, "prismfs commit %s on XFS" % mode)
    after = snapshot(lay.L)
    assert_same_tree(merged, after, "commit on XFS")
    assert ["linked-a.txt", "linked-b.txt"] in after["links"], after["links"]
    assert_clean_lower(lay)
    assert_empty(lay.U, "the upper")
