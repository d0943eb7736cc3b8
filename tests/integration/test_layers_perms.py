"""Layered mounts, what does not copy up and who may change what: reading
never copies anything up, and permission checks give the same answers
before a copy-up as a plain directory tree would (overlayfs.rst,
"Permission model": "permission check SHOULD return the same result before
and after copy up"; mount -t overlay behaves like cp -a lower upper + a bind
mount); objects made by a user belong to that user.

Parity suite (see layer_helpers.py).  Other users reach a FUSE mount only
with allow_other, which these tests ask for.
"""
import fcntl
import os

from layer_helpers import (T0, Untouched, assert_whiteout, listing, mkdir, mkfile,
                           mksymlink, ovl, pytest_generate_tests, read, walk)
from prism_helpers import run_as

assert ovl and pytest_generate_tests  # fixture and hook used by pytest

USER = 1000


def test_read_only_operations_copy_nothing(ovl):
    """stat, open O_RDONLY, read, flock, readdir, readlink, getxattr,
    listxattr, access(W_OK), statfs on every object leave the upper empty
    and the lowers untouched."""
    mkfile(ovl.l1("f"), b"1", xattrs={"user.x": b"1"})
    mkfile(ovl.l2("d/g"), b"2", mode=0o600, uid=5, gid=5, mtime_ns=T0)
    mkfile(ovl.l1("d/h"), b"3")
    mksymlink(ovl.l2("s"), "f")
    mkdir(ovl.l2("e/deep/er"))
    os.mkfifo(ovl.l1("p"))
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount()
    for rel in walk(ovl.M):
        p = os.path.normpath(os.path.join(ovl.M, rel))
        st = os.lstat(p)
        os.listxattr(p, follow_symlinks=False)
        assert os.access(p, os.W_OK, follow_symlinks=False) or rel == "s"
        if os.path.islink(p):
            os.readlink(p)
        elif os.path.isdir(p):
            os.listdir(p)
            fd = os.open(p, os.O_RDONLY | os.O_DIRECTORY)
            os.fstat(fd)
            os.close(fd)
        elif os.path.isfile(p):
            fd = os.open(p, os.O_RDONLY)
            try:
                os.read(fd, 100)
                fcntl.flock(fd, fcntl.LOCK_SH)
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.fstatvfs(fd)
            finally:
                os.close(fd)
        assert st.st_ino == os.lstat(p).st_ino
    assert os.getxattr(ovl.m("f"), "user.x") == b"1"
    os.statvfs(ovl.M)
    assert walk(ovl.U) == ["."], "reading copied things up: %s" % walk(ovl.U)
    lowers.check()


def test_permissions_before_copy_up(ovl):
    """Another user gets the answers a plain tree would give for lower
    objects owned by root (EACCES to write, truncate, set a user xattr,
    create, remove, rename or link in a root directory; EPERM for chmod,
    chown, utimes), and none of these copies anything up."""
    mkfile(ovl.l1("rootfile"), b"root's", mode=0o644)
    mkfile(ovl.l2("dir/inside"), b"x", mode=0o644)
    mkdir(ovl.l2("dir"), mode=0o755)
    mkdir(ovl.l1("private"), mode=0o700)
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(allow_other=True)
    code = r"""
import errno, json, os, sys
M = json.load(sys.stdin)
def e(fn, *a, **kw):
    try:
        r = fn(*a, **kw)
        if isinstance(r, int) and fn is os.open:
            os.close(r)
        return "ok"
    except OSError as x:
        return errno.errorcode[x.errno]
p = lambda *x: os.path.join(M, *x)
out = {
 "read": e(lambda: open(p("rootfile"), "rb").read()),
 "open_wronly": e(os.open, p("rootfile"), os.O_WRONLY),
 "open_trunc": e(os.open, p("rootfile"), os.O_RDONLY | os.O_TRUNC),
 "truncate": e(os.truncate, p("rootfile"), 0),
 "setxattr": e(os.setxattr, p("rootfile"), "user.x", b"1"),
 "chmod": e(os.chmod, p("rootfile"), 0o666),
 "chown": e(os.chown, p("rootfile"), os.getuid(), -1),
 "utimes": e(os.utime, p("rootfile"), ns=(1, 1)),
 "touch_now": e(os.utime, p("rootfile")),
 "create": e(os.open, p("dir/new"), os.O_WRONLY | os.O_CREAT, 0o644),
 "mkdir": e(os.mkdir, p("dir/newdir")),
 "unlink": e(os.unlink, p("dir/inside")),
 "rename": e(os.rename, p("dir/inside"), p("dir/moved")),
 "rmdir": e(os.rmdir, p("private")),
 "list_private": e(os.listdir, p("private")),
 "link": e(os.link, p("rootfile"), p("dir/hard")),
}
print(json.dumps(out))
"""
    got = run_as(USER, USER, [], code, ovl.M)
    # link(2) of another user's file: EPERM under fs.protected_hardlinks=1
    # (checked first), EACCES otherwise (the directory is root's)
    assert got.pop("link") in ("EPERM", "EACCES")
    assert got == {
        "read": "ok", "open_wronly": "EACCES", "open_trunc": "EACCES", "truncate": "EACCES",
        "setxattr": "EACCES", "chmod": "EPERM", "chown": "EPERM", "utimes": "EPERM",
        "touch_now": "EACCES", "create": "EACCES", "mkdir": "EACCES", "unlink": "EACCES",
        "rename": "EACCES", "rmdir": "EACCES", "list_private": "EACCES"}
    assert walk(ovl.U) == ["."], "refused operations copied things up: %s" % walk(ovl.U)
    assert read(ovl.m("rootfile")) == b"root's"
    lowers.check()


