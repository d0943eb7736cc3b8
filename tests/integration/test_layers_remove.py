"""Layered mounts, removing and re-creating names: unlink and rmdir of lower
objects leave whiteouts in the upper (0/0 character devices, the kernel's
form; `.wh.NAME` files with prismfs --whiteout file), names that only ever
lived in the upper leave nothing, a merged directory can only be removed
once its merged view is empty, and a directory made over a whiteout is
opaque.

Parity suite (see layer_helpers.py): asserts what kernel overlayfs does
(Documentation/filesystems/overlayfs.rst, "whiteouts and opaque
directories").  Tests with --whiteout file are prismfs-only: the kernel has
no such option and does not read `.wh.` files.
"""
import os
import stat

import pytest

from layer_helpers import (T0, Untouched, assert_no_whiteout, assert_whiteout, char_devices,
                           err_of, listing, mkdir, mkfile, mksymlink, opaque_form, ovl,
                           prismfs_only, pytest_generate_tests, read)

assert ovl and pytest_generate_tests  # fixture and hook used by pytest


# --------------------------------------------------------------------------
# unlink

def _unlink_lower(ovl, layer, whiteout):
    mk = getattr(ovl, layer)
    mkfile(mk("f"), b"lower file", mode=0o640, uid=9, gid=9, mtime_ns=T0)
    mkfile(mk("d/nested"), b"nested lower file")
    mksymlink(mk("sym"), "f")
    mkfile(mk("d/kept"), b"kept")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(whiteout=whiteout)

    for name in ("f", "d/nested", "sym"):
        os.unlink(ovl.m(name))
        assert err_of(os.lstat, ovl.m(name)) == "ENOENT", name
        assert_whiteout(ovl.u(name), whiteout)
    assert listing(ovl.M) == ["d"]
    assert listing(ovl.m("d")) == ["kept"]
    assert stat.S_ISDIR(os.lstat(ovl.u("d")).st_mode)
    lowers.check()
    ovl.remount()
    assert listing(ovl.M) == ["d"]
    assert listing(ovl.m("d")) == ["kept"]
    assert err_of(os.lstat, ovl.m("f")) == "ENOENT"
    lowers.check()


@pytest.mark.parametrize("layer", ["l1", "l2"])
def test_unlink_lower_file_leaves_whiteout(ovl, layer):
    """unlink of a lower file (top level and nested) or symlink: gone from
    the view (also after a remount), a 0/0 character device at its name in
    the upper (parents copied up), the lower untouched."""
    _unlink_lower(ovl, layer, None)


@prismfs_only
@pytest.mark.parametrize("layer", ["l1", "l2"])
def test_unlink_lower_file_whiteout_file_form(ovl, layer):
    """prismfs-only (--whiteout file, for mounts that may not mknod):
    the whiteout is an empty regular file .wh.NAME beside the name, and the
    upper holds no character device; the .wh. files never show in the view."""
    _unlink_lower(ovl, layer, "file")
    assert char_devices(ovl.U) == []
    assert err_of(os.lstat, ovl.m(".wh.f")) == "ENOENT"
    assert err_of(os.lstat, ovl.m("d/.wh.nested")) == "ENOENT"


@pytest.mark.parametrize("origin", ["made_through_mount", "in_upper_before_mount"])
def test_unlink_upper_only_file_leaves_no_whiteout(ovl, origin):
    """A name that exists in no lower leaves nothing in the upper when
    removed: no whiteout, no .wh. marker (files, symlinks, fifos; also inside
    a merged directory)."""
    mkfile(ovl.l1("d/lower"), b"l")
    mkfile(ovl.l2("other"), b"o")
    if origin == "in_upper_before_mount":
        mkfile(ovl.u("f"), b"u")
        mkfile(ovl.u("d/f"), b"u")
        mksymlink(ovl.u("s"), "f")
        os.mkfifo(ovl.u("p"))
        ovl.mount()
    else:
        ovl.mount()
        mkfile(ovl.m("f"), b"u")
        mkfile(ovl.m("d/f"), b"u")
        os.symlink("f", ovl.m("s"))
        os.mkfifo(ovl.m("p"))
    for name in ("f", "d/f", "s", "p"):
        os.unlink(ovl.m(name))
        assert err_of(os.lstat, ovl.m(name)) == "ENOENT"
        assert_no_whiteout(ovl.u(name))
    assert listing(ovl.M) == ["d", "other"]
    assert listing(ovl.m("d")) == ["lower"]
    assert char_devices(ovl.U) == []


