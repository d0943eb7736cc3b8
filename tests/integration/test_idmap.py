"""fuse-overlayfs's uidmapping=/gidmapping= (issue 18, item 8), on real
mounts driven by real system calls, in each view mode (plain, layered,
mapping table): an owner stored on disk as CONTAINERID+k is shown as
HOSTID+k, one in no range as the kernel's overflow id; chown and the
owners of what a caller makes are stored back as container ids, and an id
no range holds is refused (chown: EINVAL; a creator: EOVERFLOW) with
nothing changed; a copy-up keeps the stored ids; squash_to_* still decide
what is shown; bad ranges are bad usage. Also as an unprivileged user
(nobody, through fusermount3, as test_rootless.py does)."""
import errno
import json
import os
import stat
import struct
import subprocess

import pytest

import sysx
from conftest import mounts_under
from prism_helpers import assert_one_error_line, cli, make_dirs, run_as
from test_rootless import as_nobody, box, own  # noqa: F401 (box: a fixture)

# CONTAINERID:HOSTID:SIZE ranges; groups differ from users so that a mixed
# up uid and gid shows.
UIDMAP = "0:1000:1:1:110000:65536"
GIDMAP = "0:2000:1:1:120000:65536"
UIDS = [(0, 1000, 1), (1, 110000, 65536)]
GIDS = [(0, 2000, 1), (1, 120000, 65536)]


def overflow(kind):
    with open("/proc/sys/kernel/overflow%s" % kind) as f:
        return int(f.read())


def shown(ranges, stored, kind):
    for c, h, n in ranges:
        if c <= stored < c + n:
            return h + stored - c
    return overflow(kind)


def shown_ids(st):
    return shown(UIDS, st.st_uid, "uid"), shown(GIDS, st.st_gid, "gid")


def ids(path):
    st = os.lstat(path)
    return st.st_uid, st.st_gid


# name -> (kind, stored uid, stored gid); "far" is in no range.
TREE = {
    "root": ("file", 0, 0),
    "one": ("file", 1, 1),
    "k": ("file", 5, 7),
    "far": ("file", 70000, 70001),
    "ln": ("symlink", 3, 4),
    "d": ("dir", 0, 0),
}


def populate(top):
    for name, (kind, uid, gid) in TREE.items():
        p = os.path.join(top, name)
        if kind == "file":
            with open(p, "w") as f:
                f.write(name + "\n")
            os.chmod(p, 0o644)
        elif kind == "dir":
            os.mkdir(p)
            os.chmod(p, 0o777)
        else:
            os.symlink("k", p)
        os.lchown(p, uid, gid)


class Idmount:
    """A mount with the test's mapping in one view mode; `backing(name)`
    is where a change made through the mount lands."""

    def __init__(self, workdir, mounter, mode, extra=()):
        self.mode = mode
        src, self.mnt = make_dirs(workdir, "src", "mnt")
        args = ["-o", "uidmapping=%s,gidmapping=%s" % (UIDMAP, GIDMAP), *extra]
        self.lower = self.upper = None
        if mode == "layered":
            self.lower = src
            self.upper, work = make_dirs(workdir, "upper", "work")
            args += ["--upper", self.upper, "--work", work]
        populate(src)
        self.src = src
        if mode == "mapped":
            # A graft, and a name whose owners the table gives (ids as
            # stored, mapped like the files').
            table = {"/alias": {"target": os.path.join(src, "k")},
                     "/ruled": {"target": os.path.join(src, "one"), "uid": 2, "gid": 0}}
            mapfile = os.path.join(workdir, "map.json")
            with open(mapfile, "w") as f:
                json.dump(table, f)
            args += ["--map", mapfile]
        self.mount = mounter(src, self.mnt, *args)

    def p(self, *parts):
        return os.path.join(self.mnt, *parts)

    def backing(self, *parts):
        return os.path.join(self.upper or self.src, *parts)


MODES = ["plain", "layered", "mapped"]


@pytest.fixture(params=MODES)
def im(request, workdir, mounter):
    return Idmount(workdir, mounter, request.param)


def test_stat_shows_mapped_owners(im):
    for name in TREE:
        want = shown_ids(os.lstat(os.path.join(im.src, name)))
        assert ids(im.p(name)) == want, name
    # A listing's entries (READDIRPLUS) show the same.
    with os.scandir(im.mnt) as it:
        listed = {e.name: (e.stat(follow_symlinks=False).st_uid,
                           e.stat(follow_symlinks=False).st_gid) for e in it}
    for name in TREE:
        assert listed[name] == shown_ids(os.lstat(os.path.join(im.src, name))), name
    assert ids(im.mnt) == shown_ids(os.stat(im.src))
    assert ids(im.p("root")) == (1000, 2000)
    assert ids(im.p("k")) == (110004, 120006)
    assert ids(im.p("far")) == (overflow("uid"), overflow("gid"))
    if im.mode == "mapped":
        assert ids(im.p("alias")) == (110004, 120006)
        assert ids(im.p("ruled")) == (110001, 2000)  # the table's 2 and 0


