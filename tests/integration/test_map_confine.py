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
import subprocess
import sys
import time

import pytest

from map_helpers import err, ls, make_mapped, mkdirs, read_file, write_file
from prism_helpers import run_as
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
# 3. nothing escapes SOURCE through a target


@pytest.mark.parametrize("mode", MODES)
def test_graft_and_file_targets_never_lead_out(workdir, mounter, mode):
    """A graft key and a file key whose target has its first, middle or last
    component a symlink out of SOURCE (absolute or climbing with ..): the
    first two fail alone with EXDEV and are absent from the listing; a
    symlink as the last component is the object shown (a symlink, not what
    it points to).  Nothing of out is shown or changed; neighbours work."""
    out = make_outside(workdir)
    table = {"/ok": {"target": "okdir/k"}, "/okg": {"target": "okdir"}}
    variants = [(p, s) for p in POSITIONS for s in SPELLINGS]

    def populate(src):
        mkdirs(os.path.join(src, "okdir"))
        write_file(os.path.join(src, "okdir", "k"), "ok\n")
        write_file(os.path.join(src, "own.txt"), "own\n")
        for p, s in variants:
            make_escape(os.path.join(src, "%s_%s" % (p, s)), out, p, s)

    for p, s in variants:
        table["/g_%s_%s" % (p, s)] = {"target": "%s_%s/a/b/c" % (p, s)}
        table["/f_%s_%s" % (p, s)] = {"target": "%s_%s/a/b/f" % (p, s)}
    before = snapshot(out)
    m = mount(workdir, mounter, mode, table, populate)
    shown = ls(m.mnt)
    for p, s in variants:
        for k in ("g", "f"):
            key = "%s_%s_%s" % (k, p, s)
            if p == "last":
                st = os.lstat(m.p(key))
                assert stat.S_ISLNK(st.st_mode), (key, oct(st.st_mode))
                assert os.readlink(m.p(key)) == os.readlink(
                    m.s("%s_%s" % (p, s), "a", "b", "c" if k == "g" else "f")), key
                assert err(os.open, m.p(key), os.O_RDONLY | os.O_NOFOLLOW) == "ELOOP", key
                assert key in shown, key
            else:
                assert err(os.lstat, m.p(key)) == "EXDEV", key
                assert err(os.open, m.p(key, "secret"), os.O_RDONLY) == "EXDEV", key
                assert err(os.open, m.p(key, "new"), os.O_CREAT | os.O_WRONLY, 0o644) \
                    == "EXDEV", key
                assert err(os.mkdir, m.p(key, "nd")) == "EXDEV", key
                assert key not in shown, (key, shown)
    assert {"ok", "okg", "own.txt"} <= set(shown), shown
    assert read_file(m.p("ok")) == "ok\n"
    assert ls(m.p("okg")) == ["k"]
    no_outside_content(m.mnt)
    assert snapshot(out) == before, "a file outside SOURCE changed"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spelling", ["rel", "abs", "under-mountpoint"])
