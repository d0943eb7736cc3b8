"""Daemon lifecycle: ways to end a mount (signals, prismfs unmount,
fusermount3 -u), background mode, and unmount refusing a busy or foreign
mount."""
import os
import signal
import subprocess
import time

import pytest

from conftest import PRISMFS, force_unmount, is_mounted
from prism_helpers import (assert_one_error_line, bg, cli, make_dirs,  # noqa: F401
                           mount_count, proc_state, process_gone, status_json, wait_for)


def _populate(src):
    os.makedirs(os.path.join(src, "sub"))
    with open(os.path.join(src, "file"), "w") as f:
        f.write("data\n")


def _gone_within(m, timeout):
    try:
        return m.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError("the daemon did not exit within %ss" % timeout)


# --------------------------------------------------------------------------
# foreground daemon: every way to end it gives exit 0 and no mount

@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "prismfs unmount", "fusermount3 -u"])
def test_foreground_end(workdir, mounter, how):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    m = mounter(src, mnt)
    assert m.proc.poll() is None, "the foreground daemon is not running while mounted"
    assert sorted(os.listdir(mnt)) == ["file", "sub"]
    if how.startswith("SIG"):
        m.proc.send_signal(getattr(signal, how))
        rc = _gone_within(m, 15)
    elif how == "prismfs unmount":
        res = cli("unmount", mnt)
        assert res.returncode == 0, "prismfs unmount exited %d: %s" % (res.returncode,
                                                                        res.stderr)
        # unmount waits for the daemon: it must have exited by now
        assert m.proc.poll() is not None, \
            "prismfs unmount returned while the daemon was still running"
        rc = _gone_within(m, 5)
    else:
        res = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True,
                             timeout=15)
        assert res.returncode == 0, "fusermount3 -u failed: %s" % res.stderr
        rc = _gone_within(m, 15)
    assert not is_mounted(mnt), "the mount is still in /proc/self/mountinfo after %s" % how
    assert rc == 0, "the daemon exited with %r after %s:\n%s" % (rc, how, m.stderr())
    m.check_clean_exit()
    assert os.listdir(mnt) == [], "the mount point is not the plain empty directory again"


def test_remount_after_unmount(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    for i in range(3):
        m = mounter(src, mnt)
        with open(os.path.join(mnt, "round%d" % i), "w") as f:
            f.write(str(i))
        assert m.stop() == 0, "round %d: the daemon exited %r: %s" % (i, m.returncode,
                                                                      m.stderr())
        m.check_clean_exit()
        assert not is_mounted(mnt)
    assert sorted(os.listdir(src)) == ["file", "round0", "round1", "round2", "sub"]


# --------------------------------------------------------------------------
# background mode

def test_background_mount_answers_at_once_and_unmount_waits(workdir, bg):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    res = bg.mount(src, mnt)
    # right after return, with no waiting at all
    try:
        listing = sorted(os.listdir(mnt))
    except OSError as e:
        listing = "error %s" % e
    assert res.returncode == 0, "prismfs mount (background) exited %d: %s" % (
        res.returncode, res.stderr)
    assert listing == ["file", "sub"], (
        "the mount did not answer right after prismfs mount returned: listing %r" % (listing,))
    assert is_mounted(mnt), "not in /proc/self/mountinfo after prismfs mount returned"
    with open(os.path.join(mnt, "file")) as f:
        assert f.read() == "data\n"
    obj = status_json(mnt)
    pid = obj.get("pid")
    assert isinstance(pid, int), "status --json pid is %r" % (pid,)
    bg.remember_pid(pid)
    assert proc_state(pid) not in (None, "Z"), "status reports pid %d, which is not running" % pid
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        assert b"prismfs" in f.read(), "pid %d from status is not a prismfs process" % pid
    # the daemon outlives the command and keeps serving
    time.sleep(0.2)
    assert sorted(os.listdir(mnt)) == ["file", "sub"], "the background mount stopped answering"
    res = cli("unmount", mnt)
    gone = process_gone(pid)
    assert res.returncode == 0, "prismfs unmount exited %d: %s" % (res.returncode, res.stderr)
    assert gone, ("prismfs unmount returned while the daemon (pid %d, state %s) was still "
                  "running" % (pid, proc_state(pid)))
    assert not is_mounted(mnt), "still mounted after prismfs unmount"


def test_background_mount_stdio_closed(workdir, bg):
    """The background daemon must not keep the caller's stdout/stderr open
    (a shell's $(prismfs mount ...) would hang)."""
    src, mnt = make_dirs(workdir, "src", "mnt")
    p = subprocess.Popen([PRISMFS, "mount", src, mnt],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    bg.mountpoints.append(os.path.realpath(mnt))
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        pytest.fail("prismfs mount (background) kept stdout/stderr open: reading them "
                    "did not finish within 20 s")
    assert p.returncode == 0, "prismfs mount exited %d: %s" % (p.returncode, err)
    assert is_mounted(mnt)


def test_background_sigterm(workdir, bg):
    src, mnt = make_dirs(workdir, "src", "mnt")
    res = bg.mount(src, mnt)
    assert res.returncode == 0, "prismfs mount exited %d: %s" % (res.returncode, res.stderr)
    pid = status_json(mnt)["pid"]
    bg.remember_pid(pid)
    os.kill(pid, signal.SIGTERM)
    assert wait_for(lambda: process_gone(pid), 15), "the daemon ignored SIGTERM"
    assert wait_for(lambda: not is_mounted(mnt), 5), "the mount stayed after SIGTERM"


# --------------------------------------------------------------------------
# unmount refusals

def test_unmount_of_non_prismfs_paths(workdir, mounter):
    plain, missing = make_dirs(workdir, "plain")[0], os.path.join(workdir, "missing")
    for what, path in (("a plain directory", plain), ("a missing path", missing),
                       ("a path below a mount", None)):
        if path is None:
            src, mnt = make_dirs(workdir, "src", "mnt")
            _populate(src)
            mounter(src, mnt)
            path = os.path.join(mnt, "sub")
        res = cli("unmount", path)
        assert_one_error_line(res, "prismfs unmount on %s" % what)
    assert is_mounted(os.path.join(workdir, "mnt")), "the mount above was unmounted"


def test_unmount_refuses_other_filesystem(workdir):
    tm = make_dirs(workdir, "tmpfs")[0]
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "prismtest", tm],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.strip())
    try:
        with open(os.path.join(tm, "x"), "w") as f:
            f.write("x")
        res = cli("unmount", tm)
        still = os.path.exists(os.path.join(tm, "x"))
        assert_one_error_line(res, "prismfs unmount on a tmpfs")
        assert still, "prismfs unmount unmounted a tmpfs that is not a prismfs mount"
    finally:
        subprocess.run(["umount", "-l", tm], capture_output=True)


