"""Layered mounts, copy-up: any change to a lower object copies it to the
upper first, keeping mode, owner, timestamps (ns) and xattrs, creating its
parent directories with the lower directories' attributes, never following
symlinks, never touching the lowers; inode numbers survive copy-up and
remounts; descriptors opened before a copy-up keep working as on kernel
overlayfs.

Parity suite (see layer_helpers.py and test_layers_view.py): every test is
generated per backend and asserts what kernel overlayfs does
(Documentation/filesystems/overlayfs.rst, "Non-directories": "It then
creates the object with the same metadata (owner, mode, mtime,
symlink-target etc.) ... Finally any extended attributes are copied up").
"""
import mmap
import os
import stat

import pytest

from layer_helpers import (T0, T1, T2, Untouched, assert_upper_data, err_of, listing, mkdir,
                           mkfile, mksymlink, ovl, pattern, pytest_generate_tests, read, walk)

assert ovl and pytest_generate_tests  # fixture and hook used by pytest

LOWER_XATTRS = {"user.color": b"blue", "user.empty": b"", "user.bin": bytes(range(256)),
                "trusted.note": b"root only"}
DATA = pattern(10000, seed=1)


def attrs(path):
    st = os.lstat(path)
    xs = {n: os.getxattr(path, n, follow_symlinks=False)
          for n in os.listxattr(path, follow_symlinks=False)
          if not n.startswith("trusted.overlay.")}
    return {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode),
            "uid": st.st_uid, "gid": st.st_gid, "size": st.st_size,
            "mtime_ns": st.st_mtime_ns, "xattrs": xs}


def assert_attrs(want, got, what):
    """Field by field, xattrs last (an extra user.* xattr in the upper is
    wrong too: kernel overlayfs would show it)."""
    bad = {k: (want.get(k), got.get(k)) for k in sorted(set(want) | set(got))
           if k != "xattrs" and want.get(k) != got.get(k)}
    assert not bad, "%s: (want, got) %s" % (what, bad)
    wx, gx = want.get("xattrs", {}), got.get("xattrs", {})
    bad = {k: (wx.get(k), gx.get(k)) for k in sorted(set(wx) | set(gx)) if wx.get(k) != gx.get(k)}
    assert not bad, "%s: xattrs (want, got) %s" % (what, bad)


def _op_chmod(p):
    os.chmod(p, 0o604)
    return {"mode": 0o604}


def _op_chown(p):
    os.chown(p, 4321, 5432)
    return {"uid": 4321, "gid": 5432}


def _op_setxattr(p):
    os.setxattr(p, "user.added", b"new")
    return {"xattrs": dict(LOWER_XATTRS, **{"user.added": b"new"})}


def _op_utimes(p):
    os.utime(p, ns=(T2, T1))
    return {"mtime_ns": T1}


def _op_truncate(p):
    os.truncate(p, 100)
    return {"size": 100, "mtime_ns": "changed", "data": DATA[:100]}


def _op_open_wronly(p):
    os.close(os.open(p, os.O_WRONLY))
    return {}


def _op_pwrite(p):
    fd = os.open(p, os.O_RDWR)
    try:
        os.pwrite(fd, b"XYZ", 5000)
    finally:
        os.close(fd)
    return {"mtime_ns": "changed", "data": DATA[:5000] + b"XYZ" + DATA[5003:]}


def _op_open_trunc(p):
    os.close(os.open(p, os.O_WRONLY | os.O_TRUNC))
    return {"size": 0, "mtime_ns": "changed", "data": b""}


def _op_mmap_write(p):
    fd = os.open(p, os.O_RDWR)
    try:
        with mmap.mmap(fd, 0) as mm:
            mm[100:104] = b"MMAP"
            mm.flush()
    finally:
        os.close(fd)
    return {"mtime_ns": "changed", "data": DATA[:100] + b"MMAP" + DATA[104:]}


OPS = {"open_trunc": _op_open_trunc, "mmap_write": _op_mmap_write, "chmod": _op_chmod, "chown": _op_chown, "setxattr": _op_setxattr,
       "utimes": _op_utimes, "truncate": _op_truncate, "open_wronly": _op_open_wronly,
       "pwrite": _op_pwrite}