def test_root_key_target_never_leads_out(workdir, mounter, mode, spelling):
    """The key "/" with a target whose first, middle or last component is a
    symlink out of SOURCE (the target spelled relative, or absolute under
    the mount point; the symlink absolute or climbing with ..): no name of
    out shows, nothing can be read or made there; the root lists the
    table's other names, which work."""
    out = make_outside(workdir)
    link_spelling = "rel" if spelling == "rel" else "abs"
    for position in POSITIONS:
        wd = os.path.join(workdir, position)
        mkdirs(wd)
        target = "v/a/b/c"
        if spelling == "under-mountpoint":
            target = os.path.join(wd, "mnt", target)

        def populate(src):
            mkdirs(os.path.join(src, "okdir"))
            write_file(os.path.join(src, "okdir", "k"), "ok\n")
            make_escape(os.path.join(src, "v"), out, position, link_spelling)

        before = snapshot(out)
        m = mount(wd, mounter, mode, {"/": {"target": target}, "/n": {"target": "okdir/k"}},
                  populate)
        ctx = (position, spelling)
        assert ls(m.mnt) == ["n"], ctx
        assert read_file(m.p("n")) == "ok\n", ctx
        for name in ("secret", "syn", "b"):
            assert err(os.lstat, m.p(name)) in ("EXDEV", "ENOENT"), (ctx, name)
        made = {
            "create": err(os.open, m.p("new"), os.O_CREAT | os.O_WRONLY, 0o644),
            "mkdir": err(os.mkdir, m.p("nd")),
            "symlink": err(os.symlink, "x", m.p("sl")),
            "mkfifo": err(os.mkfifo, m.p("ff")),
        }
        assert made == dict.fromkeys(made, "EXDEV"), (ctx, made)
        no_outside_content(m.mnt)
        assert snapshot(out) == before, (ctx, "a file outside SOURCE changed")
        m.mount.stop()
        m.mount.check_clean_exit()


@pytest.mark.parametrize("mode", MODES)
def test_symlinks_that_stay_in_source_are_followed(workdir, mounter, mode):
    """What held and must hold: a target through symlinks that stay beneath
    SOURCE (a "current" link to a release, at any component) is followed,
    for the key "/" and for a graft walked from a synthetic directory."""
    def populate(src):
        mkdirs(os.path.join(src, "rel", "v2", "d", "syn"))
        write_file(os.path.join(src, "rel", "v2", "d", "in"), "v2\n")
        write_file(os.path.join(src, "rel", "v2", "d", "syn", "deep"), "deep\n")
        os.symlink("rel/v2", os.path.join(src, "cur"))       # first component
        os.symlink("v2", os.path.join(src, "rel", "mid"))    # middle component
        os.symlink("d", os.path.join(src, "rel", "v2", "last"))  # last component
        write_file(os.path.join(src, "k"), "k\n")

    m = mount(workdir, mounter, mode, {"/": {"target": "cur/d"}, "/g": {"target": "rel/mid/last"},
                                       "/g/syn/k": {"target": "k"}}, populate)
    assert ls(m.mnt) == ["g", "in", "syn"]
    assert read_file(m.p("in")) == "v2\n"
    assert read_file(m.p("syn", "deep")) == "deep\n"
    # /g's last component is a symlink: shown as it is
    assert stat.S_ISLNK(os.lstat(m.p("g")).st_mode)


def swap_script():
    return r'''
import errno, json, os, sys
a = json.load(sys.stdin)
out = {}
def rec(key, fn):
    try:
        v = fn()
        out[key] = "ok" if v is None else v
    except OSError as e:
        out[key] = errno.errorcode.get(e.errno, str(e.errno))
mnt = a["mnt"]
held = os.open(os.path.join(mnt, "g", "syn"), os.O_RDONLY | os.O_DIRECTORY)
rec("before:root", lambda: sorted(os.listdir(mnt)))
rec("before:held", lambda: sorted(os.listdir(held)))
# the swap: a directory on the target's path becomes a symlink out
os.rename(a["swap"], a["swap"] + ".old")
os.symlink(a["to"], a["swap"])
rec("after:root", lambda: sorted(os.listdir(mnt)))
rec("after:n", lambda: open(os.path.join(mnt, "n")).read())
rec("after:held", lambda: sorted(os.listdir(held)))
rec("after:held/secret", lambda: os.stat("secret", dir_fd=held) and "found")
rec("after:held/new", lambda: os.close(os.open("new", os.O_CREAT | os.O_WRONLY, 0o644,
                                                dir_fd=held)))
rec("after:secret", lambda: os.stat(os.path.join(mnt, "secret")) and "found")
rec("after:new", lambda: os.close(os.open(os.path.join(mnt, "new"),
                                          os.O_CREAT | os.O_WRONLY, 0o644)))
rec("after:fk", lambda: open(os.path.join(mnt, "fk")).read())
print(json.dumps(out))
'''

