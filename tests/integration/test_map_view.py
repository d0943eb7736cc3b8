"""Live path mappings: what the view shows.  Resolution by components (an
exact entry wins, else the deepest mapped ancestor grafts its subtree, else
the source), hidden paths, relative and absolute targets, listings and
synthetic parents, mode/uid/gid overrides, readonly subtrees, hidden names,
mapped names behaving like mount points, and every operation going through
the mapping."""
import json
import os
import stat
import subprocess

import pytest

from map_helpers import (access_errno, err, ls, make_mapped, mkdirs, read_file,  # noqa: F401
                         shm_dir, write_file)

PY = "/usr/bin/python3"


def populate_src(s):
    write_file(os.path.join(s, "a"), "A\n")
    write_file(os.path.join(s, "b.txt"), "B-content\n")
    mkdirs(os.path.join(s, "d"), os.path.join(s, "e"), os.path.join(s, "h"),
           os.path.join(s, "keep"))
    write_file(os.path.join(s, "d", "x"), "x\n")
    write_file(os.path.join(s, "d", "y"), "y\n")
    write_file(os.path.join(s, "secret"), "secret\n")
    write_file(os.path.join(s, "h", "inner"), "inner\n")
    write_file(os.path.join(s, "keep", "k"), "k\n")


def outside(workdir):
    """Two trees beside the source (the same filesystem)."""
    ext = os.path.join(workdir, "ext")
    ext2 = os.path.join(workdir, "ext2")
    mkdirs(ext, os.path.join(ext, "sub"), ext2)
    write_file(os.path.join(ext, "e1"), "ext1\n")
    write_file(os.path.join(ext, "hid"), "hidden in the graft\n")
    write_file(os.path.join(ext, "sub", "s"), "s\n")
    write_file(os.path.join(ext2, "z"), "z\n")
    return ext, ext2


def resolution_table(workdir):
    ext, ext2 = outside(workdir)
    mnt = os.path.join(workdir, "mnt")
    return {
        "/alias": {"target": "a"},
        "/b.txt": {"target": "a"},                      # exact entry over a source name
        "/graft": {"target": ext},                      # absolute, outside the source
        "/graft/sub": {"target": ext2},                 # a deeper graft wins below it
        "/graft/hid": {},                               # hidden inside a graft
        "/graft/e1x": {"path": "/graft/e1x", "target": "b.txt"},  # exact inside a graft
        "/d/x": {"target": "b.txt"},                    # targets are source paths
        "/d/y2": {"target": "d/y"},                     # a new name in a real directory
        "/secret": {},                                  # hidden
        "/h": {},                                       # a hidden directory...
        "/h/k": {"target": "a"},                        # ...hides the keys beneath it
        "/ghost": {},                                   # hidden, not in the source
        "/virt/deep/file": {"target": "a"},             # synthetic parents
        "/self": {"target": os.path.join(mnt, "d")},    # under the mount point itself
    }, ext, ext2


@pytest.fixture
def resolved(workdir, mounter):
    table, ext, ext2 = resolution_table(workdir)
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    m.ext, m.ext2 = ext, ext2
    return m


def test_root_listing_is_the_view(resolved):
    m = resolved
    assert ls(m.mnt) == ["a", "alias", "b.txt", "d", "e", "graft", "keep", "self", "virt"]
    names = os.listdir(m.mnt)
    assert len(names) == len(set(names)), "a name is listed twice: %r" % names
    # every listed name can be looked up, with the type readdir gave
    for entry in os.scandir(m.mnt):
        st = os.lstat(entry.path)
        assert entry.is_dir(follow_symlinks=False) == stat.S_ISDIR(st.st_mode), entry.name


def test_exact_entry_and_relative_target(resolved):
    m = resolved
    assert read_file(m.p("alias")) == "A\n"
    # /b.txt exists in the source, but the exact entry wins
    assert read_file(m.p("b.txt")) == "A\n"
    assert os.stat(m.p("b.txt")).st_size == 2
    assert read_file(m.s("b.txt")) == "B-content\n", "sanity: the source is untouched"


