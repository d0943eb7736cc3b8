"""Many users: with -o allow_other,default_permissions (a root mount's default),
unprivileged users get
the same permission answers through the mount as on a native tree with the
same content, and what they create belongs to them (setgid directories pass
their group on, as natively).

Each check runs as the user in a subprocess (setpriv ... python3), once on
the native tree and once on the mount, and the two sets of answers must be
equal."""
import os
import stat

import pytest

from prism_helpers import make_dirs, run_as

# (label, uid, gid, supplementary groups)
USERS = [
    ("owner", 12345, 12345, []),       # owns the "u" entries
    ("grp", 12346, 12345, []),         # primary group of the "u"/"g" entries
    ("supp", 12347, 12347, [12345]),   # the same group as a supplementary one
    ("nobody", 65534, 65534, []),      # other
]
OWNERS = {"u": (12345, 12345), "r": (0, 0), "g": (0, 12345)}
MODES = [0o600, 0o640, 0o644, 0o664, 0o700, 0o711, 0o755, 0o777]
SGID_GROUP = 23456       # a group none of the users is in
STRANGER = (54321, 54321)


def _write(path, data, owner, mode):
    with open(path, "w") as f:
        f.write(data)
    os.chown(path, *owner)
    os.chmod(path, mode)


def _mkdir(path, owner, mode):
    os.mkdir(path)
    os.chown(path, *owner)
    os.chmod(path, mode)


def populate(root):
    for mode in MODES:
        for ok, owner in OWNERS.items():
            _write(os.path.join(root, "f_%o_%s" % (mode, ok)), "content %o\n" % mode, owner,
                   mode)
            d = os.path.join(root, "d_%o_%s" % (mode, ok))
            os.mkdir(d)
            _write(os.path.join(d, "inner"), "inner\n", owner, 0o644)
            os.chown(d, *owner)
            os.chmod(d, mode)
    sticky = os.path.join(root, "sticky")
    _mkdir(sticky, (0, 0), 0o1777)
    for label, uid, gid, _ in USERS:
        for kind, owner, mode in (("own", (uid, gid), 0o644), ("root", (0, 0), 0o666),
                                  ("other", STRANGER, 0o666)):
            _write(os.path.join(sticky, "v_%s_%s" % (label, kind)), "v\n", owner, mode)
            _write(os.path.join(sticky, "r_%s_%s" % (label, kind)), "r\n", owner, mode)
        own_sticky = os.path.join(root, "sticky_%s" % label)
        _mkdir(own_sticky, (uid, gid), 0o1777)
        _write(os.path.join(own_sticky, "f"), "f\n", (0, 0), 0o644)
        _mkdir(os.path.join(root, "own_%s" % label), (uid, gid), 0o755)
    _mkdir(os.path.join(root, "sgid"), (0, SGID_GROUP), 0o2777)
    _mkdir(os.path.join(root, "sgid_member"), (0, 12345), 0o2777)
    _mkdir(os.path.join(root, "nosgid"), (0, SGID_GROUP), 0o777)


FILES = ["f_%o_%s" % (m, o) for m in MODES for o in OWNERS]
DIRS = ["d_%o_%s" % (m, o) for m in MODES for o in OWNERS] + \
    ["sticky", "sgid", "sgid_member", "nosgid"] + ["sticky_%s" % u[0] for u in USERS] + \
    ["own_%s" % u[0] for u in USERS]

# What every script run as the user starts with: its input and a recorder.
SCRIPT_PRELUDE = r'''
import errno, json, os, stat, sys
a = json.load(sys.stdin)
root, tag, uid, gid = a["root"], a["tag"], a["uid"], a["gid"]
out = {}

def rec(key, fn):
    try:
        v = fn()
        out[key] = "ok" if v is None else v
    except OSError as e:
        out[key] = errno.errorcode.get(e.errno, str(e.errno))
'''

