"""Lazy and eager loading of a memory cache from its mirror (--mirror).

Reads of the mirror are counted by the kernel (inotify watches on every
directory of the mirror: IN_OPEN and IN_ACCESS of its files), not by the
cache's own counters:
- a mirror of 100,000 files mounts without reading any of them, or any
  directory below its root; stat and `ls -l` read no file's data; reading a
  file opens that file and no other, once; writing back a change opens
  what it writes, and unmounting opens nothing;
- with --lazy-load off, data is loaded at mount while the cache has room
  (its size less the room kept for writes, --cache-max-dirty); past that
  the rest stays on the mirror, loaded when used, and nothing fails.
"""
import os
import subprocess
import time

import pytest

from inotify_count import TreeReads
from prism_helpers import cli, status_json

KIB = 1024
MIB = 1024 * KIB


def cached(mounter, mirror, mnt, *args):
    # Mount's argv is `mount -f ARGS SOURCE MNT`: --mirror takes SOURCE's place.
    return mounter(mirror, mnt, *args, "--mirror")


@pytest.fixture
def big_dirs(workdir):
    """A mirror on a tmpfs of its own: 100,000 files are made and removed in
    a second there, where a disk takes a minute to delete them."""
    mirror = os.path.join(workdir, "mirror")
    mnt = os.path.join(workdir, "mnt")
    os.makedirs(mirror)
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512m,nr_inodes=200000", "tmpfs",
                    mirror], check=True)
    try:
        yield mirror, mnt
    finally:
        subprocess.run(["umount", "-l", mirror], check=True)


@pytest.fixture
def reads():
    made = []

    def watch(root):
        made.append(TreeReads(root))
        return made[-1]

    yield watch
    for w in made:
        w.close()


def content(d, f):
    return "%d/%d\n" % (d, f)


