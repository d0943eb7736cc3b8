"""A cached mount (--mirror) composed with a mapping table (--map) and with
the operation log (--log): each does on a cached mount what it does on a
plain one, and every change made through the view — through a graft, under
a remapped root, logged or not — reaches the mirror at the mapped place.
Outcomes are checked on the view, on the mirror after `prismfs sync` and
after unmount, and in the log."""
import errno
import json
import os
import stat
import time

import pytest

from parity import snapshot
from prism_helpers import arg_int, arg_mode, cli, wait_for
from test_oplog import _read_checked_log, _walk_sequence
from test_tree_random import populate_plain, run_sequence


def cached(mounter, mirror, mnt, *args):
    # Mount's argv is `mount -f ARGS SOURCE MNT`: --mirror takes SOURCE's place.
    return mounter(mirror, mnt, *args, "--mirror")


def sync(mnt):
    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 0, "prismfs sync failed: %s" % res.stderr
    return res


def write(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


def read(path):
    with open(path) as f:
        return f.read()


def files(root):
    """path -> content of every regular file below root."""
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                out[os.path.relpath(p, root)] = read(p)
    return out


def write_map(path, table):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        json.dump(table, f)
    os.rename(tmp, path)  # the daemon sees the table replaced whole


@pytest.fixture
def tree(workdir):
    mirror, mnt, outside = (os.path.join(workdir, n) for n in ("mirror", "mnt", "outside"))
    for d in (mirror, mnt, outside):
        os.makedirs(d)
    os.makedirs(os.path.join(mirror, "app/conf"))
    os.makedirs(os.path.join(mirror, "data/2026/11/raw"))
    os.makedirs(os.path.join(mirror, "secret"))
    write(os.path.join(mirror, "app/readme"), "app readme\n")
    write(os.path.join(mirror, "app/conf/main.cfg"), "cfg\n")
    write(os.path.join(mirror, "data/2026/11/raw/a.csv"), "1,2,3\n")
    write(os.path.join(mirror, "secret/key"), "do not show\n")
    write(os.path.join(outside, "prod.json"), '{"prod": true}\n')
    return mirror, mnt, outside


def test_map_on_a_cached_mount(tree, mounter, workdir):
    mirror, mnt, outside = tree
    table = os.path.join(workdir, "map.json")
    write_map(table, {
        "/data": {"target": "data/2026/11"},          # a graft into directories not loaded yet
        "/cfg": {"target": "app/conf/main.cfg", "mode": "0640"},
        "/docs": {"target": "app", "readonly": True},
        "/secret": {},
        "/etc/prod.json": {"target": os.path.join(outside, "prod.json")},
    })
    cached(mounter, mirror, mnt, "--map", table)
    v = lambda *a: os.path.join(mnt, *a)  # noqa: E731

    assert sorted(os.listdir(mnt)) == ["app", "cfg", "data", "docs", "etc"]
    assert os.listdir(v("data")) == ["raw"]
    assert read(v("data/raw/a.csv")) == "1,2,3\n"
    assert read(v("cfg")) == "cfg\n"
    assert stat.S_IMODE(os.stat(v("cfg")).st_mode) == 0o640
    assert read(v("docs/readme")) == "app readme\n"
    assert read(v("etc/prod.json")) == '{"prod": true}\n'
    with pytest.raises(FileNotFoundError):
        os.stat(v("secret"))
    with pytest.raises(FileNotFoundError):
        os.stat(v("secret/key"))
    for fn in (lambda: write(v("docs/readme"), "x\n", "a"),
               lambda: os.mkdir(v("docs/new")),
               lambda: os.rename(v("docs/readme"), v("app/moved"))):
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EROFS
    with pytest.raises(OSError) as ei:
        os.rmdir(v("data"))
    assert ei.value.errno == errno.EBUSY

    # Changes through the grafts land at the targets, on the mirror.
    write(v("data/raw/b.csv"), "4,5,6\n")
    os.mkdir(v("data/clean"))
    os.rename(v("data/raw/a.csv"), v("data/clean/a.csv"))
    write(v("cfg"), "cfg, edited\n")
    os.setxattr(v("data/clean/a.csv"), "user.state", b"clean")
    write(v("etc/prod.json"), '{"prod": false}\n')  # outside the mirror: in place
    sync(mnt)
    assert files(os.path.join(mirror, "data/2026/11")) == {
        "raw/b.csv": "4,5,6\n", "clean/a.csv": "1,2,3\n"}
    assert os.getxattr(os.path.join(mirror, "data/2026/11/clean/a.csv"),
                       "user.state") == b"clean"
    assert read(os.path.join(mirror, "app/conf/main.cfg")) == "cfg, edited\n"
    assert read(os.path.join(mirror, "secret/key")) == "do not show\n"
    assert read(os.path.join(outside, "prod.json")) == '{"prod": false}\n'
    assert not os.path.exists(os.path.join(mirror, "data/raw"))
    assert not os.path.exists(os.path.join(mirror, "etc"))

    # A live update: a new graft deeper into the mirror, the old ones gone.
    write_map(table, {"/raw": {"target": "data/2026/11/raw"}, "/app": {}})
    wait_for(lambda: sorted(os.listdir(mnt)) == ["data", "raw", "secret"],
             timeout=10)
    assert sorted(os.listdir(v("raw"))) == ["b.csv"]
    write(v("raw/c.csv"), "7\n")
    os.unlink(v("raw/b.csv"))
    assert read(v("secret/key")) == "do not show\n"
    sync(mnt)
    assert files(os.path.join(mirror, "data/2026/11/raw")) == {"c.csv": "7\n"}
    assert files(os.path.join(mirror, "app")) == {"readme": "app readme\n",
                                                  "conf/main.cfg": "cfg, edited\n"}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_op_log_on_a_cached_mount(workdir, mounter, fmt):
    """The log names every operation on a cached mount as on a plain one
    (virtual paths, arguments, results), and what it records is what
    reaches the mirror."""
    mirror, mnt = (os.path.join(workdir, n) for n in ("mirror", "mnt"))
    os.makedirs(mirror)
    os.makedirs(mnt)
    write(os.path.join(mirror, "r.txt"), "r" * 3000)
    logpath = os.path.join(workdir, "op.log")
    t0 = time.time()
    # Data records exist only on the daemon data path.
    m = cached(mounter, mirror, mnt, "--passthrough", "off", "--log", logpath,
               "--log-format", fmt)
    p = lambda *a: os.path.join(mnt, *a)  # noqa: E731
    old = os.umask(0o022)
    try:
        os.mkdir(p("d"), 0o755)
        fd = os.open(p("d", "f"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        assert os.write(fd, b"a" * 100) == 100
        os.fsync(fd)  # on the mirror when it returns
        assert read(os.path.join(mirror, "d", "f")) == "a" * 100
        assert os.pwrite(fd, b"b" * 50, 4096) == 50
        os.close(fd)
        assert read(p("r.txt"))[:1000] == "r" * 1000
        os.rename(p("d", "f"), p("d", "g"))
        with pytest.raises(FileNotFoundError):
            os.unlink(p("d", "missing"))
        os.setxattr(p("d", "g"), "user.prism", b"val")
        os.chmod(p("d", "g"), 0o600)
    finally:
        os.umask(old)
    assert m.stop() == 0, "the daemon exited %r: %s" % (m.returncode, m.stderr())
    m.check_clean_exit()
    t1 = time.time()

    # The mirror after unmount: everything the log shows.
    g = os.path.join(mirror, "d", "g")
    assert sorted(os.listdir(os.path.join(mirror, "d"))) == ["g"]
    with open(g, "rb") as f:
        assert f.read() == b"a" * 100 + bytes(4096 - 100) + b"b" * 50
    assert stat.S_IMODE(os.stat(g).st_mode) == 0o600
    assert os.getxattr(g, "user.prism") == b"val"

    _, log = _read_checked_log(logpath, fmt, mirror, mnt, t0, t1)
    _walk_sequence(log, [
        ("mkdir /d with mode=0755 and result 0", "mkdir", "/d",
         lambda r: arg_mode(r["args"]["mode"]) == 0o755 and r["result"] == 0),
        ("create /d/f with mode 0644", "create", "/d/f",
         lambda r: arg_mode(r["args"]["mode"]) == 0o644 and r["result"] >= 0),
        ("write /d/f size=100 offset=0 = 100", "write", "/d/f",
         lambda r: arg_int(r["args"]["size"]) == 100 and r["result"] == 100),
        ("fsync /d/f = 0", "fsync", "/d/f", lambda r: r["result"] == 0),
        ("write /d/f size=50 offset=4096 = 50", "write", "/d/f",
         lambda r: arg_int(r["args"]["offset"]) == 4096 and r["result"] == 50),
        ("read /r.txt from offset 0", "read", "/r.txt",
         lambda r: arg_int(r["args"]["offset"]) == 0 and r["result"] >= 1000),
        ("rename /d/f to=/d/g = 0", "rename", "/d/f",
         lambda r: r["path2"] == "/d/g" and r["result"] == 0),
        ("lookup (or unlink) of /d/missing = -ENOENT", ("lookup", "unlink"), "/d/missing",
         lambda r: r["errno"] == "ENOENT"),
        ("setxattr /d/g = 0", "setxattr", "/d/g", lambda r: r["result"] == 0),
        ("setattr /d/g with mode 0600 = 0", "setattr", "/d/g",
         lambda r: arg_mode(r["args"]["mode"]) == 0o600 and r["result"] == 0),
    ])
    assert log.end["dropped"] == 0


@pytest.mark.parametrize("seed", (11, 13))
def test_random_tree_under_a_remapped_root_with_the_log(workdir, mounter, seed):
    """The randomized tree sequence (renames of files and directories, hard
    links, symlinks, xattrs, chmod, truncates...) on a cached mount whose
    root is a subdirectory of the mirror (--map with the key "/"), logged:
    the view answers as a native directory does, and the mirror's
    subdirectory ends up equal to that directory."""
    mirror, mnt, native = (os.path.join(workdir, n) for n in ("mirror", "mnt", "native"))
    for d in (mirror, mnt, native):
        os.makedirs(d)
    sub = os.path.join(mirror, "projects", "p1")
    os.makedirs(sub)
    write(os.path.join(mirror, "beside"), "untouched\n")
    populate_plain(sub)
    populate_plain(native)
    table = os.path.join(workdir, "map.json")
    write_map(table, {"/": {"target": "projects/p1"}})
    logpath = os.path.join(workdir, "op.log")
    m = cached(mounter, mirror, mnt, "--map", table, "--log", logpath)

    run_sequence(seed, mnt, native)
    sync(mnt)
    want = snapshot(native, xattrs=True)
    assert snapshot(sub, xattrs=True) == want
    assert m.stop() == 0, m.stderr()
    m.check_clean_exit()
    assert snapshot(sub, xattrs=True) == want
    assert sorted(os.listdir(mirror)) == ["beside", "projects"]
    assert read(os.path.join(mirror, "beside")) == "untouched\n"
    with open(logpath) as f:
        text = f.read()
    assert "rename" in text and "# prismfs op log end: records=" in text
    assert "dropped=0" in text.rsplit("\n", 2)[-2]


def test_changes_in_a_graft_outside_the_mirror_stay_there(tree, mounter, workdir):
    """A graft of a directory outside the mirror shows that directory as it
    is: changes made there are made there at once and are no business of
    the write-back, which goes on writing the cache's own changes."""
    mirror, mnt, outside = tree
    table = os.path.join(workdir, "map.json")
    write_map(table, {"/ext": {"target": outside}})
    m = cached(mounter, mirror, mnt, "--map", table)
    v = lambda *a: os.path.join(mnt, *a)  # noqa: E731

    write(v("ext/new"), "new\n")
    os.mkdir(v("ext/dir"))
    os.rename(v("ext/new"), v("ext/dir/new"))
    os.chmod(v("ext/dir/new"), 0o600)
    os.setxattr(v("ext/dir/new"), "user.k", b"v")
    os.link(v("ext/dir/new"), v("ext/hard"))
    os.unlink(v("ext/prod.json"))
    os.symlink("dir/new", v("ext/sym"))
    write(v("app/inside"), "inside\n")
    sync(mnt)  # nothing of the graft is pending, nothing fails

    assert sorted(os.listdir(outside)) == ["dir", "hard", "sym"]
    assert read(os.path.join(outside, "dir/new")) == "new\n"
    assert stat.S_IMODE(os.stat(os.path.join(outside, "dir/new")).st_mode) == 0o600
    assert os.getxattr(os.path.join(outside, "dir/new"), "user.k") == b"v"
    assert os.stat(os.path.join(outside, "hard")).st_nlink == 2
    assert read(os.path.join(mirror, "app/inside")) == "inside\n"
    assert sorted(os.listdir(mirror)) == ["app", "data", "secret"]
    st = cli("status", "--json", mnt)
    cache = json.loads(st.stdout)["cache"]
    assert cache["pending_ops"] == 0 and cache["last_error"] is None, cache
    assert m.stop() == 0
    assert "prismfs: cache:" not in m.stderr(), m.stderr()  # no false alarm either
