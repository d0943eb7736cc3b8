"""readdir/readdirplus: large directories, "." and "..", d_type and d_ino,
entries added and removed during a listing, rewinddir/seekdir/telldir."""
import collections
import errno
import os
import stat

import pytest

import sysx
from parity import err, run_parity, write_file

DT_OF = {stat.S_IFREG: sysx.DT_REG, stat.S_IFDIR: sysx.DT_DIR, stat.S_IFLNK: sysx.DT_LNK,
         stat.S_IFIFO: sysx.DT_FIFO, stat.S_IFSOCK: sysx.DT_SOCK, stat.S_IFCHR: sysx.DT_CHR,
         stat.S_IFBLK: sysx.DT_BLK}

N_LARGE = 5000


def touch(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))


def make_large(d, n=N_LARGE, sized=False):
    """n entries: mostly files, every 97th a directory, every 101st a symlink;
    with sized, every 7th file has i % 300 bytes."""
    os.mkdir(d)
    names = set()
    for i in range(n):
        name = "entry-%05d-%s" % (i, "x" * (i % 40))
        p = os.path.join(d, name)
        if i % 97 == 0:
            os.mkdir(p)
        elif i % 101 == 0:
            os.symlink("target-%d" % i, p)
        elif sized and i % 7 == 0:
            write_file(p, b"y" * (i % 300))
        else:
            touch(p)
        names.add(name)
    return names


def test_large_directory_listing(view):
    """os.listdir returns exactly the set of names (no duplicates, nothing
    missing); the raw readdir stream has every entry exactly once, "." and
    ".." exactly once, d_type equal to the type stat reports and d_ino equal
    to st_ino."""
    d = view.p("big")
    names = make_large(d)
    listed = os.listdir(d)
    assert len(listed) == len(names), "duplicates or missing entries"
    assert set(listed) == names

    ents = sysx.readdir_all(d)
    counts = collections.Counter(n for n, _, _ in ents)
    dups = [n for n, c in counts.items() if c > 1]
    assert not dups, "names returned more than once: %r" % dups[:10]
    assert set(counts) == names | {".", ".."}
    for name, dtype, dino in ents:
        if name in (".", ".."):
            assert dtype in (sysx.DT_DIR, sysx.DT_UNKNOWN), (name, dtype)
            continue
        s = os.lstat(os.path.join(d, name))
        assert dtype == DT_OF[stat.S_IFMT(s.st_mode)], (name, dtype, oct(s.st_mode))
        assert dino == s.st_ino, (name, dino, s.st_ino)


def test_large_directory_readdirplus(view):
    """os.scandir + stat of each entry (what ls -l, find, du do): the
    entry's type, inode and stat equal a separate lstat of the path."""
    d = view.p("big")
    names = make_large(d, sized=True)
    seen = set()
    with os.scandir(d) as it:
        for e in it:
            assert e.name not in seen, "duplicate entry %r" % e.name
            seen.add(e.name)
            s = e.stat(follow_symlinks=False)
            ref = os.lstat(e.path)
            assert e.inode() == ref.st_ino == s.st_ino, e.name
            assert (s.st_mode, s.st_size, s.st_nlink, s.st_uid, s.st_gid) == \
                (ref.st_mode, ref.st_size, ref.st_nlink, ref.st_uid, ref.st_gid), e.name
            assert e.is_dir(follow_symlinks=False) == stat.S_ISDIR(ref.st_mode), e.name
            assert e.is_file(follow_symlinks=False) == stat.S_ISREG(ref.st_mode), e.name
            assert e.is_symlink() == stat.S_ISLNK(ref.st_mode), e.name
            if stat.S_ISREG(ref.st_mode):
                i = int(e.name.split("-")[1])
                assert s.st_size == (i % 300 if i % 7 == 0 else 0), e.name
    assert seen == names


def test_listing_parity_with_native(view):
    def populate(b):
        make_large(b.p("big"), n=600, sized=True)

    def size(e):
        # A cached view's directories are the memory filesystem's, whose
        # directory sizes are its own (parity.stat_summary leaves directory
        # sizes out for that reason); files' sizes are compared always.
        if view.mode == "cached" and e.is_dir(follow_symlinks=False):
            return "dir"
        return e.stat(follow_symlinks=False).st_size

    run_parity(view, [
        populate,
        ("sorted listing", lambda b: sorted(os.listdir(b.p("big")))),
        ("scandir types", lambda b: sorted((e.name, e.is_dir(follow_symlinks=False),
                                            e.is_file(follow_symlinks=False), e.is_symlink(),
                                            size(e))
                                           for e in os.scandir(b.p("big")))),
        ("raw d_types", lambda b: sorted((n, t) for n, t, _ in sysx.readdir_all(b.p("big")))),
    ])


def test_dot_and_dotdot(view):
    os.mkdir(view.p("sub"))
    os.mkdir(view.p("sub", "empty"))
    for d in (view.path, view.p("sub"), view.p("sub", "empty")):
        ents = sysx.readdir_all(d)
        c = collections.Counter(n for n, _, _ in ents)
        assert c["."] == 1 and c[".."] == 1, (d, ents)
        dot = [e for e in ents if e[0] == "."][0]
        assert dot[1] in (sysx.DT_DIR, sysx.DT_UNKNOWN)
        assert dot[2] == os.stat(d).st_ino
        assert "." not in os.listdir(d) and ".." not in os.listdir(d)
    assert os.listdir(view.p("sub", "empty")) == []
    assert [e.name for e in os.scandir(view.p("sub", "empty"))] == []
    assert sorted(n for n, _, _ in sysx.readdir_all(view.p("sub", "empty"))) == [".", ".."]
    assert os.stat(view.p("sub", "empty", "..")).st_ino == os.stat(view.p("sub")).st_ino
    assert os.stat(view.p("sub", "..")).st_ino == os.stat(view.path).st_ino
    # the parent of the mount root is the directory containing the mount point
    assert os.stat(view.p("..")).st_ino == os.stat(os.path.dirname(view.path)).st_ino


