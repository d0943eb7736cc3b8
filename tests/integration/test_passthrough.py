"""Kernel FUSE passthrough: the data path choice, its status, and what
passthrough changes (data never reaches the daemon, backing ids shared per
file and never leaked, coherence with other opens and metadata)."""
import json
import mmap
import os
import subprocess

import pytest

from conftest import PRISMFS, run_cli
from prism_helpers import check_fds_back, daemon_fds, wait_for, wait_released


def status(mnt):
    res = run_cli("status", "--json", mnt)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@pytest.mark.parametrize("mode,path", [("on", "kernel passthrough"), ("off", "daemon"),
                                       ("auto", "kernel passthrough")])
def test_status_says_which_data_path(trees, mounter, mode, path):
    src, mnt = trees
    mounter(src, mnt, "--passthrough", mode)
    st = status(mnt)
    assert st["data_path"] == path, st
    assert st["data_path_reason"], st
    if mode == "off":
        assert "--passthrough off" in st["data_path_reason"], st


def test_bad_passthrough_value(trees):
    src, mnt = trees
    res = run_cli("mount", "--passthrough", "maybe", src, mnt)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prismfs: ") and "maybe" in lines[0], res.stderr


def test_user_namespace_falls_back_or_refuses(trees):
    """Inside a user namespace CAP_SYS_ADMIN does not count for backing
    files: auto serves data through the daemon and says why; on refuses to
    mount with one line."""
    src, mnt = trees
    with open(os.path.join(src, "f"), "w") as f:
        f.write("inside")
    script = r'''
P=%(p)s
$P mount --passthrough on %(s)s %(m)s 2>/tmp/ns-on-$$; echo "on=$?"; cat /tmp/ns-on-$$ >&2
grep -c " %(m)s fuse.prismfs" /proc/self/mounts | sed 's/^/mounted_after_on=/'
$P mount %(s)s %(m)s || exit 9
$P status --json %(m)s
cat %(m)s/f; echo
$P unmount %(m)s; echo "unmount=$?"
rm -f /tmp/ns-on-$$
''' % {"p": PRISMFS, "s": src, "m": mnt}
    res = subprocess.run(["unshare", "-U", "-r", "-m", "--propagation", "private",
                          "sh", "-c", script], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "on=1" in res.stdout, res.stdout
    assert "mounted_after_on=0" in res.stdout, "a refused mount was left: " + res.stdout
    err = [l for l in res.stderr.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("prismfs: ") and "passthrough" in err[0], res.stderr
    js = res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1]
    st = json.loads(js)
    assert st["data_path"] == "daemon" and "CAP_SYS_ADMIN" in st["data_path_reason"], st
    assert "inside" in res.stdout
    assert "unmount=0" in res.stdout


THREADS = 16  # --threads, the default


def test_one_backing_id_per_file_and_no_leaks(trees, mounter):
    """Opens of one file share one backing id; ids and daemon fds return to
    their idle level after 100,000 opens and closes. (Not all fds: threads
    the daemon adds under load keep theirs, within bounds; see daemon_fds.)"""
    src, mnt = trees
    nfiles = 100
    for i in range(nfiles):
        with open(os.path.join(src, "f%d" % i), "w") as f:
            f.write("x" * i)
    m = mounter(src, mnt, "--passthrough", "on", "--threads", str(THREADS))
    paths = [os.path.join(mnt, "f%d" % i) for i in range(nfiles)]
    for p in paths:  # let the kernel know every node first
        os.stat(p)
    idle = daemon_fds(m.pid, mnt)
    assert status(mnt)["backing_ids_open"] == 0

    held = [os.open(p, os.O_RDONLY) for p in paths]
    held += [os.open(p, os.O_RDWR) for p in paths]  # a second open of each file
    st = status(mnt)
    assert st["backing_ids_open"] == nfiles, "one backing id per open file"
    assert st["files_open"] == 2 * nfiles, st
    for fd in held:
        os.close(fd)
    # RELEASE is asynchronous: close(2) returns before the daemon has it.
    assert wait_for(lambda: status(mnt)["backing_ids_open"] == 0, timeout=10)
    assert wait_for(lambda: status(mnt)["files_open"] == 0, timeout=10), status(mnt)

    for _ in range(1000):
        for p in paths:
            os.close(os.open(p, os.O_RDONLY))
    # RELEASE is asynchronous: wait until the daemon has every one.
    wait_released(mnt)
    assert wait_for(lambda: status(mnt)["backing_ids_open"] == 0, timeout=10), status(mnt)
    check_fds_back(m.pid, mnt, idle, THREADS)


def test_data_does_not_reach_the_daemon(trees, mounter):
    """With passthrough, reads and writes of a regular file are not seen by
    the daemon (its log has no read/write), and the data is right."""
    src, mnt = trees
    log = os.path.join(os.path.dirname(src), "ops.jsonl")
    m = mounter(src, mnt, "--passthrough", "on", "--log", log, "--log-format", "json")
    data = os.urandom(3 << 20)
    with open(os.path.join(mnt, "big"), "wb") as f:
        f.write(data)
    with open(os.path.join(mnt, "big"), "rb") as f:
        assert f.read() == data
    m.stop()
    with open(log) as f:
        ops = [json.loads(l).get("op") for l in f if l.strip()]
    assert "create" in ops and "release" in ops
    assert "read" not in ops and "write" not in ops
    with open(os.path.join(src, "big"), "rb") as f:
        assert f.read() == data


def test_two_opens_stay_coherent(view):
    """A file open through passthrough sees what another process writes to
    it through the mount, and the reverse, with size and mtime following."""
    p = view.p("shared")
    with open(p, "wb") as f:
        f.write(b"a" * 100)
    fd1 = os.open(p, os.O_RDWR)
    try:
        before = os.fstat(fd1)
        code = "import os; fd=os.open(%r, os.O_WRONLY|os.O_APPEND); os.write(fd, b'B'*50); os.close(fd)" % p
        subprocess.run(["/usr/bin/python3", "-c", code], check=True)
        assert os.pread(fd1, 200, 0) == b"a" * 100 + b"B" * 50
        assert os.fstat(fd1).st_size == 150
        assert os.stat(p).st_size == 150
        os.pwrite(fd1, b"Z", 0)
        with open(p, "rb") as f:
            assert f.read(1) == b"Z"
        assert os.stat(p).st_mtime_ns >= before.st_mtime_ns
    finally:
        os.close(fd1)


def test_truncate_of_an_open_file(view):
    p = view.p("t")
    with open(p, "wb") as f:
        f.write(b"x" * 8192)
    fd = os.open(p, os.O_RDWR)
    try:
        os.truncate(p, 100)  # by path, while open
        assert os.fstat(fd).st_size == 100
        assert len(os.pread(fd, 8192, 0)) == 100
        os.ftruncate(fd, 20000)
        assert os.stat(p).st_size == 20000
        assert os.pread(fd, 10, 15000) == b"\0" * 10
    finally:
        os.close(fd)


def test_mmap_shared_write_then_read_elsewhere(view):
    p = view.p("m")
    with open(p, "wb") as f:
        f.write(b"\0" * 8192)
    with open(p, "r+b") as f:
        mm = mmap.mmap(f.fileno(), 8192)
        mm[100:105] = b"hello"
        mm.flush()
        mm.close()
    with open(p, "rb") as f:
        assert f.read()[100:105] == b"hello"
    if view.backing:
        with open(os.path.join(view.backing, "m"), "rb") as f:
            assert f.read()[100:105] == b"hello"


def test_append_from_two_fds(view):
    p = view.p("app")
    a = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    b = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        for i in range(50):
            os.write(a, b"A" * 10)
            os.write(b, b"B" * 10)
    finally:
        os.close(a)
        os.close(b)
    with open(p, "rb") as f:
        data = f.read()
    assert len(data) == 1000
    assert data == (b"A" * 10 + b"B" * 10) * 50
