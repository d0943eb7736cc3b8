"""Layered mounts, the merged view: listings, lookup precedence, whiteouts
and opaque directories in the layers, inode numbers, st_dev, private xattrs,
statfs.

This is a parity suite: each test is generated once per backend ("kernel":
kernel overlayfs, "prismfs": prismfs mount --upper), builds the same layer
trees, performs real system calls on the mount and asserts what kernel
overlayfs does (Documentation/filesystems/overlayfs.rst).  Running it with
PRISMFS_LAYER_BACKENDS=kernel proves each assertion against the kernel;
tests marked @prismfs_only ask for more than the kernel (OCI whiteouts in
lowers) and have no kernel variant.  See layer_helpers.py.
"""
import collections
import os
import stat

from layer_helpers import (T0, T1, Untouched, err_of, listing, mkdir, mkfile,
                           mkoci_whiteout, mksymlink, mkwhiteout, ovl, prismfs_only,
                           pytest_generate_tests, read, set_opaque, walk)
from sysx import DT_DIR, DT_LNK, DT_REG, DirStream, listxattr, readdir_all

assert ovl and pytest_generate_tests  # fixture and hook used by pytest


def names_once(path):
    """readdir of path: {name: d_type} of every name but . and .., checking
    that no name is listed twice (. and .. included: POSIX lets them be
    absent, never repeated; kernel overlayfs lists each once)."""
    ents = readdir_all(path)
    counts = collections.Counter(n for n, _, _ in ents)
    dup = sorted(n for n, c in counts.items() if c > 1)
    assert not dup, "%s: names listed more than once: %s" % (path, dup)
    return {n: t for n, t, _ in ents if n not in (".", "..")}


# --------------------------------------------------------------------------
# listings and lookup

def test_merged_listing_upper_and_two_lowers(ovl):
    """Upper first, then L1, then L2; each name once; the highest layer's
    object wins; names of every layer are shown."""
    mkfile(ovl.u("only_u"), b"u")
    mkfile(ovl.u("u_and_l1"), b"upper")
    mkfile(ovl.u("all3"), b"upper")
    mkfile(ovl.u("sub/u_child"), b"u")
    mkfile(ovl.l1("only_l1"), b"l1")
    mkfile(ovl.l1("u_and_l1"), b"l1")
    mkfile(ovl.l1("l1_and_l2"), b"l1")
    mkfile(ovl.l1("all3"), b"l1")
    mkfile(ovl.l1("sub/l1_child"), b"l1")
    mkfile(ovl.l2("only_l2"), b"l2")
    mkfile(ovl.l2("l1_and_l2"), b"l2")
    mkfile(ovl.l2("all3"), b"l2")
    mkfile(ovl.l2("sub/l2_child"), b"l2")
    mkfile(ovl.l2("sub/l1_child"), b"l2")
    mkdir(ovl.l2("l2dir"))
    mksymlink(ovl.l2("l2link"), "only_l2")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()

    top = names_once(ovl.M)
    assert sorted(top) == ["all3", "l1_and_l2", "l2dir", "l2link", "only_l1", "only_l2",
                           "only_u", "sub", "u_and_l1"]
    assert top["sub"] == DT_DIR and top["l2dir"] == DT_DIR
    assert top["only_l2"] == DT_REG and top["l2link"] == DT_LNK
    assert sorted(names_once(ovl.m("sub"))) == ["l1_child", "l2_child", "u_child"]
    assert read(ovl.m("all3")) == b"upper"
    assert read(ovl.m("u_and_l1")) == b"upper"
    assert read(ovl.m("l1_and_l2")) == b"l1"
    assert read(ovl.m("only_l2")) == b"l2"
    assert read(ovl.m("sub/l1_child")) == b"l1"
    assert read(ovl.m("l2link")) == b"l2"
    # listdir agrees with readdir, twice in a row (no stale cache effects)
    assert listing(ovl.M) == sorted(top) == listing(ovl.M)
    lowers.check()