def make_wide_tree(root, tops=20, subs=20, files=250):
    """tops * subs directories of `files` small files each: 100,000 by
    default. Returns the relative paths of the leaf directories."""
    leaves = []
    for d in range(tops * subs):
        rel = os.path.join("t%02d" % (d // subs), "s%03d" % d)
        os.makedirs(os.path.join(root, rel))
        for f in range(files):
            with open(os.path.join(root, rel, "f%03d" % f), "w") as fh:
                fh.write(content(d, f))
        leaves.append(rel)
    return leaves


def test_100000_files_mount_at_once_and_only_what_is_read_is_read(big_dirs, mounter, reads):
    mirror, mnt = big_dirs
    leaves = make_wide_tree(mirror)
    w = reads(mirror)

    t0 = time.monotonic()
    m = cached(mounter, mirror, mnt)
    took = time.monotonic() - t0
    print("mount of a mirror of 100,000 files: %.3f s" % took)
    opened, read = w.files()
    assert (opened, read) == ({}, {}), "mounting opened or read files of the mirror"
    assert w.dirs_opened == {}, "mounting read directories below the mirror's root: %s" % \
        sorted(w.dirs_opened)[:10]

    # ls -l of one directory: names and attributes, no data.
    leaf = leaves[123]
    out = subprocess.run(["ls", "-l", os.path.join(mnt, leaf)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert len([ln for ln in out if ln.startswith("-")]) == 250, out[:5]
    assert w.files() == ({}, {}), "ls -l opened or read files of the mirror"

    # stat of every file of the tree through the mount: no data either.
    w.reset()
    seen = 0
    for i, rel in enumerate(leaves):
        for name in os.listdir(os.path.join(mnt, rel)):
            st = os.lstat(os.path.join(mnt, rel, name))
            assert st.st_size == len(content(i, int(name[1:]))), (rel, name)
            seen += 1
    assert seen == 100000
    opened, read = w.files()
    assert (len(opened), len(read)) == (0, 0), \
        "stat of every file opened %d and read %d files of the mirror (e.g. %s)" % (
            len(opened), len(read), sorted(opened)[:5])

    # Reading one file opens that file only, once; then it is in memory.
    w.reset()
    one = os.path.join(leaves[321], "f042")
    with open(os.path.join(mnt, one)) as f:
        assert f.read() == content(321, 42)
    opened, read = w.files()
    assert opened == {one: 1}, "reading %s opened %s on the mirror" % (one, opened)
    assert set(read) == {one}, read
    w.reset()
    with open(os.path.join(mnt, one)) as f:
        assert f.read() == content(321, 42)
    assert w.files() == ({}, {}), "a second read went to the mirror again"
    c = status_json(mnt)["cache"]
    assert (c["files_loaded"], c["bytes_loaded"]) == (1, len(content(321, 42))), c

    # Writing back a change opens what it writes, nothing else; nor does
    # the unmount.
    two = os.path.join(leaves[7], "f001")
    with open(os.path.join(mnt, two), "a") as f:
        f.write("more\n")
    with open(os.path.join(mnt, leaves[8], "new"), "w") as f:
        f.write("new\n")
    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 0, res.stderr
    opened, _ = w.files()
    # (the write-back's own files: a temporary renamed over a file, or a
    # new file made unnamed, O_TMPFILE, which inotify names "#INODE")
    written = {p for p in opened
               if not os.path.basename(p).startswith((".prismfs-wb.", "#"))}
    assert written <= {two, os.path.join(leaves[8], "new")}, sorted(opened)
    m.stop()
    m.check_clean_exit()
    assert w.files() == ({}, {}), "unmounting opened or read files of the mirror"
    with open(os.path.join(mirror, two)) as f:
        assert f.read() == content(7, 1) + "more\n"


def write_random(path, size):
    data = os.urandom(size)
    with open(path, "wb") as f:
        f.write(data)
    return data


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def test_lazy_load_off_preloads_until_the_cache_is_full(dirs, mounter, reads):
    mirror, mnt = dirs
    size, reserve, each = 4 * MIB, 1 * MIB, 256 * KIB
    data = {"big": write_random(os.path.join(mirror, "big"), 2 * size)}
    for d in ("a", "b"):
        os.makedirs(os.path.join(mirror, d))
        for i in range(20):
            rel = "%s/f%02d" % (d, i)
            data[rel] = write_random(os.path.join(mirror, rel), each)
    w = reads(mirror)
    cached(mounter, mirror, mnt, "--lazy-load", "off", "--cache-size", "4M",
           "--cache-max-dirty", "1M")

    opened, read = w.files()
    assert opened and all(n == 1 for n in opened.values()), opened
    assert set(read) == set(opened), (opened, read)
    assert "big" not in opened, "a file larger than the cache was loaded"
    c = status_json(mnt)["cache"]
    assert c["lazy_load"] is False and c["dirs_loaded"] == 3, c
    assert c["files_loaded"] == len(opened), (c, sorted(opened))
    assert c["bytes_loaded"] == sum(len(data[p]) for p in opened), c
    # Loaded up to the size less the room kept for writes, and stopped
    # only because one more file would not have fit.
    assert c["bytes_loaded"] <= c["cache_used"] <= size - reserve, c
    assert c["cache_used"] + each > size - reserve, c

    # The rest is there all the same, loaded when used.
    for rel, want in data.items():
        assert os.lstat(os.path.join(mnt, rel)).st_size == len(want), rel
    assert w.files() == ({}, {})
    done = sorted(opened)[0]
    assert read_bytes(os.path.join(mnt, done)) == data[done]
    assert w.files() == ({}, {}), "a preloaded file was read from the mirror again"
    lazy = sorted(set(data) - set(opened) - {"big"})[0]
    assert read_bytes(os.path.join(mnt, lazy)) == data[lazy]
    opened2, _ = w.files()
    assert opened2 == {lazy: 1}, opened2

    # The room kept for writes is there: a write of it succeeds and reaches
    # the mirror.
    new = os.urandom(reserve - each)
    with open(os.path.join(mnt, "a/new"), "wb") as f:
        f.write(new)
    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 0, res.stderr
    assert read_bytes(os.path.join(mirror, "a/new")) == new


def test_lazy_load_off_with_room_loads_everything_at_mount(dirs, mounter, reads):
    mirror, mnt = dirs
    data = {}
    for d in ("x", "x/y", "x/y/z", "w"):
        os.makedirs(os.path.join(mirror, d))
        for i in range(5):
            rel = "%s/f%d" % (d, i)
            data[rel] = write_random(os.path.join(mirror, rel), 1000 * (i + 1))
    data["top"] = write_random(os.path.join(mirror, "top"), 3)
    w = reads(mirror)
    cached(mounter, mirror, mnt, "--lazy-load", "off")

    opened, read = w.files()
    assert opened == {p: 1 for p in data}, sorted(opened)
    assert set(read) == set(data)
    c = status_json(mnt)["cache"]
    assert c["files_loaded"] == len(data), c
    assert c["bytes_loaded"] == sum(len(v) for v in data.values()), c
    for rel, want in data.items():
        assert read_bytes(os.path.join(mnt, rel)) == want, rel
    assert w.files() == ({}, {}), "a file loaded at mount was read from the mirror again"