RENAMER = r'''
import os, sys, time
d, until = sys.argv[1], float(sys.argv[2])
a, b = os.path.join(d, "a"), os.path.join(d, "b")
open(a, "w").close()
while time.time() < until:
    os.rename(a, b)
    os.rename(b, a)
'''


def test_a_target_through_dotdot_opens_while_the_system_renames(workdir, mounter):
    """A target walked beneath SOURCE through a symlink holding ".." is
    resolved with openat2(RESOLVE_BENEATH), which answers EAGAIN when any
    rename or mount on the machine raced the walk past ".." (openat2(2):
    the caller may retry). The daemon retries: no open of the key fails
    with EAGAIN while another process renames files elsewhere, however
    often (the previous binary failed 27 opens in 25,000)."""
    def populate(src):
        mkdirs(os.path.join(src, "data"))
        mkdirs(os.path.join(src, "sub"))
        write_file(os.path.join(src, "data", "a"), "a\n")
        os.symlink("sub/../data", os.path.join(src, "lnk"))

    m = make_mapped(workdir, mounter, {"/f": {"target": "lnk/a"}}, populate=populate)
    ren = mkdirs(os.path.join(workdir, "ren"))
    until = time.time() + 8
    procs = [subprocess.Popen([sys.executable, "-c", RENAMER, mkdirs(os.path.join(ren, str(i))),
                               str(until)]) for i in range(2)]
    errors, n = [], 0
    try:
        while time.time() < until:
            try:
                with open(m.p("f")) as f:
                    assert f.read() == "a\n"
            except OSError as e:
                errors.append(e.errno)
            n += 1
    finally:
        for p in procs:
            p.wait(timeout=30)
    assert not errors, "%d of %d opens failed: %s" % (len(errors), n, sorted(set(errors)))



@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("position", POSITIONS)
@pytest.mark.parametrize("key", ["root", "graft"])
def test_symlink_swapped_in_by_a_user_leads_nowhere(workdir, mounter, key, position, mode):
    """An unprivileged user who owns a directory on a target's path swaps a
    component (first, middle or last) for a symlink out of SOURCE while the
    mount runs (-o allow_other, the daemon runs as root): nothing of out
    shows or is made, through a fresh lookup or through a synthetic
    directory the user held open across the swap; the root still lists, and
    its other names work."""
    out = make_outside(workdir)
    swap = {"first": "pub/a", "middle": "pub/a/b", "last": "pub/a/b/c"}[position]
    to = {"first": out, "middle": out, "last": os.path.join(out, "c")}[position]

    def populate(src):
        os.chmod(src, 0o777)  # the kernel lets the user ask the daemon to create
        mkdirs(os.path.join(src, "pub", "a", "b", "c"), os.path.join(src, "okdir"))
        write_file(os.path.join(src, "pub", "a", "b", "c", "inside"), "in\n")
        write_file(os.path.join(src, "pub", "a", "b", "f"), "f\n")
        write_file(os.path.join(src, "okdir", "k"), "ok\n")
        for d, dirs, files in os.walk(os.path.join(src, "pub")):
            for n in [d] + [os.path.join(d, x) for x in dirs + files]:
                os.chown(n, *USER)

    table = {"/g/syn/k": {"target": "okdir/k"}, "/n": {"target": "okdir/k"},
             "/fk": {"target": "pub/a/b/f"}}
    table["/" if key == "root" else "/g"] = {"target": "pub/a/b/c"}
    before = snapshot(out)
    m = mount(workdir, mounter, mode, table, populate, "-o", "allow_other")
    got = run_as(USER[0], USER[1], [], swap_script(),
                 {"mnt": m.mnt, "swap": m.s(swap), "to": to})
    own = ["inside"] if key == "root" else ["okdir", "pub"]
    assert got["before:root"] == sorted(["fk", "g", "n"] + own), got
    assert got["before:held"] == ["k"], got
    # the target is gone: its names are not shown; /fk (pub/a/b/f) too
    # unless only the last component was swapped
    own = [] if key == "root" else ["okdir", "pub"]
    fk = ["fk"] if position == "last" else []
    assert got["after:root"] == sorted(["g", "n"] + own + fk), got
    assert got["after:n"] == "ok\n", got
    # the kernel may still hold /fk from the listing: the file it was bound
    # to, still in SOURCE (renamed with its directory); never out's
    assert got["after:fk"] in ("f\n", "EXDEV"), got
    assert got["after:held"] == ["k"], got
    assert got["after:held/secret"] == "EXDEV", got
    assert got["after:held/new"] in ("EXDEV", "EACCES"), got
    if key == "root":
        assert got["after:secret"] == "EXDEV", got
        assert got["after:new"] == "EXDEV", got
    assert snapshot(out) == before, "a file outside SOURCE changed"


