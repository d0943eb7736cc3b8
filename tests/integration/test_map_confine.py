"""Confinement of a mapping table: nothing escapes SOURCE through a target,
a read-only area gets no writable name, and one bad entry never breaks its
neighbours.  Decided semantics (README, "Mappings"):

- a relative target (or an absolute one under the mount point) is resolved
  beneath SOURCE at every component, symlinks included, at every use: one
  that leads out (even swapped in while mounted) gives EXDEV.  The last
  component of a key's target is the object shown at the key: a symlink
  there shows as that symlink, never followed by prismfs; a directory the
  view walks into (the target of the key "/", a graft below a synthetic
  directory) is resolved beneath to its last component;
- a key whose target cannot be reached (missing, or leading out of SOURCE)
  is absent from its parent's listing; a lookup of it fails alone (ENOENT,
  EXDEV), or it is a synthetic directory when keys lie below it; under a
  key "/" whose target cannot be reached the root lists the table's other
  names only;
- `readonly: true` refuses with EROFS every operation that would give an
  object of the area a new (writable) name: link and rename out, rename
  exchange, as well as into and within.

Each case is built on a real tree, mounted through the `mounter` fixture
(unmounted in teardown; the daemon must exit 0 with no sanitizer report),
plain and with `--upper` (layered)."""
import ctypes
import os
import stat

import pytest

from map_helpers import err, ls, make_mapped, mkdirs, read_file, write_file
from sysx import RENAME_EXCHANGE, RENAME_NOREPLACE, renameat2

MODES = ["plain", "layered"]
POSITIONS = ["first", "middle", "last"]
SPELLINGS = ["abs", "rel"]
USER = (12345, 12345)
OUT = "outside\n"


def layered_args(workdir, mode):
    if mode == "plain":
        return ()
    up, wk = os.path.join(workdir, "U"), os.path.join(workdir, "W")
    mkdirs(up, wk)
    return ("--upper", up, "--work", wk)


def mount(workdir, mounter, mode, table, populate, *extra):
    args = layered_args(workdir, mode)
    m = make_mapped(workdir, mounter, table, *args, *extra, populate=populate)
    m.upper = args[1] if args else None
    return m


def make_outside(workdir):
    """W/out: what every escape below would reach; each file says OUT."""
    out = os.path.join(workdir, "out")
    for d in ("b/c/syn", "b/c/g/syn", "c/syn", "c/g/syn"):
        mkdirs(os.path.join(out, d))
    for f in ("b/c/secret", "b/c/syn/secret", "b/c/g/syn/secret", "b/f", "c/secret",
              "c/syn/secret", "c/g/syn/secret", "f", "secret"):
        write_file(os.path.join(out, f), OUT)
    return out


def snapshot(root):
    got = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            got[os.path.relpath(p, root)] = (stat.S_IFMT(st.st_mode), st.st_size,
                                             st.st_mtime_ns)
    return got


def link_to(link, dest, spelling):
    os.symlink(dest if spelling == "abs" else os.path.relpath(dest, os.path.dirname(link)),
               link)


def make_escape(base, out, position, spelling):
    """base/a/b/c (a directory) and base/a/b/f (a file) with the first, the
    middle or the last component a symlink out of SOURCE into out."""
    mkdirs(base)
    if position == "first":
        link_to(os.path.join(base, "a"), out, spelling)          # a/b/c = out/b/c
    elif position == "middle":
        mkdirs(os.path.join(base, "a"))
        link_to(os.path.join(base, "a", "b"), out, spelling)     # a/b/c = out/c
    else:
        mkdirs(os.path.join(base, "a", "b"))
        link_to(os.path.join(base, "a", "b", "c"), os.path.join(out, "c"), spelling)
        link_to(os.path.join(base, "a", "b", "f"), os.path.join(out, "f"), spelling)