def test_user_changes_own_lower_objects(ovl):
    """A user may change what a plain tree would let them change: their own
    lower file (copied up, still theirs), a file anyone may write, and the
    contents of their own lower directory (new objects are theirs; removing
    a root-owned file there is allowed and whites it out)."""
    mkfile(ovl.l2("home/own"), b"mine", mode=0o644, uid=USER, gid=USER, mtime_ns=T0)
    mkfile(ovl.l2("home/roots"), b"root's file in my dir", mode=0o644)
    mkfile(ovl.l1("shared"), b"anyone may write", mode=0o666)
    mkdir(ovl.l2("home"), mode=0o755, uid=USER, gid=USER, mtime_ns=T0)
    lowers = Untouched(ovl.L1, ovl.L2)
    ovl.mount(allow_other=True)
    code = r"""
import json, os, sys
M = json.load(sys.stdin)
p = lambda *x: os.path.join(M, *x)
with open(p("home/own"), "ab") as f:
    f.write(b" and more")
os.chmod(p("home/own"), 0o600)
with open(p("shared"), "r+b") as f:
    f.write(b"ANYONE")
os.utime(p("shared"))
with open(p("home/new"), "wb") as f:
    f.write(b"new")
os.mkdir(p("home/newdir"))
os.unlink(p("home/roots"))
print(json.dumps(sorted(os.listdir(p("home")))))
"""
    assert run_as(USER, USER, [], code, ovl.M) == ["new", "newdir", "own"]
    for rel, owner, mode in (("home/own", USER, 0o600), ("home/new", USER, 0o644),
                             ("home/newdir", USER, 0o755), ("home", USER, 0o755),
                             ("shared", 0, 0o666)):
        for where in (ovl.m(rel), ovl.u(rel)):
            st = os.lstat(where)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (owner, owner, mode), where
    assert read(ovl.m("home/own")) == b"mine and more"
    assert read(ovl.m("shared")) == b"ANYONE may write"
    assert listing(ovl.m("home")) == ["new", "newdir", "own"]
    assert_whiteout(ovl.u("home/roots"))
    lowers.check()


def test_set_group_id_directory_over_deleted_names(ovl):
    """Objects made where a lower name was deleted (over a whiteout, and a
    directory that must be opaque) are made as in any set-group-ID
    directory: they take its group, and a new directory its set-group-ID
    bit (mkdir(2), "NOTES"), whether root or a user makes them."""
    mkdir(ovl.l1("d/sub"))
    mkdir(ovl.l1("d/usub"))
    mkfile(ovl.l1("d/f"), b"lower f")
    mkfile(ovl.l1("d/uf"), b"lower uf")
    mkdir(ovl.l1("d"), mode=0o2777, gid=5)
    ovl.mount(allow_other=True)
    for rel in ("d/sub", "d/usub"):
        os.rmdir(ovl.m(rel))
    for rel in ("d/f", "d/uf"):
        os.unlink(ovl.m(rel))
    os.mkdir(ovl.m("d/sub"), 0o755)
    with open(ovl.m("d/f"), "wb") as f:
        f.write(b"new f")
    code = r"""
import json, os, sys
M = json.load(sys.stdin)
os.mkdir(os.path.join(M, "d/usub"), 0o755)
with open(os.path.join(M, "d/uf"), "wb") as f:
    f.write(b"new uf")
print(json.dumps(True))
"""
    assert run_as(USER, USER, [], code, ovl.M) is True
    want = {"d/sub": (0, 5, 0o2755), "d/f": (0, 5, 0o644),
            "d/usub": (USER, 5, 0o2755), "d/uf": (USER, 5, 0o644)}
    for rel, (uid, gid, mode) in want.items():
        for where in (ovl.m(rel), ovl.u(rel)):
            st = os.lstat(where)
            assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (uid, gid, mode), where
    assert listing(ovl.m("d/sub")) == [] and listing(ovl.m("d/usub")) == []
    ovl.remount()
    assert listing(ovl.m("d/sub")) == [] and read(ovl.m("d/uf")) == b"new uf"
