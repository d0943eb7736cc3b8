"""Error paths of copy-up and rename on a layered mount, reached with the
fault-injecting store (src/store/fault.c).

The daemon reads PRISMFS_FAULT="KIND:N[-][:ERRNO],..." at mount: the N-th
call of KIND on a backing object after the mount began (or, with "-", that
one and every later one) fails with ERRNO before it reaches the disk. Real
disks rarely fail in the middle of a copy-up or a rename; these tests make
them, and ask for what a user of POSIX and of overlayfs expects:

  - the operation fails with the errno the disk gave (EIO, ENOSPC, ...);
  - nothing changed: the lower is untouched, the mount shows what it
    showed before, the upper holds no half-made object and the work
    directory is left empty (no temporary behind);
  - once the fault has passed, the same operation succeeds.

Counts are kept robust: the kinds failed here are ones the mount itself
does not make (copy, chown, chmod, utimes, sync, rename), or the fault
lasts from the first call on and a second mount without it checks the
outcome; a layout that needs changes through the mount is made by a first
mount without faults. The one count that rests on the mount is mknod's:
its probe for whiteout devices is the first, as a test of its own checks.
The faults are set with the mounter's env (tests/integration/conftest.py).
"""
import errno
import os
import subprocess

import pytest

from conftest import PRISMFS, SANITIZER_MARKERS

DATA = b"lower data\n" * 100
ERRNOS = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC}


@pytest.fixture
def lay(workdir):
    """L (the lower, SOURCE), U (upper), W (work), M (mount point)."""
    class Lay:
        pass
    lay = Lay()
    for d in ("L", "U", "W", "M"):
        p = os.path.join(workdir, d)
        os.makedirs(p)
        setattr(lay, d, p)
    return lay


def mount(mounter, lay, fault=None, *args):
    env = {"PRISMFS_FAULT": fault} if fault else None
    return mounter(lay.L, lay.M, "--upper", lay.U, "--work", lay.W, *args, env=env)


def unmount(m):
    m.stop()
    m.check_clean_exit()


def m(lay, *p):
    return os.path.join(lay.M, *p)


def read(p):
    with open(p, "rb") as f:
        return f.read()


def write_file(p, data, mode=0o644, xattrs=None):
    with open(p, "wb") as f:
        f.write(data)
    os.chmod(p, mode)
    for k, v in (xattrs or {}).items():
        os.setxattr(p, k, v)


def state(p):
    """What a name shows: type, mode, size, data, user xattrs (None: absent)."""
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return None
    xs = {n: os.getxattr(p, n, follow_symlinks=False)
          for n in os.listxattr(p, follow_symlinks=False) if n.startswith("user.")}
    out = {"mode": st.st_mode, "size": st.st_size, "xattrs": xs}
    if os.path.isdir(p) and not os.path.islink(p):
        out["names"] = sorted(os.listdir(p))
    elif not os.path.islink(p):
        out["data"] = read(p)
    return out


def tree(root):
    """Every path below root with its state (for 'nothing changed')."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = state(p)
    return out


def upper_names(lay):
    return sorted(os.listdir(lay.U))


def work_left(lay):
    """What the work directory holds besides prismfs's own work/ (empty)."""
    w = os.path.join(lay.W, "work")
    return sorted(os.listdir(w)) if os.path.isdir(w) else []


def fails_with(e, fn, *a):
    with pytest.raises(OSError) as ei:
        fn(*a)
    assert ei.value.errno == e, "%s: want %s, got %s" % (
        fn.__name__, errno.errorcode[e], errno.errorcode.get(ei.value.errno))


# ---- copy-up -----------------------------------------------------------

def op_write(p):
    fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b"more\n")
    finally:
        os.close(fd)


def op_chmod(p):
    os.chmod(p, 0o600)


def op_setxattr(p):
    os.setxattr(p, "user.new", b"v")


OPS = {"write": op_write, "chmod": op_chmod, "setxattr": op_setxattr}


