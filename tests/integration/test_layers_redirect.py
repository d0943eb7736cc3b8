"""Layered mounts with redirect_dir=on: a directory that has lower parts is
renamed (instead of EXDEV) and keeps every child, in kernel overlayfs's
format — its upper directory holds overlay.redirect, the name (a rename in
one directory) or the absolute path (elsewhere) where the lowers hold its
parts — so that an upper written by prismfs reads the same under kernel
overlayfs (redirect_dir=on) and the other way round.

Parity suite (layer_helpers.py): every test runs with each backend, the
kernel mounted with redirect_dir=on and prismfs with -o redirect_dir=on;
the writer/reader tests write with one backend and read the upper back with
the other (Documentation/filesystems/overlayfs.rst, "Renaming directories",
"Redirect dir").
"""
import os
import shutil

import pytest

from layer_helpers import (KERNEL_OPTS, Untouched, assert_same, err_of, layers, listing, mkdir, mkfile,
                           mkwhiteout, ovl, prismfs_only, pytest_generate_tests, read,
                           set_opaque, snapshot)
from sysx import RENAME_EXCHANGE, renameat2

assert ovl and layers and pytest_generate_tests  # fixtures and hook used by pytest

KOPTS = "redirect_dir=on"


def mount(o, backend, redirect="on", extra=()):
    if backend == "prismfs":
        return o.mount(backend, extra=["-o", "redirect_dir=" + redirect] + list(extra))
    return o.mount(backend, kernel_opts="redirect_dir=" + redirect)


def build(o):
    """d merges L1, L2 and the upper, with a lower whiteout (gone), an
    opaque subdirectory (hid), nested directories in both lowers (sub);
    top is a lower directory to move things into."""
    mkfile(o.l2("d/a"), b"a from L2")
    mkfile(o.l2("d/gone"), b"whited out by L1")
    mkfile(o.l2("d/keep"), b"keep")
    mkfile(o.l2("d/sub/deep/c"), b"deep c")
    mkfile(o.l2("d/hid/h"), b"hidden by L1's opaque hid")
    mkfile(o.l1("d/b"), b"b from L1")
    mkfile(o.l1("d/sub/s"), b"s from L1")
    mkwhiteout(o.l1("d/gone"))
    mkfile(o.l1("d/hid/shown"), b"shown")
    set_opaque(o.l1("d/hid"))
    mkfile(o.u("d/u"), b"from the upper")
    mkdir(o.l1("top"))
    mkfile(o.l2("top/inner/t"), b"t")


def tree(path):
    """The subtree at path as snapshot() sees it, without path itself (its
    own times are the rename's business)."""
    s = snapshot(path)
    del s["entries"]["."]
    return s


def redirects(upper):
    """{path in the upper: overlay.redirect} (either namespace)."""
    out = {}
    for dirpath, dirnames, _ in os.walk(upper):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            for ns in ("trusted", "user"):
                try:
                    out[os.path.relpath(p, upper)] = os.getxattr(
                        p, ns + ".overlay.redirect", follow_symlinks=False)
                except OSError:
                    pass
    return out


def moves(o):
    """The renames both backends make, each checked as it is made."""
    m = o.m
    os.unlink(m("d/a"))                      # a whiteout inside, before the move
    want = tree(m("d"))
    assert "gone" not in want["entries"] and "hid/h" not in want["entries"]
    os.rename(m("d"), m("e"))                # in one directory: relative
    assert err_of(os.lstat, m("d")) == "ENOENT"
    assert_same(want, tree(m("e")), "d renamed to e")
    os.rename(m("e"), m("top/f"))            # elsewhere: absolute
    assert "e" not in listing(m(""))
    assert_same(want, tree(m("top/f")), "e moved to top/f")
    os.rename(m("top/f"), m("d"))            # back to its first name
    assert listing(m("top")) == ["inner"]
    assert_same(want, tree(m("d")), "top/f moved back to d")
    sub = tree(m("d/sub"))
    os.rename(m("d/sub"), m("top/s2"))       # a child of a redirected directory
    assert_same(sub, tree(m("top/s2")), "d/sub moved to top/s2")
    assert "sub" not in listing(m("d"))
    os.rename(m("top/inner"), m("d/inner2"))  # into it
    assert read(m("d/inner2/t")) == b"t"
    return want


