"""POSIX ACLs decide access through the mount as on the source (acl(5),
"ACCESS CHECK ALGORITHM"): a named user or group entry, and the mask, are
checked, not only the mode's bits. A user an ACL denies must not read,
list or write through the mount what the source refuses him — nor be
refused what an ACL grants him.

Each check runs as an unprivileged user once on a native tree and once
through the mount (made by root: open to every user, with the kernel's
permission checks), and the answers must be equal. ACLs are written as
the system.posix_acl_access xattr in the format acl(5) and the kernel's
posix_acl_xattr.h define, so no tool beyond Python is needed."""
import json
import os
import struct
import subprocess

import pytest

from prism_helpers import PY, SETPRIV, run_as

NOBODY = (65534, 65534)

USER_OBJ, USER, GROUP_OBJ, GROUP, MASK, OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
UNDEFINED = 0xFFFFFFFF


def acl(*entries):
    """The xattr value of an ACL: (tag, perm, id) entries, sorted as the
    kernel wants them (by tag, then id)."""
    out = struct.pack("<I", 2)
    for tag, perm, qid in sorted(entries, key=lambda e: (e[0], e[2])):
        out += struct.pack("<HHI", tag, perm, UNDEFINED if qid is None else qid)
    return out


def base(u, g, o, mask=None, named=()):
    e = [(USER_OBJ, u, None), (GROUP_OBJ, g, None), (OTHER, o, None)]
    e += list(named)
    if named:
        e.append((MASK, 7 if mask is None else mask, None))
    return acl(*e)


# name: (kind, mode, ACL)
ENTRIES = {
    # the mode says "others read", the ACL names nobody: denied
    "f_user_denied": ("file", 0o644, base(6, 4, 4, named=[(USER, 0, 65534)])),
    # the mode says "owner only", the ACL grants nobody read
    "f_user_granted": ("file", 0o600, base(6, 0, 0, mask=4, named=[(USER, 4, 65534)])),
    # nobody's group named with no rights: the group class decides, not other
    "f_group_denied": ("file", 0o644, base(6, 4, 4, named=[(GROUP, 0, 65534)])),
    # granted by the entry, but the mask takes the write away
    "f_masked": ("file", 0o640, base(6, 4, 0, mask=4, named=[(USER, 6, 65534)])),
    "d_user_denied": ("dir", 0o755, base(7, 5, 5, named=[(USER, 0, 65534)])),
    "d_user_granted": ("dir", 0o700, base(7, 0, 0, named=[(USER, 7, 65534)])),
}

AS_NOBODY = r'''
import json, os, sys
a = json.load(sys.stdin)
out = {}
def attempt(key, fn):
    try:
        r = fn()
        out[key] = "ok" if r is None else r
    except OSError as e:
        out[key] = "errno %d" % e.errno
for n in a["names"]:
    p = os.path.join(a["root"], n)
    if n.startswith("f_"):
        attempt(n + ":read", lambda: open(p, "rb").read().decode())
        attempt(n + ":write", lambda: os.close(os.open(p, os.O_WRONLY)))
        attempt(n + ":access", lambda: [os.access(p, m) for m in (os.R_OK, os.W_OK, os.X_OK)])
    else:
        attempt(n + ":list", lambda: sorted(os.listdir(p)))
        attempt(n + ":stat_child", lambda: os.stat(os.path.join(p, "inside")).st_size)
        attempt(n + ":create", lambda: os.close(os.open(os.path.join(p, "by_nobody"),
                                                        os.O_CREAT | os.O_WRONLY, 0o644)))
print(json.dumps(out))
'''


def populate(root):
    for name, (kind, mode, value) in ENTRIES.items():
        p = os.path.join(root, name)
        if kind == "file":
            with open(p, "w") as f:
                f.write("data of %s\n" % name)
        else:
            os.mkdir(p)
            with open(os.path.join(p, "inside"), "w") as f:
                f.write("x")
        os.chmod(p, mode)
        os.setxattr(p, "system.posix_acl_access", value)


def answers(root):
    return run_as(*NOBODY, [], AS_NOBODY, {"root": root, "names": sorted(ENTRIES)})


MODES = ["plain", "oversrc", "cached", "history"]


