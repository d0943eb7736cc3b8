"""A mount whose daemon was killed (kill -9): the kernel keeps the mount and
answers every access with ENOTCONN ("Transport endpoint is not connected").
prismfs names it as such: mount onto it refuses with one line saying the
daemon is gone and how to clear it, status says the daemon is gone, unmount
clears it (exit 0, one line saying the daemon was gone), and a new mount
then works."""
import errno
import os
import signal

import pytest

from conftest import is_mounted
from prism_helpers import (assert_one_error_line, bg, cli, make_dirs,  # noqa: F401 (bg)
                           mount_count, process_gone, status_json, stderr_lines, wait_for)


def _dead(mnt):
    try:
        os.statvfs(mnt)
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


def _kill_daemon(kind, w, src, mnt, mounter, bg):
    args = []
    if kind == "layers":
        args = ["--upper", make_dirs(w, "upper")[0]]
    if kind == "foreground":
        m = mounter(src, mnt)
        os.listdir(mnt)
        m.proc.send_signal(signal.SIGKILL)
        m.wait(15)  # reaped; the mount stays
    else:
        res = bg.mount(src, mnt, *args)
        assert res.returncode == 0, res.stderr
        pid = status_json(mnt)["pid"]
        bg.remember_pid(pid)
        os.listdir(mnt)
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: process_gone(pid), 15)
    assert wait_for(lambda: _dead(mnt), 15), "the killed daemon's mount is not dead"
    assert is_mounted(mnt)


@pytest.mark.parametrize("kind", ["background", "foreground", "layers"])
def test_dead_mount_named_and_cleared(workdir, mounter, bg, kind):
    src, mnt = make_dirs(workdir, "src", "mnt")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x\n")
    _kill_daemon(kind, workdir, src, mnt, mounter, bg)

    # mount onto it: not "busy", but dead, and how to clear it
    res = cli("mount", src, mnt, timeout=30)
    assert_one_error_line(res, "prismfs mount onto a dead mount")
    msg = res.stderr.lower()
    assert "busy" not in msg and "gone" in msg and "prismfs unmount" in msg, (
        "the refusal should say the daemon is gone and how to clear the mount: %r"
        % res.stderr)
    assert mount_count(mnt) == 1, "the refused mount changed the mounts"

    # status: the daemon is gone (and how to clear it)
    for args in (["status", mnt], ["status", "--json", mnt]):
        res = cli(*args, timeout=30)
        assert_one_error_line(res, "prismfs %s on a dead mount" % " ".join(args))
        assert "gone" in res.stderr and "prismfs unmount" in res.stderr, res.stderr
        assert res.stdout == ""

    if kind == "layers":
        # an action needs the daemon: refused, the mount kept, one line
        res = cli("unmount", "--action", "commit", mnt, timeout=30)
        assert_one_error_line(res, "prismfs unmount --action commit on a dead mount")
        assert "gone" in res.stderr, res.stderr
        assert is_mounted(mnt)

    # unmount clears it, says the daemon was gone, and succeeds
    res = cli("unmount", mnt, timeout=30)
    assert res.returncode == 0, "prismfs unmount of a dead mount exited %d: %s" % (
        res.returncode, res.stderr)
    lines = stderr_lines(res.stderr)
    assert len(lines) == 1 and lines[0].startswith("prismfs: ") and "gone" in lines[0], (
        "prismfs unmount of a dead mount should say in one line that the daemon was "
        "gone: %r" % res.stderr)
    assert not is_mounted(mnt)

    # ... and the mount point takes a new mount
    res = bg.mount(src, mnt)
    assert res.returncode == 0, res.stderr
    assert os.listdir(mnt) == ["f"]
    res = cli("unmount", mnt, timeout=30)
    assert res.returncode == 0 and not is_mounted(mnt), res.stderr


def test_dead_mount_over_source(workdir, bg):
    """prismfs mount DIR DIR, daemon killed: mounting DIR DIR again is named
    a dead mount too; unmount clears it and DIR holds its files again."""
    (src,) = make_dirs(workdir, "src")
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x\n")
    _kill_daemon("background", workdir, src, src, None, bg)
    res = cli("mount", src, src, timeout=30)
    assert_one_error_line(res, "prismfs mount DIR DIR onto a dead mount of DIR")
    assert "gone" in res.stderr and "prismfs unmount" in res.stderr, res.stderr
    res = cli("unmount", src, timeout=30)
    assert res.returncode == 0, res.stderr
    assert not is_mounted(src) and os.listdir(src) == ["f"]