@pytest.mark.parametrize("layer", ["l1", "l2"])
@pytest.mark.parametrize("op", sorted(OPS))
def test_copyup_keeps_metadata(ovl, op, layer):
    """A change to a lower file copies it up: the upper file has the lower
    file's mode, owner, mtime (ns), xattrs (user.* and trusted.*, nothing
    more but the overlay's private trusted.overlay.* ones) and data,
    changed only by the operation itself; the view shows the same; the
    lower file is unchanged."""
    lower = getattr(ovl, layer)("dir", "f")
    mkfile(lower, DATA, mode=0o640, uid=1234, gid=2345, mtime_ns=T0, xattrs=LOWER_XATTRS)
    mkfile(getattr(ovl, layer)("dir", "sibling"), b"stays below")
    lowers = Untouched(ovl.L1, ovl.L2)
    before = attrs(lower)
    ovl.mount()
    ino = os.lstat(ovl.m("dir/f")).st_ino

    change = OPS[op](ovl.m("dir/f"))

    want = dict(before)
    data = change.pop("data", DATA)
    want.update(change)
    view = attrs(ovl.m("dir/f"))
    if want["mtime_ns"] == "changed":
        assert view["mtime_ns"] != T0, "mtime should have changed"
        want["mtime_ns"] = view["mtime_ns"]
    assert_attrs(want, view, "the view after %s" % op)
    assert read(ovl.m("dir/f")) == data
    assert_attrs(want, attrs(ovl.u("dir/f")), "the upper file after %s" % op)
    assert_upper_data(ovl.u("dir/f"), data)
    assert os.lstat(ovl.m("dir/f")).st_ino == ino, "st_ino changed by copy-up"
    assert not os.path.lexists(ovl.u("dir/sibling")), "copy-up of a sibling"
    lowers.check()


def test_copyup_creates_parents_like_lower_dirs(ovl):
    """Copy-up of a file deep in the tree first creates its parent
    directories in the upper with the lower directories' mode, owner, mtime
    (ns) and xattrs, taken from the highest layer holding each; siblings
    stay below.  The view of the parents does not change."""
    mkfile(ovl.l2("a/b/c/f"), b"deep", mode=0o600, uid=7, gid=8, mtime_ns=T0)
    mkfile(ovl.l2("a/b/c/g"), b"sibling")
    mkfile(ovl.l2("a/l2only"), b"x")
    mkfile(ovl.l1("a/l1only"), b"y")
    mkdir(ovl.l2("a/b/c"), mode=0o755, uid=31, gid=32, mtime_ns=T1)
    mkdir(ovl.l2("a/b"), mode=0o710, uid=21, gid=22, mtime_ns=T2,
          xattrs={"user.dir": b"b"})
    mkdir(ovl.l2("a"), mode=0o700, uid=91, gid=92, mtime_ns=T2)
    mkdir(ovl.l1("a"), mode=0o751, uid=11, gid=12, mtime_ns=T0,
          xattrs={"user.dir": b"a"})
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    view_before = {d: attrs(ovl.m(d)) for d in ("a", "a/b", "a/b/c")}
    ino_before = {d: os.lstat(ovl.m(d)).st_ino for d in ("a", "a/b", "a/b/c", "a/b/c/f")}

    os.chmod(ovl.m("a/b/c/f"), 0o640)

    for d, lower in (("a", ovl.l1("a")), ("a/b", ovl.l2("a/b")), ("a/b/c", ovl.l2("a/b/c"))):
        want = attrs(lower)
        del want["size"]
        got = attrs(ovl.u(d))
        del got["size"]
        assert got == want, "upper %s should copy %s" % (d, lower)
        v = attrs(ovl.m(d))
        del v["size"]
        vb = dict(view_before[d])
        del vb["size"]
        assert v == vb, "the view of %s changed" % d
    assert stat.S_IMODE(os.lstat(ovl.u("a/b/c/f")).st_mode) == 0o640
    assert sorted(os.listdir(ovl.u("a/b/c"))) == ["f"]
    assert sorted(os.listdir(ovl.u("a"))) == ["b"]
    assert listing(ovl.m("a")) == ["b", "l1only", "l2only"]
    assert {d: os.lstat(ovl.m(d)).st_ino for d in ino_before} == ino_before
    lowers.check()


