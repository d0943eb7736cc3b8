"""History on a memory-cached mount (issue 17): prismfs mount --history DIR
--journal J --mirror MIRROR MNT. The history wraps the cache: the journal
records the view's changes, snapshots save previous versions read through
the cache (a file never read since the mount is loaded from the mirror
first), .history/SNAP/... shows the tree at a snapshot, restore puts it
back through the mount, and the mirror gets all of it by write-back.

Real mounts, real system calls; the mirror is read directly after
`prismfs sync` and a clean unmount. The daemon is killed with SIGKILL in a
workload: every entry the cache's tree then holds has its row, the next
mount (which replays the cache's journal) leaves no row unsettled, and
every entry the mirror then holds has its row too."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import Mount
from davservers import dav_server
from prism_helpers import assert_one_error_line, cli, history_rows, status_json, wait_for
from test_cache_crash import tree_mounted, unmount_tree
from test_cache_remote import give_to_server, server_tree


def read(p, mode="r"):
    with open(p, mode) as f:
        return f.read()


def write(p, data, mode="w"):
    with open(p, mode) as f:
        f.write(data)


def tree(root, skip=(".history",)):
    """path -> ("dir", mode) / ("file", mode, bytes) / ("link", target)."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(n for n in dirs if n not in skip and n != ".DAV")
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode & 0o7777)
            else:
                out[rel] = ("file", st.st_mode & 0o7777, read(p, "rb"))
    return out


def sync(mnt):
    r = cli("sync", mnt, timeout=300)
    assert r.returncode == 0, r.stderr


def rows(hdir, sql, *params):
    return history_rows(hdir, sql, *params)


@pytest.fixture
def hc(workdir):
    """A local mirror (with a tree of its own), a mount point, a history
    DIR and a cache journal; mounts made by d["start"](*args)."""
    d = {k: os.path.join(workdir, k) for k in ("mirror", "mnt", "hist", "journal")}
    os.makedirs(d["mirror"])
    os.makedirs(d["mnt"])
    m = d["mirror"]
    os.makedirs(os.path.join(m, "dir/sub"))
    write(os.path.join(m, "a"), "alpha v1")
    write(os.path.join(m, "dir/b"), "beta v1")
    write(os.path.join(m, "dir/sub/c"), "gamma v1")
    os.chmod(os.path.join(m, "dir/b"), 0o640)
    mounts = []

    def start(*args, env=None):
        mt = Mount(d["mirror"], d["mnt"], ["--history", d["hist"], "--journal", d["journal"],
                                           "--write-back", "0", *args, "--mirror"], env=env)
        mounts.append(mt)
        return mt.start()

    d["start"] = start
    try:
        yield d
    finally:
        for mt in mounts:
            mt.cleanup()
        unmount_tree(d["journal"])
    for mt in mounts:
        if mt.returncode is not None and mt.returncode != -signal.SIGKILL:
            mt.check_clean_exit()


def test_without_the_cache_s_journal_it_is_refused_in_one_line(hc):
    mnt = hc["mnt"]
    r = cli("mount", "--history", hc["hist"], "--mirror", hc["mirror"], mnt)
    assert_one_error_line(r, "history without the cache's journal")
    assert "--journal" in r.stderr
    assert not os.path.exists(hc["hist"])
    assert not os.path.ismount(mnt)


def test_changes_are_journaled_with_paths_of_the_view(hc):
    m = hc["start"]()
    mnt, hdir = hc["mnt"], hc["hist"]
    write(os.path.join(mnt, "dir/new"), "made")
    os.mkdir(os.path.join(mnt, "dir/sub/deep"))
    os.rename(os.path.join(mnt, "dir/b"), os.path.join(mnt, "dir/sub/deep/b2"))
    os.chmod(os.path.join(mnt, "a"), 0o600)
    os.unlink(os.path.join(mnt, "dir/sub/c"))
    got = [(k, p, p2) for k, p, p2, s in
           rows(hdir, "SELECT kind, path, path2, state FROM changes ORDER BY seq")
           if k != "write"]
    assert got == [("create", "dir/new", None), ("mkdir", "dir/sub/deep", None),
                   ("rename", "dir/b", "dir/sub/deep/b2"), ("chmod", "a", None),
                   ("unlink", "dir/sub/c", None)], got
    r = cli("log", mnt)
    assert r.returncode == 0 and "dir/sub/deep/b2" in r.stdout, r.stdout + r.stderr
    st = status_json(mnt)  # both stores report
    assert st["history"]["dir"] == os.path.realpath(hdir), st
    assert st["cache"]["mirror"] == os.path.realpath(hc["mirror"]), st
    sync(mnt)
    assert read(os.path.join(hc["mirror"], "dir/sub/deep/b2")) == "beta v1"
    assert not os.path.exists(os.path.join(hc["mirror"], "dir/sub/c"))
    m.stop()
    m.check_clean_exit()