@pytest.mark.parametrize("mode", MODES)
def test_acl_decides_access_as_on_the_source(make_view, mode):
    v = make_view(mode, populate=populate)
    native = answers(v.native)
    # the ACLs matter here: the mode alone would give other answers
    assert native["f_user_denied:read"] == "errno 13"
    assert native["f_user_granted:read"].startswith("data of")
    assert native["f_group_denied:read"] == "errno 13"
    assert native["f_masked:write"] == "errno 13"
    assert native["d_user_denied:list"] == "errno 13"
    assert native["d_user_granted:create"] == "ok"
    assert answers(v.path) == native


@pytest.mark.parametrize("mode", MODES)
def test_acl_set_through_the_mount_is_enforced(make_view, mode):
    def plain_files(root):
        for n in ("a", "b"):
            with open(os.path.join(root, n), "w") as f:
                f.write("data of %s\n" % n)
            os.chmod(os.path.join(root, n), 0o644)

    v = make_view(mode, populate=plain_files)
    denied = base(6, 4, 4, named=[(USER, 0, 65534)])
    for root in (v.native, v.path):
        os.setxattr(os.path.join(root, "a"), "system.posix_acl_access", denied)
    code = r'''
import json, os, sys
a = json.load(sys.stdin)
out = {}
for n in ("a", "b"):
    try:
        out[n] = open(os.path.join(a["root"], n)).read()
    except OSError as e:
        out[n] = "errno %d" % e.errno
print(json.dumps(out))
'''
    native = run_as(*NOBODY, [], code, {"root": v.native})
    assert native == {"a": "errno 13", "b": "data of b\n"}
    assert run_as(*NOBODY, [], code, {"root": v.path}) == native
    # chmod of a file with an ACL sets its mask (acl(5)): the same ACL
    # and mode on both sides afterwards
    for root in (v.native, v.path):
        os.chmod(os.path.join(root, "a"), 0o600)
    got = [(os.getxattr(os.path.join(r, "a"), "system.posix_acl_access"),
            os.stat(os.path.join(r, "a")).st_mode) for r in (v.native, v.path)]
    assert got[0] == got[1]


def layered(workdir, mounter, fill):
    """A layered mount of a lower filled by fill, and a native tree filled
    alike: (native, mount point, upper)."""
    lower, upper, mnt, native = (os.path.join(workdir, d)
                                 for d in ("lower", "upper", "mnt", "native"))
    for d in (lower, upper, mnt, native):
        os.makedirs(d)
        os.chmod(d, 0o755)
    fill(lower)
    fill(native)
    mounter(lower, mnt, "--upper", upper)
    return native, mnt, upper


def test_layered_mount_checks_acls_of_lower_and_upper(workdir, mounter):
    native, mnt, upper = layered(workdir, mounter, populate)
    assert answers(mnt) == answers(native)
    # copied up by a change of its metadata: the ACL goes with it
    os.utime(os.path.join(mnt, "f_user_denied"), (1, 1))
    assert os.path.exists(os.path.join(upper, "f_user_denied"))
    assert answers(mnt)["f_user_denied:read"] == "errno 13"


def sgid_roots(mode, make_view, workdir, mounter, names):
    """(native root, mount) each holding names: {name: (uid, gid)}, files
    (f_*) and directories (d_*) of mode 2775."""
    def sgid_files(root):
        for n, (uid, gid) in names.items():
            p = os.path.join(root, n)
            if n.startswith("f_"):
                with open(p, "w") as f:
                    f.write("x")
            else:
                os.mkdir(p)
            os.chown(p, uid, gid)
            os.chmod(p, 0o2775)

    if mode == "layered":
        return layered(workdir, mounter, sgid_files)[:2]
    v = make_view(mode, populate=sgid_files)
    return (v.native, v.path)


@pytest.mark.parametrize("mode", MODES + ["layered"])
def test_setting_an_acl_clears_sgid_as_natively(make_view, workdir, mounter, mode):
    """Setting an access ACL rewrites the mode (acl(5)); a caller who is
    neither in the file's group nor holds CAP_FSETID loses its
    set-group-ID bit, as chmod(2) would clear it (the kernel's
    posix_acl_update_mode(); xfstests generic/375 checks it). Files and
    directories owned by nobody: one in a group nobody is not in (root),
    one in nobody's own group (kept), and one set by root (kept)."""
    names = {"f_other_group": (NOBODY[0], 0), "f_own_group": (NOBODY[0], NOBODY[1]),
             "f_by_root": (NOBODY[0], 0), "d_other_group": (NOBODY[0], 0)}
    roots = sgid_roots(mode, make_view, workdir, mounter, names)
    value = base(7, 7, 5, named=[(USER, 7, NOBODY[0])])
    code = r'''
import json, os, sys
a = json.load(sys.stdin)
for n in a["names"]:
    os.setxattr(os.path.join(a["root"], n), "system.posix_acl_access", bytes.fromhex(a["v"]))
print("{}")
'''
    for root in roots:
        run_as(*NOBODY, [], code, {"root": root, "v": value.hex(),
                                   "names": [n for n in names if n != "f_by_root"]})
        os.setxattr(os.path.join(root, "f_by_root"), "system.posix_acl_access", value)
    modes = [{n: oct(os.stat(os.path.join(r, n)).st_mode & 0o7777) for n in names}
             for r in roots]
    # natively: cleared for the caller outside the group only
    assert modes[0] == {"f_other_group": "0o775", "f_own_group": "0o2775",
                        "f_by_root": "0o2775", "d_other_group": "0o775"}, modes[0]
    assert modes[1] == modes[0]


