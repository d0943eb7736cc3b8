"""Stable identity: st_ino through the mount equals st_ino of the same file
in the source, for pre-existing and new files, across the kernel forgetting
inodes and across an unmount and a remount."""
import os

import pytest

from parity import write_file


def populate_tree(d):
    write_file(os.path.join(d, "file"), b"content")
    os.makedirs(os.path.join(d, "dir", "sub"))
    write_file(os.path.join(d, "dir", "sub", "deep"), b"deep")
    os.symlink("file", os.path.join(d, "link"))
    os.link(os.path.join(d, "file"), os.path.join(d, "dir", "hardlink"))
    os.mkfifo(os.path.join(d, "fifo"))


NAMES = ["file", "dir", "dir/sub", "dir/sub/deep", "link", "dir/hardlink", "fifo"]


def inos(root, names=NAMES):
    return {n: os.lstat(os.path.join(root, n)).st_ino for n in names}


@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_ino_of_preexisting_files_matches_source(make_view, mode):
    before = {}

    def populate(d):
        populate_tree(d)
        before[d] = inos(d)

    v = make_view(mode, populate=populate)
    expected = before[v.source]
    got = inos(v.path)
    assert got == expected
    assert got["file"] == got["dir/hardlink"]
    # readdir's d_ino and scandir agree with the source too
    assert {e.name: e.inode() for e in os.scandir(v.path) if e.name in expected} == \
        {n: i for n, i in expected.items() if "/" not in n}
    if v.backing:
        assert inos(v.backing) == got


@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_root_ino_matches_source(make_view, mode):
    before = {}

    def populate(d):
        before[d] = os.stat(d).st_ino

    v = make_view(mode, populate=populate)
    assert os.stat(v.path).st_ino == before[v.source]


def test_ino_of_new_files_matches_source(view):
    os.mkdir(view.p("d"))
    write_file(view.p("d", "f"), b"x")
    os.symlink("f", view.p("d", "s"))
    os.link(view.p("d", "f"), view.p("h"))
    got = inos(view.path, ["d", "d/f", "d/s", "h"])
    assert got["h"] == got["d/f"]
    if view.backing:
        assert inos(view.backing, ["d", "d/f", "d/s", "h"]) == got
    else:
        view.mount.stop()
        view.mount.check_clean_exit()
        assert inos(view.source, ["d", "d/f", "d/s", "h"]) == got


def test_ino_stable_after_rename_and_link(view):
    write_file(view.p("f"), b"x")
    os.mkdir(view.p("d"))
    ino = os.stat(view.p("f")).st_ino
    dino = os.stat(view.p("d")).st_ino
    os.rename(view.p("f"), view.p("d", "g"))
    os.rename(view.p("d"), view.p("e"))
    assert os.stat(view.p("e", "g")).st_ino == ino
    assert os.stat(view.p("e")).st_ino == dino
    os.link(view.p("e", "g"), view.p("h"))
    assert os.stat(view.p("h")).st_ino == ino
    os.unlink(view.p("e", "g"))
    assert os.stat(view.p("h")).st_ino == ino


def _drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2\n")
    except OSError as e:
        pytest.skip("cannot make the kernel forget inodes (write /proc/sys/vm/drop_caches: %s)" % e)


def test_ino_stable_after_kernel_forgets(view):
    """After the kernel drops its dentries and inodes (FUSE FORGET), looking
    the same files up again yields the same st_ino."""
    os.makedirs(view.p("a", "b"))
    for i in range(50):
        write_file(view.p("a", "b", "f%d" % i), b"x")
    names = ["a", "a/b"] + ["a/b/f%d" % i for i in range(50)]
    first = inos(view.path, names)
    _drop_caches()
    assert inos(view.path, names) == first
    # and hard links created afterwards still share the number
    os.link(view.p("a", "b", "f0"), view.p("a", "l0"))
    _drop_caches()
    assert os.stat(view.p("a", "l0")).st_ino == first["a/b/f0"]


@pytest.mark.parametrize("mode", ["plain", "oversrc", "cached"])
def test_ino_stable_across_remount(workdir, mounter, mode):
    src = os.path.join(workdir, "src")
    os.makedirs(src)
    populate_tree(src)
    source_inos = inos(src)
    mnt = src if mode == "oversrc" else os.path.join(workdir, "mnt")
    os.makedirs(mnt, exist_ok=True)

    m = mounter(src, mnt)
    first = inos(mnt)
    write_file(os.path.join(mnt, "made-in-mount-1"), b"1")
    os.mkdir(os.path.join(mnt, "dir-made-in-mount-1"))
    first_new = inos(mnt, ["made-in-mount-1", "dir-made-in-mount-1"])
    rc = m.stop()
    assert rc == 0, m.stderr()
    m.check_clean_exit()
    assert first == source_inos
    assert inos(src, ["made-in-mount-1", "dir-made-in-mount-1"]) == first_new

    m2 = mounter(src, mnt)
    assert inos(mnt) == first
    assert inos(mnt, ["made-in-mount-1", "dir-made-in-mount-1"]) == first_new
    rc = m2.stop()
    assert rc == 0, m2.stderr()
    m2.check_clean_exit()