def change_inside(o):
    """Creations and removals inside moved directories."""
    m = o.m
    os.rename(m("d"), m("e"))
    mkfile(m("e/new"), b"made after the move")
    os.mkdir(m("e/newdir"))
    os.unlink(m("e/b"))                      # a lower file
    os.unlink(m("top/s2/deep/c"))
    os.rmdir(m("top/s2/deep"))               # a lower directory, emptied
    os.rename(m("e/hid"), m("e/hid2"))       # an opaque lower directory
    with open(m("e/keep"), "ab") as f:       # a copy-up inside
        f.write(b" more")
    assert listing(m("e")) == ["hid2", "inner2", "keep", "new", "newdir", "u"]
    assert listing(m("top/s2")) == ["s"]


def test_rename_lower_directory_keeps_every_child(ovl, backend):
    """A merged directory renamed within its directory, to another, back,
    and a child of it moved out: every time the whole subtree shows under
    the new name and nothing under the old; it holds after a remount; the
    lowers are untouched."""
    build(ovl)
    untouched = Untouched(ovl.L1, ovl.L2)
    mount(ovl, backend)
    moves(ovl)
    change_inside(ovl)
    before = snapshot(ovl.M)
    ovl.umount()
    mount(ovl, backend)
    assert_same(before, snapshot(ovl.M), "after a remount")
    ovl.umount()
    untouched.check()


def test_upper_read_back_by_the_other(layers, writer, reader):
    """An upper with redirects written by one backend shows the same tree
    under the other (and under itself again)."""
    build(layers)
    mount(layers, writer)
    moves(layers)
    change_inside(layers)
    want = snapshot(layers.M)
    layers.umount()
    mount(layers, reader)
    assert_same(want, snapshot(layers.M), "%s's upper read by %s" % (writer, reader))
    # ... and the reader goes on where the writer stopped.
    os.rename(layers.m("e"), layers.m("top/g"))
    assert read(layers.m("top/g/keep")) == b"keep more"
    assert listing(layers.m("top/g")) == ["hid2", "inner2", "keep", "new", "newdir", "u"]
    layers.umount()


def test_same_redirects_as_the_kernel(ovl, backend):
    """The redirects on the upper are the kernel's: the old name for a
    rename within one directory, the absolute path from the lowers' roots
    otherwise (through the redirects of the directories above), kept when
    it stays right."""
    build(ovl)
    mount(ovl, backend)
    moves(ovl)
    change_inside(ovl)
    ovl.umount()
    got = redirects(ovl.U)
    assert got == {"e": b"/d", "e/hid2": b"hid", "top/s2": b"/d/sub", "e/inner2": b"/top/inner"}


def test_exchange_two_lower_directories(ovl, backend):
    """RENAME_EXCHANGE of two directories with lower parts: each shows the
    other's children, before and after a remount."""
    build(ovl)
    mount(ovl, backend)
    d, t = tree(ovl.m("d")), tree(ovl.m("top"))
    renameat2(ovl.m("d"), ovl.m("top"), RENAME_EXCHANGE)
    assert_same(d, tree(ovl.m("top")), "d's children at top")
    assert_same(t, tree(ovl.m("d")), "top's children at d")
    ovl.umount()
    mount(ovl, backend)
    assert_same(d, tree(ovl.m("top")), "d's children at top after a remount")
    assert_same(t, tree(ovl.m("d")), "top's children at d after a remount")
    ovl.umount()