def test_unmount_twice(workdir, mounter):
    src, mnt = make_dirs(workdir, "src", "mnt")
    m = mounter(src, mnt)
    res = cli("unmount", mnt)
    assert res.returncode == 0, "the first unmount failed: %s" % res.stderr
    assert m.wait(10) == 0
    m.check_clean_exit()
    res = cli("unmount", mnt)
    assert_one_error_line(res, "a second prismfs unmount")


@pytest.mark.parametrize("holder", ["cwd", "open fd"])
def test_unmount_busy(workdir, mounter, holder):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    m = mounter(src, mnt)
    proc = fd = None
    try:
        if holder == "cwd":
            proc = subprocess.Popen(["sleep", "60"], cwd=os.path.join(mnt, "sub"))
            assert wait_for(lambda: os.path.realpath("/proc/%d/cwd" % proc.pid)
                            == os.path.realpath(os.path.join(mnt, "sub")), 5)
        else:
            fd = os.open(os.path.join(mnt, "file"), os.O_RDONLY)
        res = cli("unmount", mnt)
        assert_one_error_line(res, "prismfs unmount of a busy mount (%s)" % holder)
        msg = res.stderr.lower()
        assert "busy" in msg or "ebusy" in msg, (
            "the refusal should say the mount is busy, it says %r" % res.stderr)
        assert is_mounted(mnt), "the busy mount was unmounted anyway (or lazily detached)"
        assert mount_count(mnt) == 1
        assert m.proc.poll() is None, "the daemon exited although the unmount was refused"
        assert sorted(os.listdir(mnt)) == ["file", "sub"], "the mount stopped answering"
        if fd is not None:
            assert os.pread(fd, 100, 0) == b"data\n", "the open file stopped working"
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        if fd is not None:
            os.close(fd)
    res = cli("unmount", mnt)
    assert res.returncode == 0, "unmount after the mount became idle failed: %s" % res.stderr
    assert m.proc.poll() is not None, "unmount returned before the daemon exited"
    assert m.wait(5) == 0
    m.check_clean_exit()
    assert not is_mounted(mnt)


def test_background_unmount_busy(workdir, bg):
    src, mnt = make_dirs(workdir, "src", "mnt")
    _populate(src)
    res = bg.mount(src, mnt)
    assert res.returncode == 0, "prismfs mount exited %d: %s" % (res.returncode, res.stderr)
    pid = status_json(mnt)["pid"]
    bg.remember_pid(pid)
    fd = os.open(os.path.join(mnt, "file"), os.O_RDONLY)
    try:
        res = cli("unmount", mnt)
        assert_one_error_line(res, "prismfs unmount of a busy background mount")
        assert is_mounted(mnt) and not process_gone(pid), \
            "a refused unmount still unmounted or ended the daemon"
    finally:
        os.close(fd)
    res = cli("unmount", mnt)
    assert res.returncode == 0, "unmount failed: %s" % res.stderr
    assert process_gone(pid), "unmount returned before the background daemon exited"
    assert not is_mounted(mnt)
    force_unmount(mnt)
