"""Other users and a mount made by root, with no option asking for it: the
mount is open to every user, as kernel overlayfs's is (and fuse-overlayfs's,
which adds allow_other itself as root), and each user gets the answers the
kernel's permission checks give against what the view shows — the source's
for a plain view, the kernel overlay's for a layered one, the table's for a
mapped one. --private (-o private) keeps a mount to root: EACCES for every
other user. Every check runs as the user (setpriv)."""
import os

import pytest

from conftest import run_cli
from layer_helpers import Overlay
from map_helpers import make_mapped, mkdirs, write_file
from prism_helpers import make_dirs, mountinfo_entry, run_as
from test_users import DIRS, FILES, PERMISSION_CHECKS, USERS, _compare, populate

# the group member and a stranger: the answers that differ most from root's
MATRIX_USERS = [u for u in USERS if u[0] in ("grp", "nobody")]
NOBODY = (65534, 65534, [])

SHUT_OUT = r'''
import errno, json, os, sys
a = json.load(sys.stdin)
out = {}
for name, fn in (("stat", lambda: os.stat(a["mnt"])),
                 ("listdir", lambda: os.listdir(a["mnt"])),
                 ("read", lambda: open(os.path.join(a["mnt"], a["file"])).read())):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
'''


def mountinfo_options(path):
    ent = mountinfo_entry(path)
    assert ent is not None, "nothing mounted at %s" % path
    return set(ent[0]) | set(ent[2])


def shut_out(mnt, name):
    return run_as(NOBODY[0], NOBODY[1], [], SHUT_OUT, {"mnt": mnt, "file": name})


def matrix(root, label, uid, gid, groups):
    arg = {"tag": label, "uid": uid, "gid": gid, "files": FILES, "dirs": DIRS, "root": root}
    return run_as(uid, gid, groups, PERMISSION_CHECKS, arg)


@pytest.fixture
def as_root():
    if os.geteuid() != 0:
        pytest.skip("the default for other users is that of a mount made by root")


@pytest.mark.parametrize("mode", ["plain", "oversrc"])
def test_plain_view_open_to_all_by_default(as_root, make_view, mode):
    """No -o allow_other: every user reads, writes, creates and is refused
    exactly as on a native tree with the same content."""
    v = make_view(mode, populate=populate)
    opts = mountinfo_options(v.path)
    assert "allow_other" in opts and "default_permissions" in opts, opts
    for label, uid, gid, groups in MATRIX_USERS:
        native = matrix(v.native, label, uid, gid, groups)
        mounted = matrix(v.path, label, uid, gid, groups)
        _compare(label, native, mounted)
    assert run_as(65534, 65534, [], "import json, sys; print(json.dumps(open(json.load("
                  "sys.stdin)).read()))", os.path.join(v.path, "f_644_r")) == "content 644\n"


@pytest.fixture
def two_overlays(as_root, workdir):
    made = [Overlay(os.path.join(workdir, name), name) for name in ("kernel", "prismfs")]
    try:
        yield made
    finally:
        failure = None
        for o in made:
            try:
                o.cleanup()
            except Exception as e:  # unmount both before reporting
                failure = failure or e
        if failure:
            raise failure


def test_layered_view_open_to_all_by_default(two_overlays):
    """A layered mount (no -o allow_other) gives every user the answers
    kernel overlayfs gives on the same layers: the tree split between the
    upper and two lowers."""
    for o in two_overlays:
        populate(o.L2)
        for name in sorted(os.listdir(o.L2)):
            if name.startswith(("f_6", "d_7", "sticky_")):
                os.rename(os.path.join(o.L2, name), os.path.join(o.L1, name))
            elif name.startswith(("f_7", "own_")):
                os.rename(os.path.join(o.L2, name), os.path.join(o.U, name))
        o.mount()
    kernel, ours = two_overlays
    for label, uid, gid, groups in MATRIX_USERS:
        want = matrix(kernel.M, label, uid, gid, groups)
        got = matrix(ours.M, label, uid, gid, groups)
        _compare(label, want, got)


TABLE = {
    "/mine": {"target": "f600", "uid": 12345},
    "/closed": {"target": "f644", "mode": "0600", "uid": 0},
    "/ro": {"target": "rw", "readonly": True},
}

