"""Requests over io_uring (the kernel's FUSE-over-io_uring): the choice and
what status says of it, requests made on every CPU, bodies as large as the
kernel sends, many callers at once, refusal and fallback when the kernel has
it off, and a clean end.

The kernel offers io_uring to a new FUSE mount only while
/sys/module/fuse/parameters/enable_uring is Y; each test here sets it as it
needs and puts the old value back."""
import hashlib
import json
import os
import signal

import pytest

from conftest import run_cli
from prism_helpers import wait_for

PARAM = "/sys/module/fuse/parameters/enable_uring"


def status(mnt):
    res = run_cli("status", "--json", mnt)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def possible_cpus():
    n = 0
    with open("/sys/devices/system/cpu/possible") as f:
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
    return n


@pytest.fixture
def kernel_uring():
    """kernel_uring(True|False) sets enable_uring; the old value comes back."""
    if not os.path.exists(PARAM):
        pytest.skip("this kernel has no FUSE over io_uring (%s is missing)" % PARAM)
    with open(PARAM) as f:
        old = f.read().strip()

    def set_(on):
        with open(PARAM, "w") as f:
            f.write("Y" if on else "N")

    yield set_
    with open(PARAM, "w") as f:
        f.write(old)


@pytest.mark.parametrize("kernel,option,want,why", [
    (True, "on", "io_uring", "CPU"),
    (True, "auto", "io_uring", "CPU"),
    (True, "off", "/dev/fuse", "--uring off"),
    (False, "auto", "/dev/fuse", "enable_uring"),
])
def test_status_says_how_requests_arrive(trees, mounter, kernel_uring, kernel, option, want,
                                         why):
    src, mnt = trees
    kernel_uring(kernel)
    mounter(src, mnt, "--uring", option)
    st = status(mnt)
    assert st["requests"] == want, st
    assert why in st["requests_reason"], st
    assert st["uring_option"] == option, st
    if want == "io_uring":
        assert st["uring_queues"] == possible_cpus(), st
        assert st["uring_threads"] >= st["uring_queues"], st
    else:
        assert st["uring_queues"] == 0 and st["uring_threads"] == 0, st
    with open(os.path.join(mnt, "f"), "w") as f:
        f.write("x")
    with open(os.path.join(src, "f")) as f:
        assert f.read() == "x"


def test_on_refused_when_the_kernel_has_it_off(trees, kernel_uring):
    src, mnt = trees
    kernel_uring(False)
    res = run_cli("mount", "--uring", "on", src, mnt)
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prismfs: "), res.stderr
    assert "enable_uring" in lines[0], res.stderr
    assert not os.path.ismount(mnt)


def test_bad_uring_value(trees):
    src, mnt = trees
    res = run_cli("mount", "--uring", "sometimes", src, mnt)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "sometimes" in lines[0], res.stderr
    assert not os.path.ismount(mnt)


def _work_on_cpu(cpu, root):
    """In a child pinned to cpu: a round of calls on root/cpuN. The child's
    requests go to that CPU's queue."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.sched_setaffinity(0, {cpu})
            d = os.path.join(root, "cpu%d" % cpu)
            os.mkdir(d)
            for i in range(50):
                p = os.path.join(d, "f%d" % i)
                with open(p, "w") as f:
                    f.write("%d:%d\n" % (cpu, i))
                os.chmod(p, 0o600)
                os.rename(p, p + ".r")
                assert os.stat(p + ".r").st_mode & 0o777 == 0o600
            os.symlink("f0.r", os.path.join(d, "link"))
            os.unlink(os.path.join(d, "f49.r"))
            assert len(os.listdir(d)) == 50
            code = 0
        finally:
            os._exit(code)
    return pid


def test_requests_from_every_cpu(trees, mounter, kernel_uring):
    src, mnt = trees
    kernel_uring(True)
    mounter(src, mnt, "--uring", "on")
    cpus = sorted(os.sched_getaffinity(0))
    pids = [_work_on_cpu(c, mnt) for c in cpus]
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    for c in cpus:
        d = os.path.join(src, "cpu%d" % c)
        names = sorted(os.listdir(d))
        assert names == sorted(["f%d.r" % i for i in range(49)] + ["link"])
        with open(os.path.join(d, "f7.r")) as f:
            assert f.read() == "%d:7\n" % c
        assert os.stat(os.path.join(d, "f7.r")).st_mode & 0o777 == 0o600
        assert os.readlink(os.path.join(d, "link")) == "f0.r"


@pytest.mark.parametrize("passthrough", ["on", "off"])
def test_bodies_as_large_as_the_kernel_sends(trees, mounter, kernel_uring, passthrough):
    """1 MiB writes and reads (the largest request and reply bodies), an
    xattr value both ways (as large as ext4 keeps in a block), and a listing
    of many replies."""
    src, mnt = trees
    kernel_uring(True)
    mounter(src, mnt, "--uring", "on", "--passthrough", passthrough)
    data = os.urandom(3 * 1024 * 1024 + 12345)
    p = os.path.join(mnt, "big")
    fd = os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)
    with open(os.path.join(src, "big"), "rb") as f:
        assert hashlib.sha256(f.read()).digest() == hashlib.sha256(data).digest()
    fd = os.open(p, os.O_RDONLY)
    try:
        got = b""
        while True:
            chunk = os.read(fd, 1024 * 1024)
            if not chunk:
                break
            got += chunk
    finally:
        os.close(fd)
    assert got == data
    value = os.urandom(3500)
    os.setxattr(p, "user.big", value)
    assert os.getxattr(os.path.join(src, "big"), "user.big") == value
    assert os.getxattr(p, "user.big") == value
    d = os.path.join(src, "many")
    os.mkdir(d)
    names = {"entry-with-a-longish-name-%05d" % i for i in range(3000)}
    for n in names:
        open(os.path.join(d, n), "w").close()
    assert set(os.listdir(os.path.join(mnt, "many"))) == names


def test_many_callers_at_once(trees, mounter, kernel_uring):
    src, mnt = trees
    kernel_uring(True)
    mounter(src, mnt, "--uring", "on")
    pids = []
    for k in range(8):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                d = os.path.join(mnt, "p%d" % k)
                os.mkdir(d)
                for i in range(200):
                    with open(os.path.join(d, "f%d" % i), "w") as f:
                        f.write("%d" % (k * 1000 + i))
                for i in range(0, 200, 2):
                    os.unlink(os.path.join(d, "f%d" % i))
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    for pid in pids:
        assert os.waitpid(pid, 0)[1] == 0
    for k in range(8):
        d = os.path.join(src, "p%d" % k)
        assert sorted(os.listdir(d)) == sorted("f%d" % i for i in range(1, 200, 2))
        with open(os.path.join(d, "f199")) as f:
            assert f.read() == "%d" % (k * 1000 + 199)


@pytest.mark.parametrize("how", ["unmount", "sigterm"])
def test_the_daemon_ends_cleanly(trees, mounter, kernel_uring, how):
    src, mnt = trees
    kernel_uring(True)
    m = mounter(src, mnt, "--uring", "on")
    assert status(mnt)["requests"] == "io_uring"
    os.listdir(mnt)
    if how == "unmount":
        assert m.stop() == 0
    else:
        os.kill(m.pid, signal.SIGTERM)
        assert m.wait() == 0
    m.check_clean_exit()
    assert wait_for(lambda: not os.path.ismount(mnt))