CREATE = r'''
import errno, json, os, sys
d = json.load(sys.stdin)
out = {}
for name, make in (("f", lambda p: os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))),
                   ("sub", lambda p: os.mkdir(p)),
                   ("sym", lambda p: os.symlink("f", p)),
                   ("fifo", lambda p: os.mkfifo(p))):
    p = os.path.join(d, name)
    try:
        make(p)
        st = os.lstat(p)
        out[name] = [st.st_uid, st.st_gid]
    except OSError as e:
        out[name] = errno.errorcode[e.errno]
print(json.dumps(out))
'''


def test_new_objects_are_stored_as_container_ids(im):
    got = run_as(110005, 120006, [], CREATE, im.p("d"))
    for name in ("f", "sub", "sym", "fifo"):
        assert got[name] == [110005, 120006], (name, got)
        assert ids(im.backing("d", name)) == (6, 7), name
    if im.lower:
        # d was copied up to hold them: with its stored owners.
        assert ids(im.backing("d")) == (0, 0)
        assert ids(os.path.join(im.lower, "d")) == (0, 0)


def test_chown_stores_container_ids(im):
    os.chown(im.p("k"), 110010, 2000)
    assert ids(im.backing("k")) == (11, 0)
    assert ids(im.p("k")) == (110010, 2000)
    os.lchown(im.p("ln"), -1, 120003)     # the group only
    assert ids(im.backing("ln")) == (3, 4)
    assert ids(im.p("ln")) == (110002, 120003)
    os.lchown(im.p("ln"), 1000, -1)       # the user only
    assert ids(im.backing("ln")) == (0, 4)
    if im.lower:
        assert ids(os.path.join(im.lower, "k")) == (5, 7)


def test_unmapped_ids_are_refused_and_change_nothing(im):
    for uid, gid in ((5, -1), (-1, 5), (999, 2000), (110004, 4242)):
        with pytest.raises(OSError) as e:
            os.chown(im.p("k"), uid, gid)
        assert e.value.errno == errno.EINVAL, (uid, gid)
    assert ids(im.p("k")) == (110004, 120006)
    assert ids(os.path.join(im.src, "k")) == (5, 7)
    if im.upper:
        assert not os.path.lexists(im.backing("k")), "a refused chown copied up"
    # A caller whose uid (or only its gid) no range holds makes nothing.
    for uid, gid in ((4242, 120006), (110005, 4242)):
        got = run_as(uid, gid, [], CREATE, im.p("d"))
        assert got == {n: "EOVERFLOW" for n in ("f", "sub", "sym", "fifo")}, (uid, gid, got)
    for top in (im.src, im.upper):
        if top and os.path.isdir(os.path.join(top, "d")):
            assert os.listdir(os.path.join(top, "d")) == [], top


def test_history_tree_shows_mapped_owners(workdir, mounter):
    """The read-only .history tree of a mount with --history shows a
    snapshot's owners through the mapping too, looked up or stat'ed."""
    hdir, = make_dirs(workdir, "history")
    im = Idmount(workdir, mounter, "plain", ("--history", hdir))
    res = cli("snapshot", im.mnt, "--name", "s1")
    assert res.returncode == 0, res.stderr
    os.chown(im.p("k"), 110010, 2000)     # after the snapshot
    snap = im.p(".history", "s1")
    with os.scandir(snap) as it:
        listed = {e.name: (e.stat(follow_symlinks=False).st_uid,
                           e.stat(follow_symlinks=False).st_gid) for e in it}
    for name, (kind, uid, gid) in TREE.items():
        want = (shown(UIDS, uid, "uid"), shown(GIDS, gid, "gid"))
        assert ids(os.path.join(snap, name)) == want, name
        assert listed[name] == want, name
    assert ids(im.p("k")) == (110010, 2000)


