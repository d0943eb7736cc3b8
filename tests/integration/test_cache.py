"""A memory cache written back to a local mirror (prismfs mount --mirror).

What a user of a write-back cache must be able to count on, checked on the
mirror itself after real system calls through the mount:
- the view shows the mirror, and a file's data is read from the mirror only
  when the file is used (lazy load);
- every change reaches the mirror, in order, and the mirror converges to
  the view (creates, writes, truncates, renames of files and directories,
  unlinks, hard links, symlinks, chmod/chown/utimes, xattrs);
- fsync returns once the file is on the mirror; close queues; prismfs sync
  waits for everything; unmount writes everything back first;
- a mirror that cannot be written keeps the data: fsync and prismfs sync
  fail with its error, unmount refuses unless forced, and forcing keeps
  the data in a quarantine directory it names;
- a file changed on the mirror behind the mount is never overwritten.
"""
import errno
import os
import stat
import struct
import subprocess

import pytest

from prism_helpers import cli, status_json, wait_for


def cached(mounter, mirror, mnt, *args, env=None):
    # Mount's argv is `mount -f ARGS SOURCE MNT`: --mirror takes SOURCE's place.
    return mounter(mirror, mnt, *args, "--mirror", env=env)


def write(path, data, mode="w"):
    with open(path, mode) as f:
        f.write(data)


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def tree(root):
    """Everything a mirror must hold: per path its type, mode, content or
    link target, user xattrs, and which paths share an inode."""
    out, inodes = {}, {}
    for d, subdirs, files in os.walk(root):
        for name in subdirs + files:
            p = os.path.join(d, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                what = ("file", read(p, "rb"))
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                what = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                what = ("dir", None)
            else:
                what = ("other", stat.S_IFMT(st.st_mode))
            xattrs = {}
            if not stat.S_ISLNK(st.st_mode):
                for x in os.listxattr(p, follow_symlinks=False):
                    if x.startswith("user."):
                        xattrs[x] = os.getxattr(p, x, follow_symlinks=False)
            out[rel] = (what, stat.S_IMODE(st.st_mode) if not stat.S_ISLNK(st.st_mode)
                        else None, st.st_uid, xattrs)
    links = sorted(sorted(v) for v in inodes.values() if len(v) > 1)
    return out, links


def sync(mnt):
    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 0, "prismfs sync failed: %s" % res.stderr
    return res


def test_shows_the_mirror_and_loads_data_only_when_used(dirs, mounter):
    mirror, mnt = dirs
    os.makedirs(os.path.join(mirror, "d/sub"))
    for i in range(50):
        write(os.path.join(mirror, "d", "f%02d" % i), "content %d\n" % i)
    os.symlink("d/f00", os.path.join(mirror, "link"))
    os.chmod(os.path.join(mirror, "d/f07"), 0o600)
    os.setxattr(os.path.join(mirror, "d/f08"), "user.tag", b"x")
    cached(mounter, mirror, mnt)

    assert sorted(os.listdir(mnt)) == ["d", "link"]
    assert len(os.listdir(os.path.join(mnt, "d"))) == 51
    for i in range(50):  # stat every file: metadata only
        st = os.stat(os.path.join(mnt, "d", "f%02d" % i))
        assert st.st_size == len("content %d\n" % i)
    assert stat.S_IMODE(os.stat(os.path.join(mnt, "d/f07")).st_mode) == 0o600
    assert os.getxattr(os.path.join(mnt, "d/f08"), "user.tag") == b"x"
    assert os.readlink(os.path.join(mnt, "link")) == "d/f00"
    c = status_json(mnt)["cache"]
    assert c["files_loaded"] == 0 and c["bytes_loaded"] == 0, c

    assert read(os.path.join(mnt, "d/f03")) == "content 3\n"
    assert read(os.path.join(mnt, "link")) == "content 0\n"
    c = status_json(mnt)["cache"]
    assert c["files_loaded"] == 2, c
    assert c["bytes_loaded"] == len("content 3\n") + len("content 0\n"), c
    assert read(os.path.join(mnt, "d/f03")) == "content 3\n"  # from memory now
    assert status_json(mnt)["cache"]["files_loaded"] == 2


def test_lazy_load_off_reads_every_directory_at_mount(dirs, mounter):
    mirror, mnt = dirs
    for d in ("a", "a/b", "a/b/c", "e"):
        os.makedirs(os.path.join(mirror, d))
    write(os.path.join(mirror, "a/b/c/deep"), "deep")
    cached(mounter, mirror, mnt, "--lazy-load", "off")
    c = status_json(mnt)["cache"]
    assert c["lazy_load"] is False
    assert c["dirs_loaded"] == 5, c  # the root and four directories
    assert read(os.path.join(mnt, "a/b/c/deep")) == "deep"


def test_every_kind_of_change_reaches_the_mirror(dirs, mounter):
    mirror, mnt = dirs
    os.makedirs(os.path.join(mirror, "old/inner"))
    write(os.path.join(mirror, "old/inner/kept"), "kept")
    write(os.path.join(mirror, "gone"), "bye")
    write(os.path.join(mirror, "edit"), "0123456789")
    cached(mounter, mirror, mnt, "--write-back", "0")
    m = lambda *p: os.path.join(mnt, *p)

    os.mkdir(m("new"), 0o750)
    write(m("new/a"), "alpha")
    os.link(m("new/a"), m("new/a2"))
    os.symlink("a", m("new/sym"))
    os.chmod(m("new/a"), 0o640)
    os.utime(m("new/a"), (1000000000, 1000000000))
    os.setxattr(m("new/a"), "user.k", b"v")
    os.rename(m("old"), m("renamed"))          # a whole directory
    os.rename(m("renamed/inner/kept"), m("renamed/kept2"))
    os.unlink(m("gone"))
    with open(m("edit"), "r+") as f:           # a write in the middle
        f.seek(3)
        f.write("XY")
    os.truncate(m("edit"), 8)
    os.mkfifo(m("fifo"))
    os.mkdir(m("tmpdir"))
    os.rmdir(m("tmpdir"))
    sync(mnt)

    view, mirror_tree = tree(mnt), tree(mirror)
    assert mirror_tree == view
    assert read(os.path.join(mirror, "edit")) == "012XY567"
    assert not os.path.exists(os.path.join(mirror, "old"))
    assert os.stat(os.path.join(mirror, "new/a")).st_mtime == 1000000000
    assert status_json(mnt)["cache"]["pending_ops"] == 0


def test_fsync_returns_once_the_file_is_on_the_mirror(dirs, mounter):
    mirror, mnt = dirs
    # An hour's delay: only fsync can have written it back.
    cached(mounter, mirror, mnt, "--write-back", "3600")
    fd = os.open(os.path.join(mnt, "f"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"durable")
    os.fsync(fd)
    assert read(os.path.join(mirror, "f")) == "durable"
    os.write(fd, b" and more")
    os.fdatasync(fd)
    assert read(os.path.join(mirror, "f")) == "durable and more"
    os.close(fd)


def test_close_queues_and_sync_waits(dirs, mounter):
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--write-back", "3600")
    write(os.path.join(mnt, "queued"), "later")
    st = wait_for(lambda: status_json(mnt)["cache"]["pending_ops"] >= 2)
    assert st, status_json(mnt)
    assert not os.path.exists(os.path.join(mirror, "queued"))  # delayed
    sync(mnt)
    assert read(os.path.join(mirror, "queued")) == "later"
    assert status_json(mnt)["cache"]["pending_ops"] == 0


def test_unmount_writes_everything_back(dirs, mounter):
    mirror, mnt = dirs
    m = cached(mounter, mirror, mnt, "--write-back", "3600")
    os.makedirs(os.path.join(mnt, "x/y"))
    for i in range(20):
        write(os.path.join(mnt, "x/y", str(i)), "n%d" % i)
    res = cli("unmount", mnt, timeout=120)
    assert res.returncode == 0, res.stderr
    assert m.wait() == 0, m.stderr()
    for i in range(20):
        assert read(os.path.join(mirror, "x/y", str(i))) == "n%d" % i


def test_a_change_behind_the_mount_is_never_overwritten(dirs, mounter):
    mirror, mnt = dirs
    write(os.path.join(mirror, "doc"), "original")
    cached(mounter, mirror, mnt, "--write-back", "0")
    assert read(os.path.join(mnt, "doc")) == "original"   # loaded
    write(os.path.join(mirror, "doc"), "changed on the mirror")
    fd = os.open(os.path.join(mnt, "doc"), os.O_WRONLY | os.O_TRUNC)
    os.write(fd, b"changed in the mount")
    os.fsync(fd)
    os.close(fd)
    assert read(os.path.join(mirror, "doc")) == "changed on the mirror"
    kept = [n for n in os.listdir(mirror) if n.startswith("doc.prismfs-conflict-")]
    assert len(kept) == 1, os.listdir(mirror)
    assert read(os.path.join(mirror, kept[0])) == "changed in the mount"
    c = status_json(mnt)["cache"]
    assert c["conflicts"] == 1 and "doc" in c["last_conflict"], c


def test_a_new_file_reaches_the_mirror_whole_with_its_metadata(dirs, mounter):
    # A file made through the mount and changed while open (xattrs set and
    # removed, mode, times), then closed: the mirror gets it as it was at
    # close, content and metadata, and nothing else (no temporary left).
    # With a delay, so that its create, changes and data are all queued
    # when the write-back comes (what cp -a of a tree queues).
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--write-back", "600")
    os.mkdir(os.path.join(mnt, "d"))
    want = {}
    for i in range(30):
        p = os.path.join(mnt, "d", "f%d" % i)
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600)
        os.write(fd, b"content %d\n" % i * (i * 300 + 1))
        os.setxattr(fd, "user.keep", b"k%d" % i)
        os.setxattr(fd, "user.gone", b"g")
        os.removexattr(fd, "user.gone")
        os.fchmod(fd, 0o640 if i % 2 else 0o751)
        os.utime(fd, ns=(1_000_000_000 + i, 2_000_000_000 + i * 1000))
        os.close(fd)
        want["f%d" % i] = os.stat(p)
    empty = os.path.join(mnt, "d", "empty")
    os.close(os.open(empty, os.O_CREAT | os.O_WRONLY, 0o644))
    assert sorted(os.listdir(mirror)) in ([], ["d"])   # nothing written back yet
    sync(mnt)
    names = sorted(os.listdir(os.path.join(mirror, "d")))
    assert names == sorted(list(want) + ["empty"]), names
    for name, st in want.items():   # (before reading them moves atime)
        got = os.stat(os.path.join(mirror, "d", name))
        assert got.st_size == st.st_size and got.st_mode == st.st_mode, name
        assert got.st_mtime_ns == st.st_mtime_ns and got.st_atime_ns == st.st_atime_ns, name
        assert os.listxattr(os.path.join(mirror, "d", name)) == ["user.keep"], name
    assert tree(mirror) == tree(mnt)
    # Written back, its base the mirror's copy: a later write through the
    # mount replaces it (no conflict), one made behind the mount is kept.
    write(os.path.join(mnt, "d", "f1"), "again")
    sync(mnt)
    assert read(os.path.join(mirror, "d", "f1")) == "again"
    assert status_json(mnt)["cache"]["conflicts"] == 0
    fd = os.open(os.path.join(mnt, "d", "f2"), os.O_WRONLY)
    write(os.path.join(mirror, "d", "f2"), "behind the mount")
    os.write(fd, b"through the mount")
    os.close(fd)
    sync(mnt)
    assert read(os.path.join(mirror, "d", "f2")) == "behind the mount"
    kept = [n for n in os.listdir(os.path.join(mirror, "d"))
            if n.startswith("f2.prismfs-conflict-")]
    assert len(kept) == 1, kept
    assert read(os.path.join(mirror, "d", kept[0]), "rb").startswith(b"through the mount")


def test_a_new_file_keeps_its_file_capability_and_owner_on_the_mirror(dirs, mounter):
    # chown(2) drops security.capability (capabilities(7), "Effect of user
    # ID changes on capabilities"; the kernel's killpriv): a new file given
    # an owner, then a file capability, before its close must reach the
    # mirror with both, whatever order the write-back applies them in.
    if os.geteuid() != 0:
        pytest.skip("needs root (chown to another user, security.* xattrs)")
    mirror, mnt = dirs
    cached(mounter, mirror, mnt, "--write-back", "600")
    # VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE, CAP_NET_RAW (13) permitted
    cap = struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0)
    p = os.path.join(mnt, "tool")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o755)
    os.write(fd, b"#!/bin/sh\n")
    os.fchown(fd, 1, 1)
    os.setxattr(fd, "security.capability", cap)
    os.close(fd)
    assert os.getxattr(p, "security.capability") == cap
    sync(mnt)
    q = os.path.join(mirror, "tool")
    st = os.stat(q)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 1, 0o755)
    assert os.getxattr(q, "security.capability") == cap