def after(opname):
    """What f shows once op succeeded on the lower file."""
    want = {"data": DATA, "mode": 0o100644, "x": {"user.keep": b"k"}}
    if opname == "write":
        want["data"] = DATA + b"more\n"
    if opname == "chmod":
        want["mode"] = 0o100600
    if opname == "setxattr":
        want["x"] = {"user.keep": b"k", "user.new": b"v"}
    return want


def assert_shows(p, want):
    st = state(p)
    assert st is not None, p
    assert st["data"] == want["data"]
    assert st["mode"] == want["mode"]
    assert st["xattrs"] == want["x"]


# The copy-up's steps that fail, each a kind of call the mount does not
# make before the operation: the data copy (the first call of its kind
# tries a clone, which fails like any other copy), the owner, mode and
# times set on the copy, its fsync, and its rename into the upper.
STEPS = ["copy", "chown", "chmod", "utimes", "sync", "rename"]


@pytest.mark.parametrize("err", sorted(ERRNOS))
@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("opname", sorted(OPS))
def test_copy_up_step_fails_then_passes(lay, mounter, opname, step, err):
    """The copy-up before a change fails at one of its steps: the change
    fails with the disk's errno and nothing is left of the copy; the next
    try (the fault was the first call only) copies up and changes."""
    write_file(os.path.join(lay.L, "f"), DATA, xattrs={"user.keep": b"k"})
    lower_before = tree(lay.L)
    mnt = mount(mounter, lay, "%s:1:%s" % (step, err))
    before = state(m(lay, "f"))
    fails_with(ERRNOS[err], OPS[opname], m(lay, "f"))
    assert state(m(lay, "f")) == before
    assert tree(lay.L) == lower_before
    assert upper_names(lay) == []
    assert work_left(lay) == []
    OPS[opname](m(lay, "f"))
    assert_shows(m(lay, "f"), after(opname))
    assert upper_names(lay) == ["f"]
    assert work_left(lay) == []
    unmount(mnt)
    assert tree(lay.L) == lower_before


@pytest.mark.parametrize("opname", sorted(OPS))
def test_copy_up_xattr_copy_fails(lay, mounter, opname):
    """Every setxattr fails (ENOSPC, as a full disk fails it) from the
    mount on: the lower file's own xattrs cannot be copied, so its
    copy-up, and the change, fail; nothing is left. Mounted again without
    the fault, the same change succeeds."""
    write_file(os.path.join(lay.L, "f"), DATA, xattrs={"user.keep": b"k"})
    lower_before = tree(lay.L)
    mnt = mount(mounter, lay, "setxattr:1-:ENOSPC")
    before = state(m(lay, "f"))
    fails_with(errno.ENOSPC, OPS[opname], m(lay, "f"))
    assert state(m(lay, "f")) == before
    unmount(mnt)
    assert tree(lay.L) == lower_before
    assert upper_names(lay) == []
    assert work_left(lay) == []
    mnt = mount(mounter, lay)
    assert state(m(lay, "f")) == before
    OPS[opname](m(lay, "f"))
    assert_shows(m(lay, "f"), after(opname))
    unmount(mnt)
    assert tree(lay.L) == lower_before


def test_copy_up_parent_fails(lay, mounter):
    """A file deep in a lower directory: its parents are copied up first.
    The first of them fails (its mode cannot be set): the write fails,
    no directory is left half-made in the upper."""
    os.makedirs(os.path.join(lay.L, "a", "b"))
    write_file(os.path.join(lay.L, "a", "b", "f"), DATA)
    lower_before = tree(lay.L)
    mnt = mount(mounter, lay, "chmod:1:EIO")
    before = tree(lay.M)
    fails_with(errno.EIO, op_write, m(lay, "a", "b", "f"))
    assert tree(lay.M) == before
    assert upper_names(lay) == []
    assert work_left(lay) == []
    op_write(m(lay, "a", "b", "f"))
    assert read(m(lay, "a", "b", "f")) == DATA + b"more\n"
    unmount(mnt)
    assert tree(lay.L) == lower_before