def test_copyup_of_directory_metadata(ovl):
    """chmod, chown, utimes and setxattr on a lower directory copy up the
    directory alone (not its children), keep the attributes the call does
    not change, and leave it merged (children of both lowers listed)."""
    mkfile(ovl.l1("d/a"), b"a")
    mkfile(ovl.l2("d/b"), b"b")
    mkfile(ovl.l2("d/sub/c"), b"c")
    mkdir(ovl.l2("d"), mode=0o700, uid=1, gid=2, mtime_ns=T1,
          xattrs={"user.lower": b"2"})
    mkdir(ovl.l1("d"), mode=0o750, uid=3, gid=4, mtime_ns=T0,
          xattrs={"user.lower": b"1"})
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    before = attrs(ovl.m("d"))
    del before["size"]

    os.chmod(ovl.m("d"), 0o755)
    want = dict(before, mode=0o755)
    got = attrs(ovl.m("d"))
    del got["size"]
    assert_attrs(want, got, "the directory after chmod")
    os.chown(ovl.m("d"), 5, 6)
    os.setxattr(ovl.m("d"), "user.added", b"x")
    os.utime(ovl.m("d"), ns=(T2, T2))
    want.update(uid=5, gid=6, mtime_ns=T2,
                xattrs={"user.lower": b"1", "user.added": b"x"})
    for where in (ovl.m("d"), ovl.u("d")):
        got = attrs(where)
        del got["size"]
        assert_attrs(want, got, where)
    assert listing(ovl.m("d")) == ["a", "b", "sub"]
    assert sorted(os.listdir(ovl.u("d"))) == []
    ovl.remount()
    assert listing(ovl.m("d")) == ["a", "b", "sub"]
    assert read(ovl.m("d/sub/c")) == b"c"
    lowers.check()


def test_chown_clears_setuid_after_copy_up(ovl):
    """chown of a lower set-user-ID executable copies it up and clears
    S_ISUID/S_ISGID as on any Linux filesystem (chown(2)); the lower keeps
    its bits."""
    mkfile(ovl.l2("suid"), b"#!/bin/sh\n", mode=0o6755, mtime_ns=T0)
    ovl.mount()
    os.chown(ovl.m("suid"), 1000, 1000)
    for where in (ovl.m("suid"), ovl.u("suid")):
        st = os.lstat(where)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o755), where
    assert stat.S_IMODE(os.lstat(ovl.l2("suid")).st_mode) == 0o6755


def test_write_through_symlink_copies_up_the_target(ovl):
    """Opening a lower symlink for writing follows it (open(2) does): the
    target file is copied up and changed, the symlink itself stays below."""
    mkfile(ovl.l2("dir/target"), b"target data", mode=0o640, mtime_ns=T0)
    mksymlink(ovl.l1("link"), "dir/target")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    with open(ovl.m("link"), "r+b") as f:
        f.write(b"TARGET")
    assert read(ovl.m("dir/target")) == b"TARGET data"
    assert read(ovl.u("dir/target")) == b"TARGET data"
    assert not os.path.lexists(ovl.u("link")), "the symlink was copied up"
    assert os.readlink(ovl.m("link")) == "dir/target"
    os.chmod(ovl.m("link"), 0o600)             # chmod follows symlinks too
    assert stat.S_IMODE(os.lstat(ovl.u("dir/target")).st_mode) == 0o600
    assert not os.path.lexists(ovl.u("link"))
    lowers.check()


