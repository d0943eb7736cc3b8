"""--read-only: every modifying call fails with EROFS, reads still work, and
the source is left untouched."""
import errno
import mmap
import os
import stat

import pytest

import sysx
from parity import read_file, snapshot, write_file


def populate(d):
    write_file(os.path.join(d, "file"), b"read-only content\n")
    os.setxattr(os.path.join(d, "file"), "user.attr", b"value")
    os.makedirs(os.path.join(d, "dir"))
    write_file(os.path.join(d, "dir", "inner"), b"inner")
    os.mkdir(os.path.join(d, "emptydir"))
    os.symlink("file", os.path.join(d, "link"))
    os.mkfifo(os.path.join(d, "fifo"))


@pytest.fixture(params=["plain", "oversrc", "cached"])
def ro(request, make_view):
    return make_view(request.param, "--read-only", populate=populate)


def _open(p, flags):
    os.close(os.open(p, flags, 0o644))


# name -> operation on the mount path; each must fail with EROFS.  New names
# are used for the creating calls so that EEXIST cannot take precedence.
MODIFYING = {
    "create": lambda m: _open(os.path.join(m, "new"), os.O_WRONLY | os.O_CREAT),
    "create-excl": lambda m: _open(os.path.join(m, "new"), os.O_RDWR | os.O_CREAT | os.O_EXCL),
    "open-wronly": lambda m: _open(os.path.join(m, "file"), os.O_WRONLY),
    "open-rdwr": lambda m: _open(os.path.join(m, "file"), os.O_RDWR),
    "open-append": lambda m: _open(os.path.join(m, "file"), os.O_WRONLY | os.O_APPEND),
    "open-trunc": lambda m: _open(os.path.join(m, "file"), os.O_RDONLY | os.O_TRUNC),
    "mkdir": lambda m: os.mkdir(os.path.join(m, "newdir")),
    "unlink": lambda m: os.unlink(os.path.join(m, "file")),
    "unlink-symlink": lambda m: os.unlink(os.path.join(m, "link")),
    "rmdir": lambda m: os.rmdir(os.path.join(m, "emptydir")),
    "rename": lambda m: os.rename(os.path.join(m, "file"), os.path.join(m, "renamed")),
    "rename-dir": lambda m: os.rename(os.path.join(m, "dir"), os.path.join(m, "dir2")),
    "rename-exchange": lambda m: sysx.renameat2(os.path.join(m, "file"), os.path.join(m, "dir"),
                                                sysx.RENAME_EXCHANGE),
    "chmod": lambda m: os.chmod(os.path.join(m, "file"), 0o600),
    "chown": lambda m: os.chown(os.path.join(m, "file"), 1234, 1234),
    "lchown": lambda m: os.lchown(os.path.join(m, "link"), 1234, 1234),
    "utime": lambda m: os.utime(os.path.join(m, "file"), ns=(1, 1)),
    "utimensat-now": lambda m: sysx.utimensat(os.path.join(m, "file"), sysx.NOW, sysx.NOW),
    "truncate": lambda m: os.truncate(os.path.join(m, "file"), 0),
    "setxattr": lambda m: os.setxattr(os.path.join(m, "file"), "user.new", b"v"),
    "setxattr-replace": lambda m: os.setxattr(os.path.join(m, "file"), "user.attr", b"changed"),
    "removexattr": lambda m: os.removexattr(os.path.join(m, "file"), "user.attr"),
    "symlink": lambda m: os.symlink("file", os.path.join(m, "newlink")),
    "link": lambda m: os.link(os.path.join(m, "file"), os.path.join(m, "newhard")),
    "mknod-fifo": lambda m: os.mkfifo(os.path.join(m, "newfifo")),
    "mknod-chr": lambda m: os.mknod(os.path.join(m, "newchr"), stat.S_IFCHR | 0o600, os.makedev(1, 3)),
    "mknod-sock": lambda m: os.mknod(os.path.join(m, "newsock"), stat.S_IFSOCK | 0o600),
}


@pytest.mark.parametrize("op", sorted(MODIFYING))
def test_modifying_call_fails_with_erofs(ro, op):
    before = snapshot(ro.native, xattrs=True)
    with pytest.raises(OSError) as ei:
        MODIFYING[op](ro.path)
    assert ei.value.errno == errno.EROFS, "%s: %s, expected EROFS" % (op, errno.errorcode.get(ei.value.errno))
    assert snapshot(ro.path, xattrs=True) == before
    # the source is untouched
    rc = ro.mount.stop()
    assert rc == 0, ro.mount.stderr()
    ro.mount.check_clean_exit()
    assert snapshot(ro.source, xattrs=True) == before


def test_reads_still_work(ro):
    assert read_file(ro.p("file")) == b"read-only content\n"
    assert read_file(ro.p("dir", "inner")) == b"inner"
    assert sorted(os.listdir(ro.path)) == ["dir", "emptydir", "fifo", "file", "link"]
    assert os.readlink(ro.p("link")) == "file"
    assert read_file(ro.p("link")) == b"read-only content\n"
    assert os.getxattr(ro.p("file"), "user.attr") == b"value"
    assert os.listxattr(ro.p("file")) == ["user.attr"]
    s = os.stat(ro.p("file"))
    assert stat.S_ISREG(s.st_mode) and s.st_size == 18
    assert snapshot(ro.path, xattrs=True) == snapshot(ro.native, xattrs=True)
    fd = os.open(ro.p("file"), os.O_RDONLY)
    try:
        assert os.pread(fd, 4, 5) == b"only"
        m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        assert m[:9] == b"read-only"
        m.close()
        os.fstat(fd)
    finally:
        os.close(fd)
    assert os.access(ro.p("file"), os.R_OK)
    assert not os.access(ro.p("file"), os.W_OK)
    if ro.mode != "cached":  # a cache's statfs is its own (conftest.CACHED_EXCLUDED)
        assert os.statvfs(ro.path).f_blocks == os.statvfs(ro.native).f_blocks


def test_write_to_readonly_fd_is_ebadf_not_erofs(ro):
    fd = os.open(ro.p("file"), os.O_RDONLY)
    try:
        with pytest.raises(OSError) as ei:
            os.write(fd, b"x")
        assert ei.value.errno == errno.EBADF
    finally:
        os.close(fd)


def test_statvfs_reports_read_only(ro):
    assert os.statvfs(ro.path).f_flag & os.ST_RDONLY