def test_rename_over_hidden_lower_directory(ovl, backend):
    """A redirected directory moved where a lower directory of the same
    name was removed shows only its own children, not the removed one's."""
    build(ovl)
    mkfile(ovl.l2("x/old"), b"removed with x")
    mount(ovl, backend)
    os.unlink(ovl.m("x/old"))
    os.rmdir(ovl.m("x"))
    want = tree(ovl.m("d"))
    os.rename(ovl.m("d"), ovl.m("x"))
    assert_same(want, tree(ovl.m("x")), "d renamed to x")
    ovl.umount()
    mount(ovl, backend)
    assert_same(want, tree(ovl.m("x")), "d renamed to x, after a remount")
    ovl.umount()


@prismfs_only
def test_redirect_dir_off_and_follow(ovl, backend):
    """prismfs's default (off, as nofollow) and follow make no redirect: a
    directory with lower parts does not move (EXDEV, nothing changed);
    follow reads the kernel's redirects, off does not."""
    build(ovl)
    ovl.mount("kernel", kernel_opts=KOPTS)
    os.rename(ovl.m("d"), ovl.m("e"))
    want = snapshot(ovl.M)
    ovl.umount()
    # No option: prismfs's default, unless the suite runs with the kernel's
    # redirect_dir= (PRISMFS_LAYER_KERNEL_OPTS), which prismfs then gets.
    default = () if "redirect_dir=" in KERNEL_OPTS else (None,)
    for opt in ("follow", "off", "nofollow") + default:
        ovl.mount("prismfs", extra=["-o", "redirect_dir=" + opt] if opt else [])
        upper = snapshot(ovl.U)
        assert err_of(os.rename, ovl.m("top"), ovl.m("top2")) == "EXDEV"
        assert_same(upper, snapshot(ovl.U), "a refused rename changed the upper")
        if opt == "follow":
            assert_same(want, snapshot(ovl.M), "redirect_dir=follow")
        else:
            assert read(ovl.m("e/u")) == b"from the upper"
            assert "b" not in listing(ovl.m("e")), "redirect_dir=%s followed" % opt
        ovl.umount()


@prismfs_only
def test_userxattr_redirect_in_user_namespace(ovl, backend):
    """With userxattr the redirect is user.overlay.redirect (never
    trusted.), and read back so. (The kernel refuses userxattr with
    redirect_dir=on, so prismfs alone reads it.)"""
    build(ovl)
    mount(ovl, backend, extra=["-o", "userxattr"])
    want = tree(ovl.m("d"))
    os.rename(ovl.m("d"), ovl.m("top/e"))
    ovl.umount()
    assert os.getxattr(ovl.u("top/e"), "user.overlay.redirect") == b"/d"
    assert err_of(os.getxattr, ovl.u("top/e"), "trusted.overlay.redirect") == "ENODATA"
    mount(ovl, backend, extra=["-o", "userxattr"])
    assert_same(want, tree(ovl.m("top/e")), "after a remount")
    ovl.umount()


@prismfs_only
@pytest.mark.parametrize("atomic", (False, True))
def test_commit_of_prismfs_redirects(workdir, backend, atomic):
    """An upper prismfs wrote with redirects (one lower): the commit, in
    place or --atomic, gives the lower exactly the tree the mount showed."""
    import test_commit as tc
    from conftest import Mount

    lay = tc.Layers(os.path.join(workdir, "commit"))
    tc.populate_lower(lay.L)
    m = Mount(lay.L, lay.M, ["--upper", lay.U, "--work", lay.W, "-o", "redirect_dir=on"])
    m.start()
    try:
        tc.rename_changes(lay.M)
        merged = tc.snapshot(lay.M)
    finally:
        m.stop()
        m.check_clean_exit()
        m.cleanup()
    assert redirects(lay.U), "prismfs wrote no redirect"
    extra = ("--atomic",) if atomic else ()
    tc.assert_ok(tc.commit(lay, *extra, "--work", lay.W), "commit %s" % " ".join(extra))
    tc.assert_same_tree(merged, tc.snapshot(lay.L), "commit of prismfs's redirects")
    tc.assert_clean_lower(lay)
    tc.assert_empty(lay.U, "the upper")