# ---- a new name over a whiteout ----------------------------------------

MAKES = {
    "mkdir": lambda p: os.mkdir(p),
    "create": lambda p: os.close(os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)),
    "symlink": lambda p: os.symlink("target", p),
    "mkfifo": lambda p: os.mkfifo(p),
}


@pytest.mark.parametrize("make", sorted(MAKES))
def test_make_over_whiteout_fails(lay, mounter, make):
    """A name made where a lower one was removed is built in the work
    directory and moved over the whiteout in one rename. That rename
    fails: the call fails with ENOSPC, the name stays absent, nothing is
    left in the work directory; the next try makes it."""
    write_file(os.path.join(lay.L, "x"), DATA)
    mnt = mount(mounter, lay)
    os.unlink(m(lay, "x"))
    unmount(mnt)
    lower_before = tree(lay.L)
    mnt = mount(mounter, lay, "rename:1:ENOSPC")
    before = tree(lay.M)
    fails_with(errno.ENOSPC, MAKES[make], m(lay, "x"))
    assert tree(lay.M) == before
    assert "x" not in os.listdir(lay.M)
    assert work_left(lay) == []
    MAKES[make](m(lay, "x"))
    st = os.lstat(m(lay, "x"))
    if make == "mkdir":
        assert os.listdir(m(lay, "x")) == []
    elif make == "symlink":
        assert os.readlink(m(lay, "x")) == "target"
    else:
        assert st.st_size == 0
    unmount(mnt)
    assert tree(lay.L) == lower_before


# ---- rename ------------------------------------------------------------

def test_rename_lower_file_fails(lay, mounter):
    """A rename of a lower file copies it up, then moves it leaving a
    whiteout (one rename with RENAME_WHITEOUT). Either rename fails: the
    rename fails with EIO and both names show what they showed before;
    the next try succeeds."""
    write_file(os.path.join(lay.L, "a"), DATA)
    lower_before = tree(lay.L)
    for nth in (1, 2):
        mnt = mount(mounter, lay, "rename:%d" % nth)
        before = tree(lay.M)
        fails_with(errno.EIO, os.rename, m(lay, "a"), m(lay, "b"))
        assert tree(lay.M) == before, "rename:%d" % nth
        assert state(m(lay, "b")) is None
        assert work_left(lay) == []
        unmount(mnt)
        assert tree(lay.L) == lower_before
    mnt = mount(mounter, lay, "rename:1")
    fails_with(errno.EIO, os.rename, m(lay, "a"), m(lay, "b"))
    os.rename(m(lay, "a"), m(lay, "b"))
    assert state(m(lay, "a")) is None
    assert read(m(lay, "b")) == DATA
    unmount(mnt)
    assert tree(lay.L) == lower_before


def test_rename_onto_lower_file_fails(lay, mounter):
    """An upper file renamed over a lower one: the move fails; the source
    and the lower target both still show."""
    write_file(os.path.join(lay.L, "t"), DATA)
    mnt = mount(mounter, lay)
    with open(m(lay, "s"), "wb") as f:
        f.write(b"upper\n")
    unmount(mnt)
    mnt = mount(mounter, lay, "rename:1:ENOSPC")
    before = tree(lay.M)
    fails_with(errno.ENOSPC, os.rename, m(lay, "s"), m(lay, "t"))
    assert tree(lay.M) == before
    assert work_left(lay) == []
    os.rename(m(lay, "s"), m(lay, "t"))
    assert read(m(lay, "t")) == b"upper\n"
    assert state(m(lay, "s")) is None
    unmount(mnt)
    assert read(os.path.join(lay.L, "t")) == DATA


