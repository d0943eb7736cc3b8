"""Layered mounts, the on-disk format: an upper written through one backend
and mounted by the other shows the same tree.

For every (writer, reader) pair of the selected backends: build the lowers,
mount with the writer, change many things through it, snapshot the view
(type, mode, owner, size, content hash, nlink of non-directories, mtime in
ns, symlink targets, device numbers, user.* xattrs, hard-link groups),
unmount, mount the same upper and work directories over the same lowers with
the reader and compare snapshots; then once more with the writer, so the
reader's mount did not disturb the upper.  kernel-then-prismfs checks that
prismfs reads kernel-made uppers; prismfs-then-kernel that kernel overlayfs
reads prismfs-made ones; the same-backend pairs check the tests (kernel) and
persistence (prismfs).

The prismfs-only tests cover the `.wh.NAME` form (--whiteout file, for
mounts that may not mknod) and hand-made uppers in the OCI forms: kernel
overlayfs does not read those.  See layer_helpers.py for the harness.
"""
import os
import shutil
import stat

import pytest

from layer_helpers import (T0, T1, T2, Untouched, assert_same, assert_whiteout, char_devices,
                           err_of, layers, listing, mkdir, mkfile, mksymlink, mkwhiteout,
                           opaque_form, ovl, pattern, prismfs_only, pytest_generate_tests,
                           read, set_opaque, snapshot, walk)
from sysx import RENAME_EXCHANGE, renameat2

assert ovl and layers and pytest_generate_tests  # fixtures and hook used by pytest


def build_lowers(o):
    """Two lowers with a bit of everything, including a whiteout and an
    opaque directory in L1 (the kernel's forms)."""
    mkfile(o.l1("keep"), b"untouched", mtime_ns=T0)
    mkfile(o.l1("modify"), pattern(70000, 3), mode=0o640, uid=10, gid=20, mtime_ns=T0,
           xattrs={"user.a": b"1"})
    mkfile(o.l2("chmod"), b"chmod", mtime_ns=T1)
    mkfile(o.l2("chown"), b"chown", mtime_ns=T1)
    mkfile(o.l2("touch"), b"touch", mtime_ns=T1)
    mkfile(o.l2("xattr"), b"xattr", xattrs={"user.old": b"o", "user.drop": b"d"})
    mkfile(o.l2("trunc"), pattern(5000, 4))
    mkfile(o.l1("delete"), b"deleted")
    mkfile(o.l2("tree/a/b/c"), b"deep")
    mkfile(o.l1("tree/a/d"), b"d")
    mkfile(o.l1("opaque/old1"), b"gone after rmdir+mkdir")
    mkfile(o.l2("opaque/sub/old2"), b"gone too")
    mkfile(o.l1("merge/l1"), b"1")
    mkfile(o.l2("merge/l2"), b"2")
    mkfile(o.l2("merge/sub/deeper"), b"3")
    mkfile(o.l2("rename_me"), b"renamed", mode=0o600, mtime_ns=T2)
    mkfile(o.l1("exchange_lower"), b"lower side")
    mkfile(o.l2("dir_to_file/x"), b"x")
    mkfile(o.l2("file_to_dir"), b"becomes a directory")
    mkfile(o.l2("hl1"), b"lower hard link pair")
    os.link(o.l2("hl1"), o.l2("hl2"))
    mkfile(o.l1("link_me"), b"gets a second name")
    mksymlink(o.l1("sym"), "keep", uid=5, gid=6, mtime_ns=T0)
    mksymlink(o.l2("sym_chown"), "keep", mtime_ns=T1)
    os.mkfifo(o.l2("fifo"))
    mkdir(o.l2("emptydir"))
    mkwhiteout(o.l1("whited"))
    mkfile(o.l2("whited"), b"hidden by L1")
    mkfile(o.l1("opq/mine"), b"L1")
    set_opaque(o.l1("opq"))
    mkfile(o.l2("opq/theirs"), b"hidden by the opaque L1 dir")
    mkfile(o.l2("movedir/f"), b"in a lower directory that may be moved")
    mkdir(o.l2("tree/a"), mode=0o750, uid=3, gid=4, mtime_ns=T1)
    mkdir(o.l1("merge"), mode=0o711, mtime_ns=T2)