@prismfs_only
def test_redirects_in_a_lower_are_followed(ovl, backend):
    """An upper with redirects used as the top lower of a mount of lowers
    only (read-only): with redirect_dir=follow prismfs follows the
    redirects of lower directories as kernel overlayfs does (both show the
    tree the writer showed)."""
    import subprocess
    from conftest import Mount

    build(ovl)
    ovl.mount("kernel", kernel_opts=KOPTS)
    moves(ovl)
    change_inside(ovl)
    want = snapshot(ovl.M)
    ovl.umount()
    lowers = "%s:%s:%s" % (ovl.U, ovl.L1, ovl.L2)
    kmp, pmp = os.path.join(ovl.base, "K"), os.path.join(ovl.base, "P")
    os.mkdir(kmp)
    os.mkdir(pmp)
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    "lowerdir=%s,redirect_dir=follow" % lowers, kmp], check=True)
    m = Mount("none", pmp, ["-o", "lowerdir=%s,redirect_dir=follow" % lowers])
    try:
        m.start()
        assert_same(want, snapshot(kmp), "the kernel, lowers only")
        assert_same(snapshot(kmp), snapshot(pmp), "prismfs against the kernel, lowers only")
        assert err_of(os.mkdir, os.path.join(pmp, "e", "x")) == "EROFS"
    finally:
        subprocess.run(["umount", kmp], capture_output=True)
        m.stop()
        m.check_clean_exit()
        m.cleanup()


@pytest.mark.parametrize("value,err", [(b"../d", "EINVAL"), (b"d/f", "EINVAL"), (b"", "EINVAL"),
                                       (b"/d/../d", "EACCES"), (b"..", "EACCES"),
                                       (b"//d", "EINVAL")])
def test_invalid_redirect_fails_the_lookup(ovl, backend, value, err):
    """A redirect that would lead out of its layer, or is malformed, fails
    the lookup of its directory with the kernel's errno; nothing else in
    the view is affected."""
    build(ovl)
    mkdir(ovl.u("e"))
    os.setxattr(ovl.u("e"), "trusted.overlay.redirect", value)
    mount(ovl, backend)
    assert err_of(os.lstat, ovl.m("e")) == err
    assert read(ovl.m("d/b")) == b"b from L1"
    ovl.umount()


@prismfs_only
def test_commit_at_unmount_of_redirects(ovl, backend):
    """--on-unmount commit of an upper with redirects, in place: the lower
    becomes exactly the tree the mount showed, the renamed directories
    moved in it; commit-atomic does the same."""
    import test_commit as tc
    from conftest import Mount

    for action in ("commit", "commit-atomic"):
        shutil.rmtree(ovl.L1)
        mkfile(ovl.l1("d/f"), b"f")
        mkfile(ovl.l1("d/sub/g"), b"g")
        ino = os.lstat(ovl.l1("d/sub")).st_ino
        args = ["--upper", ovl.U, "--work", ovl.W, "-o", "redirect_dir=on", "--on-unmount"]
        m = Mount(ovl.L1, ovl.M, args + [action])
        try:
            m.start()
            os.rename(ovl.m("d"), ovl.m("e"))
            os.rename(ovl.m("e/sub"), ovl.m("s"))
            mkfile(ovl.m("s/new"), b"new")
            want = tree(ovl.M)
            assert m.stop() == 0, m.stderr()
            m.check_clean_exit()
        finally:
            m.cleanup()
        assert_same(want, tree(ovl.L1), "the lower after %s" % action)
        if action == "commit":
            assert os.lstat(ovl.l1("s")).st_ino == ino, "s is not the lower's d/sub moved"
        tc.assert_empty(ovl.U, "the upper")