# Runs as the user.  Input: {"root", "tag", "uid", "gid", "files", "dirs"}.
# Output: {check name: "ok" | value | errno name}.
PERMISSION_CHECKS = SCRIPT_PRELUDE + r'''
def P(*x):
    return os.path.join(root, *x)

def open_close(path, flags, mode=0o644):
    os.close(os.open(path, flags, mode))

def read(path):
    with open(path, "rb") as f:
        return f.read().decode()

def st(path):
    s = os.lstat(path)
    return [oct(s.st_mode), s.st_uid, s.st_gid]

def create_and_remove(name):
    p = P(name, "new_" + tag)
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    out[name + ":created"] = st(p)
    rec(name + ":unlink_created", lambda: os.unlink(p))

def mkdir_and_remove(name):
    p = P(name, "newdir_" + tag)
    os.mkdir(p, 0o755)
    out[name + ":mkdired"] = st(p)
    rec(name + ":rmdir_created", lambda: os.rmdir(p))

def rename_and_back(d):
    os.rename(os.path.join(d, "inner"), os.path.join(d, "inner_" + tag))
    os.rename(os.path.join(d, "inner_" + tag), os.path.join(d, "inner"))

def chdir(d):
    os.chdir(d)
    os.chdir("/")

def link_and_remove(src, d):
    p = os.path.join(d, "hl_" + tag)
    os.link(src, p)
    os.unlink(p)

rec("/:listdir", lambda: sorted(os.listdir(root)))
for name in a["files"]:
    p = P(name)
    for m, mn in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X"), (os.F_OK, "F"),
                  (os.R_OK | os.W_OK, "RW")):
        out[name + ":access_" + mn] = os.access(p, m)
    rec(name + ":stat", lambda: st(p) + [os.lstat(p).st_size])
    rec(name + ":open_r", lambda: open_close(p, os.O_RDONLY))
    rec(name + ":open_w", lambda: open_close(p, os.O_WRONLY))
    rec(name + ":open_rw", lambda: open_close(p, os.O_RDWR))
    rec(name + ":read", lambda: read(p))
    rec(name + ":truncate_same_size", lambda: os.truncate(p, os.lstat(p).st_size))
    rec(name + ":chmod_same_mode", lambda: os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode)))
    rec(name + ":chown_to_self", lambda: os.chown(p, uid, -1))
    rec(name + ":chgrp_to_own_group", lambda: os.chown(p, -1, gid))
    rec(name + ":chown_to_root", lambda: os.chown(p, 0, -1))
    rec(name + ":utime_now", lambda: os.utime(p, None))
    rec(name + ":utime_explicit", lambda: os.utime(p, (1000000000, 1000000000)))
    rec(name + ":setxattr", lambda: os.setxattr(p, "user.t_" + tag, b"v"))
    rec(name + ":getxattr", lambda: os.getxattr(p, "user.t_" + tag).decode())
    rec(name + ":listxattr", lambda: sorted(os.listxattr(p)))
    rec(name + ":hardlink", lambda: link_and_remove(p, P("d_777_r")))
for name in a["dirs"]:
    d = P(name)
    for m, mn in ((os.R_OK, "R"), (os.W_OK, "W"), (os.X_OK, "X"), (os.F_OK, "F"),
                  (os.W_OK | os.X_OK, "WX")):
        out[name + ":access_" + mn] = os.access(d, m)
    rec(name + ":stat", lambda: st(d))
    rec(name + ":listdir", lambda: sorted(os.listdir(d)))
    rec(name + ":opendir", lambda: open_close(d, os.O_RDONLY | os.O_DIRECTORY))
    rec(name + ":chdir", lambda: chdir(d))
    rec(name + ":stat_inner", lambda: st(os.path.join(d, "inner")))
    rec(name + ":read_inner", lambda: read(os.path.join(d, "inner")))
    rec(name + ":create", lambda: create_and_remove(name))
    rec(name + ":mkdir", lambda: mkdir_and_remove(name))
    rec(name + ":mkfifo", lambda: (os.mkfifo(os.path.join(d, "fifo_" + tag)),
                                   os.unlink(os.path.join(d, "fifo_" + tag)))[0])
    rec(name + ":symlink", lambda: (os.symlink("x", os.path.join(d, "sl_" + tag)),
                                    os.unlink(os.path.join(d, "sl_" + tag)))[0])
    rec(name + ":rename_inner", lambda: rename_and_back(d))
    rec(name + ":unlink_missing", lambda: os.unlink(os.path.join(d, "missing_" + tag)))
    rec(name + ":chmod_same_mode", lambda: os.chmod(d, stat.S_IMODE(os.lstat(d).st_mode)))
    rec(name + ":utime_now", lambda: os.utime(d, None))
# sticky directory: only the owner of a file (or of the directory) may
# remove or rename it
def replace_with_mine(kind):
    mine = P("sticky", "mine_%s_%s" % (tag, kind))
    open_close(mine, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        os.rename(mine, P("sticky", "v_%s_%s" % (tag, kind)))
    except OSError:
        os.unlink(mine)
        raise

for kind in ("own", "root", "other"):
    rec("sticky:open_w_" + kind, lambda: open_close(P("sticky", "v_%s_%s" % (tag, kind)),
                                                     os.O_WRONLY))
    rec("sticky:rename_over_" + kind, lambda: replace_with_mine(kind))
    rec("sticky:unlink_" + kind, lambda: os.unlink(P("sticky", "v_%s_%s" % (tag, kind))))
    rec("sticky:rename_" + kind, lambda: os.rename(P("sticky", "r_%s_%s" % (tag, kind)),
                                                    P("sticky", "r_%s_%s_moved" % (tag, kind))))
rec("sticky:listdir_after", lambda: sorted(n for n in os.listdir(P("sticky"))
                                           if ("_%s_" % tag) in n))
rec("own_sticky:unlink_root_file", lambda: os.unlink(P("sticky_" + tag, "f")))
print(json.dumps(out))
'''