@pytest.mark.parametrize("first", ["a", "b"])
def test_write_through_one_name_of_a_lower_hard_link(ovl, first):
    """A lower file with two names: a write through one of them copies up
    that name only (without index, overlayfs breaks the link at copy-up);
    the other keeps showing the lower data, whichever name was looked up
    first. Until then both show the lower file's number."""
    mkfile(ovl.l1("dir/a"), b"orig data\n")
    os.link(ovl.l1("dir/a"), ovl.l1("dir/b"))
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    other = "b" if first == "a" else "a"
    assert read(ovl.m("dir", first)) == b"orig data\n"
    assert os.lstat(ovl.m("dir/a")).st_ino == os.lstat(ovl.m("dir/b")).st_ino
    with open(ovl.m("dir", other), "r+b") as f:
        f.write(b"NEW!")
    assert read(ovl.m("dir", other)) == b"NEW! data\n"
    assert read(ovl.m("dir", first)) == b"orig data\n"
    assert read(ovl.u("dir", other)) == b"NEW! data\n"
    assert not os.path.lexists(ovl.u("dir", first)), "the other name was copied up"
    assert os.lstat(ovl.m("dir", other)).st_nlink == 1
    lowers.check()


@pytest.mark.parametrize("op", ["lchown", "lutimes"])
def test_symlink_copyup_never_follows(ovl, op):
    """Changing a symlink's own attributes copies up the symlink (same
    target, same owner/mtime except what the call changes), never its
    target, even when the target is an absolute path into the lower itself."""
    mkfile(ovl.l1("target"), b"t", mode=0o644, uid=0, gid=0, mtime_ns=T0)
    mksymlink(ovl.l1("rel"), "target", uid=55, gid=66, mtime_ns=T1)
    mksymlink(ovl.l2("abs"), ovl.l1("target"), uid=55, gid=66, mtime_ns=T1)
    mksymlink(ovl.l2("dangling"), "no/such/file", uid=55, gid=66, mtime_ns=T1)
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    for name in ("rel", "abs", "dangling"):
        before = os.lstat(ovl.m(name))
        if op == "lchown":
            os.chown(ovl.m(name), 77, 88, follow_symlinks=False)
            want = (77, 88, T1)
        else:
            os.utime(ovl.m(name), ns=(T2, T2), follow_symlinks=False)
            want = (55, 66, T2)
        for where in (ovl.u(name), ovl.m(name)):
            st = os.lstat(where)
            assert stat.S_ISLNK(st.st_mode), where
            assert (st.st_uid, st.st_gid, st.st_mtime_ns) == want, where
            assert os.readlink(where) == os.readlink(getattr(ovl, "l1" if name == "rel"
                                                             else "l2")(name))
        assert os.lstat(ovl.m(name)).st_ino == before.st_ino
    assert not os.path.lexists(ovl.u("target")), "the symlink's target was copied up"
    st = os.stat(ovl.m("target"))
    assert (st.st_uid, st.st_gid, st.st_mtime_ns) == (0, 0, T0)
    lowers.check()


def test_hard_link_of_lower_file(ovl):
    """link(2) of a lower file copies it up and links it in the upper: both
    names are one inode in the view (same st_ino, st_nlink 2, a write
    through one shows through the other) and in the upper; the lower file
    keeps st_nlink 1."""
    mkfile(ovl.l2("d/f"), b"original", mode=0o640, uid=3, gid=4, mtime_ns=T0)
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    ino = os.lstat(ovl.m("d/f")).st_ino

    os.link(ovl.m("d/f"), ovl.m("g"))

    sf, sg = os.lstat(ovl.m("d/f")), os.lstat(ovl.m("g"))
    assert sf.st_ino == sg.st_ino == ino
    assert sf.st_nlink == sg.st_nlink == 2
    assert (stat.S_IMODE(sg.st_mode), sg.st_uid, sg.st_gid, sg.st_mtime_ns) == (0o640, 3, 4, T0)
    assert os.path.samefile(ovl.u("d/f"), ovl.u("g"))
    with open(ovl.m("g"), "r+b") as f:
        f.write(b"CHANGED!")
    assert read(ovl.m("d/f")) == b"CHANGED!"
    os.unlink(ovl.m("g"))
    assert os.lstat(ovl.m("d/f")).st_nlink == 1
    assert read(ovl.m("d/f")) == b"CHANGED!"
    assert read(ovl.l2("d/f")) == b"original"
    lowers.check()


