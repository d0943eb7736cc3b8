"""History (issue 17 item 8): prismfs export MNT SNAPSHOT writes the tree
as it was at SNAPSHOT as a tar stream. The test records the tree (content,
mode, symlink target, mtime) when it takes the snapshot, changes the live
tree in every way the journal knows, then untars the export with tar(1)
and compares with the record, not with the live tree."""
import os
import shutil
import stat
import subprocess

from prism_helpers import assert_one_error_line, cli


def record(root):
    """{rel: (kind, mode, content or target, mtime_ns)} of a tree."""
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("l", None, os.readlink(p), st.st_mtime_ns)
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("d", stat.S_IMODE(st.st_mode), None, None)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("f", stat.S_IMODE(st.st_mode), f.read(), st.st_mtime_ns)
    return out


def write(p, data, mtime=None):
    with open(p, "wb") as f:
        f.write(data)
    if mtime:
        os.utime(p, ns=(mtime, mtime))


def untar(tarfile, dest):
    os.makedirs(dest)
    r = subprocess.run(["tar", "-x", "-p", "-f", tarfile, "-C", dest], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return record(dest)


def same(got, want):
    """tar(1) keeps mtimes to the second in ustar, to the ns in pax: compare
    what pax carries; directories' mtimes change with their entries."""
    assert sorted(got) == sorted(want), (sorted(set(got) ^ set(want)))
    for k, w in want.items():
        g = got[k]
        assert g[:3] == w[:3], (k, g, w)
        if w[0] in "fl":
            assert g[3] == w[3], (k, g[3], w[3])


def test_export_writes_the_tree_as_it_was_at_the_snapshot(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    mounter(src, mnt, "--history", hdir)
    p = lambda *x: os.path.join(mnt, *x)
    os.makedirs(p("dir", "sub"))
    write(p("dir", "a"), b"alpha", 1_500_000_000_123_456_789)
    write(p("dir", "sub", "b"), b"beta" * 1000, 1_500_000_001_000_000_000)
    write(p("keep"), b"unchanged", 1_400_000_000_000_000_000)
    write(p("gone"), b"to be removed")
    write(p("mod"), b"to be chmod'ed")
    os.chmod(p("mod"), 0o640)
    write(p("moved"), b"to be renamed")
    os.symlink("dir/a", p("link"))
    os.symlink("keep", p("link2"))
    os.mkdir(p("emptydir"))
    write(p("dir", "sub", "c"), b"changed after its directory moved", 1_300_000_000_000_000_000)
    write(p("dir", "sub", "d"), b"removed after its directory moved")
    os.chmod(p("dir", "sub", "d"), 0o604)
    write(p("over"), b"replaced by a rename")
    at_s1 = record(src)
    r = cli("snapshot", mnt, "--name", "s1")
    assert r.returncode == 0, r.stderr
    # every kind of change after it
    write(p("dir", "a"), b"changed")
    with open(p("dir", "sub", "b"), "ab") as f:
        f.write(b"more")
    os.unlink(p("gone"))
    os.chmod(p("mod"), 0o600)
    os.rename(p("moved"), p("renamed"))
    os.unlink(p("link"))
    write(p("new"), b"made after")
    os.symlink("new", p("newlink"))
    os.rmdir(p("emptydir"))
    os.utime(p("link2"), ns=(1, 1), follow_symlinks=False)
    os.rename(p("dir", "sub"), p("dir", "sub2"))  # b (changed before) moves with it
    write(p("dir", "sub2", "c"), b"new data")  # first changed beneath the moved directory
    os.unlink(p("dir", "sub2", "d"))
    write(p("other"), b"renamed over another")
    os.rename(p("other"), p("over"))
    assert record(src) != at_s1
    out = os.path.join(workdir, "s1.tar")
    r = cli("export", mnt, "s1", "-o", out)
    assert r.returncode == 0, r.stderr
    same(untar(out, os.path.join(workdir, "x1")), at_s1)
    # and to stdout, the same stream
    r = subprocess.run("%s export %s s1 > %s" % (os.environ.get("PRISMFS_BIN", "prismfs"),
                                                 mnt, out + "2"),
                       shell=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    same(untar(out + "2", os.path.join(workdir, "x2")), at_s1)
    # A second snapshot: its export is the tree then, the first's unchanged.
    at_s2 = record(src)
    assert cli("snapshot", mnt, "--name", "s2").returncode == 0
    write(p("keep"), b"now changed")
    os.unlink(p("renamed"))
    r = cli("export", mnt, "s2", "-o", out)
    assert r.returncode == 0, r.stderr
    same(untar(out, os.path.join(workdir, "x3")), at_s2)
    r = cli("export", mnt, "s1", "-o", out)
    assert r.returncode == 0, r.stderr
    same(untar(out, os.path.join(workdir, "x4")), at_s1)
    shutil.rmtree(os.path.join(workdir, "x1"))


def test_export_refusals(workdir, trees, mounter):
    src, mnt = trees
    hdir = os.path.join(workdir, "hist")
    mounter(src, mnt, "--history", hdir)
    out = os.path.join(workdir, "none.tar")
    r = cli("export", mnt, "nosuch", "-o", out)
    assert_one_error_line(r, "nosuch")
    assert r.returncode == 1 and not os.path.exists(out)
    r = cli("export", mnt)
    assert_one_error_line(r, "SNAPSHOT")
    assert r.returncode == 2
    r = cli("export", mnt, "s", "--bogus")
    assert_one_error_line(r, "--bogus")
    assert r.returncode == 2