def change_through(M):
    def p(*x):
        return os.path.join(M, *x)

    mkfile(p("new"), b"brand new", mode=0o600, xattrs={"user.n": b"n"})
    os.makedirs(p("newdir/deeper"))
    mkfile(p("newdir/deeper/n"), b"nested new")
    with open(p("modify"), "ab") as f:
        f.write(b"appended")
    os.chmod(p("chmod"), 0o604)
    os.chown(p("chown"), 1234, 2345)
    os.utime(p("touch"), ns=(T2, 1_234_567_890_123_456_789))
    os.setxattr(p("xattr"), "user.new", b"x")
    os.removexattr(p("xattr"), "user.drop")
    os.truncate(p("trunc"), 1000)
    os.unlink(p("delete"))
    shutil.rmtree(p("tree"))
    shutil.rmtree(p("opaque"))
    os.mkdir(p("opaque"))
    mkfile(p("opaque/fresh"), b"the only child now")
    mkfile(p("merge/upper"), b"added to a merged dir")
    os.unlink(p("merge/l2"))
    os.rename(p("rename_me"), p("merge/renamed"))
    mkfile(p("exchange_upper"), b"upper side")
    renameat2(p("exchange_lower"), p("exchange_upper"), RENAME_EXCHANGE)
    shutil.rmtree(p("dir_to_file"))
    mkfile(p("dir_to_file"), b"was a directory")
    os.unlink(p("file_to_dir"))
    os.mkdir(p("file_to_dir"))
    mkfile(p("file_to_dir/inside"), b"i")
    os.link(p("link_me"), p("merge/second_name"))
    os.symlink("new", p("new_sym"))
    os.chown(p("sym_chown"), 77, 88, follow_symlinks=False)
    os.mkfifo(p("new_fifo"))
    os.mknod(p("new_chr"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
    os.rmdir(p("emptydir"))
    mkfile(p("whited"), b"created over a lower whiteout")
    os.mkdir(p("upperdir"))
    mkfile(p("upperdir/f"), b"f")
    os.rename(p("upperdir"), p("upperdir_moved"))
    e = err_of(os.rename, p("movedir"), p("movedir_moved"))
    assert e in (None, "EXDEV"), e


def check_view(M):
    """A few facts about the changed view, independent of the snapshots."""
    assert read(os.path.join(M, "whited")) == b"created over a lower whiteout"
    assert listing(os.path.join(M, "opaque")) == ["fresh"]
    assert listing(os.path.join(M, "opq")) == ["mine"]
    assert err_of(os.lstat, os.path.join(M, "tree")) == "ENOENT"
    assert read(os.path.join(M, "exchange_lower")) == b"upper side"
    assert read(os.path.join(M, "exchange_upper")) == b"lower side"


def test_upper_roundtrip_between_backends(layers, writer, reader):
    """An upper written through `writer` shows the same tree through
    `reader`, and again through `writer` afterwards; the lowers stay
    untouched; the upper uses the kernel's whiteout form."""
    build_lowers(layers)
    lowers = Untouched(layers.L1, layers.L2)
    layers.mount(writer)
    change_through(layers.M)
    check_view(layers.M)
    written = snapshot(layers.M)
    layers.umount()
    lowers.check()
    dot_wh = [r for r in walk(layers.U) if os.path.basename(r).startswith(".wh.")]
    assert dot_wh == [], "the upper holds .wh. files the kernel would show: %s" % dot_wh
    for name in ("delete", "tree", "emptydir", "merge/l2"):
        assert_whiteout(layers.u(name))

    layers.mount(reader)
    check_view(layers.M)
    assert_same(written, snapshot(layers.M),
                "upper written through %s, read through %s" % (writer, reader))
    layers.umount()
    layers.mount(writer)
    assert_same(written, snapshot(layers.M),
                "upper written through %s, read again through %s after %s had it"
                % (writer, writer, reader))
    layers.umount()
    lowers.check()


def test_reader_changes_a_written_upper(layers, writer, reader):
    """The other direction of use: the reader keeps changing an upper the
    writer made (re-deleting, re-creating, copying up over earlier
    copy-ups), and the writer then shows what the reader showed."""
    build_lowers(layers)
    layers.mount(writer)
    change_through(layers.M)
    layers.umount()
    layers.mount(reader)
    M = layers.M
    os.unlink(os.path.join(M, "new"))
    with open(os.path.join(M, "modify"), "ab") as f:
        f.write(b" and by the reader")
    mkfile(os.path.join(M, "delete"), b"back again")
    os.unlink(os.path.join(M, "opaque/fresh"))
    os.rmdir(os.path.join(M, "opaque"))
    os.chmod(os.path.join(M, "keep"), 0o600)
    os.unlink(os.path.join(M, "merge/l1"))
    os.unlink(os.path.join(M, "merge/second_name"))
    shutil.rmtree(os.path.join(M, "file_to_dir"))
    os.mkdir(os.path.join(M, "tree"))
    seen = snapshot(M)
    assert listing(os.path.join(M, "tree")) == []
    layers.umount()
    layers.mount(writer)
    assert_same(seen, snapshot(layers.M),
                "upper changed through %s, read through %s" % (reader, writer))


# --------------------------------------------------------------------------
# prismfs-only: the .wh.NAME form

@prismfs_only
@pytest.mark.parametrize("remount_whiteout", ["file", "default"])
def test_whiteout_file_upper_reads_back(ovl, remount_whiteout):
    """prismfs-only (kernel overlayfs neither writes nor reads `.wh.` files
    in an upper): with --whiteout file every deletion leaves an empty
    .wh.NAME file, the upper holds no character device, a directory made
    over a deleted one is opaque in one of the recognised forms, the .wh.
    names never show in the view, and the upper reads back the same after
    a remount, with --whiteout file or without it."""
    build_lowers(ovl)
    os.unlink(ovl.l1("whited"))          # no kernel-form whiteout in this test
    mkfile(ovl.l2("whited_again"), b"w")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(whiteout="file")
    M = ovl.M
    os.unlink(os.path.join(M, "delete"))
    os.unlink(os.path.join(M, "whited_again"))
    shutil.rmtree(os.path.join(M, "tree"))
    shutil.rmtree(os.path.join(M, "opaque"))
    os.mkdir(os.path.join(M, "opaque"))
    mkfile(os.path.join(M, "opaque/fresh"), b"f")
    os.unlink(os.path.join(M, "merge/l2"))
    os.rename(os.path.join(M, "rename_me"), os.path.join(M, "merge/renamed"))
    os.rmdir(os.path.join(M, "emptydir"))
    os.unlink(os.path.join(M, "file_to_dir"))
    mkfile(os.path.join(M, "file_to_dir"), b"re-created over a .wh. whiteout")
    os.unlink(os.path.join(M, "hl1"))
    os.chmod(os.path.join(M, "chmod"), 0o600)

    assert char_devices(ovl.U) == []
    for name in ("delete", "whited_again", "tree", "merge/l2", "rename_me", "emptydir",
                 "hl1"):
        assert_whiteout(ovl.u(name), "file")
    assert opaque_form(ovl.u("opaque")) is not None
    assert listing(os.path.join(M, "opaque")) == ["fresh"]
    assert read(os.path.join(M, "file_to_dir")) == b"re-created over a .wh. whiteout"
    names = [r for r in walk(M) if os.path.basename(r).startswith(".wh.")]
    assert names == [], "whiteout files shown in the view: %s" % names
    seen = snapshot(M)
    ovl.umount()
    lowers.check()
    ovl.mount(whiteout=None if remount_whiteout == "default" else "file")
    assert_same(seen, snapshot(ovl.M), "--whiteout file upper after a remount")


@prismfs_only
@pytest.mark.parametrize("opaque", ["wh_opq", "user", "trusted"])
def test_handmade_oci_style_upper(ovl, opaque):
    """prismfs-only: an upper made by other tools (fuse-overlayfs without
    mknod, image builders) in the OCI forms — .wh.NAME whiteouts and an
    opaque directory marked by .wh..wh..opq, user.overlay.opaque or
    trusted.overlay.opaque — is read as the kernel would read its own
    forms; changes made on top keep it consistent across a remount."""
    mkfile(ovl.l1("gone"), b"hidden")
    mkfile(ovl.l2("gonedir/child"), b"hidden")
    mkfile(ovl.l1("d/old1"), b"hidden")
    mkfile(ovl.l2("d/old2"), b"hidden")
    mkfile(ovl.l1("sub/x"), b"hidden")
    mkfile(ovl.l1("sub/y"), b"kept")
    mkfile(ovl.l2("kept"), b"kept")
    mkfile(ovl.u(".wh.gone"))
    mkfile(ovl.u(".wh.gonedir"))
    mkfile(ovl.u("d/new"), b"new")
    set_opaque(ovl.u("d"), opaque)
    mkfile(ovl.u("sub/.wh.x"))
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()

    def check():
        assert listing(ovl.M) == ["d", "kept", "sub"]
        assert listing(ovl.m("d")) == ["new"]
        assert listing(ovl.m("sub")) == ["y"]
        for name in ("gone", "gonedir", ".wh.gone", "d/old1", "d/old2", "d/.wh..wh..opq",
                     "sub/x", "sub/.wh.x"):
            assert err_of(os.lstat, ovl.m(name)) == "ENOENT", name
        if opaque == "trusted":
            assert err_of(os.getxattr, ovl.m("d"), "trusted.overlay.opaque") == "ENODATA"
    check()
    mkfile(ovl.m("gone"), b"created over a .wh. whiteout")
    os.unlink(ovl.m("gone"))
    mkfile(ovl.m("d/another"), b"a")
    os.unlink(ovl.m("d/another"))
    ovl.remount()
    check()
    lowers.check()