def test_a_mirror_that_cannot_be_written_keeps_the_data(dirs, mounter, workdir):
    mirror, mnt = dirs
    # Every data copy to the mirror fails, as a full disk would make it.
    m = cached(mounter, mirror, mnt, "--write-back", "0",
               env={"PRISMFS_FAULT": "copy:1-:ENOSPC"})
    fd = os.open(os.path.join(mnt, "precious"), os.O_CREAT | os.O_WRONLY, 0o644)
    os.write(fd, b"do not lose me")
    with pytest.raises(OSError) as e:
        os.fsync(fd)
    assert e.value.errno == errno.ENOSPC
    os.close(fd)
    assert read(os.path.join(mnt, "precious")) == "do not lose me"

    res = cli("sync", mnt, timeout=60)
    assert res.returncode == 1 and "not written back" in res.stderr, res
    c = status_json(mnt)["cache"]
    assert c["pending_ops"] >= 1 and c["last_error"], c

    res = cli("unmount", mnt, timeout=60)
    assert res.returncode != 0
    assert "--force" in res.stderr and len(res.stderr.strip().split("\n")) == 1, res.stderr
    assert read(os.path.join(mnt, "precious")) == "do not lose me"  # still mounted

    res = cli("unmount", "--force", mnt, timeout=180)
    assert res.returncode != 0
    line = res.stderr.strip()
    assert "quarantine" in line, line
    qdir = line[line.index("/var/tmp/prismfs-quarantine"):].split()[0]
    try:
        pending = read(os.path.join(qdir, "PENDING"))
        assert "precious" in pending, pending
        datas = [n for n in os.listdir(qdir) if n != "PENDING"]
        assert any(read(os.path.join(qdir, n)) == "do not lose me" for n in datas), datas
    finally:
        subprocess.run(["rm", "-rf", qdir])
    m.wait()