MAP_CHECKS = r'''
import errno, json, os, sys
a = json.load(sys.stdin)
out = {}
def rec(key, fn):
    try:
        v = fn()
        out[key] = "ok" if v is None else v
    except OSError as e:
        out[key] = errno.errorcode.get(e.errno, str(e.errno))
def read(p):
    with open(os.path.join(a, p)) as f:
        return f.read()
def append(p):
    with open(os.path.join(a, p), "a") as f:
        f.write("more")
for p in ("mine", "closed", "f644", "f600"):
    rec(p + ":read", lambda: read(p))
rec("ro/w:append", lambda: append("ro/w"))
rec("rw/w:append", lambda: append("rw/w"))
rec("rw:create", lambda: os.close(os.open(os.path.join(a, "rw", "new%d" % os.getuid()),
                                          os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)))
print(json.dumps(out))
'''


def populate_mapped(s):
    write_file(os.path.join(s, "f600"), "only root\n", mode=0o600, owner=(0, 0))
    write_file(os.path.join(s, "f644"), "everyone\n", mode=0o644, owner=(0, 0))
    mkdirs(os.path.join(s, "rw"), mode=0o777)
    write_file(os.path.join(s, "rw", "w"), "w\n", mode=0o666)


def test_mapped_view_open_to_all_by_default(as_root, workdir, mounter):
    """A mapped mount (no -o allow_other): the table's owners and modes and
    its readonly are what other users are held to; unmapped names keep the
    source's answers."""
    m = make_mapped(workdir, mounter, TABLE, populate=populate_mapped)
    owner = run_as(12345, 12345, [], MAP_CHECKS, m.mnt)
    nobody = run_as(65534, 65534, [], MAP_CHECKS, m.mnt)
    assert owner["mine:read"] == "only root\n", owner
    assert nobody == {
        "mine:read": "EACCES", "closed:read": "EACCES", "f644:read": "everyone\n",
        "f600:read": "EACCES", "ro/w:append": "EROFS", "rw/w:append": "ok",
        "rw:create": "ok"}, nobody
    st = os.stat(m.s("rw", "new65534"))
    assert (st.st_uid, st.st_gid) == (65534, 65534), "a user's new file is not theirs"


def _plain(workdir, mounter, *args):
    src, mnt = make_dirs(workdir, "src", "mnt")
    write_file(os.path.join(src, "f"), "x", mode=0o644)
    mounter(src, mnt, *args)
    return mnt


@pytest.mark.parametrize("private", [["--private"], ["-o", "private"],
                                     ["-o", "ro,private"]], ids=" ".join)
def test_private_plain_mount_shuts_others_out(as_root, workdir, mounter, private):
    mnt = _plain(workdir, mounter, *private)
    assert "allow_other" not in mountinfo_options(mnt)
    assert shut_out(mnt, "f") == {"stat": "EACCES", "listdir": "EACCES", "read": "EACCES"}
    assert sorted(os.listdir(mnt)) == ["f"], "root lost access to its own mount"


def test_private_layered_mount_shuts_others_out(as_root, workdir):
    o = Overlay(os.path.join(workdir, "layers"), "prismfs")
    try:
        write_file(o.l2("f"), "x", mode=0o644)
        o.mount(extra=["-o", "private"])
        assert shut_out(o.M, "f") == {"stat": "EACCES", "listdir": "EACCES",
                                      "read": "EACCES"}
        assert sorted(os.listdir(o.M)) == ["f"]
    finally:
        o.cleanup()


def test_private_mapped_mount_shuts_others_out(as_root, workdir, mounter):
    m = make_mapped(workdir, mounter, TABLE, "--private", populate=populate_mapped)
    assert shut_out(m.mnt, "f644") == {"stat": "EACCES", "listdir": "EACCES",
                                       "read": "EACCES"}
    assert sorted(os.listdir(m.mnt)) == ["closed", "f600", "f644", "mine", "ro", "rw"]


def test_without_default_permissions_private_unless_asked(as_root, workdir, mounter):
    """The daemon checks nothing itself and acts as root: without the
    kernel's checks, the mount is not opened to other users by default."""
    mnt = _plain(workdir, mounter, "--no-default-permissions")
    assert "allow_other" not in mountinfo_options(mnt)
    assert shut_out(mnt, "f") == {"stat": "EACCES", "listdir": "EACCES", "read": "EACCES"}


def test_private_with_allow_other_is_bad_usage(workdir):
    src, mnt = make_dirs(workdir, "src", "mnt")
    for args in (["--private", "-o", "allow_other"], ["-o", "allow_other,private"]):
        res = run_cli("mount", src, mnt, *args)
        assert res.returncode == 2, (args, res.returncode, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "private" in lines[0] and "allow_other" in lines[0], lines
        assert not os.path.ismount(mnt)