def test_layered_copy_up_keeps_stored_ids(workdir, mounter):
    im = Idmount(workdir, mounter, "layered")
    for name in ("k", "far", "root"):
        with open(im.p(name), "a") as f:   # a data copy-up
            f.write("more\n")
    os.chmod(im.p("one"), 0o600)           # a metadata change: a copy-up too
    for name in ("k", "far", "root", "one"):
        assert ids(im.backing(name)) == ids(os.path.join(im.lower, name)), name
        assert ids(im.p(name)) == shown_ids(os.lstat(os.path.join(im.lower, name))), name
    assert ids(im.backing("far")) == (70000, 70001)
    with open(im.backing("k")) as f:
        assert f.read() == "k\nmore\n"


# POSIX ACLs in their xattr form (acl(5); the kernel's
# include/uapi/linux/posix_acl_xattr.h): version 2, then (tag, perm, id)
# entries, little-endian; ACL_USER (2) and ACL_GROUP (8) carry an id.
ACL_ACCESS, ACL_DEFAULT = "system.posix_acl_access", "system.posix_acl_default"
USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 1, 2, 4, 8, 0x10, 0x20
NO_ID = 0xFFFFFFFF


def acl(entries):
    """An ACL with the named (tag, perm, id) entries given, in that order."""
    ents = [(USER_OBJ, 6, NO_ID)] + [e for e in entries if e[0] == USER]
    ents += [(GROUP_OBJ, 4, NO_ID)] + [e for e in entries if e[0] == GROUP]
    ents += [(MASK, 6, NO_ID), (OTHER, 4, NO_ID)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in ents)


def named(value):
    """The (tag, id, perm) of the named entries, in the value's order."""
    assert struct.unpack_from("<I", value)[0] == 2 and (len(value) - 4) % 8 == 0
    ents = [struct.unpack_from("<HHI", value, off) for off in range(4, len(value), 8)]
    return [(t, i, p) for t, p, i in ents if t in (USER, GROUP)]


def set_acls(top):
    """On populate()'s tree: k, an ACL naming stored ids whose shown order
    differs from theirs (1 shows as 110000, 0 as 1000) and one no range
    holds; d, a default ACL; one: none yet."""
    os.setxattr(os.path.join(top, "k"), ACL_ACCESS,
                acl([(USER, 4, 1), (USER, 6, 0), (USER, 4, 70000), (GROUP, 2, 3)]))
    os.setxattr(os.path.join(top, "d"), ACL_DEFAULT, acl([(USER, 5, 9), (GROUP, 5, 0)]))


@pytest.fixture
def kernel_idmapped(workdir):
    """A kernel idmapped mount of its own copy of the tree, mapped as the
    test's uidmapping=/gidmapping= are: the reference."""
    if os.geteuid() != 0:
        pytest.skip("an idmapped mount needs root")
    src, mnt = make_dirs(workdir, "ksrc", "kmnt")
    populate(src)
    set_acls(src)
    try:
        sysx.idmapped_bind(src, mnt, UIDMAP, GIDMAP)
    except OSError as e:
        pytest.skip("no idmapped mount here: %s" % e)
    yield src, mnt
    subprocess.run(["umount", "-l", mnt], capture_output=True)