def test_bad_cache_options_are_refused_before_mounting(dirs):
    mirror, mnt = dirs
    for args, word in ((["--mirror", mirror, "--cache-size", "0", mnt], "--cache-size"),
                       (["--mirror", os.path.join(mirror, "nope"), mnt], "mirror"),
                       (["--mirror", mirror, "--cache-size", "4M", "--cache-max-dirty",
                         "8M", mnt], "--cache-max-dirty"),
                       (["--cache-size", "4M", mirror, mnt], "--mirror"),
                       (["--mirror", mirror, os.path.join(mirror), mnt], "SOURCE")):
        res = cli("mount", *args)
        assert res.returncode != 0, args
        assert word in res.stderr and len(res.stderr.strip().split("\n")) == 1, res.stderr
    assert not os.path.ismount(mnt)


def test_mount_point_inside_the_mirror_is_refused(dirs):
    mirror, mnt = dirs
    inner = os.path.join(mirror, "mnt")
    os.makedirs(inner)
    res = cli("mount", "--mirror", mirror, inner)
    assert res.returncode != 0 and "inside the mirror" in res.stderr, res.stderr
    assert not os.path.ismount(inner)


def test_mem_fuse_command_line(dirs, workdir):
    """mem-fuse's own form: prismfs MOUNTPOINT --mirror X --cache-size MB
    --cache-max-write-size MB --lazy-load (sizes in MiB)."""
    mirror, mnt = dirs
    write(os.path.join(mirror, "hello"), "hi")
    res = cli(mnt, "--mirror", mirror, "--cache-size", "64", "--cache-max-write-size", "16",
              "--lazy-load")
    try:
        assert res.returncode == 0, res.stderr
        c = status_json(mnt)["cache"]
        assert c["cache_size"] == 64 << 20 and c["max_dirty"] == 16 << 20, c
        assert c["lazy_load"] is True
        assert read(os.path.join(mnt, "hello")) == "hi"
    finally:
        cli("unmount", mnt, timeout=60)