def replaced_lower_dir(mounter, lay):
    """A lower directory d removed and made again through a mount: an
    upper directory (opaque) over a whiteout of the lower one; moving it
    away must leave a whiteout behind."""
    os.makedirs(os.path.join(lay.L, "d"))
    write_file(os.path.join(lay.L, "d", "old"), DATA)
    mnt = mount(mounter, lay)
    os.unlink(m(lay, "d", "old"))
    os.rmdir(m(lay, "d"))
    os.mkdir(m(lay, "d"))
    write_file(m(lay, "d", "new"), b"new\n")
    unmount(mnt)


def test_rename_replaced_dir_fails(lay, mounter):
    """The move of such a directory (with its whiteout, one rename) fails:
    d still shows its new content, e does not exist, the lower d's old
    content does not come back; the next try moves it."""
    replaced_lower_dir(mounter, lay)
    lower_before = tree(lay.L)
    mnt = mount(mounter, lay, "rename:1:EIO")
    before = tree(lay.M)
    assert state(m(lay, "d"))["names"] == ["new"]
    fails_with(errno.EIO, os.rename, m(lay, "d"), m(lay, "e"))
    assert tree(lay.M) == before
    assert work_left(lay) == []
    os.rename(m(lay, "d"), m(lay, "e"))
    assert state(m(lay, "d")) is None
    assert state(m(lay, "e"))["names"] == ["new"]
    unmount(mnt)
    assert tree(lay.L) == lower_before


def test_rename_whiteout_step_fails(lay, mounter):
    """When the upper's filesystem refuses RENAME_WHITEOUT (EINVAL here,
    from the store), the move and the whiteout are two steps: the object
    is moved, then a whiteout device is made at the old name. That second
    step fails: the rename must fail with its errno and leave both names
    as they were (the object moved back), not show the lower directory's
    old content again at d and the new one at e."""
    replaced_lower_dir(mounter, lay)
    lower_before = tree(lay.L)
    # mknod:1 is the mount's own probe for whiteout devices in the work
    # directory; mknod:2 is the whiteout of this rename.
    mnt = mount(mounter, lay, "rename:1:%d,mknod:2:EIO" % errno.EINVAL)
    before = tree(lay.M)
    fails_with(errno.EIO, os.rename, m(lay, "d"), m(lay, "e"))
    assert tree(lay.M) == before
    assert work_left(lay) == []
    os.rename(m(lay, "d"), m(lay, "e"))
    assert state(m(lay, "d")) is None
    assert state(m(lay, "e"))["names"] == ["new"]
    unmount(mnt)
    assert tree(lay.L) == lower_before


@pytest.mark.parametrize("what", ["file", "dir"])
def test_remove_lower_whiteout_fails(lay, mounter, what):
    """Removing a lower name is making its whiteout (a device in place).
    That fails: unlink/rmdir fails with EIO and the name still shows; the
    next try removes it."""
    p = os.path.join(lay.L, "x")
    if what == "dir":
        os.mkdir(p)
    else:
        write_file(p, DATA)
    lower_before = tree(lay.L)
    rm = os.rmdir if what == "dir" else os.unlink
    mnt = mount(mounter, lay, "mknod:2:EIO")  # 1: the mount's probe
    before = tree(lay.M)
    fails_with(errno.EIO, rm, m(lay, "x"))
    assert tree(lay.M) == before
    assert work_left(lay) == []
    rm(m(lay, "x"))
    assert "x" not in os.listdir(lay.M)
    unmount(mnt)
    assert tree(lay.L) == lower_before


def test_whiteout_probe_is_first_mknod(lay):
    """What the mknod counts above rest on: the mount makes one whiteout
    device (its probe) before any request; failing it refuses --whiteout
    chardev."""
    env = dict(os.environ, PRISMFS_FAULT="mknod:1:EPERM")
    r = subprocess.run([PRISMFS, "mount", "-f", "--upper", lay.U, "--work", lay.W,
                        "--whiteout", "chardev", lay.L, lay.M],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "whiteouts as character devices" in r.stderr
    for marker in SANITIZER_MARKERS:
        assert marker not in r.stderr