# A default ACL replaces the creator's umask (acl(5), "OBJECT CREATION AND
# DEFAULT ACLs"; POSIX.1e): the new object's permissions are the default
# ACL masked by the mode the create call asks for, and a directory
# inherits the default ACL itself; in a directory without one the umask
# applies. Made in three directories: a default ACL with a named user (so
# the new object gets an access ACL), a default ACL of three entries only
# (only a mode), and none.
DEFAULT_DIRS = {
    "dacl": base(7, 7, 5, mask=7, named=[(USER, 7, NOBODY[0])]),
    "dmin": base(7, 7, 5),
    "none": None,
}

MAKE = r'''
import json, os, sys
a = json.load(sys.stdin)
for d in a["dirs"]:
    p = os.path.join(a["root"], d)
    for n in a["remove"]:
        q = os.path.join(p, n)
        os.rmdir(q) if os.path.isdir(q) else os.unlink(q)
    os.close(os.open(os.path.join(p, "f"), os.O_CREAT | os.O_WRONLY, 0o666))
    os.close(os.open(os.path.join(p, "f640"), os.O_CREAT | os.O_WRONLY, 0o640))
    os.mkdir(os.path.join(p, "d"), 0o777)
    os.mkdir(os.path.join(p, "d750"), 0o750)
    os.mkfifo(os.path.join(p, "p"), 0o666)
    os.symlink("f", os.path.join(p, "l"))
    # over a name that was there (a layered mount makes these over a
    # whiteout, in its work directory)
    os.close(os.open(os.path.join(p, "old_f"), os.O_CREAT | os.O_WRONLY, 0o666))
    os.mkdir(os.path.join(p, "old_d"), 0o777)
    # a directory's children inherit again
    os.close(os.open(os.path.join(p, "d", "g"), os.O_CREAT | os.O_WRONLY, 0o666))
print("{}")
'''

MADE = ["f", "f640", "d", "d750", "p", "l", "old_f", "old_d", "d/g"]


def default_acl_dirs(root):
    for name, value in DEFAULT_DIRS.items():
        p = os.path.join(root, name)
        os.mkdir(p)
        os.chmod(p, 0o777)
        if value:
            os.setxattr(p, "system.posix_acl_default", value)
        with open(os.path.join(p, "old_f"), "w"):
            pass
        os.mkdir(os.path.join(p, "old_d"))


def made_objects(root):
    """Each made name's mode and ACLs (as stored, and as getfacl shows)."""
    import subprocess
    out = {}
    for d in DEFAULT_DIRS:
        for n in MADE:
            p = os.path.join(root, d, n)
            st = os.lstat(p)
            got = {"mode": oct(st.st_mode)}
            for x in ("access", "default"):
                try:
                    got[x] = os.getxattr(p, "system.posix_acl_" + x,
                                         follow_symlinks=False).hex()
                except OSError as e:
                    got[x] = "errno %d" % e.errno
            if not os.path.islink(p):
                got["getfacl"] = subprocess.run(
                    ["getfacl", "-n", os.path.join(d, n)], cwd=root, capture_output=True,
                    text=True, check=True).stdout
            out[os.path.join(d, n)] = got
    return out


def make_all(root, umask):
    run_as(0, 0, [], MAKE, {"root": root, "dirs": sorted(DEFAULT_DIRS),
                            "remove": ["old_f", "old_d"]}, umask=umask)
    return made_objects(root)