def test_hard_links_on_the_mirror_stay_one_file(dirs, mounter):
    """Names of one mirror file in different directories are one file in
    the view: a write through one shows through the other, the link count
    is the mirror's, and the write-back keeps them one file."""
    mirror, mnt = dirs
    os.makedirs(os.path.join(mirror, "a/deep"))
    os.makedirs(os.path.join(mirror, "b"))
    write(os.path.join(mirror, "a/deep/x"), "old\n")
    os.link(os.path.join(mirror, "a/deep/x"), os.path.join(mirror, "b/y"))
    os.link(os.path.join(mirror, "a/deep/x"), os.path.join(mirror, "z"))
    cached(mounter, mirror, mnt)

    # Lazily, a link count counts the names in the directories filled so
    # far (README): here the root's and b's; then a/deep's too.
    assert os.stat(os.path.join(mnt, "b/y")).st_nlink == 2
    assert os.listdir(os.path.join(mnt, "a/deep")) == ["x"]
    assert os.stat(os.path.join(mnt, "b/y")).st_nlink == 3
    write(os.path.join(mnt, "b/y"), "new through b/y\n")
    assert read(os.path.join(mnt, "a/deep/x")) == "new through b/y\n"
    assert read(os.path.join(mnt, "z")) == "new through b/y\n"
    ino = {os.stat(os.path.join(mnt, p)).st_ino for p in ("a/deep/x", "b/y", "z")}
    assert len(ino) == 1 and os.stat(os.path.join(mnt, "z")).st_nlink == 3
    sync(mnt)
    assert tree(mirror) == tree(mnt)
    assert read(os.path.join(mirror, "a/deep/x")) == "new through b/y\n"