def test_lookup_precedence(ovl):
    """A file in L1 hides L2's (content and attributes); a non-directory
    hides a directory below it and vice versa (non-directories are always
    opaque); a directory's attributes are the highest layer's."""
    mkfile(ovl.l1("f"), b"from L1", mode=0o600, uid=101, gid=102, mtime_ns=T0)
    mkfile(ovl.l2("f"), b"from L2, longer", mode=0o644, uid=201, gid=202, mtime_ns=T1)
    mkfile(ovl.l1("x"), b"L1 file over an L2 dir")
    mkfile(ovl.l2("x/child"), b"hidden")
    mkfile(ovl.l1("y/a"), b"L1 dir over an L2 file")
    mkfile(ovl.l2("y"), b"hidden")
    mkfile(ovl.u("z"), b"upper file over an L1 dir")
    mkfile(ovl.l1("z/child"), b"hidden")
    mkfile(ovl.l1("d/one"), b"1")
    mkfile(ovl.l2("d/two"), b"2")
    mkdir(ovl.l1("d"), mode=0o750, uid=301, gid=302, mtime_ns=T0)
    mkdir(ovl.l2("d"), mode=0o700, uid=401, gid=402, mtime_ns=T1)
    ovl.mount()

    st = os.lstat(ovl.m("f"))
    assert read(ovl.m("f")) == b"from L1"
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns) == \
        (0o600, 101, 102, len(b"from L1"), T0)

    assert stat.S_ISREG(os.lstat(ovl.m("x")).st_mode)
    assert read(ovl.m("x")) == b"L1 file over an L2 dir"
    assert err_of(os.lstat, ovl.m("x/child")) == "ENOTDIR"

    assert stat.S_ISDIR(os.lstat(ovl.m("y")).st_mode)
    assert listing(ovl.m("y")) == ["a"]

    assert stat.S_ISREG(os.lstat(ovl.m("z")).st_mode)
    assert err_of(os.lstat, ovl.m("z/child")) == "ENOTDIR"

    st = os.lstat(ovl.m("d"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns) == \
        (0o750, 301, 302, T0)
    assert listing(ovl.m("d")) == ["one", "two"]


def test_whiteout_in_lower_hides_deeper_names(ovl):
    """A 0/0 character device in L1 hides the name in L2 (file or whole
    directory); the whiteout itself is never shown, not even where nothing
    lies below it."""
    mkwhiteout(ovl.l1("gone"))
    mkfile(ovl.l2("gone"), b"hidden")
    mkwhiteout(ovl.l1("gonedir"))
    mkfile(ovl.l2("gonedir/child"), b"hidden")
    mkwhiteout(ovl.l1("sub/gone2"))
    mkfile(ovl.l1("sub/kept"), b"kept")
    mkfile(ovl.l2("sub/gone2"), b"hidden")
    mkwhiteout(ovl.l2("nothing_below"))
    mkfile(ovl.l2("visible"), b"v")
    ovl.mount()

    assert listing(ovl.M) == ["sub", "visible"]
    assert listing(ovl.m("sub")) == ["kept"]
    for name in ("gone", "gonedir", "gonedir/child", "sub/gone2", "nothing_below"):
        assert err_of(os.lstat, ovl.m(name)) == "ENOENT", name
        assert err_of(os.open, ovl.m(name), os.O_RDONLY) == "ENOENT", name
    assert err_of(os.listdir, ovl.m("gonedir")) == "ENOENT"


def test_mkdir_over_lower_whiteout_is_empty(ovl):
    """A directory made where a lower whiteout hides a deeper directory
    starts empty: the deeper directory's children do not come back."""
    mkwhiteout(ovl.l1("d"))
    mkfile(ovl.l2("d/old"), b"hidden")
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()

    os.mkdir(ovl.m("d"))
    assert listing(ovl.m("d")) == []
    assert err_of(os.lstat, ovl.m("d/old")) == "ENOENT"
    mkfile(ovl.m("d/new"), b"n")
    assert listing(ovl.m("d")) == ["new"]
    ovl.remount()
    assert listing(ovl.m("d")) == ["new"]
    lowers.check()


@prismfs_only
def test_oci_whiteout_in_lower_hides_deeper_names(ovl):
    """prismfs-only: lowers extracted from OCI/Docker image layers carry
    whiteouts as empty .wh.NAME files (issue 5 item 3); kernel overlayfs
    shows them as plain files.  .wh.NAME in L1 hides NAME in L2 (file or
    directory), and the .wh. files themselves are never shown."""
    mkoci_whiteout(ovl.l1("gone"))
    mkfile(ovl.l2("gone"), b"hidden")
    mkoci_whiteout(ovl.l1("gonedir"))
    mkfile(ovl.l2("gonedir/child"), b"hidden")
    mkoci_whiteout(ovl.l1("sub/gone2"))
    mkfile(ovl.l1("sub/kept"), b"kept")
    mkfile(ovl.l2("sub/gone2"), b"hidden")
    mkoci_whiteout(ovl.l2("nothing_below"))
    mkfile(ovl.l2("visible"), b"v")
    ovl.mount()

    assert listing(ovl.M) == ["sub", "visible"]
    assert listing(ovl.m("sub")) == ["kept"]
    for name in ("gone", "gonedir", "gonedir/child", "sub/gone2", "nothing_below",
                 ".wh.gone", "sub/.wh.gone2"):
        assert err_of(os.lstat, ovl.m(name)) == "ENOENT", name


def test_opaque_dir_in_lower_hides_deeper_lowers(ovl):
    """trusted.overlay.opaque=y on a directory in L1 hides the same
    directory's contents in L2; an opaque upper directory hides every lower."""
    mkfile(ovl.l1("d/mine"), b"L1")
    set_opaque(ovl.l1("d"))
    mkfile(ovl.l2("d/theirs"), b"hidden")
    mkfile(ovl.l2("d/mine"), b"hidden version")
    mkfile(ovl.u("e/up"), b"U")
    set_opaque(ovl.u("e"))
    mkfile(ovl.l1("e/l1"), b"hidden")
    mkfile(ovl.l2("e/l2"), b"hidden")
    mkfile(ovl.l1("f/l1"), b"not opaque: merged")
    mkfile(ovl.l2("f/l2"), b"merged")
    ovl.mount()

    assert listing(ovl.m("d")) == ["mine"]
    assert read(ovl.m("d/mine")) == b"L1"
    assert err_of(os.lstat, ovl.m("d/theirs")) == "ENOENT"
    assert listing(ovl.m("e")) == ["up"]
    assert err_of(os.lstat, ovl.m("e/l1")) == "ENOENT"
    assert listing(ovl.m("f")) == ["l1", "l2"]


@prismfs_only
def test_oci_opaque_marker_in_lower_hides_deeper_lowers(ovl):
    """prismfs-only: an OCI layer marks an opaque directory with the empty
    file .wh..wh..opq (kernel overlayfs ignores it).  L1/d/.wh..wh..opq hides
    L2/d's children; the marker is never shown."""
    mkfile(ovl.l1("d/mine"), b"L1")
    set_opaque(ovl.l1("d"), "wh_opq")
    mkfile(ovl.l2("d/theirs"), b"hidden")
    mkfile(ovl.l2("d/mine"), b"hidden version")
    ovl.mount()

    assert listing(ovl.m("d")) == ["mine"]
    assert read(ovl.m("d/mine")) == b"L1"
    assert err_of(os.lstat, ovl.m("d/theirs")) == "ENOENT"
    assert err_of(os.lstat, ovl.m("d/.wh..wh..opq")) == "ENOENT"


def test_large_merged_listing_and_seekdir(ovl):
    """A merged directory with names spread over three layers (and some
    whited out) lists each visible name once; telldir/seekdir inside one
    open stream return to the same place; rewinddir shows names created
    since (overlayfs.rst "readdir": a seek to offset 0 rebuilds the list)."""
    for i in range(0, 900):
        layer = (ovl.u, ovl.l1, ovl.l2)[i % 3]
        mkfile(layer("big", "n%04d" % i), b"")
    for i in range(0, 900, 7):                 # the same names again, below
        mkfile(ovl.l2("big", "n%04d" % i), b"dup")
    for i in range(40):                        # whited out in U or in L1
        mkfile(ovl.l2("big", "w%04d" % i), b"hidden")
        mkwhiteout((ovl.u, ovl.l1)[i % 2]("big", "w%04d" % i))
    ovl.mount()
    want = sorted("n%04d" % i for i in range(900))
    assert sorted(names_once(ovl.m("big"))) == want
    with DirStream(ovl.m("big")) as d:
        head = [d.read() for _ in range(300)]
        pos = d.tell()
        rest = list(d)
        d.seek(pos)
        assert list(d) == rest
        mkfile(ovl.m("big/zz_new"), b"")
        d.rewind()
        again = [n for n, _, _ in d if n not in (".", "..")]
    assert sorted(n for n, _, _ in head + rest if n not in (".", "..")) == want
    assert sorted(again) == sorted(want + ["zz_new"])


def test_merged_dir_nlink(ovl):
    """Kernel overlayfs reports st_nlink 1 for merged directories (it does
    not count subdirectories across layers; 1 tells find(1) not to rely on
    it).  A backend may report 1 or the true count (2 + subdirectories in
    the merged view), nothing else."""
    mkdir(ovl.u("m/us"))
    mkdir(ovl.l1("m/l1s"))
    mkdir(ovl.l2("m/l2s"))
    mkdir(ovl.l2("m/us"))
    mkfile(ovl.l2("m/file"))
    ovl.mount()
    n = os.lstat(ovl.m("m")).st_nlink
    assert n in (1, 2 + 3), "merged dir nlink %d" % n


# --------------------------------------------------------------------------
# inode numbers and devices

def _tree_for_inodes(ovl):
    mkfile(ovl.u("u_file"), b"u")
    mkfile(ovl.u("ulink1"), b"upper hard link")
    os.link(ovl.u("ulink1"), ovl.u("ulink2"))
    mkfile(ovl.u("m/u_in_merged"), b"u")
    mkfile(ovl.l1("l1_file"), b"l1")
    mkfile(ovl.l1("same"), b"L1 same name")
    mkfile(ovl.l2("same"), b"L2 same name")
    mkfile(ovl.l1("m/l1_in_merged"), b"l1")
    mkfile(ovl.l2("m/l2_in_merged"), b"l2")
    mkfile(ovl.l2("deep/a/b/f"), b"deep")
    mkfile(ovl.l2("hl1"), b"lower hard link")
    os.link(ovl.l2("hl1"), ovl.l2("hl2"))
    mkfile(ovl.l1("split1"), b"lower hard link, one name copied up")
    os.link(ovl.l1("split1"), ovl.l1("split2"))
    mksymlink(ovl.l1("sym"), "l1_file")
    mkfile(ovl.l1("tocopy"), b"copied up")


def test_readdir_d_ino_matches_st_ino(ovl):
    """Every directory entry's d_ino equals the st_ino stat gives for it
    ("." and ".." included, except the root's ".."), in upper-only, lower-only
    and merged directories, before and after copy-up."""
    _tree_for_inodes(ovl)
    ovl.mount()
    os.chmod(ovl.m("tocopy"), 0o600)
    os.mkdir(ovl.m("m/newdir"))
    mkfile(ovl.m("deep/a/new"), b"new")

    bad = []
    for rel in walk(ovl.M):
        p = os.path.normpath(os.path.join(ovl.M, rel))
        if not stat.S_ISDIR(os.lstat(p).st_mode):
            continue
        for name, _, d_ino in readdir_all(p):
            if name == ".." and rel == ".":
                continue
            st_ino = os.lstat(os.path.join(p, name)).st_ino
            if d_ino != st_ino:
                bad.append("%s/%s: d_ino %d, st_ino %d" % (rel, name, d_ino, st_ino))
    assert not bad, "d_ino differs from st_ino:\n  " + "\n  ".join(bad)


def test_no_two_distinct_files_share_st_ino(ovl):
    """Walk the whole view: names sharing st_ino must be hard links of one
    file.  Hard links in a lower show as one inode with st_nlink 2.  Copying
    up one name of a lower hard-link pair either keeps them one file (both
    show the change) or breaks the link (kernel overlayfs without index=on):
    then they must no longer share st_ino."""
    _tree_for_inodes(ovl)
    ovl.mount()
    os.chmod(ovl.m("tocopy"), 0o600)
    os.chmod(ovl.m("split1"), 0o600)        # copy up one name of a lower pair
    os.link(ovl.m("l1_file"), ovl.m("made_link"))
    mkfile(ovl.m("m/new"), b"new")
    os.mkdir(ovl.m("newdir"))

    groups = collections.defaultdict(list)
    for rel in walk(ovl.M):
        st = os.lstat(os.path.normpath(os.path.join(ovl.M, rel)))
        groups[(st.st_dev, st.st_ino)].append((rel, st))
    allowed = [{"ulink1", "ulink2"}, {"hl1", "hl2"}, {"split1", "split2"},
               {"l1_file", "made_link"}]
    for members in groups.values():
        if len(members) == 1:
            continue
        names = {r for r, _ in members}
        assert any(names <= a for a in allowed), \
            "distinct files share st_ino %d: %s" % (members[0][1].st_ino, sorted(names))
        sigs = {(s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_nlink, s.st_mtime_ns)
                for _, s in members}
        assert len(sigs) == 1, "names sharing st_ino disagree: %s" % members
        assert members[0][1].st_nlink >= len(members)
    # the lower pair and the links made on each side are one inode each
    for a, b in (("hl1", "hl2"), ("ulink1", "ulink2"), ("l1_file", "made_link")):
        sa, sb = os.lstat(ovl.m(a)), os.lstat(ovl.m(b))
        assert sa.st_ino == sb.st_ino and sa.st_nlink == sb.st_nlink == 2, (a, b)
    s1, s2 = os.lstat(ovl.m("split1")), os.lstat(ovl.m("split2"))
    if s1.st_ino == s2.st_ino:
        assert stat.S_IMODE(s2.st_mode) == 0o600, "split2 shares split1's inode but not its mode"
    else:
        assert stat.S_IMODE(s2.st_mode) == 0o644


def test_st_dev_uniform_and_distinct_from_layers(ovl):
    """With all layers on one filesystem, kernel overlayfs reports the
    overlay's own st_dev for every object (overlayfs.rst, "Overlay objects"
    and the "Inode properties" table: uniform st_dev), so an object in the
    view is never mistaken for the layer file it comes from (diff, cp -a,
    du -x and tar rely on (st_dev, st_ino))."""
    _tree_for_inodes(ovl)
    ovl.mount()
    os.chmod(ovl.m("tocopy"), 0o600)
    dev = os.lstat(ovl.M).st_dev
    devs = {rel: os.lstat(os.path.normpath(os.path.join(ovl.M, rel))).st_dev
            for rel in walk(ovl.M)}
    odd = {r: d for r, d in devs.items() if d != dev}
    assert not odd, "st_dev differs from the mount root's %d: %s" % (dev, odd)
    for rel, layer in (("l1_file", ovl.l1("l1_file")), ("hl1", ovl.l2("hl1")),
                       ("u_file", ovl.u("u_file")), ("tocopy", ovl.u("tocopy")),
                       (".", ovl.L1)):
        sm, sl = os.lstat(ovl.m(rel)), os.lstat(layer)
        assert (sm.st_dev, sm.st_ino) != (sl.st_dev, sl.st_ino), \
            "%s in the view has the (st_dev, st_ino) of %s" % (rel, layer)


# --------------------------------------------------------------------------
# private xattrs

PRIVATE = ("trusted.overlay.opaque", "trusted.overlay.origin", "trusted.overlay.impure",
           "trusted.overlay.redirect", "trusted.overlay.whiteout", "trusted.overlay.nlink",
           "trusted.overlay.uuid", "trusted.overlay.metacopy")


def test_private_xattrs_never_shown(ovl):
    """The upper's bookkeeping xattrs (trusted.overlay.*: opaque, origin,
    impure, ...) are never listed through the mount, and getxattr of one
    fails with ENODATA, as if it did not exist.  listxattr's size probe
    (size 0) is at least the filtered list's length; kernel overlayfs
    returns the upper's unfiltered size there, so it may be larger.  Other
    xattrs show as usual."""
    mkfile(ovl.u("d/up"), b"u", xattrs={"user.a": b"1", "trusted.note": b"t"})
    set_opaque(ovl.u("d"))
    os.setxattr(ovl.u("d/up"), "trusted.overlay.impure", b"y")
    mkfile(ovl.l1("d/hidden"), b"h")
    mkfile(ovl.l1("tocopy"), b"c", xattrs={"user.b": b"2"})
    mkfile(ovl.l1("gone"), b"g")
    mkfile(ovl.l1("rmd/x"), b"x")
    ovl.mount()
    os.chmod(ovl.m("tocopy"), 0o600)          # copy-up: the kernel adds origin
    os.unlink(ovl.m("gone"))
    os.unlink(ovl.m("rmd/x"))
    os.rmdir(ovl.m("rmd"))
    os.mkdir(ovl.m("rmd"))                      # opaque
    mkfile(ovl.m("new"), b"n", xattrs={"user.c": b"3"})

    for rel in walk(ovl.M):
        p = os.path.normpath(os.path.join(ovl.M, rel))
        names = os.listxattr(p, follow_symlinks=False)
        leaked = [n for n in names if n.startswith("trusted.overlay.")]
        assert not leaked, "%s: private xattrs listed: %s" % (rel, leaked)
        # The size probe (size 0) must leave room for the list.  It may be
        # larger: kernel overlayfs answers it with the upper's unfiltered size.
        probe = listxattr(p, 0)
        got = listxattr(p, max(probe, 1))
        assert probe >= len(got), (rel, probe, got)
        assert sorted(n for n in got.decode().split("\0") if n) == sorted(names), rel
        for n in PRIVATE:
            assert err_of(os.getxattr, p, n, follow_symlinks=False) == "ENODATA", (rel, n)
    assert os.getxattr(ovl.m("d/up"), "user.a") == b"1"
    assert os.getxattr(ovl.m("d/up"), "trusted.note") == b"t"
    assert os.getxattr(ovl.m("tocopy"), "user.b") == b"2"
    assert os.getxattr(ovl.m("new"), "user.c") == b"3"


def test_private_xattr_set_through_mount_is_not_private(ovl):
    """Setting trusted.overlay.opaque through the mount never makes the
    directory opaque.  Kernel overlayfs 6.7+ (overlayfs.rst "Nesting
    overlayfs mounts") stores it escaped, as trusted.overlay.overlay.opaque
    in the upper, and shows it back as an ordinary xattr; older kernels
    refused it (EOPNOTSUPP).  Either is accepted: a round trip, or a refusal
    after which it still does not exist.  The lower children stay visible,
    now and after a remount."""
    mkfile(ovl.l1("d/a"), b"a")
    mkfile(ovl.l2("d/b"), b"b")
    ovl.mount()
    e = err_of(os.setxattr, ovl.m("d"), "trusted.overlay.opaque", b"y")
    assert e in (None, "EOPNOTSUPP", "EPERM"), e
    want = b"y" if e is None else "ENODATA"

    def check():
        got = err_of(os.getxattr, ovl.m("d"), "trusted.overlay.opaque") or \
            os.getxattr(ovl.m("d"), "trusted.overlay.opaque")
        assert got == want
        assert ("trusted.overlay.opaque" in os.listxattr(ovl.m("d"))) == (e is None)
        assert listing(ovl.m("d")) == ["a", "b"]
    check()
    ovl.remount()
    check()
    if e is None:
        os.removexattr(ovl.m("d"), "trusted.overlay.opaque")
        assert "trusted.overlay.opaque" not in os.listxattr(ovl.m("d"))
        assert listing(ovl.m("d")) == ["a", "b"]


# --------------------------------------------------------------------------
# statfs

def test_statfs(ovl):
    """statfs works on the mount and on files in it, and describes the
    upper's filesystem (where changes land): same total size and total
    inodes, a name length no longer than the upper's; kernel overlayfs takes
    them all from the upper."""
    mkfile(ovl.l2("f"), b"x")
    ovl.mount()
    vm = os.statvfs(ovl.M)
    vu = os.statvfs(ovl.U)
    assert vm.f_bsize > 0 and vm.f_blocks > 0
    assert (vm.f_frsize * vm.f_blocks) == (vu.f_frsize * vu.f_blocks)
    assert vm.f_files == vu.f_files
    # the kernel gives the upper's; a smaller limit is fine (room for a
    # ".wh." prefix), a larger one would promise names the upper refuses
    assert 0 < vm.f_namemax <= vu.f_namemax
    assert 0 <= vm.f_bavail <= vm.f_bfree <= vm.f_blocks
    fd = os.open(ovl.m("f"), os.O_RDONLY)
    try:
        vf = os.fstatvfs(fd)
    finally:
        os.close(fd)
    assert (vf.f_frsize * vf.f_blocks) == (vu.f_frsize * vu.f_blocks)
    assert os.statvfs(ovl.m("f")).f_namemax == vm.f_namemax
