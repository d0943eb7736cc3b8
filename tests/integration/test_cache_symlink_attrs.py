"""A cached mount's write-back of a symlink's attributes (issue 15).

lchown and utimensat(AT_SYMLINK_NOFOLLOW) of a symlink in a cached mount
(tar and cp -a do both for every symlink they make) must reach the link on
the mirror and nothing else: not the file it points to, and a link that
points nowhere must not stop the write-back.
"""
import os
import stat

from test_cache import cached, read, sync, write
from prism_helpers import status_json


def test_symlink_attributes_reach_the_link_not_its_target(dirs, mounter):
    mirror, mnt = dirs
    cached(mounter, mirror, mnt)
    target = os.path.join(mnt, "target")
    write(target, "data")
    os.chmod(target, 0o640)
    os.symlink("target", os.path.join(mnt, "link"))
    os.symlink("missing/nowhere", os.path.join(mnt, "dangling"))
    when = (1000000000, 1000000000)
    for name in ("link", "dangling"):
        p = os.path.join(mnt, name)
        os.chown(p, os.getuid(), os.getgid(), follow_symlinks=False)
        os.utime(p, when, follow_symlinks=False)

    sync(mnt)

    st = status_json(mnt)["cache"]
    assert st["pending_ops"] == 0 and st["last_error"] is None, st
    assert stat.S_IMODE(os.stat(os.path.join(mirror, "target")).st_mode) == 0o640
    assert read(os.path.join(mirror, "target")) == "data"
    for name, dest in (("link", "target"), ("dangling", "missing/nowhere")):
        p = os.path.join(mirror, name)
        assert os.readlink(p) == dest
        assert os.lstat(p).st_mtime == when[1]
    assert not os.path.exists(os.path.join(mirror, "missing"))
