"""Layered mounts, rename: lower files are copied up and their old names
whited out; upper-only directories move freely; a directory present in a
lower either moves with every child (redirects) or fails with EXDEV leaving
everything as it was (kernel overlayfs without redirect_dir, the default
here); RENAME_NOREPLACE sees lower names; RENAME_EXCHANGE swaps a lower and
an upper file.

Parity suite (see layer_helpers.py): asserts what kernel overlayfs does
(Documentation/filesystems/overlayfs.rst, "renaming directories").  Run with
PRISMFS_LAYER_KERNEL_OPTS=redirect_dir=on to check the "moved with every
child" branches against the kernel too.
"""
import os
import stat

import pytest

from layer_helpers import (T0, T1, Untouched, assert_no_whiteout, assert_same, assert_upper_data,
                           assert_whiteout, err_of, listing, mkdir, mkfile, mksymlink, ovl,
                           pytest_generate_tests, read, snapshot)
from sysx import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2

assert ovl and pytest_generate_tests  # fixture and hook used by pytest

RENAME_WHITEOUT = 4


def attrs(path):
    st = os.lstat(path)
    return {"type": stat.S_IFMT(st.st_mode), "mode": oct(stat.S_IMODE(st.st_mode)),
            "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}


def test_rename_lower_file(ovl):
    """rename of a lower file to another directory: the file is copied up
    with its data and attributes (st_ino too), the old name is whited out,
    both hold after a remount, the lower is untouched."""
    mkfile(ovl.l2("a/f"), b"lower content", mode=0o640, uid=12, gid=34, mtime_ns=T0,
           xattrs={"user.k": b"v"})
    mkfile(ovl.l2("a/other"), b"o")
    mkdir(ovl.l1("b"))
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    before = attrs(ovl.m("a/f"))

    os.rename(ovl.m("a/f"), ovl.m("b/g"))

    def check():
        assert err_of(os.lstat, ovl.m("a/f")) == "ENOENT"
        assert listing(ovl.m("a")) == ["other"]
        assert listing(ovl.m("b")) == ["g"]
        assert attrs(ovl.m("b/g")) == before
        assert read(ovl.m("b/g")) == b"lower content"
        assert os.getxattr(ovl.m("b/g"), "user.k") == b"v"
    check()
    assert_whiteout(ovl.u("a/f"))
    assert_upper_data(ovl.u("b/g"), b"lower content")
    ovl.remount()
    check()
    lowers.check()


@pytest.mark.parametrize("src", ["lower", "upper"])
def test_rename_file_onto_lower_file(ovl, src):
    """rename of a (lower or upper) file onto a lower file replaces it: the
    target shows the source's content, the source name is gone (whited out
    when it was a lower name), also after a remount."""
    mkfile(ovl.l2("target"), b"old target")
    if src == "lower":
        mkfile(ovl.l1("source"), b"source data")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    if src == "upper":
        mkfile(ovl.m("source"), b"source data")

    os.rename(ovl.m("source"), ovl.m("target"))

    def check():
        assert read(ovl.m("target")) == b"source data"
        assert err_of(os.lstat, ovl.m("source")) == "ENOENT"
        assert listing(ovl.M) == ["target"]
    check()
    if src == "lower":
        assert_whiteout(ovl.u("source"))
    else:
        assert_no_whiteout(ovl.u("source"))
    ovl.remount()
    check()
    lowers.check()


def test_rename_upper_only_dir(ovl):
    """A directory made through the mount moves with all its contents, also
    into a merged directory; its old name leaves nothing in the upper."""
    mkfile(ovl.l1("merged/l1"), b"1")
    mkfile(ovl.l2("merged/l2"), b"2")
    ovl.mount()
    os.makedirs(ovl.m("nd/sub"))
    mkfile(ovl.m("nd/f"), b"f")
    mkfile(ovl.m("nd/sub/g"), b"g")
    os.symlink("f", ovl.m("nd/s"))
    want = snapshot(ovl.m("nd"))

    os.rename(ovl.m("nd"), ovl.m("nd2"))
    os.rename(ovl.m("nd2"), ovl.m("merged/nd3"))

    assert err_of(os.lstat, ovl.m("nd")) == "ENOENT"
    assert err_of(os.lstat, ovl.m("nd2")) == "ENOENT"
    assert_no_whiteout(ovl.u("nd"))
    assert_no_whiteout(ovl.u("nd2"))
    want["entries"]["."].pop("mtime_ns")

    def check():
        assert listing(ovl.m("merged")) == ["l1", "l2", "nd3"]
        got = snapshot(ovl.m("merged/nd3"))
        got["entries"]["."].pop("mtime_ns")
        assert_same(want, got, "the moved directory")
    check()
    ovl.remount()
    check()


def _lower_dir_tree(ovl):
    mkfile(ovl.l1("d/l1file"), b"l1", mode=0o600, mtime_ns=T0)
    mkfile(ovl.l2("d/l2file"), b"l2", mtime_ns=T1)
    mkfile(ovl.l2("d/sub/deep"), b"deep")
    mkfile(ovl.l1("d/both"), b"top")
    mkfile(ovl.l2("d/both"), b"below")
    mksymlink(ovl.l2("d/sym"), "l2file")
    mkfile(ovl.l2("lo/only"), b"lower-only dir")
    mkfile(ovl.l2("lo/sub/x"), b"x")
    mkdir(ovl.l1("dest"))


@pytest.mark.parametrize("what", ["merged", "lower_only", "merged_with_upper_part",
                                  "into_subdir"])
def test_rename_dir_present_in_lower(ovl, what):
    """rename of a directory that exists in a lower (merged or lower-only):
    either it moves with every child (upper, L1 and L2 ones; same
    content, modes, owners, child mtimes), also after a remount, or it fails
    with EXDEV and the whole view is exactly as before (kernel overlayfs
    without redirect_dir).  Never is an entry lost."""
    _lower_dir_tree(ovl)
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    src = {"merged": "d", "lower_only": "lo", "merged_with_upper_part": "d",
           "into_subdir": "d"}[what]
    dst = {"into_subdir": "dest/moved"}.get(what, "moved")
    if what == "merged_with_upper_part":
        mkfile(ovl.m("d/upper_new"), b"u")
        os.chmod(ovl.m("d/l2file"), 0o604)
        os.unlink(ovl.m("d/both"))
    whole_before = snapshot(ovl.M)
    sub_before = snapshot(ovl.m(src))

    e = err_of(os.rename, ovl.m(src), ovl.m(dst))

    assert e in (None, "EXDEV"), "rename of a lower directory: %s" % e
    if e == "EXDEV":
        assert_same(whole_before, snapshot(ovl.M), "EXDEV but the view changed")
        assert err_of(os.lstat, ovl.m(dst)) == "ENOENT"
        return

    def check():
        assert err_of(os.lstat, ovl.m(src)) == "ENOENT"
        got = snapshot(ovl.m(dst))
        want = {"entries": dict(sub_before["entries"]), "links": sub_before["links"]}
        for s in (got, want):
            s["entries"]["."] = dict(s["entries"]["."])
            s["entries"]["."].pop("mtime_ns")
        assert_same(want, got, "the moved directory lost or changed entries")
    check()
    ovl.remount()
    check()
    lowers.check()


def test_rename_lower_dir_onto_non_empty_dir(ovl):
    """A directory that cannot move (EXDEV) fails so whatever it would
    replace: overlayfs refuses the move before it looks at the target, so
    the answer is EXDEV, not the target's ENOTEMPTY; where lower directories
    can move (redirect_dir=on) the target's ENOTEMPTY is the answer."""
    mkfile(ovl.l2("lo/x"), b"x")
    mkfile(ovl.l1("full/y"), b"y")
    mkfile(ovl.l2("full/z"), b"z")
    ovl.mount()
    mkdir(ovl.m("ufull"))
    mkfile(ovl.m("ufull/w"), b"w")
    names = {d: listing(ovl.m(d)) for d in ("", "lo", "full", "ufull")}
    onto_full = err_of(os.rename, ovl.m("lo"), ovl.m("full"))
    onto_ufull = err_of(os.rename, ovl.m("lo"), ovl.m("ufull"))
    # (With redirect_dir=on the kernel copies "lo" up before the upper
    # filesystem refuses, so only the names are the same as before.)
    assert {d: listing(ovl.m(d)) for d in names} == names
    moved = err_of(os.rename, ovl.m("lo"), ovl.m("fresh"))
    want = "EXDEV" if moved == "EXDEV" else "ENOTEMPTY"
    assert (onto_full, onto_ufull) == (want, want)


def test_rename_noreplace(ovl):
    """RENAME_NOREPLACE onto a name that exists only in a lower fails with
    EEXIST and changes nothing (from an upper file, a lower file, a
    directory); onto a whited-out lower name it succeeds."""
    mkfile(ovl.l2("lower_target"), b"lt")
    mkfile(ovl.l1("lower_src"), b"ls")
    mkdir(ovl.l2("lower_dir"))
    mkfile(ovl.l2("deleted"), b"gone")
    ovl.mount()
    mkfile(ovl.m("upper_src"), b"us")
    os.mkdir(ovl.m("upper_dir"))
    for s in ("upper_src", "lower_src", "upper_dir"):
        for t in ("lower_target", "lower_dir"):
            e = err_of(renameat2, ovl.m(s), ovl.m(t), RENAME_NOREPLACE)
            assert e == "EEXIST", (s, t, e)
    assert read(ovl.m("lower_target")) == b"lt"
    assert read(ovl.m("lower_src")) == b"ls"
    assert read(ovl.m("upper_src")) == b"us"
    os.unlink(ovl.m("deleted"))
    renameat2(ovl.m("upper_src"), ovl.m("deleted"), RENAME_NOREPLACE)
    renameat2(ovl.m("lower_src"), ovl.m("upper_src"), RENAME_NOREPLACE)
    assert read(ovl.m("deleted")) == b"us"
    assert read(ovl.m("upper_src")) == b"ls"
    assert listing(ovl.M) == ["deleted", "lower_dir", "lower_target", "upper_dir", "upper_src"]
    ovl.remount()
    assert read(ovl.m("deleted")) == b"us"
    assert err_of(os.lstat, ovl.m("lower_src")) == "ENOENT"


def test_rename_exchange_lower_and_upper_file(ovl):
    """RENAME_EXCHANGE of a lower file and an upper file swaps them
    (content, attributes and st_ino follow the objects), persists across a
    remount, and leaves the lower untouched."""
    mkfile(ovl.l1("a"), b"lower a", mode=0o640, uid=1, gid=2, mtime_ns=T0)
    mkfile(ovl.u("b"), b"upper b!", mode=0o604, uid=3, gid=4, mtime_ns=T1)
    mkfile(ovl.l2("d/c"), b"lower c in a dir")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    a0, b0, c0 = attrs(ovl.m("a")), attrs(ovl.m("b")), attrs(ovl.m("d/c"))

    renameat2(ovl.m("a"), ovl.m("b"), RENAME_EXCHANGE)
    renameat2(ovl.m("b"), ovl.m("d/c"), RENAME_EXCHANGE)   # lower <-> lower

    def check():
        assert read(ovl.m("a")) == b"upper b!" and attrs(ovl.m("a")) == b0
        assert read(ovl.m("d/c")) == b"lower a" and attrs(ovl.m("d/c")) == a0
        assert read(ovl.m("b")) == b"lower c in a dir" and attrs(ovl.m("b")) == c0
        assert listing(ovl.M) == ["a", "b", "d"]
    check()
    ovl.remount()
    check()
    lowers.check()


def test_rename_whiteout_flag(ovl):
    """RENAME_WHITEOUT through the mount: kernel overlayfs refuses it with
    EINVAL (it only accepts RENAME_NOREPLACE and RENAME_EXCHANGE) and changes
    nothing.  A backend may instead perform it like a native filesystem (the
    target gets the source's content and the source's old content is gone
    from the view); nothing else is acceptable."""
    mkfile(ovl.l1("src"), b"source")
    mkfile(ovl.l2("dst"), b"target")
    ovl.mount()
    e = err_of(renameat2, ovl.m("src"), ovl.m("dst"), RENAME_WHITEOUT)
    if e is not None:
        assert e == "EINVAL", e
        assert read(ovl.m("src")) == b"source" and read(ovl.m("dst")) == b"target"
    else:
        assert read(ovl.m("dst")) == b"source"
        st = os.lstat(ovl.m("src")) if os.path.lexists(ovl.m("src")) else None
        assert st is None or (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
