"""Mount over the source (SOURCE == MOUNTPOINT): the prior contents are
visible and fully usable through the mount, and after a clean unmount the
source directory holds every change."""
import os

import pytest

from parity import content, listing, read_file, run_parity, snapshot, st, tree, write_file

BIG = bytes(range(256)) * 4096  # 1 MiB


def populate(d):
    write_file(os.path.join(d, "readme.txt"), b"hello from before the mount\n")
    write_file(os.path.join(d, "big.bin"), BIG)
    write_file(os.path.join(d, "to-append"), b"line1\n")
    write_file(os.path.join(d, "to-delete"), b"bye")
    write_file(os.path.join(d, "to-rename"), b"moving")
    write_file(os.path.join(d, "exec.sh"), b"#!/bin/sh\necho ok\n", mode=0o755)
    os.makedirs(os.path.join(d, "dir", "nested"))
    write_file(os.path.join(d, "dir", "nested", "leaf"), b"leaf")
    os.mkdir(os.path.join(d, "empty-dir"))
    os.symlink("readme.txt", os.path.join(d, "link"))
    os.link(os.path.join(d, "readme.txt"), os.path.join(d, "dir", "hard"))
    os.setxattr(os.path.join(d, "readme.txt"), "user.origin", b"pre-mount")
    os.chmod(os.path.join(d, "to-delete"), 0o600)
    os.utime(os.path.join(d, "readme.txt"), ns=(1_500_000_000_111_111_111, 1_500_000_000_222_222_222))


@pytest.fixture
def over(make_view):
    return make_view("oversrc", populate=populate)


def test_prior_contents_visible(over):
    assert over.path == over.source and over.backing is None
    # times first: reading the file may update its atime (relatime)
    s = os.stat(over.p("readme.txt"))
    assert (s.st_atime_ns, s.st_mtime_ns) == (1_500_000_000_111_111_111, 1_500_000_000_222_222_222)
    assert s.st_nlink == 2
    assert snapshot(over.path, xattrs=True) == snapshot(over.native, xattrs=True)
    assert read_file(over.p("readme.txt")) == b"hello from before the mount\n"
    assert read_file(over.p("big.bin")) == BIG
    assert os.readlink(over.p("link")) == "readme.txt"
    assert os.getxattr(over.p("readme.txt"), "user.origin") == b"pre-mount"
    assert sorted(os.listdir(over.path)) == sorted(os.listdir(over.native))


def test_prior_contents_fully_usable_and_persist(over):
    res = run_parity(over, [
        ("read", content("readme.txt")),
        ("read big", content("big.bin")),
        ("overwrite in place", lambda b: (write_file(b.p("big.bin"), b"PATCH", flags=os.O_WRONLY),
                                          os.stat(b.p("big.bin")).st_size)),
        ("append", lambda b: write_file(b.p("to-append"), b"line2\n", flags=os.O_WRONLY | os.O_APPEND)),
        ("create", lambda b: write_file(b.p("dir", "nested", "new-file"), b"created through the mount")),
        ("rename", lambda b: os.rename(b.p("to-rename"), b.p("dir", "renamed"))),
        ("delete", lambda b: os.unlink(b.p("to-delete"))),
        ("rmdir", lambda b: os.rmdir(b.p("empty-dir"))),
        ("mkdir", lambda b: os.mkdir(b.p("new-dir"))),
        ("rename dir", lambda b: os.rename(b.p("dir", "nested"), b.p("new-dir", "moved-nested"))),
        ("chmod", lambda b: os.chmod(b.p("readme.txt"), 0o640)),
        ("setxattr", lambda b: os.setxattr(b.p("readme.txt"), "user.added", b"in mount")),
        ("truncate", lambda b: os.truncate(b.p("to-append"), 3)),
        ("symlink", lambda b: os.symlink("new-dir", b.p("newlink"))),
        ("hard link", lambda b: os.link(b.p("exec.sh"), b.p("exec2.sh"))),
        ("hard link count", st("dir/hard")),
        ("listing", listing()),
        ("tree", tree(xattrs=True)),
    ])
    assert res["overwrite in place"] == (5, len(BIG))
    rc = over.mount.stop()
    assert rc == 0, over.mount.stderr()
    over.mount.check_clean_exit()
    # unmounted: the source directory itself now holds every change
    assert not os.path.ismount(over.source)
    assert snapshot(over.source, xattrs=True) == snapshot(over.native, xattrs=True) == res["tree"]
    assert read_file(os.path.join(over.source, "dir", "renamed")) == b"moving"
    assert not os.path.exists(os.path.join(over.source, "to-delete"))
    assert read_file(os.path.join(over.source, "big.bin"))[:6] == b"PATCH" + BIG[5:6]


def test_changes_made_before_unmount_are_visible_after(make_view):
    """Writes through an fd that is still open right before the unmount are
    in the source afterwards (flush/release reach the source)."""
    v = make_view("oversrc", populate=populate)
    with open(v.p("late.txt"), "wb") as f:
        f.write(b"written just before unmount")
    with open(v.p("readme.txt"), "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"appended\n")
    rc = v.mount.stop()
    assert rc == 0, v.mount.stderr()
    v.mount.check_clean_exit()
    assert read_file(os.path.join(v.source, "late.txt")) == b"written just before unmount"
    assert read_file(os.path.join(v.source, "readme.txt")).endswith(b"appended\n")
    assert read_file(os.path.join(v.source, "dir", "hard")).endswith(b"appended\n")


def test_many_files_in_preexisting_tree(make_view):
    def pop(d):
        populate(d)
        for i in range(300):
            write_file(os.path.join(d, "dir", "f%03d" % i), b"%d" % i)

    v = make_view("oversrc", populate=pop)
    assert sorted(os.listdir(v.p("dir"))) == sorted(os.listdir(os.path.join(v.native, "dir")))
    for i in range(0, 300, 7):
        assert read_file(v.p("dir", "f%03d" % i)) == b"%d" % i