# Runs as the user: creates objects of every kind in several directories and
# reports their lstat, plus ownership changes on them.
CREATE_CHECKS = SCRIPT_PRELUDE + r'''
def st(path):
    s = os.lstat(path)
    return [oct(s.st_mode), s.st_uid, s.st_gid]

def creat(p, mode):
    os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))

def write(p):
    with open(p, "w") as fh:
        fh.write("mine")

for d in a["dirs"]:
    D = os.path.join(root, d)
    objs = {
        "file": lambda p: creat(p, 0o640),
        "file_sgid_mode": lambda p: creat(p, 0o2775),
        "dir": lambda p: os.mkdir(p, 0o750),
        "dir_sgid_mode": lambda p: os.mkdir(p, 0o2750),
        "fifo": lambda p: os.mkfifo(p, 0o640),
        "symlink": lambda p: os.symlink("target", p),
    }
    for kind, fn in objs.items():
        p = os.path.join(D, "%s_%s" % (kind, tag))
        rec("%s/%s:create" % (d, kind), lambda: fn(p))
        rec("%s/%s:lstat" % (d, kind), lambda: st(p))
    f = os.path.join(D, "chg_" + tag)
    rec("%s:create_chg" % d, lambda: creat(f, 0o640))
    rec("%s:chown_away" % d, lambda: os.chown(f, 54321, -1))
    rec("%s:chgrp_foreign" % d, lambda: os.chown(f, -1, 54321))
    rec("%s:chmod_sgid_1" % d, lambda: os.chmod(f, 0o2775))
    rec("%s:lstat_after_chmod_1" % d, lambda: st(f))
    rec("%s:chgrp_own" % d, lambda: os.chown(f, -1, gid))
    rec("%s:lstat_after_chgrp" % d, lambda: st(f))
    rec("%s:chmod_sgid_2" % d, lambda: os.chmod(f, 0o2775))
    rec("%s:lstat_after_chmod_2" % d, lambda: st(f))
    rec("%s:write" % d, lambda: write(f))
    rec("%s:lstat_after_write" % d, lambda: st(f))
print(json.dumps(out))
'''


def _compare(label, native, mounted):
    diffs = []
    for k in sorted(set(native) | set(mounted)):
        a, b = native.get(k, "<not checked>"), mounted.get(k, "<not checked>")
        if a != b:
            diffs.append("  %s: native gave %r, the mount gave %r" % (k, a, b))
    assert not diffs, "user %s gets different answers through the mount (%d):\n%s" % (
        label, len(diffs), "\n".join(diffs[:60]))