def test_open_lower_file_survives_unlink_and_rename(ovl):
    """Descriptors on lower files keep reading the file after its name is
    unlinked or renamed away (POSIX: the file lives while open)."""
    mkfile(ovl.l1("gone"), b"unlinked while open")
    mkfile(ovl.l2("moved"), b"renamed while open")
    ovl.mount()
    fa = os.open(ovl.m("gone"), os.O_RDONLY)
    fb = os.open(ovl.m("moved"), os.O_RDONLY)
    try:
        os.unlink(ovl.m("gone"))
        os.rename(ovl.m("moved"), ovl.m("new_name"))
        assert os.pread(fa, 100, 0) == b"unlinked while open"
        assert os.pread(fb, 100, 0) == b"renamed while open"
        assert os.fstat(fb).st_ino == os.lstat(ovl.m("new_name")).st_ino
        assert err_of(os.lstat, ovl.m("gone")) == "ENOENT"
    finally:
        os.close(fa)
        os.close(fb)
    assert listing(ovl.M) == ["new_name"]


def test_unlink_copied_up_file_leaves_whiteout(ovl):
    """A lower file copied up (chmod) and then unlinked still needs a
    whiteout: the lower file is still there below."""
    mkfile(ovl.l2("f"), b"lower")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    os.chmod(ovl.m("f"), 0o600)
    assert stat.S_ISREG(os.lstat(ovl.u("f")).st_mode)
    os.unlink(ovl.m("f"))
    assert err_of(os.lstat, ovl.m("f")) == "ENOENT"
    assert_whiteout(ovl.u("f"))
    ovl.remount()
    assert err_of(os.lstat, ovl.m("f")) == "ENOENT"
    lowers.check()


# --------------------------------------------------------------------------
# rmdir

@pytest.mark.parametrize("case", ["lower_only", "upper_empty_over_lower", "l1_empty_l2_not",
                                  "child_dir_only_in_l2"])
def test_rmdir_nonempty_merged_dir(ovl, case):
    """rmdir of a directory whose merged view is not empty fails with
    ENOTEMPTY, even when the upper (or the higher lower) part is empty,
    and changes nothing."""
    if case == "lower_only":
        mkfile(ovl.l2("d/child"), b"c")
    elif case == "upper_empty_over_lower":
        mkdir(ovl.u("d"))
        mkfile(ovl.l1("d/child"), b"c")
    elif case == "l1_empty_l2_not":
        mkdir(ovl.l1("d"))
        mkfile(ovl.l2("d/child"), b"c")
    else:
        mkdir(ovl.u("d"))
        mkdir(ovl.l1("d"))
        mkdir(ovl.l2("d/sub"))
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    before = listing(ovl.m("d"))
    assert err_of(os.rmdir, ovl.m("d")) == "ENOTEMPTY"
    assert listing(ovl.m("d")) == before
    assert stat.S_ISDIR(os.lstat(ovl.m("d")).st_mode)
    assert char_devices(ovl.U) == []
    lowers.check()


def _rmdir_after_emptying(ovl, whiteout):
    mkfile(ovl.u("d/u_child"), b"u")
    mkfile(ovl.l1("d/l1_child"), b"1")
    mkfile(ovl.l2("d/l2_child"), b"2")
    mkfile(ovl.l2("d/sub/deep"), b"3")
    mkfile(ovl.l1("d/both"), b"1")
    mkfile(ovl.l2("d/both"), b"2")
    mkfile(ovl.l2("e/only_child"), b"e")        # a directory only in a lower
    mkdir(ovl.l1("empty"))                      # an empty lower directory
    mkfile(ovl.l1("keep"), b"k")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(whiteout=whiteout)

    for name in ("u_child", "l1_child", "l2_child", "both", "sub/deep"):
        os.unlink(ovl.m("d", name))
    assert listing(ovl.m("d")) == ["sub"]
    os.rmdir(ovl.m("d/sub"))
    assert listing(ovl.m("d")) == []
    os.rmdir(ovl.m("d"))
    os.unlink(ovl.m("e/only_child"))
    os.rmdir(ovl.m("e"))
    os.rmdir(ovl.m("empty"))

    assert listing(ovl.M) == ["keep"]
    for name in ("d", "e", "empty", "d/sub"):
        assert err_of(os.lstat, ovl.m(name)) == "ENOENT", name
    for name in ("d", "e", "empty"):
        assert_whiteout(ovl.u(name), whiteout)
    lowers.check()
    ovl.remount()
    assert listing(ovl.M) == ["keep"]
    assert err_of(os.lstat, ovl.m("d")) == "ENOENT"
    lowers.check()


def test_rmdir_merged_dir_after_deleting_its_entries(ovl):
    """Once every entry of a merged directory (upper, L1 and L2 ones, a
    lower-only subdirectory) is deleted, rmdir works; the directory is
    replaced by a whiteout in the upper, also for a directory that exists
    only in a lower and for an empty lower directory."""
    _rmdir_after_emptying(ovl, None)