def test_open_read_fd_follows_copy_up(ovl):
    """A descriptor opened O_RDONLY on a lower file, before another
    descriptor's write copies the file up, reads the new data afterwards
    and fstat shows the new size and the same st_ino: kernel overlayfs
    (since 4.19, stacked file operations) reopens the real file under such
    a descriptor.  (Only a MAP_SHARED mapping made before the copy-up keeps
    the old data: overlayfs.rst, "Non-standard behavior" b; not tested.)"""
    mkfile(ovl.l1("f"), b"old data, fairly long", mtime_ns=T0)
    ovl.mount()
    rfd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        assert os.pread(rfd, 100, 0) == b"old data, fairly long"
        ino = os.fstat(rfd).st_ino
        wfd = os.open(ovl.m("f"), os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(wfd, b"new")
            assert os.pread(rfd, 100, 0) == b"new", "read fd after copy-up, writer still open"
        finally:
            os.close(wfd)
        assert os.pread(rfd, 100, 0) == b"new"
        st = os.fstat(rfd)
        assert st.st_size == 3 and st.st_ino == ino
        with open(ovl.m("f"), "ab") as f:
            f.write(b" and more")
        assert os.pread(rfd, 100, 0) == b"new and more"
        assert os.read(rfd, 100) == b"new and more"  # file offset still 0
    finally:
        os.close(rfd)
    assert read(ovl.l1("f")) == b"old data, fairly long"


def test_write_inside_large_lower_file_keeps_the_rest(ovl):
    """Copy-up copies all the data: a 4-byte write in the middle of a 3 MiB
    lower file (and one into a sparse lower file's hole) leaves every other
    byte as it was."""
    big = pattern(3 << 20, seed=2)
    mkfile(ovl.l2("big"), big)
    with open(ovl.l2("sparse"), "wb") as f:
        f.truncate(4 << 20)
        f.seek(3 << 20)
        f.write(b"tail data")
    ovl.mount()
    fd = os.open(ovl.m("big"), os.O_RDWR)
    try:
        os.pwrite(fd, b"ABCD", 1_500_000)
    finally:
        os.close(fd)
    fd = os.open(ovl.m("sparse"), os.O_RDWR)
    try:
        os.pwrite(fd, b"hole", 1 << 20)
    finally:
        os.close(fd)
    want = big[:1_500_000] + b"ABCD" + big[1_500_004:]
    assert read(ovl.m("big")) == want
    assert read(ovl.u("big")) == want
    s = bytearray(4 << 20)
    s[1 << 20:(1 << 20) + 4] = b"hole"
    s[3 << 20:(3 << 20) + 9] = b"tail data"
    assert read(ovl.m("sparse")) == bytes(s)
    assert read(ovl.l2("big")) == big


# --------------------------------------------------------------------------
# inode numbers

def test_st_ino_stable_across_copy_up(ovl):
    """A file, a directory, a symlink and the directories above a
    copied-up file keep their st_ino when copied up (all layers on one
    filesystem: overlayfs.rst "Inode properties", persistent st_ino);
    an fstat on a descriptor opened before agrees."""
    mkfile(ovl.l1("f1"), b"1")
    mkfile(ovl.l2("f2"), b"2")
    mkfile(ovl.l2("p/q/deep"), b"3")
    mkdir(ovl.l1("d"))
    mksymlink(ovl.l2("s"), "f1")
    ovl.mount()
    names = ("f1", "f2", "p", "p/q", "p/q/deep", "d", "s")
    before = {n: os.lstat(ovl.m(n)).st_ino for n in names}
    fd = os.open(ovl.m("f2"), os.O_RDONLY)
    try:
        os.chmod(ovl.m("f1"), 0o600)
        with open(ovl.m("f2"), "ab") as f:
            f.write(b"more")
        os.chown(ovl.m("p/q/deep"), 5, 5)
        os.chmod(ovl.m("d"), 0o700)
        os.chown(ovl.m("s"), 5, 5, follow_symlinks=False)
        assert os.fstat(fd).st_ino == before["f2"]
    finally:
        os.close(fd)
    for n in names:
        assert os.path.lexists(ovl.u(n)), "%s was not copied up" % n
    assert {n: os.lstat(ovl.m(n)).st_ino for n in names} == before


def test_st_ino_stable_across_remount(ovl):
    """st_ino of every kind of object (lower-only, copied up, renamed after
    copy-up, made in the upper, merged directories, symlinks) is the same
    after unmount and mount (persistent st_ino, all layers on one
    filesystem)."""
    mkfile(ovl.l1("lower_only"), b"l")
    mkfile(ovl.l2("m/in_l2"), b"l2")
    mkfile(ovl.l1("m/in_l1"), b"l1")
    mkfile(ovl.l2("to_copy"), b"c")
    mkfile(ovl.l2("to_rename"), b"r")
    mkfile(ovl.u("pre_upper"), b"u")
    mksymlink(ovl.l1("sym"), "lower_only")
    ovl.mount()
    os.chmod(ovl.m("to_copy"), 0o600)
    ren_ino = os.lstat(ovl.m("to_rename")).st_ino
    os.rename(ovl.m("to_rename"), ovl.m("m/renamed"))
    mkfile(ovl.m("made_here"), b"n")
    os.mkdir(ovl.m("m/newdir"))
    before = {rel: os.lstat(os.path.normpath(os.path.join(ovl.M, rel))).st_ino
              for rel in walk(ovl.M) if rel != "."}
    assert before["m/renamed"] == ren_ino, "st_ino changed by rename (copy-up)"
    ovl.remount()
    after = {rel: os.lstat(os.path.normpath(os.path.join(ovl.M, rel))).st_ino
             for rel in walk(ovl.M) if rel != "."}
    assert after == before
    assert err_of(os.lstat, ovl.m("to_rename")) == "ENOENT"


@pytest.mark.parametrize("kind", ["file", "dir", "symlink"])
def test_removing_a_missing_xattr_copies_nothing_up(ovl, kind):
    """removexattr of a name the lower object does not have fails with
    ENODATA and leaves the upper empty: nothing changed, so nothing is
    copied up; removing one it has copies it up and removes it there."""
    path = ovl.l1("o")
    if kind == "file":
        mkfile(path, b"x", xattrs={"user.here": b"1"})
    elif kind == "dir":
        mkdir(path, xattrs={"user.here": b"1"})
    else:
        mksymlink(path, "target")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    # (user.* names are not allowed on symlinks at all: EPERM.)
    absent = "trusted.absent" if kind == "symlink" else "user.absent"
    assert err_of(os.removexattr, ovl.m("o"), absent, follow_symlinks=False) == "ENODATA"
    assert walk(ovl.U) == ["."], "a failed removexattr copied up: %s" % walk(ovl.U)
    if kind != "symlink":
        os.removexattr(ovl.m("o"), "user.here")
        assert "user.here" not in os.listxattr(ovl.m("o"))
        assert "user.here" not in os.listxattr(ovl.u("o"))
    lowers.check()


def test_attributes_after_copy_up_are_what_a_fresh_lookup_shows(ovl):
    """After a change deep in lower directories copies them up, stat of
    each directory shows what it shows once the kernel has forgotten
    everything (no stale cached attributes)."""
    mkfile(ovl.l2("a/b/c/f"), b"lower")
    mkdir(ovl.l1("a/b"), mtime_ns=T0)
    ovl.mount()
    rels = ("a", "a/b", "a/b/c", "a/b/c/f")
    for rel in rels:
        os.lstat(ovl.m(rel))
    with open(ovl.m("a/b/c/f"), "ab") as f:
        f.write(b" and upper")

    def attrs_now():
        return {rel: (st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                for rel, st in ((rel, os.lstat(ovl.m(rel))) for rel in rels)}
    cached = attrs_now()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2")
    assert attrs_now() == cached
    assert os.lstat(ovl.m("a/b")).st_mtime_ns == T0