@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_permission_matrix(make_view, mode):
    v = make_view(mode, "-o", "allow_other,default_permissions", populate=populate)
    for label, uid, gid, groups in USERS:
        arg = {"tag": label, "uid": uid, "gid": gid, "files": FILES, "dirs": DIRS}
        native = run_as(uid, gid, groups, PERMISSION_CHECKS, dict(arg, root=v.native))
        mounted = run_as(uid, gid, groups, PERMISSION_CHECKS, dict(arg, root=v.path))
        _compare(label, native, mounted)
    # the results are meaningful: spot checks of the native answers
    n = run_as(65534, 65534, [], "import os; print(int(os.access(%r, os.R_OK)))"
               % os.path.join(v.native, "f_640_r"))
    assert n == 0, "sanity: nobody can read a 0640 root file natively"


CREATE_DIRS = ["d_777_r", "sticky", "sgid", "sgid_member", "nosgid"]


@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_created_objects_belong_to_the_user(make_view, mode):
    v = make_view(mode, "-o", "allow_other,default_permissions", populate=populate)
    users = [u for u in USERS if u[0] in ("owner", "supp", "nobody")]
    for label, uid, gid, groups in users:
        dirs = CREATE_DIRS + ["own_%s" % label]
        arg = {"tag": label, "uid": uid, "gid": gid, "dirs": dirs}
        native = run_as(uid, gid, groups, CREATE_CHECKS, dict(arg, root=v.native))
        mounted = run_as(uid, gid, groups, CREATE_CHECKS, dict(arg, root=v.path))
        _compare(label, native, mounted)
        # explicit ownership expectations on the mount (and on disk)
        wrong = []
        for d in dirs:
            want_gid = {"sgid": SGID_GROUP, "sgid_member": 12345}.get(d, gid)
            for kind in ("file", "dir", "fifo", "symlink"):
                got = mounted.get("%s/%s:lstat" % (d, kind))
                if not isinstance(got, list) or got[1:] != [uid, want_gid]:
                    wrong.append("%s/%s_%s: expected uid %d gid %d, the mount shows %r"
                                 % (d, kind, label, uid, want_gid, got))
                if v.backing is not None and isinstance(got, list):
                    s = os.lstat(os.path.join(v.backing, d, "%s_%s" % (kind, label)))
                    if [s.st_uid, s.st_gid] != [uid, want_gid]:
                        wrong.append("%s/%s_%s: on disk the owner is %d:%d, not %d:%d"
                                     % (d, kind, label, s.st_uid, s.st_gid, uid, want_gid))
            if d in ("sgid", "sgid_member"):
                got = mounted.get("%s/dir:lstat" % d)
                if isinstance(got, list) and not int(got[0], 8) & stat.S_ISGID:
                    wrong.append("%s/dir_%s: a directory made in a setgid directory "
                                 "did not inherit the setgid bit (%s)" % (d, label, got[0]))
        assert not wrong, "user %s:\n%s" % (label, "\n".join(wrong))


def test_other_users_shut_out_of_a_private_mount(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    os.chmod(os.path.join(src, "f"), 0o644)
    mounter(src, mnt, "--private")
    code = r'''
import errno, json, os, sys
a = json.load(sys.stdin)
out = {}
for name, fn in (("stat", lambda: os.stat(a["mnt"])),
                 ("listdir", lambda: os.listdir(a["mnt"])),
                 ("read", lambda: open(os.path.join(a["mnt"], "f")).read())):
    try:
        fn()
        out[name] = "ok"
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))
print(json.dumps(out))
'''
    got = run_as(65534, 65534, [], code, {"mnt": mnt})
    assert got == {"stat": "EACCES", "listdir": "EACCES", "read": "EACCES"}, (
        "with --private another user should get EACCES on the mount, got %r" % got)
    assert sorted(os.listdir(mnt)) == ["f"], "root lost access to its own mount"


def test_allow_other_lets_users_in(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    os.chmod(os.path.join(src, "f"), 0o644)
    mounter(src, mnt, "-o", "allow_other,default_permissions")
    got = run_as(65534, 65534, [], "import json, os, sys; a = json.load(sys.stdin); "
                 "print(json.dumps([sorted(os.listdir(a)), open(a + '/f').read()]))", mnt)
    assert got == [["f"], "x"], "nobody could not list/read the allow_other mount: %r" % got