def no_outside_content(mnt):
    """Every regular file the view shows (symlinks not followed) is read:
    none is one of out's."""
    for d, dirs, files in os.walk(mnt):
        for n in files:
            p = os.path.join(d, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                assert read_file(p) != OUT, "%s shows a file outside SOURCE" % p


# --------------------------------------------------------------------------
# 4. a read-only area gets no writable name

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_SYMLINK_FOLLOW = 0x400


def linkat_empty(fd, new):
    """linkat(fd, "", AT_FDCWD, new, AT_EMPTY_PATH): a name for an open file."""
    ctypes.set_errno(0)
    if _libc.linkat(fd, b"", AT_FDCWD, os.fsencode(new), AT_EMPTY_PATH) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def linkat_proc(fd, new):
    """linkat(AT_FDCWD, "/proc/self/fd/N", AT_FDCWD, new, AT_SYMLINK_FOLLOW)
    (os.link calls link(2), which would link the /proc symlink itself)."""
    ctypes.set_errno(0)
    if _libc.linkat(AT_FDCWD, b"/proc/self/fd/%d" % fd, AT_FDCWD, os.fsencode(new),
                    AT_SYMLINK_FOLLOW) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def with_fd(path, fn):
    fd = os.open(path, os.O_RDONLY)
    try:
        return fn(fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("mode", MODES)
def test_readonly_area_gets_no_writable_name(workdir, mounter, mode):
    """Every call that gives an object of a read-only area a name elsewhere
    (a hard link by path, through /proc/self/fd, or by an open descriptor;
    rename out, with RENAME_NOREPLACE or RENAME_EXCHANGE either way), for a
    file of a read-only graft, one deeper down, a directory, and a read-only
    file key, fails with EROFS and changes nothing: no new name, the area
    reads the same, SOURCE (and, layered, the upper) untouched."""
    def populate(src):
        mkdirs(os.path.join(src, "rodir", "sub"), os.path.join(src, "rw"))
        write_file(os.path.join(src, "rodir", "f"), "ro\n")
        write_file(os.path.join(src, "rodir", "sub", "s"), "s\n")
        write_file(os.path.join(src, "rofile"), "rofile\n")
        write_file(os.path.join(src, "rw", "x"), "x\n")

    table = {"/ro": {"target": "rodir", "readonly": True},
             "/rof": {"target": "rofile", "readonly": True},
             "/rodir": {}, "/rofile": {}}
    m = mount(workdir, mounter, mode, table, populate)
    before = snapshot(m.src)
    r, w = (lambda *a: m.p("ro", *a)), (lambda *a: m.p("rw", *a))
    objs = {"file": r("f"), "deep": r("sub", "s"), "key": m.p("rof")}
    got = {}
    for what, p in objs.items():
        got["link " + what] = err(os.link, p, w("l_" + what))
        got["link within " + what] = err(os.link, p, r("l_" + what))
        got["link /proc " + what] = with_fd(
            p, lambda fd: err(linkat_proc, fd, w("p_" + what)))
        got["linkat fd " + what] = with_fd(p, lambda fd: err(linkat_empty, fd, w("e_" + what)))
        got["rename " + what] = err(os.rename, p, w("m_" + what))
        got["rename noreplace " + what] = err(renameat2, p, w("n_" + what), RENAME_NOREPLACE)
        got["exchange out " + what] = err(renameat2, p, w("x"), RENAME_EXCHANGE)
        got["exchange in " + what] = err(renameat2, w("x"), p, RENAME_EXCHANGE)
    got["rename dir"] = err(os.rename, r("sub"), w("sub"))
    got["rename area"] = err(os.rename, m.p("ro"), w("ro"))
    assert got == dict.fromkeys(got, "EROFS"), {k: v for k, v in got.items() if v != "EROFS"}
    assert ls(w()) == ["x"]
    assert read_file(r("f")) == "ro\n" and read_file(r("sub", "s")) == "s\n"
    assert read_file(m.p("rof")) == "rofile\n" and read_file(w("x")) == "x\n"
    assert snapshot(m.src) == before
    if m.upper:
        assert os.listdir(m.upper) == []
    # the area's objects may still be linked and renamed among writable names
    os.link(w("x"), w("x2"))
    os.rename(w("x2"), w("x3"))
    assert read_file(w("x3")) == "x\n"