def test_dtype_of_every_file_type(view):
    def populate(b):
        write_file(b.p("reg"), b"r")
        os.mkdir(b.p("dir"))
        os.symlink("reg", b.p("lnk"))
        os.symlink("nowhere", b.p("dangling"))
        os.mkfifo(b.p("fifo"))
        os.mknod(b.p("sock"), stat.S_IFSOCK | 0o644)
        os.mknod(b.p("chr"), stat.S_IFCHR | 0o600, os.makedev(1, 3))
        os.mknod(b.p("blk"), stat.S_IFBLK | 0o600, os.makedev(7, 0))

    res = run_parity(view, [
        populate,
        ("d_types", lambda b: {n: t for n, t, _ in sysx.readdir_all(b) if n not in (".", "..")}),
        ("scandir kinds", lambda b: {e.name: (e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False),
                                              e.is_symlink()) for e in os.scandir(b)}),
    ])
    assert res["d_types"] == {"reg": sysx.DT_REG, "dir": sysx.DT_DIR, "lnk": sysx.DT_LNK,
                              "dangling": sysx.DT_LNK, "fifo": sysx.DT_FIFO, "sock": sysx.DT_SOCK,
                              "chr": sysx.DT_CHR, "blk": sysx.DT_BLK}


def test_listdir_errors(view):
    res = run_parity(view, [
        lambda b: write_file(b.p("f"), b"x"),
        ("listdir file", lambda b: os.listdir(b.p("f"))),
        ("listdir missing", lambda b: os.listdir(b.p("missing"))),
        ("opendir file", lambda b: sysx.readdir_all(b.p("f"))),
        ("open O_DIRECTORY file", lambda b: os.close(os.open(b.p("f"), os.O_RDONLY | os.O_DIRECTORY))),
    ])
    assert res["listdir file"] == err(errno.ENOTDIR)
    assert res["listdir missing"] == err(errno.ENOENT)
    assert res["opendir file"] == err(errno.ENOTDIR)


N_KEEP, N_DEL = 2000, 600


def _iterate_while_mutating(d, how):
    """List d while creating new-* and removing del-* entries between reads.
    Returns the names returned, in order."""
    got = []
    k = 0

    def mutate():
        nonlocal k
        if k < N_DEL:
            touch(os.path.join(d, "new-%05d" % k))
            os.unlink(os.path.join(d, "del-%05d" % k))
            k += 1

    if how == "scandir":
        with os.scandir(d) as it:
            for i, e in enumerate(it):
                got.append(e.name)
                if i % 3 == 0:
                    mutate()
    else:
        with sysx.DirStream(d) as ds:
            for i, (name, _, _) in enumerate(ds):
                got.append(name)
                if i % 3 == 0:
                    mutate()
    while k < N_DEL:
        mutate()
    return got


@pytest.mark.parametrize("how", ["scandir", "readdir"])
def test_entries_added_and_removed_while_listing(view, how):
    """POSIX readdir: an entry neither added nor removed during the listing
    is returned exactly once; added/removed ones at most once; nothing is
    returned twice.  A fresh listing afterwards is exact."""
    d = view.p("dir")
    os.mkdir(d)
    keep = {"keep-%05d" % i for i in range(N_KEEP)}
    dels = {"del-%05d" % i for i in range(N_DEL)}
    news = {"new-%05d" % i for i in range(N_DEL)}
    for n in sorted(keep | dels):
        touch(os.path.join(d, n))

    got = _iterate_while_mutating(d, how)
    c = collections.Counter(got)
    dups = sorted(n for n, v in c.items() if v > 1)
    assert not dups, "returned more than once during a changing listing: %r" % dups[:10]
    missing = sorted(keep - set(c))
    assert not missing, "stable entries not returned: %d, e.g. %r" % (len(missing), missing[:10])
    alien = set(c) - keep - dels - news - {".", ".."}
    assert not alien, alien

    # second pass: exactly the current contents
    assert sorted(os.listdir(d)) == sorted(keep | news)
    ents = sysx.readdir_all(d)
    assert sorted(n for n, _, _ in ents) == sorted(keep | news | {".", ".."})


def test_rewinddir_sees_current_contents(view):
    d = view.p("dir")
    os.mkdir(d)
    for i in range(300):
        touch(os.path.join(d, "a%03d" % i))
    with sysx.DirStream(d) as ds:
        first = [ds.read()[0] for _ in range(50)]
        assert len(set(first)) == 50
        for i in range(100):
            os.unlink(os.path.join(d, "a%03d" % i))
        for i in range(40):
            touch(os.path.join(d, "b%03d" % i))
        ds.rewind()
        again = [n for n, _, _ in ds]
    assert sorted(again) == sorted([".", ".."] + ["a%03d" % i for i in range(100, 300)]
                                   + ["b%03d" % i for i in range(40)])


def test_seekdir_telldir(view):
    d = view.p("dir")
    os.mkdir(d)
    for i in range(1000):
        touch(os.path.join(d, "f%04d" % i))
    with sysx.DirStream(d) as ds:
        head = [ds.read()[0] for _ in range(400)]
        pos = ds.tell()
        rest = [n for n, _, _ in ds]
        assert len(head) + len(rest) == 1002
        assert set(head) | set(rest) == {"f%04d" % i for i in range(1000)} | {".", ".."}
        ds.seek(pos)
        assert [n for n, _, _ in ds] == rest
        ds.rewind()
        assert [ds.read()[0] for _ in range(400)] == head