# --------------------------------------------------------------------------
# 6. one bad entry never breaks its neighbours


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_entry_fails_alone(workdir, mounter, mode):
    """In every kind of parent (the root, a synthetic directory, a directory
    of SOURCE, a graft), keys whose target is missing or leads out of SOURCE
    (a symlink as first or middle component) are absent from the listing
    and fail alone; the other names list and work. A bad graft with keys
    below it is a synthetic directory, so those keys still work."""
    out = make_outside(workdir)

    def populate(src):
        mkdirs(os.path.join(src, "okdir"), os.path.join(src, "real"),
               os.path.join(src, "grt"), os.path.join(src, "mid"))
        write_file(os.path.join(src, "okdir", "k"), "ok\n")
        write_file(os.path.join(src, "real", "own"), "own\n")
        write_file(os.path.join(src, "grt", "gown"), "gown\n")
        write_file(os.path.join(src, "top"), "top\n")
        os.symlink(out, os.path.join(src, "esc"))
        os.symlink("../../out", os.path.join(src, "mid", "esc"))

    parents = {"": ["top", "real", "grt", "mid", "okdir", "esc", "syn", "gr", "badg1", "badg2"],
               "syn": [], "real": ["own"], "gr": ["gown"]}
    table = {"/gr": {"target": "grt"}, "/badg1": {"target": "esc/b/c"},
             "/badg1/k": {"target": "okdir/k"}, "/badg2": {"target": "nowhere/c"},
             "/badg2/k": {"target": "okdir/k"}}
    bad = {"missing": ("nowhere/x", "ENOENT"), "first": ("esc/b/f", "EXDEV"),
           "middle": ("mid/esc/f", "EXDEV"), "dir": ("esc/b/c", "EXDEV")}
    for parent in parents:
        for name, (target, _) in bad.items():
            table["%s/bad_%s" % ("/" + parent if parent else "", name)] = {"target": target}
        table["%s/ok" % ("/" + parent if parent else "")] = {"target": "okdir/k"}
        table["%s/okg" % ("/" + parent if parent else "")] = {"target": "okdir"}
    before = snapshot(out)
    m = mount(workdir, mounter, mode, table, populate)
    for parent, natural in parents.items():
        want = sorted(natural + ["ok", "okg"])
        assert ls(m.p(parent)) == want, parent
        assert read_file(m.p(parent, "ok")) == "ok\n", parent
        assert ls(m.p(parent, "okg")) == ["k"], parent
        for name, (_, e) in bad.items():
            assert err(os.stat, m.p(parent, "bad_" + name)) == e, (parent, name)
        for n in natural:
            os.lstat(m.p(parent, n))
    for g in ("badg1", "badg2"):
        assert stat.S_ISDIR(os.stat(m.p(g)).st_mode), g
        assert ls(m.p(g)) == ["k"], g
        assert read_file(m.p(g, "k")) == "ok\n", g
    no_outside_content(m.mnt)
    assert snapshot(out) == before


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