@prismfs_only
def test_rmdir_merged_dir_after_deleting_its_entries_whiteout_file(ovl):
    """prismfs-only: the same with --whiteout file (.wh.NAME files)."""
    _rmdir_after_emptying(ovl, "file")
    assert char_devices(ovl.U) == []


def _mkdir_over_whiteout(ovl, whiteout):
    mkfile(ovl.l1("d/l1_old"), b"1")
    mkfile(ovl.l2("d/l2_old"), b"2")
    mkfile(ovl.l2("d/sub/old"), b"3")
    mkfile(ovl.l2("f"), b"a file, then a directory")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(whiteout=whiteout)
    for name in ("d/l1_old", "d/l2_old", "d/sub/old"):
        os.unlink(ovl.m(name))
    os.rmdir(ovl.m("d/sub"))
    os.rmdir(ovl.m("d"))
    os.unlink(ovl.m("f"))

    os.mkdir(ovl.m("d"), 0o750)
    os.mkdir(ovl.m("f"))
    for name in ("d", "f"):
        assert listing(ovl.m(name)) == []
        assert opaque_form(ovl.u(name)) is not None or name == "f", \
            "upper %s made over a whited-out directory is not opaque" % name
    assert stat.S_IMODE(os.lstat(ovl.m("d")).st_mode) == 0o750
    assert err_of(os.lstat, ovl.m("d/l1_old")) == "ENOENT"
    assert err_of(os.lstat, ovl.m("d/sub")) == "ENOENT"
    mkfile(ovl.m("d/new"), b"new")
    os.mkdir(ovl.m("d/sub"))
    assert listing(ovl.m("d")) == ["new", "sub"]
    assert listing(ovl.m("d/sub")) == []
    ovl.remount()
    assert listing(ovl.m("d")) == ["new", "sub"]
    assert listing(ovl.m("d/sub")) == []
    assert listing(ovl.m("f")) == []
    assert sorted(n for n in os.listdir(ovl.M)) == ["d", "f"]
    lowers.check()


def test_mkdir_over_whited_out_dir_is_opaque(ovl):
    """mkdir where a lower directory was removed gives an empty directory,
    marked opaque in the upper (trusted.overlay.opaque=y for the kernel; any
    form the kernel or OCI recognises is accepted), so the old lower children
    never come back, not even after a remount.  mkdir over a removed lower
    file gives an empty directory too."""
    _mkdir_over_whiteout(ovl, None)


@prismfs_only
def test_mkdir_over_whited_out_dir_is_opaque_whiteout_file(ovl):
    """prismfs-only: the same with --whiteout file."""
    _mkdir_over_whiteout(ovl, "file")
    assert char_devices(ovl.U) == []


CREATE = {
    "file": lambda p: mkfile(p, b"fresh", mode=0o600),
    "excl": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)),
    "symlink": lambda p: os.symlink("somewhere", p),
    "fifo": lambda p: os.mkfifo(p, 0o600),
    "hardlink": lambda p: os.link(os.path.join(os.path.dirname(p), "..", "other"), p),
}


@pytest.mark.parametrize("kind", sorted(CREATE))
@pytest.mark.parametrize("was", ["file", "dir"])
def test_create_over_whiteout(ovl, kind, was):
    """Creating a non-directory where a lower file or directory was removed
    works (O_EXCL too): the new object is what the view shows, the upper
    holds it in place of the whiteout, and it survives a remount."""
    if was == "file":
        mkfile(ovl.l2("d/x"), b"old lower content", mode=0o644, uid=5, gid=5)
    else:
        mkfile(ovl.l2("d/x/child"), b"old lower child")
    mkfile(ovl.l1("other"), b"other")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    if was == "dir":
        os.unlink(ovl.m("d/x/child"))
        os.rmdir(ovl.m("d/x"))
    else:
        os.unlink(ovl.m("d/x"))
    assert err_of(os.lstat, ovl.m("d/x")) == "ENOENT"

    CREATE[kind](ovl.m("d/x"))

    def check():
        st = os.lstat(ovl.m("d/x"))
        if kind in ("file", "excl"):
            assert stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) == (0, 0)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert read(ovl.m("d/x")) == (b"fresh" if kind == "file" else b"")
        elif kind == "symlink":
            assert os.readlink(ovl.m("d/x")) == "somewhere"
        elif kind == "fifo":
            assert stat.S_ISFIFO(st.st_mode)
        else:
            assert read(ovl.m("d/x")) == b"other"
            assert st.st_ino == os.lstat(ovl.m("other")).st_ino and st.st_nlink == 2
        assert listing(ovl.m("d")) == ["x"]
        ust = os.lstat(ovl.u("d/x"))
        assert stat.S_IFMT(ust.st_mode) == stat.S_IFMT(st.st_mode)
    check()
    ovl.remount()
    check()
    lowers.check()