@pytest.mark.parametrize("where", ["cache", "mirror"])
def test_a_file_written_after_its_first_name_is_unlinked_reaches_the_mirror(dirs, mounter,
                                                                           where):
    """The view holds a file by the name it first met it by; once that name
    is unlinked, a write through another name of it still reaches the
    mirror, under that name (and so does a chmod)."""
    mirror, mnt = dirs
    if where == "mirror":
        write(os.path.join(mirror, "first"), "old\n")
        os.link(os.path.join(mirror, "first"), os.path.join(mirror, "second"))
    cached(mounter, mirror, mnt)
    if where == "cache":
        write(os.path.join(mnt, "first"), "old\n")
        os.link(os.path.join(mnt, "first"), os.path.join(mnt, "second"))
    assert read(os.path.join(mnt, "first")) == "old\n"  # met as "first"
    os.unlink(os.path.join(mnt, "first"))
    write(os.path.join(mnt, "second"), "new\n", "a")
    os.chmod(os.path.join(mnt, "second"), 0o640)
    sync(mnt)
    assert os.listdir(mirror) == ["second"]
    assert read(os.path.join(mirror, "second")) == "old\nnew\n"
    assert stat.S_IMODE(os.stat(os.path.join(mirror, "second")).st_mode) == 0o640
    assert tree(mirror) == tree(mnt)


def test_a_directory_removed_in_the_view_but_not_empty_on_the_mirror_goes_aside(dirs,
                                                                                mounter):
    """rmdir(2) of a directory that, on the mirror, holds names the cache
    never saw (made behind the mount after the cache listed it, or a
    conflict's copy): the write-back must neither stop for good nor delete
    them. The directory goes aside, under a conflict name, and the queue
    goes on."""
    mirror, mnt = dirs
    # Listings never refreshed: the names made behind the mount stay
    # unseen, as ones made after the last refresh would be.
    cached(mounter, mirror, mnt, "--mirror-ttl", "0")
    os.makedirs(os.path.join(mnt, "d"))
    write(os.path.join(mnt, "d/f"), "f")
    os.makedirs(os.path.join(mnt, "e"))
    sync(mnt)
    assert os.listdir(os.path.join(mnt, "d")) == ["f"] and os.listdir(os.path.join(mnt, "e")) == []
    write(os.path.join(mirror, "d/extra"), "made behind the mount")
    write(os.path.join(mirror, "e/extra"), "also")
    os.unlink(os.path.join(mnt, "d/f"))
    os.rmdir(os.path.join(mnt, "d"))
    os.makedirs(os.path.join(mnt, "g"))
    os.rename(os.path.join(mnt, "g"), os.path.join(mnt, "e"))  # over an empty directory
    write(os.path.join(mnt, "after"), "the queue goes on")
    sync(mnt)
    names = sorted(os.listdir(mirror))
    d_aside = [n for n in names if n.startswith("d.prismfs-conflict-")]
    e_aside = [n for n in names if n.startswith("e.prismfs-conflict-")]
    assert len(d_aside) == 1 and len(e_aside) == 1, names
    assert "d" not in names and os.listdir(os.path.join(mirror, "e")) == []
    assert read(os.path.join(mirror, d_aside[0], "extra")) == "made behind the mount"
    assert read(os.path.join(mirror, e_aside[0], "extra")) == "also"
    assert read(os.path.join(mirror, "after")) == "the queue goes on"
    assert status_json(mnt)["cache"]["conflicts"] == 2