def test_targets_name_source_paths_not_view_paths(resolved):
    m = resolved
    # /d/x -> "b.txt" is the source's b.txt, not the view's /b.txt (-> a)
    assert read_file(m.p("d", "x")) == "B-content\n"
    assert ls(m.p("d")) == ["x", "y", "y2"]
    assert read_file(m.p("d", "y2")) == "y\n"


def test_graft_and_deeper_graft(resolved):
    m = resolved
    assert ls(m.p("graft")) == ["e1", "e1x", "sub"]
    assert read_file(m.p("graft", "e1")) == "ext1\n"
    assert read_file(m.p("graft", "e1x")) == "B-content\n"
    # /graft/sub is grafted from ext2, not ext/sub
    assert ls(m.p("graft", "sub")) == ["z"]
    assert read_file(m.p("graft", "sub", "z")) == "z\n"
    assert err(os.stat, m.p("graft", "sub", "s")) == "ENOENT"


@pytest.mark.parametrize("path", ["secret", "h", "h/inner", "h/k", "ghost", "graft/hid",
                                  "h/nothing"])
def test_hidden_paths_do_not_exist(resolved, path):
    m = resolved
    p = m.p(*path.split("/"))
    got = {
        "stat": err(os.stat, p),
        "lstat": err(os.lstat, p),
        "open": err(os.open, p, os.O_RDONLY),
        "listdir": err(os.listdir, p),
        "access": access_errno(p, os.F_OK),
        "getxattr": err(os.getxattr, p, "user.x"),
    }
    assert got == dict.fromkeys(got, "ENOENT"), "%s should not exist: %r" % (path, got)
    # absent from the listing of its parent (when that one is visible)
    parent, name = os.path.split(path)
    if parent != "h":
        assert name not in os.listdir(m.p(parent) if parent else m.mnt)


def test_absolute_target_under_the_mount_point(resolved):
    """/self -> MNT/d is the source's d (the daemon never re-enters its own
    mount). Checked in a child with a timeout so a deadlock fails the test."""
    m = resolved
    code = "import os, sys, json; p = sys.argv[1]; " \
        "print(json.dumps([sorted(os.listdir(p)), open(p + '/x').read()]))"
    try:
        res = subprocess.run([PY, "-c", code, m.p("self")], capture_output=True, text=True,
                             timeout=15)
    except subprocess.TimeoutExpired:
        raise AssertionError("listing /self (-> a path under the mount point) hung")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == [["x", "y"], "x\n"], (
        "/self -> MNT/d should show the source's d: %s" % res.stdout)


def test_synthetic_parents(resolved):
    m = resolved
    for p in (m.p("virt"), m.p("virt", "deep")):
        st = os.stat(p)
        assert stat.S_ISDIR(st.st_mode), p
        assert stat.S_IMODE(st.st_mode) == 0o555, "%s: mode %o, expected dr-xr-xr-x" % (
            p, stat.S_IMODE(st.st_mode))
        assert st.st_uid == os.getuid(), "%s is owned by %d, not the daemon's uid" % (
            p, st.st_uid)
    assert ls(m.p("virt")) == ["deep"]
    assert ls(m.p("virt", "deep")) == ["file"]
    assert read_file(m.p("virt", "deep", "file")) == "A\n"
    assert not os.path.exists(m.s("virt")), "sanity: no virt in the source"