UMASK_MODES = MODES + ["mapped", "layered"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
@pytest.mark.parametrize("mode", UMASK_MODES)
def test_default_acl_replaces_the_umask(make_view, workdir, mounter, mode, umask):
    if mode == "layered":
        roots = layered(workdir, mounter, default_acl_dirs)[:2]
    elif mode == "mapped":
        table = os.path.join(workdir, "map.json")
        with open(table, "w") as f:
            json.dump({"/" + d: {"target": d} for d in DEFAULT_DIRS}, f)
        v = make_view("plain", "--map", table, populate=default_acl_dirs)
        roots = (v.native, v.path)
    else:
        v = make_view(mode, populate=default_acl_dirs)
        roots = (v.native, v.path)
    native = make_all(roots[0], umask)
    # the native answers are what acl(5) says
    assert native["dacl/f"]["mode"] == "0o100664"
    assert native["dmin/f640"]["mode"] == "0o100640"
    assert native["none/f"]["mode"] == oct(0o100666 & ~umask)
    assert native["none/d"]["access"] == "errno 61"
    assert native["dacl/d/g"]["access"] == native["dacl/f"]["access"]
    got = make_all(roots[1], umask)
    diff = {k: (native[k], got[k]) for k in native if native[k] != got[k]}
    assert not diff, diff


SET_ACL = r'''
import os, sys
root, value = sys.argv[1], bytes.fromhex(sys.argv[2])
for n in sys.argv[3:]:
    os.setxattr(os.path.join(root, n), "system.posix_acl_access", value)
'''


def setacl_with_caps(uid, gid, caps, root, value, names):
    """setxattr of an access ACL by uid/gid (no supplementary groups)
    holding exactly the capabilities caps (e.g. "+fsetid", or "-all")."""
    cmd = [SETPRIV, "--reuid=%d" % uid, "--regid=%d" % gid, "--clear-groups",
           "--inh-caps=-all" + ("," + caps if caps else ""),
           "--bounding-set=-all" + ("," + caps if caps else "")]
    if caps:
        cmd.append("--ambient-caps=" + caps)
    cmd += [PY, "-I", "-c", SET_ACL, root, value.hex(), *names]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/",
                         env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("mode", MODES + ["layered"])
def test_setting_an_acl_with_cap_fsetid_keeps_sgid(make_view, workdir, mounter, mode):
    """posix_acl_update_mode() keeps the set-group-ID bit for a caller
    outside the file's group who holds CAP_FSETID (capable_wrt_inode_uidgid),
    whatever its uid: nobody with CAP_FSETID alone keeps it; root without
    CAP_FSETID (and outside the file's group) loses it."""
    other = 4242  # a group neither nobody nor root is in
    names = {"f_nobody_cap": (NOBODY[0], other), "d_nobody_cap": (NOBODY[0], other),
             "f_root_nocap": (0, other), "f_nobody_nocap": (NOBODY[0], other)}
    roots = sgid_roots(mode, make_view, workdir, mounter, names)
    value = base(7, 7, 5, named=[(USER, 7, NOBODY[0])])
    for root in roots:
        setacl_with_caps(*NOBODY, "+fsetid", root, value, ["f_nobody_cap", "d_nobody_cap"])
        setacl_with_caps(*NOBODY, "", root, value, ["f_nobody_nocap"])
        setacl_with_caps(0, 0, "+fowner", root, value, ["f_root_nocap"])
    modes = [{n: oct(os.stat(os.path.join(r, n)).st_mode & 0o7777) for n in names}
             for r in roots]
    assert modes[0] == {"f_nobody_cap": "0o2775", "d_nobody_cap": "0o2775",
                        "f_root_nocap": "0o775", "f_nobody_nocap": "0o775"}, modes[0]
    assert modes[1] == modes[0]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_default_acl_and_umask_as_kernel_overlayfs(workdir, umask):
    """The same creations on a layered mount and on kernel overlayfs over
    the same lower tree (names made over whiteouts included): the same
    modes and ACLs, which are also the native ones."""
    from layer_helpers import Overlay
    if os.geteuid() != 0:
        pytest.skip("kernel overlayfs is mounted as root")
    native = os.path.join(workdir, "native")
    os.makedirs(native)
    default_acl_dirs(native)
    want = make_all(native, umask)
    got = {}
    for backend in ("kernel", "prismfs"):
        o = Overlay(os.path.join(workdir, backend), backend)
        try:
            default_acl_dirs(o.L1)
            o.mount()
            got[backend] = make_all(o.M, umask)
            o.umount()
        finally:
            o.cleanup()
    for backend in ("kernel", "prismfs"):
        diff = {k: (want[k], got[backend][k]) for k in want if want[k] != got[backend][k]}
        assert not diff, (backend, diff)