@pytest.mark.parametrize("mode", ["plain", "layered"])
def test_posix_acls_as_the_kernels_idmapped_mount(kernel_idmapped, workdir, mounter, mode):
    """An ACL names users and groups as the mount shows owners, as the
    kernel's idmapped mounts translate ACLs (fuse-overlayfs passes them
    unmapped): read through the mount, a stored id shows mapped (one no
    range holds: the overflow id, where the kernel's shows -1, which FUSE
    cannot carry), the entries in their stored order; an ACL set
    through the mount is stored with container ids, in its order (a
    layered mount: on the upper's copy, the lower untouched); an ACL naming
    an id no range holds is refused with the kernel's errno, nothing
    changed. Each compared with the kernel's idmapped mount of the same
    tree."""
    ksrc, kmnt = kernel_idmapped
    im = Idmount(workdir, mounter, mode)
    set_acls(im.src)  # the lower of a layered mount
    for root in (kmnt, im.mnt):
        assert ids(os.path.join(root, "k")) == (110004, 120006), root
    # An id no range holds: the kernel's idmapped mount shows -1, which the
    # kernel's FUSE client refuses in an ACL a daemon gives (EINVAL for the
    # whole ACL); prismfs shows the overflow id there, as for an owner.
    ov = overflow("uid")

    def as_fuse_can(value):
        out = bytearray(value)
        for off in range(4, len(out), 8):
            tag, _perm, i = struct.unpack_from("<HHI", out, off)
            if tag in (USER, GROUP) and i == NO_ID:
                struct.pack_into("<I", out, off + 4, overflow("uid" if tag == USER else "gid"))
        return bytes(out)
    for name, xa in (("k", ACL_ACCESS), ("d", ACL_DEFAULT)):
        want = as_fuse_can(os.getxattr(os.path.join(kmnt, name), xa))
        assert os.getxattr(im.p(name), xa) == want, name
    assert named(os.getxattr(os.path.join(kmnt, "k"), ACL_ACCESS))[2] == (USER, NO_ID, 4)
    assert named(os.getxattr(im.p("k"), ACL_ACCESS)) == [
        (USER, 110000, 4), (USER, 1000, 6), (USER, ov, 4), (GROUP, 120002, 2)]

    given = acl([(USER, 4, 110004), (USER, 6, 1000), (GROUP, 2, 120007)])
    os.setxattr(os.path.join(kmnt, "one"), ACL_ACCESS, given)
    os.setxattr(im.p("one"), ACL_ACCESS, given)
    stored = os.getxattr(im.backing("one"), ACL_ACCESS)
    assert stored == os.getxattr(os.path.join(ksrc, "one"), ACL_ACCESS)
    assert named(stored) == [(USER, 5, 4), (USER, 0, 6), (GROUP, 8, 2)]
    assert os.getxattr(im.p("one"), ACL_ACCESS) == given
    if mode == "layered":
        assert err_of(os.getxattr, os.path.join(im.lower, "one"), ACL_ACCESS) == errno.ENODATA

    before = os.getxattr(im.backing("one"), ACL_ACCESS)
    for bad in (acl([(USER, 4, 5)]), acl([(GROUP, 4, 1000)]), acl([(USER, 4, NO_ID)])):
        want = err_of(os.setxattr, os.path.join(kmnt, "one"), ACL_ACCESS, bad)
        assert want == errno.EINVAL
        assert err_of(os.setxattr, im.p("one"), ACL_ACCESS, bad) == want
    assert os.getxattr(im.backing("one"), ACL_ACCESS) == before


def err_of(fn, *a):
    try:
        fn(*a)
    except OSError as e:
        return e.errno
    return 0


def test_posix_acls_without_mapping_are_as_stored(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w"):
        pass
    value = acl([(USER, 4, 70000), (USER, 6, 3), (GROUP, 2, 5)])
    os.setxattr(os.path.join(src, "f"), ACL_ACCESS, value)
    mounter(src, mnt, "-o", "squash_to_uid=7")
    assert os.getxattr(os.path.join(mnt, "f"), ACL_ACCESS) == value


def test_squash_wins_over_mapping_for_what_is_shown(workdir, mounter):
    """squash_to_* decide the owner shown (fuse-overlayfs: they come before
    the mapping); what is given to the mount is still mapped back."""
    im = Idmount(workdir, mounter, "plain", ("-o", "squash_to_uid=0,squash_to_gid=0"))
    for name in TREE:
        assert ids(im.p(name)) == (0, 0), name
    os.chown(im.p("k"), 110010, 120011)
    assert ids(im.backing("k")) == (11, 12)
    assert ids(im.p("k")) == (0, 0)
    got = run_as(110005, 120006, [], CREATE, im.p("d"))
    assert got["f"] == [0, 0], got
    assert ids(im.backing("d", "f")) == (6, 7)


def status_ids(mnt):
    """status --json's ids, and the text status's ids.* lines."""
    res = cli("status", "--json", mnt)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)["ids"]
    res = cli("status", mnt)
    assert res.returncode == 0, res.stderr
    text = {}
    for line in res.stdout.splitlines():
        if line.startswith("ids."):
            key, value = line.split(None, 1)
            text[key[4:]] = value
    return got, text


@pytest.mark.parametrize("extra,squash", [
    ((), (None, None)),
    (("-o", "squash_to_uid=7,squash_to_gid=8"), (7, 8)),
    (("-o", "squash_to_root"), (0, 0)),
    (("--squash-to-uid", "5"), (5, None)),
])
def test_status_shows_the_mapping_and_squash(workdir, mounter, extra, squash):
    """status (text and --json) says how owners are shown: the ranges of
    uidmapping=/gidmapping= as the options spell them, and the id of
    squash_to_root / squash_to_uid= / squash_to_gid= (null when not given),
    as what the mount shows bears out."""
    im = Idmount(workdir, mounter, "plain", extra)
    got, text = status_ids(im.mnt)
    assert got == {"uidmapping": UIDMAP, "gidmapping": GIDMAP,
                   "squash_to_uid": squash[0], "squash_to_gid": squash[1]}, got
    assert text == {"uidmapping": UIDMAP, "gidmapping": GIDMAP,
                    "squash_to_uid": json.dumps(squash[0]),
                    "squash_to_gid": json.dumps(squash[1])}, text
    want = shown_ids(os.lstat(os.path.join(im.src, "k")))
    assert ids(im.p("k")) == tuple(w if s is None else s for s, w in zip(squash, want))