@pytest.mark.parametrize("where", ["virt", "virt/deep"])
def test_nothing_can_be_created_in_synthetic_directories(resolved, where):
    m = resolved
    d = m.p(*where.split("/"))
    write_file(m.p("tomove"), "t")
    got = {
        "create": err(os.open, os.path.join(d, "new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "mkdir": err(os.mkdir, os.path.join(d, "nd")),
        "symlink": err(os.symlink, "x", os.path.join(d, "sl")),
        "mkfifo": err(os.mkfifo, os.path.join(d, "ff")),
        "link": err(os.link, m.p("tomove"), os.path.join(d, "ln")),
        "rename into": err(os.rename, m.p("tomove"), os.path.join(d, "moved")),
    }
    assert got == dict.fromkeys(got, "EROFS"), got
    assert ls(d) == (["deep"] if where == "virt" else ["file"])


# --------------------------------------------------------------------------
# mode / uid / gid

@pytest.fixture
def overridden(workdir, mounter):
    ext, _ = outside(workdir)

    def pop(s):
        populate_src(s)
        for n in ("c4", "c5", "c6"):
            write_file(os.path.join(s, n), n, mode=0o644)
        os.chmod(os.path.join(s, "a"), 0o644)
    table = {
        "/m1": {"target": "a", "mode": "0600", "uid": 123, "gid": 456},
        "/m2": {"target": "d", "mode": 0o700},
        "/m3": {"target": "a"},
        "/m4": {"target": "c4", "mode": "0640"},
        "/m5": {"target": "c5", "uid": 77},
        "/m6": {"target": "c6", "gid": 88},
        "/gm": {"target": ext, "mode": "0700", "uid": 5},
    }
    m = make_mapped(workdir, mounter, table, populate=pop)
    m.ext = ext
    return m


def test_stat_shows_the_table_values(overridden):
    m = overridden
    st = os.stat(m.p("m1"))
    assert (st.st_mode, st.st_uid, st.st_gid) == (stat.S_IFREG | 0o600, 123, 456), (
        oct(st.st_mode), st.st_uid, st.st_gid)
    fd = os.open(m.p("m1"), os.O_RDONLY)
    try:
        fst = os.fstat(fd)
    finally:
        os.close(fd)
    assert (fst.st_mode, fst.st_uid, fst.st_gid) == (stat.S_IFREG | 0o600, 123, 456)
    assert os.stat(m.p("m2")).st_mode == stat.S_IFDIR | 0o700
    assert stat.S_IMODE(os.stat(m.p("m3")).st_mode) == 0o644
    assert os.stat(m.p("m4")).st_mode == stat.S_IFREG | 0o640
    assert os.stat(m.p("m5")).st_uid == 77
    assert os.stat(m.p("m6")).st_gid == 88
    # only the exact path: what lies beneath a graft keeps its own attributes
    g = os.stat(m.p("gm"))
    assert (stat.S_IMODE(g.st_mode), g.st_uid) == (0o700, 5)
    inner = os.stat(m.p("gm", "e1"))
    real = os.stat(os.path.join(m.ext, "e1"))
    assert (inner.st_mode, inner.st_uid, inner.st_gid) == (real.st_mode, real.st_uid,
                                                           real.st_gid)
    # and the source itself is not changed
    s = os.stat(m.s("a"))
    assert (stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid) == (0o644, 0, 0)


def test_fixed_attributes_cannot_be_changed(overridden):
    m = overridden
    got = {
        "chmod m1": err(os.chmod, m.p("m1"), 0o644),
        "chown m1": err(os.chown, m.p("m1"), 1, -1),
        "chgrp m1": err(os.chown, m.p("m1"), -1, 1),
        "chmod m2": err(os.chmod, m.p("m2"), 0o755),
        "chmod m4": err(os.chmod, m.p("m4"), 0o600),
        "chown m5": err(os.chown, m.p("m5"), 78, -1),
        "chgrp m6": err(os.chown, m.p("m6"), -1, 89),
    }
    assert got == dict.fromkeys(got, "EPERM"), got
    s = os.stat(m.s("a"))
    assert (stat.S_IMODE(s.st_mode), s.st_uid, s.st_gid) == (0o644, 0, 0)


def test_attributes_not_fixed_can_be_changed(overridden):
    m = overridden
    os.chown(m.p("m4"), 11, 12)                 # only the mode is fixed
    s = os.stat(m.s("c4"))
    assert (s.st_uid, s.st_gid) == (11, 12)
    assert os.stat(m.p("m4")).st_mode == stat.S_IFREG | 0o640
    os.chmod(m.p("m5"), 0o600)                  # only the uid is fixed
    assert stat.S_IMODE(os.stat(m.s("c5")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(m.p("m5")).st_mode) == 0o600
    os.chmod(m.p("m3"), 0o604)                  # nothing fixed: the target changes
    assert stat.S_IMODE(os.stat(m.s("a")).st_mode) == 0o604
    assert stat.S_IMODE(os.stat(m.p("m3")).st_mode) == 0o604
    assert stat.S_IMODE(os.stat(m.p("a")).st_mode) == 0o604
    # /m1 -> the same file, still shows its own mode
    assert stat.S_IMODE(os.stat(m.p("m1")).st_mode) == 0o600


# --------------------------------------------------------------------------
# readonly

def _tree_snapshot(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            xa = sorted((k, os.getxattr(p, k, follow_symlinks=False))
                        for k in os.listxattr(p, follow_symlinks=False))
            data = read_file(p) if stat.S_ISREG(st.st_mode) else None
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                             st.st_mtime_ns, data, xa)
    return out


@pytest.fixture
def readonly(workdir, mounter):
    ext, _ = outside(workdir)
    mkdirs(os.path.join(ext, "sub", "emptydir"))
    os.setxattr(os.path.join(ext, "e1"), "user.tag", b"v")
    table = {
        "/ro": {"target": ext, "readonly": True},
        "/rof": {"target": "a", "readonly": True},
    }
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    m.ext = ext
    return m


def test_readonly_subtree(readonly):
    m = readonly
    write_file(m.p("outfile"), "o")
    before = _tree_snapshot(m.ext)
    r = lambda *a: m.p("ro", *a)  # noqa: E731
    got = {
        "create": err(os.open, r("new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "create deep": err(os.open, r("sub", "new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "mkdir": err(os.mkdir, r("nd")),
        "mknod fifo": err(os.mkfifo, r("ff")),
        "symlink": err(os.symlink, "x", r("sl")),
        "link into": err(os.link, m.p("outfile"), r("ln")),
        "unlink": err(os.unlink, r("e1")),
        "unlink deep": err(os.unlink, r("sub", "s")),
        "rmdir": err(os.rmdir, r("sub", "emptydir")),
        "rename within": err(os.rename, r("e1"), r("e1b")),
        "rename away": err(os.rename, r("e1"), m.p("e1-moved")),
        "rename into": err(os.rename, m.p("outfile"), r("moved-in")),
        "open write": err(os.open, r("e1"), os.O_WRONLY),
        "open read-write": err(os.open, r("e1"), os.O_RDWR),
        "open deep write": err(os.open, r("sub", "s"), os.O_WRONLY | os.O_APPEND),
        "truncate": err(os.truncate, r("e1"), 0),
        "chmod": err(os.chmod, r("e1"), 0o600),
        "chmod dir": err(os.chmod, r("sub"), 0o700),
        "chown": err(os.chown, r("e1"), 1, 1),
        "utime": err(os.utime, r("e1"), (1, 1)),
        "utime now": err(os.utime, r("e1"), None),
        "setxattr": err(os.setxattr, r("e1"), "user.new", b"x"),
        "removexattr": err(os.removexattr, r("e1"), "user.tag"),
    }
    assert got == dict.fromkeys(got, "EROFS"), {k: v for k, v in got.items() if v != "EROFS"}
    # reads still work
    assert ls(m.p("ro")) == ["e1", "hid", "sub"]
    assert read_file(r("e1")) == "ext1\n"
    assert os.getxattr(r("e1"), "user.tag") == b"v"
    assert access_errno(r("e1"), os.R_OK) == "ok"
    assert _tree_snapshot(m.ext) == before, "the readonly target changed"
    assert read_file(m.p("outfile")) == "o"


def test_readonly_file(readonly):
    m = readonly
    before = _tree_snapshot(m.src)
    got = {
        "open write": err(os.open, m.p("rof"), os.O_WRONLY),
        "open trunc": err(os.open, m.p("rof"), os.O_WRONLY | os.O_TRUNC),
        "truncate": err(os.truncate, m.p("rof"), 0),
        "chmod": err(os.chmod, m.p("rof"), 0o600),
        "chown": err(os.chown, m.p("rof"), 1, 1),
        "utime": err(os.utime, m.p("rof"), (1, 1)),
        "setxattr": err(os.setxattr, m.p("rof"), "user.new", b"x"),
    }
    assert got == dict.fromkeys(got, "EROFS"), got
    assert read_file(m.p("rof")) == "A\n"
    assert _tree_snapshot(m.src) == before
    # the same file under its own, writable name
    with open(m.p("a"), "a") as f:
        f.write("more\n")
    assert read_file(m.p("rof")) == "A\nmore\n"


def test_readonly_access_w_ok_is_erofs(workdir, mounter):
    """access(W_OK) answers EROFS on a readonly path (as on a read-only
    mount), R_OK still succeeds. Only without default_permissions: with it
    the kernel answers access() from the mode bits alone and never asks the
    filesystem (FUSE sends no ACCESS request then); the writes themselves
    still fail with EROFS (test_readonly_file, test_readonly_subtree)."""
    ext, _ = outside(workdir)
    m = make_mapped(workdir, mounter, {"/ro": {"target": ext, "readonly": True},
                                       "/rof": {"target": "a", "readonly": True}},
                    "--no-default-permissions", populate=populate_src)
    got = {p: access_errno(m.p(*p.split("/")), os.W_OK)
           for p in ("rof", "ro", "ro/e1", "ro/sub")}
    assert got == dict.fromkeys(got, "EROFS"), got
    got = {p: access_errno(m.p(*p.split("/")), os.R_OK)
           for p in ("rof", "ro", "ro/e1", "ro/sub")}
    assert got == dict.fromkeys(got, "ok"), got
    assert access_errno(m.p("a"), os.W_OK) == "ok"


# --------------------------------------------------------------------------
# hidden names cannot be created

@pytest.mark.parametrize("name", ["secret", "ghost", "d/hx", "graft/hid"])
def test_creating_a_hidden_name_is_refused(workdir, mounter, name):
    ext, _ = outside(workdir)
    table = {"/secret": {}, "/ghost": {}, "/d/hx": {}, "/graft": {"target": ext},
             "/graft/hid": {}}
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    write_file(m.p("tmp"), "t")
    p = m.p(*name.split("/"))
    real = {"secret": m.s("secret"), "ghost": m.s("ghost"), "d/hx": m.s("d", "hx"),
            "graft/hid": os.path.join(ext, "hid")}[name]
    existed = os.path.exists(real)
    before = read_file(real) if existed else None
    got = {
        "create excl": err(os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644),
        "create": err(os.open, p, os.O_CREAT | os.O_WRONLY, 0o644),
        "mkdir": err(os.mkdir, p),
        "symlink": err(os.symlink, "x", p),
        "mkfifo": err(os.mkfifo, p),
        "link": err(os.link, m.p("tmp"), p),
        "rename onto": err(os.rename, m.p("tmp"), p),
    }
    assert got == dict.fromkeys(got, "EACCES"), got
    assert os.path.exists(real) == existed
    if existed:
        assert read_file(real) == before
    assert err(os.stat, p) == "ENOENT"
    assert read_file(m.p("tmp")) == "t"


def test_creating_beneath_a_hidden_directory(workdir, mounter):
    m = make_mapped(workdir, mounter, {"/h": {}}, populate=populate_src)
    got = {
        "create": err(os.open, m.p("h", "new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "mkdir": err(os.mkdir, m.p("h", "nd")),
    }
    assert got == {"create": "ENOENT", "mkdir": "ENOENT"}, got
    assert ls(m.s("h")) == ["inner"]


# --------------------------------------------------------------------------
# mapped names behave like mount points

@pytest.fixture
def busy(workdir, mounter):
    ext, _ = outside(workdir)
    empty = mkdirs(os.path.join(workdir, "ext_empty"))
    table = {
        "/alias": {"target": "a"},
        "/graft": {"target": ext},
        "/eg": {"target": empty},
        "/d/m": {"target": "a"},
        "/e/m": {"target": "b.txt"},
        "/virt/deep/file": {"target": "a"},
        "/extf": {"target": os.path.join(ext, "e1")},
    }
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    m.ext, m.empty = ext, empty
    return m


def test_mapped_names_are_busy(busy):
    m = busy
    got = {
        "unlink alias": err(os.unlink, m.p("alias")),
        "rename alias away": err(os.rename, m.p("alias"), m.p("alias2")),
        "rmdir graft": err(os.rmdir, m.p("graft")),
        "rmdir graft of an empty dir": err(os.rmdir, m.p("eg")),
        "rename graft away": err(os.rename, m.p("graft"), m.p("graft2")),
        "unlink d/m": err(os.unlink, m.p("d", "m")),
        "rename d/m away": err(os.rename, m.p("d", "m"), m.p("d", "m2")),
        "rename d (holds d/m)": err(os.rename, m.p("d"), m.p("d2")),
        "rmdir e (holds only e/m)": err(os.rmdir, m.p("e")),
        "rename e (holds e/m)": err(os.rename, m.p("e"), m.p("e2")),
        "rmdir virt": err(os.rmdir, m.p("virt")),
        "rename virt away": err(os.rename, m.p("virt"), m.p("virt2")),
        "unlink virt/deep/file": err(os.unlink, m.p("virt", "deep", "file")),
    }
    assert got == dict.fromkeys(got, "EBUSY"), {k: v for k, v in got.items() if v != "EBUSY"}
    assert read_file(m.s("a")) == "A\n"
    assert os.path.isdir(m.empty) and os.path.isdir(m.s("d")) and os.path.isdir(m.s("e"))
    assert ls(m.mnt) == ["a", "alias", "b.txt", "d", "e", "eg", "extf", "graft", "h", "keep",
                         "secret", "virt"]


def test_rename_onto_a_mapped_file_replaces_its_target(busy):
    m = busy
    write_file(m.p("newfile"), "replacement\n")
    os.rename(m.p("newfile"), m.p("alias"))
    assert read_file(m.s("a")) == "replacement\n"
    assert not os.path.exists(m.s("newfile"))
    assert read_file(m.p("alias")) == "replacement\n"
    assert read_file(m.p("a")) == "replacement\n"
    assert "newfile" not in os.listdir(m.mnt)
    # an absolute target outside the source, on the same filesystem
    write_file(m.p("nf2"), "into ext\n")
    os.rename(m.p("nf2"), m.p("extf"))
    assert read_file(os.path.join(m.ext, "e1")) == "into ext\n"
    assert read_file(m.p("extf")) == "into ext\n"
    assert not os.path.exists(m.s("nf2"))


def test_rename_across_filesystems_is_exdev(workdir, mounter, shm_dir):
    write_file(os.path.join(shm_dir, "f"), "on tmpfs\n")
    mkdirs(os.path.join(shm_dir, "dir"))
    write_file(os.path.join(shm_dir, "dir", "g"), "g\n")
    table = {"/shmf": {"target": os.path.join(shm_dir, "f")},
             "/shm": {"target": os.path.join(shm_dir, "dir")}}
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    # sanity: natively the same renames are EXDEV
    assert err(os.rename, m.s("a"), os.path.join(shm_dir, "f")) == "EXDEV"
    write_file(m.p("nf"), "n\n")
    got = {
        "onto a mapped file": err(os.rename, m.p("nf"), m.p("shmf")),
        "into a graft": err(os.rename, m.p("nf"), m.p("shm", "nf")),
        "out of a graft": err(os.rename, m.p("shm", "g"), m.p("g")),
    }
    assert got == dict.fromkeys(got, "EXDEV"), got
    assert read_file(os.path.join(shm_dir, "f")) == "on tmpfs\n"
    assert read_file(m.s("nf")) == "n\n"
    assert read_file(os.path.join(shm_dir, "dir", "g")) == "g\n"


# --------------------------------------------------------------------------
# every operation goes through the mapping

@pytest.fixture
def grafted(workdir, mounter):
    ext, _ = outside(workdir)
    table = {"/graft": {"target": ext}, "/alias": {"target": "a"},
             "/g1": {"target": ext}, "/g2": {"target": ext}}
    m = make_mapped(workdir, mounter, table, populate=populate_src)
    m.ext = ext
    return m


def test_operations_reach_the_target(grafted):
    m = grafted
    x = lambda *a: os.path.join(m.ext, *a)  # noqa: E731
    g = lambda *a: m.p("graft", *a)  # noqa: E731
    src_before = sorted(os.listdir(m.src))
    # write
    with open(g("e1"), "r+") as f:
        f.write("EXT")
    assert read_file(x("e1")) == "EXT1\n"
    assert os.stat(g("e1")).st_size == os.stat(x("e1")).st_size
    # create, mkdir, symlink, hard link
    write_file(g("new"), "new\n")
    assert read_file(x("new")) == "new\n"
    os.mkdir(g("nd"))
    assert os.path.isdir(x("nd"))
    write_file(g("nd", "inner"), "i")
    assert read_file(x("nd", "inner")) == "i"
    os.symlink("e1", g("sl"))
    assert os.readlink(x("sl")) == "e1" and os.readlink(g("sl")) == "e1"
    assert read_file(g("sl")) == "EXT1\n"
    os.link(g("e1"), g("hl"))
    assert os.stat(x("hl")).st_ino == os.stat(x("e1")).st_ino
    # rename within the graft, then out of it into the source
    os.rename(g("hl"), g("hl2"))
    assert os.path.exists(x("hl2")) and not os.path.exists(x("hl"))
    os.rename(g("hl2"), m.p("top"))
    assert os.stat(m.s("top")).st_ino == os.stat(x("e1")).st_ino
    assert not os.path.exists(x("hl2"))
    # unlink
    os.unlink(g("new"))
    assert not os.path.exists(x("new"))
    # attributes and xattrs
    os.chmod(g("e1"), 0o600)
    assert stat.S_IMODE(os.stat(x("e1")).st_mode) == 0o600
    os.utime(g("e1"), (1000000000, 1000000000))
    assert os.stat(x("e1")).st_mtime == 1000000000
    os.setxattr(g("e1"), "user.k", b"v1")
    assert os.getxattr(x("e1"), "user.k") == b"v1"
    assert "user.k" in os.listxattr(g("e1"))
    os.setxattr(x("e1"), "user.k2", b"v2")
    assert os.getxattr(g("e1"), "user.k2") == b"v2"
    os.removexattr(g("e1"), "user.k")
    assert "user.k" not in os.listxattr(x("e1"))
    # an exact mapped file
    os.truncate(m.p("alias"), 1)
    assert read_file(m.s("a")) == "A"
    os.setxattr(m.p("alias"), "user.a", b"on a")
    assert os.getxattr(m.s("a"), "user.a") == b"on a"
    with open(m.p("alias"), "a") as f:
        f.write("ppended")
    assert read_file(m.s("a")) == "Appended"
    assert sorted(os.listdir(m.src)) == sorted(src_before + ["top"]), \
        "something other than the rename landed in the source"
    assert ls(g()) == ls(x())


def test_create_through_one_graft_is_seen_through_another(grafted):
    """Two grafts of one directory are two names of it: a name created
    through one is seen through the other at once, although the other had
    a (negative) lookup of it cached."""
    m = grafted
    assert err(os.stat, m.p("g2", "later")) == "ENOENT"
    write_file(m.p("g1", "later"), "hello\n")
    assert err(os.stat, m.p("g2", "later")) == "ok", \
        "created through /g1, /g2/later still does not exist"
    assert read_file(m.p("g2", "later")) == "hello\n"
    assert "later" in os.listdir(m.p("g2"))


def test_unlink_through_one_graft_is_seen_through_another(grafted):
    m = grafted
    write_file(os.path.join(m.ext, "doomed"), "d\n")
    assert os.stat(m.p("g2", "doomed")).st_size == 2
    os.unlink(m.p("g1", "doomed"))
    assert "doomed" not in os.listdir(m.p("g2"))
    assert err(os.stat, m.p("g2", "doomed")) == "ENOENT"


def test_write_through_one_graft_is_seen_through_another(grafted):
    m = grafted
    assert read_file(m.p("g2", "e1")) == "ext1\n"
    assert os.stat(m.p("g2", "e1")).st_size == 5
    with open(m.p("g1", "e1"), "w") as f:
        f.write("rewritten through g1\n")
    assert os.stat(m.p("g2", "e1")).st_size == len("rewritten through g1\n")
    assert read_file(m.p("g2", "e1")) == "rewritten through g1\n"


def test_write_through_a_mapped_name_is_seen_through_the_real_one(grafted):
    """/alias -> a: a write through /alias is seen through /a at once
    (size and data), like a write through a hard link."""
    m = grafted
    assert read_file(m.p("a")) == "A\n"
    assert os.stat(m.p("a")).st_size == 2
    with open(m.p("alias"), "w") as f:
        f.write("through the alias\n")
    assert read_file(m.s("a")) == "through the alias\n", "sanity: the target was written"
    assert os.stat(m.p("a")).st_size == len("through the alias\n"), "stale size through /a"
    assert read_file(m.p("a")) == "through the alias\n", "stale data through /a"


# --------------------------------------------------------------------------
# the key "/"

def test_root_key_grafts_the_whole_view(workdir, mounter):
    """"/" is a valid key: with a target the whole view is that tree; keys
    beneath it still apply, and relative targets still name the source."""
    ext, _ = outside(workdir)
    m = make_mapped(workdir, mounter, {"/": {"target": ext}, "/kk": {"target": "keep"},
                                       "/hid": {}}, populate=populate_src)
    assert ls(m.mnt) == ["e1", "kk", "sub"]
    assert read_file(m.p("e1")) == "ext1\n"
    assert ls(m.p("kk")) == ["k"]
    write_file(m.p("made"), "m")
    assert read_file(os.path.join(ext, "made")) == "m"
    assert not os.path.exists(m.s("made"))


def test_root_key_readonly_makes_everything_readonly(workdir, mounter):
    m = make_mapped(workdir, mounter, {"/": {"target": os.path.join(workdir, "src"),
                                             "readonly": True}},
                    populate=populate_src)
    got = {
        "create": err(os.open, m.p("new"), os.O_CREAT | os.O_WRONLY, 0o644),
        "mkdir": err(os.mkdir, m.p("d", "nd")),
        "write": err(os.open, m.p("a"), os.O_WRONLY),
        "unlink": err(os.unlink, m.p("d", "x")),
        "rename": err(os.rename, m.p("keep", "k"), m.p("keep", "k2")),
        "chmod root": err(os.chmod, m.mnt, 0o700),
    }
    assert got == dict.fromkeys(got, "EROFS"), got
    assert read_file(m.p("a")) == "A\n"
    assert ls(m.mnt) == ["a", "b.txt", "d", "e", "h", "keep", "secret"]