def test_snapshot_browse_restore_and_the_mirror_converges(hc):
    m = hc["start"]()
    mnt, mirror = hc["mnt"], hc["mirror"]
    # Nothing read yet: the cache holds stubs. The snapshot's tree is the
    # mirror's as the view shows it.
    before = tree(mirror)
    r = cli("snapshot", mnt, "--name", "s1")
    assert r.returncode == 0, r.stderr
    # Changes after the snapshot, each first change of a file never read
    # through the mount (its previous version comes from the mirror).
    write(os.path.join(mnt, "a"), "alpha v2 longer")
    write(os.path.join(mnt, "dir/sub/c"), "+more", "a")
    os.chmod(os.path.join(mnt, "dir/b"), 0o600)
    os.rename(os.path.join(mnt, "dir/sub"), os.path.join(mnt, "moved"))
    os.unlink(os.path.join(mnt, "dir/b"))
    write(os.path.join(mnt, "fresh"), "new since s1")
    assert tree(os.path.join(mnt, ".history/s1")) == before
    # diff and export (in the client, through the mount) see the same
    r = cli("diff", mnt, "s1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["M\ta", "-\tdir/b", "R\tdir/sub -> moved",
                                     "+\tfresh", "M\tmoved/c"], r.stdout
    out = os.path.join(hc["mnt"], "..", "s1.tar")
    x = os.path.join(hc["mnt"], "..", "x")
    os.makedirs(x)
    assert cli("export", mnt, "s1", "-o", out).returncode == 0
    subprocess.run(["tar", "-C", x, "-xf", out], check=True)
    assert tree(x) == before
    # versions lists what a was at s1
    r = cli("versions", mnt, "a")
    assert r.returncode == 0 and "s1" in r.stdout and "size=8" in r.stdout, r.stdout + r.stderr
    # Restore everything: the live tree is s1's again, and so is the
    # mirror once written back.
    r = cli("restore", mnt, "s1", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(mnt) == before
    sync(mnt)
    assert tree(mirror) == before
    # s1 still reads the same after the restore; the restore took a
    # snapshot of what was there before it, which shows the changes.
    assert tree(os.path.join(mnt, ".history/s1")) == before
    snaps = [n for (n,) in rows(hc["hist"], "SELECT name FROM snapshots ORDER BY id")]
    pre = [n for n in snaps if n.startswith("before-restore")]
    assert len(pre) == 1, snaps
    assert read(os.path.join(mnt, ".history", pre[0], "fresh")) == "new since s1"
    assert read(os.path.join(mnt, ".history", pre[0], "moved/c")) == "gamma v1+more"
    m.stop()
    m.check_clean_exit()
    assert tree(mirror) == before
    # After a remount (a new, empty cache) the snapshots read the same.
    m = hc["start"]()
    assert tree(os.path.join(mnt, ".history/s1")) == before
    m.stop()
    m.check_clean_exit()


def test_restore_of_one_path_reaches_the_mirror(hc):
    m = hc["start"]()
    mnt, mirror = hc["mnt"], hc["mirror"]
    cli("snapshot", mnt, "--name", "s1")
    write(os.path.join(mnt, "dir/b"), "beta v2")
    write(os.path.join(mnt, "a"), "alpha v2")
    r = cli("restore", mnt, "s1", "dir/b")
    assert r.returncode == 0, r.stdout + r.stderr
    assert read(os.path.join(mnt, "dir/b")) == "beta v1"
    assert os.stat(os.path.join(mnt, "dir/b")).st_mode & 0o777 == 0o640
    assert read(os.path.join(mnt, "a")) == "alpha v2"  # not asked for
    sync(mnt)
    assert read(os.path.join(mirror, "dir/b")) == "beta v1"
    assert os.stat(os.path.join(mirror, "dir/b")).st_mode & 0o777 == 0o640
    assert read(os.path.join(mirror, "a")) == "alpha v2"
    m.stop()
    m.check_clean_exit()


FILE = 256 * 1024
COUNT = 48  # 12 MiB of files through an 4 MiB cache


def content(i, gen):
    block = (b"%04d:%d;" % (i, gen)) * 16
    return (block * (FILE // len(block) + 1))[:FILE]


def test_eviction_does_not_break_browse(hc):
    mirror, mnt = hc["mirror"], hc["mnt"]
    os.makedirs(os.path.join(mirror, "big"))
    for i in range(COUNT):
        write(os.path.join(mirror, "big/f%02d" % i), content(i, 1), "wb")
    env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=4"}
    m = hc["start"]("--cache-size", "4M", env=env)
    cli("snapshot", mnt, "--name", "s1")
    # every other file changed (its version saved, loaded from the mirror
    # first), the rest left as they were
    for i in range(0, COUNT, 2):
        write(os.path.join(mnt, "big/f%02d" % i), content(i, 2), "wb")
    sync(mnt)
    # read everything twice over: three times the cache, evicted as it goes
    for _ in range(2):
        for i in range(COUNT):
            read(os.path.join(mnt, "big/f%02d" % i), "rb")
    c = status_json(mnt)["cache"]
    assert c["evictions"] > 0, c
    snap = os.path.join(mnt, ".history/s1/big")
    assert sorted(os.listdir(snap)) == ["f%02d" % i for i in range(COUNT)]
    for i in range(COUNT):
        assert read(os.path.join(snap, "f%02d" % i), "rb") == content(i, 1), i
        assert read(os.path.join(mnt, "big/f%02d" % i), "rb") == content(i, 2 - i % 2), i
    assert status_json(mnt)["cache"]["evictions"] > c["evictions"]
    r = cli("restore", mnt, "s1", "big", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    sync(mnt)
    for i in range(COUNT):
        assert read(os.path.join(mirror, "big/f%02d" % i), "rb") == content(i, 1), i
    m.stop()
    m.check_clean_exit()


WRITER = textwrap.dedent(r"""
    import os, sys
    d = sys.argv[1]
    os.mkdir(d)
    i = 0
    while True:
        try:
            sub = os.path.join(d, "d%d" % (i // 20))
            if i % 20 == 0:
                os.mkdir(sub)
            f = os.path.join(sub, "f%d" % i)
            with open(f, "w") as fh:
                fh.write("x" * (i % 100 + 1))
            if i % 3 == 0:
                os.rename(f, os.path.join(sub, "r%d" % i))
            if i % 7 == 0:
                os.chmod(sub, 0o750)
            if i % 11 == 0 and i and (i - 1) % 3:
                os.unlink(os.path.join(d, "d%d" % ((i - 1) // 20), "f%d" % (i - 1)))
        except OSError:
            break
        i += 1
    """)


def entries(root):
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = [n for n in dirs if n != ".history"]
        for n in dirs + files:
            out.append(os.path.relpath(os.path.join(d, n), root))
    return out


def made_paths(hdir):
    made = set()
    for kind, path, path2 in rows(hdir, "SELECT kind, path, path2 FROM changes"):
        if kind in ("create", "mkdir", "mknod", "symlink"):
            made.add(path)
        elif kind in ("rename", "link"):
            made.add(path2)
    return made


def test_kill_9_leaves_every_change_of_the_tree_and_the_mirror_in_the_journal(hc):
    mnt, mirror, hdir, jdir = hc["mnt"], hc["mirror"], hc["hist"], hc["journal"]
    m = hc["start"]("--write-back", "3600")  # the changes wait in the cache
    cli("snapshot", mnt, "--name", "s1")
    write(os.path.join(mnt, "a"), "alpha v2")  # a saved version, pending
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, os.path.join(mnt, "w%d" % k)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for k in range(3)]
    cachetree = os.path.join(jdir, "tree")
    try:
        assert wait_for(lambda: all(os.path.isdir(os.path.join(cachetree, "w%d" % k)) and
                                    len(entries(os.path.join(cachetree, "w%d" % k))) >= 30
                                    for k in range(3)), timeout=120)
        os.kill(m.pid, signal.SIGKILL)
        for w in writers:
            w.wait(timeout=60)
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
        m.kill()
        for w in writers:
            w.wait()
    assert tree_mounted(jdir)  # the cache's tree outlives its daemon
    present = [p for p in entries(cachetree) if p.startswith("w")]
    assert len(present) >= 90
    made = made_paths(hdir)
    missing = sorted(p for p in present if p not in made)
    assert not missing, "in the cache's tree but not in the journal: %s" % missing
    # The mirror got little or nothing of it yet.
    assert read(os.path.join(mirror, "a")) == "alpha v1"
    # The next mount replays the cache's journal and settles the history's.
    m = hc["start"]()
    assert rows(hdir, "SELECT count(*) FROM changes WHERE state = 0")[0][0] == 0
    sync(mnt)
    m.stop()
    m.check_clean_exit()
    in_mirror = [p for p in entries(mirror) if p.startswith("w")]
    assert sorted(in_mirror) == sorted(present)
    missing = sorted(p for p in in_mirror if p not in made_paths(hdir))
    assert not missing, "in the mirror but not in the journal: %s" % missing
    assert read(os.path.join(mirror, "a")) == "alpha v2"
    # and the snapshot before the kill still reads what was there
    m = hc["start"]()
    assert read(os.path.join(mnt, ".history/s1/a")) == "alpha v1"
    assert not os.path.exists(os.path.join(mnt, ".history/s1/w0"))
    m.stop()
    m.check_clean_exit()


# ----------------------------------------------------------------------
# a remote mirror: WebDAV (Apache mod_dav)

def test_webdav_mirror_snapshot_browse_restore(workdir):
    mnt = os.path.join(workdir, "mnt")
    hdir = os.path.join(workdir, "hist")
    jdir = os.path.join(workdir, "journal")
    os.makedirs(mnt)
    with dav_server("apache") as s:
        os.makedirs(os.path.join(s.root, "dir"))
        write(os.path.join(s.root, "a"), "alpha v1")
        write(os.path.join(s.root, "dir/b"), "beta v1")
        give_to_server(s.root)
        before = server_tree(s.root)
        url = "http://127.0.0.1:%d/" % s.port
        m = Mount(url, mnt, ["--history", hdir, "--journal", jdir, "--write-back", "0",
                             "--mirror"])
        try:
            m.start()
            assert cli("snapshot", mnt, "--name", "s1").returncode == 0
            write(os.path.join(mnt, "a"), "alpha v2")
            os.rename(os.path.join(mnt, "dir"), os.path.join(mnt, "dir2"))
            write(os.path.join(mnt, "new"), "new")
            sync(mnt)
            assert server_tree(s.root)["a"] == ("file", b"alpha v2")
            assert read(os.path.join(mnt, ".history/s1/a")) == "alpha v1"
            assert read(os.path.join(mnt, ".history/s1/dir/b")) == "beta v1"
            assert sorted(os.listdir(os.path.join(mnt, ".history/s1"))) == ["a", "dir"]
            r = cli("restore", mnt, "s1", timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            sync(mnt)
            assert server_tree(s.root) == before
            assert m.stop() == 0
            m.check_clean_exit()
        finally:
            m.cleanup()
            unmount_tree(jdir)


# ----------------------------------------------------------------------
# a remote mirror: S3 (Ceph RGW)

def test_s3_mirror_snapshot_browse_restore(s3server, s3bucket, workdir, mounter):
    from test_cache_remote_s3 import creds
    from test_remote_s3 import get, list_v2
    mnt = os.path.join(workdir, "mnt")
    hdir = os.path.join(workdir, "hist")
    jdir = os.path.join(workdir, "journal")
    os.makedirs(mnt)
    args = ("--history", hdir, "--journal", jdir, "--write-back", "0",
            "--s3-endpoint", s3server.endpoint, "--s3-region", s3server.region, "--mirror")
    try:
        m = mounter("s3://%s/pfx" % s3bucket, mnt, *args, env=creds(s3server))
        os.makedirs(os.path.join(mnt, "dir"))
        write(os.path.join(mnt, "a"), "alpha v1")
        write(os.path.join(mnt, "dir/b"), "beta v1")
        sync(mnt)
        assert cli("snapshot", mnt, "--name", "s1").returncode == 0
        write(os.path.join(mnt, "a"), "alpha v2")
        os.rename(os.path.join(mnt, "dir"), os.path.join(mnt, "dir2"))
        write(os.path.join(mnt, "new"), "new")
        sync(mnt)
        assert get(s3server, s3bucket, "pfx/a") == b"alpha v2"
        assert read(os.path.join(mnt, ".history/s1/a")) == "alpha v1"
        assert read(os.path.join(mnt, ".history/s1/dir/b")) == "beta v1"
        r = cli("restore", mnt, "s1", timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        sync(mnt)
        keys, _, _ = list_v2(s3server, s3bucket, "pfx/")
        assert sorted(k for k, _ in keys) == ["pfx/a", "pfx/dir/", "pfx/dir/b"]
        assert get(s3server, s3bucket, "pfx/a") == b"alpha v1"
        assert get(s3server, s3bucket, "pfx/dir/b") == b"beta v1"
        m.stop()
        m.check_clean_exit()
    finally:
        unmount_tree(jdir)