def test_status_without_ids_options(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    mounter(src, mnt)
    got, text = status_ids(mnt)
    assert got == dict.fromkeys(("uidmapping", "gidmapping", "squash_to_uid",
                                 "squash_to_gid")), got
    assert set(text.values()) == {"null"}, text


@pytest.mark.parametrize("opt,value", [
    ("uidmapping", "a:1000:1"),             # not a number
    ("uidmapping", "-1:1000:1"),
    ("gidmapping", "0:1000"),               # no size
    ("gidmapping", "0:1000:0"),             # size 0
    ("uidmapping", "0:1000:5:3:2000:1"),    # container ids overlap
    ("uidmapping", "0:1000:5:10:1003:1"),   # host ids overlap
    ("uidmapping", "4294967295:0:1"),       # -1 is no id
    ("gidmapping", "0:4294967290:10"),      # past the last id
    ("uidmapping", "0:1000:4294967296"),    # overflows 32 bits
    ("uidmapping", "0:1000:1:"),
    ("gidmapping", ""),
])
@pytest.mark.parametrize("form", ["-o", "long"])
def test_bad_ranges_are_bad_usage(workdir, opt, value, form):
    src, mnt = make_dirs(workdir, "src", "mnt")
    args = ["-o", "%s=%s" % (opt, value)] if form == "-o" else ["--" + opt, value]
    res = cli("mount", src, mnt, *args)
    assert_one_error_line(res, " ".join(args))
    assert res.returncode == 2, res
    assert opt in res.stderr, res.stderr
    for q in ("`", "'", '"'):
        assert q not in res.stderr, "stray quote %s in %r" % (q, res.stderr)
    assert not mounts_under(os.path.realpath(workdir)), "a refused mapping mounted"


def test_as_unprivileged_user(box):  # noqa: F811 (the fixture)
    """nobody mounts a layered view through fusermount3 with a mapping of
    its own: the image's stored ids 0.. show as 100000.., its own id
    stays; a file it makes or copies up is stored as itself. With a
    mapping that does not hold its id, it can make nothing (EOVERFLOW)."""
    lower = os.path.join(box, "lower")
    for name, uid in (("r", 0), ("o", 1), ("n", 65534)):
        with open(os.path.join(lower, name), "w") as f:
            f.write(name + "\n")
    own(box)
    for name, uid in (("r", 0), ("o", 1)):
        os.chown(os.path.join(lower, name), uid, uid)
    m = "65534:65534:1:0:100000:65534"
    out = as_nobody(box, r'''
$P mount --uidmapping %(m)s -o gidmapping=%(m)s --upper "$B/upper" --work "$B/work" \
    "$B/lower" "$B/mnt"
echo more >> "$B/mnt/n"
echo new > "$B/mnt/new"
cat "$B/mnt/r"
stat -c '%%n %%u %%g' "$B/mnt/r" "$B/mnt/o" "$B/mnt/n" "$B/mnt/new"
$P unmount "$B/mnt"
$P mount --uidmapping 0:100000:65534 "$B/lower" "$B/mnt"
stat -c '%%u %%g' "$B/mnt"
python3 -c 'import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o644))
    print("made")
except OSError as e:
    print(errno.errorcode[e.errno])' "$B/mnt/x"
$P unmount "$B/mnt"
echo unmounted
''' % {"m": m})
    lines = out.splitlines()
    assert lines[0] == "r", out
    assert lines[1:5] == ["%s/mnt/r 100000 100000" % box, "%s/mnt/o 100001 100001" % box,
                          "%s/mnt/n 65534 65534" % box, "%s/mnt/new 65534 65534" % box], out
    # The lower dir is nobody's: in no range, shown as the overflow id.
    assert lines[5] == "%d %d" % (overflow("uid"), 65534), out
    assert lines[6] == "EOVERFLOW" and lines[7] == "unmounted", out
    upper = os.path.join(box, "upper")
    assert ids(os.path.join(upper, "n")) == (65534, 65534)
    assert ids(os.path.join(upper, "new")) == (65534, 65534)
    with open(os.path.join(upper, "n")) as f:
        assert f.read() == "n\nmore\n"
    assert not os.path.lexists(os.path.join(lower, "x"))
    assert ids(os.path.join(lower, "r")) == (0, 0)
    assert stat.S_ISREG(os.lstat(os.path.join(lower, "n")).st_mode)
