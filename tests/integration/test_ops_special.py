"""mknod: FIFOs, unix sockets and device nodes; statfs; access(2)."""
import errno
import os
import socket
import stat
import subprocess
import threading

import pytest

from parity import err, run_parity, st, write_file


def _join(t, what):
    t.join(10)
    assert not t.is_alive(), "%s did not finish within 10 s" % what


def test_fifo_with_threads(view):
    path = view.p("fifo")
    os.mkfifo(path, 0o644)
    s = os.lstat(path)
    assert stat.S_ISFIFO(s.st_mode) and s.st_size == 0
    payload = os.urandom(300 * 1024)  # more than a pipe buffer: needs both ends live
    got = bytearray()
    errors = []

    def reader():
        try:
            fd = os.open(path, os.O_RDONLY)  # blocks until a writer opens
            try:
                while True:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    got.extend(chunk)
            finally:
                os.close(fd)
        except Exception as e:  # reported by the main thread
            errors.append(e)

    def writer():
        try:
            fd = os.open(path, os.O_WRONLY)  # blocks until a reader opens
            try:
                view_ = memoryview(payload)
                n = 0
                while n < len(payload):
                    n += os.write(fd, view_[n:])
            finally:
                os.close(fd)
        except Exception as e:
            errors.append(e)

    tr = threading.Thread(target=reader, daemon=True)
    tw = threading.Thread(target=writer, daemon=True)
    tr.start()
    tw.start()
    _join(tw, "FIFO writer")
    _join(tr, "FIFO reader")
    assert not errors, errors
    assert bytes(got) == payload


def test_fifo_nonblocking_and_parity(view):
    def exchange(b):
        r = os.open(b.p("p"), os.O_RDONLY | os.O_NONBLOCK)
        try:
            w = os.open(b.p("p"), os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(w, b"through the fifo")
            finally:
                os.close(w)
            return os.read(r, 100)
        finally:
            os.close(r)

    res = run_parity(view, [
        ("mkfifo", lambda b: os.mkfifo(b.p("p"), 0o640)),
        ("stat", st("p")),
        ("mkfifo again", lambda b: os.mkfifo(b.p("p"))),
        ("writer without reader", lambda b: os.open(b.p("p"), os.O_WRONLY | os.O_NONBLOCK)),
        ("exchange", exchange),
        ("still empty", st("p")),
        ("unlink", lambda b: os.unlink(b.p("p"))),
    ])
    assert res["stat"]["type"] == "fifo"
    assert res["mkfifo again"] == err(errno.EEXIST)
    assert res["writer without reader"] == err(errno.ENXIO)
    assert res["exchange"] == b"through the fifo"


def test_unix_socket(view):
    path = view.p("sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.settimeout(10)
    try:
        srv.bind(path)
        srv.listen(1)
        s = os.lstat(path)
        assert stat.S_ISSOCK(s.st_mode)
        cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        cli.settimeout(10)
        try:
            cli.connect(path)
            conn, _ = srv.accept()
            with conn:
                cli.sendall(b"ping" * 1000)
                data = b""
                while len(data) < 4000:
                    data += conn.recv(65536)
                assert data == b"ping" * 1000
                conn.sendall(b"pong")
                assert cli.recv(10) == b"pong"
        finally:
            cli.close()
    finally:
        srv.close()
    # a stale socket file: connecting is refused, binding again EADDRINUSE
    c2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        c2.connect(path)
    c2.close()
    s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(OSError) as ei:
        s2.bind(path)
    s2.close()
    assert ei.value.errno == errno.EADDRINUSE
    os.unlink(path)
    assert not os.path.lexists(path)


def test_unix_socket_datagram_and_stat_parity(view):
    def bind(b):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(b.p("dsock"))
            c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                c.sendto(b"datagram", b.p("dsock"))
                s.settimeout(10)
                return s.recv(100)
            finally:
                c.close()
        finally:
            s.close()

    res = run_parity(view, [
        ("bind and send", bind),
        ("stat", st("dsock")),
        ("mknod S_IFSOCK", lambda b: os.mknod(b.p("nsock"), stat.S_IFSOCK | 0o600)),
        ("nsock", st("nsock")),
    ])
    assert res["bind and send"] == b"datagram"
    assert res["stat"]["type"] == "sock"


def test_device_nodes(view):
    res = run_parity(view, [
        ("mknod chr", lambda b: os.mknod(b.p("null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))),
        ("chr", st("null")),
        ("mknod blk", lambda b: os.mknod(b.p("loop"), stat.S_IFBLK | 0o600, os.makedev(7, 200))),
        ("blk", st("loop")),
        ("mknod big numbers", lambda b: os.mknod(b.p("big"), stat.S_IFCHR | 0o600, os.makedev(511, 1048575))),
        ("big", st("big")),
        ("rdev raw", lambda b: os.lstat(b.p("big")).st_rdev),
        ("mknod again", lambda b: os.mknod(b.p("null"), stat.S_IFCHR | 0o666, os.makedev(1, 3))),
        ("mknod bad type", lambda b: os.mknod(b.p("bad"), 0o170000 | 0o600)),
        ("chown dev", lambda b: os.chown(b.p("null"), 5, 6)),
        ("chr after chown", st("null")),
    ])
    assert res["chr"]["type"] == "chr" and res["chr"]["rdev"] == (1, 3)
    assert res["blk"]["type"] == "blk" and res["blk"]["rdev"] == (7, 200)
    assert res["big"]["rdev"] == (511, 1048575)
    assert res["mknod again"] == err(errno.EEXIST)
    s = os.lstat(view.p("null"))
    assert stat.S_ISCHR(s.st_mode) and s.st_rdev == os.makedev(1, 3)


def test_statfs(view):
    os.mkdir(view.p("d"))
    write_file(view.p("d", "f"), b"x")
    n = os.statvfs(view.native)
    for p in (view.path, view.p("d"), view.p("d", "f")):
        m = os.statvfs(p)
        assert m.f_bsize == n.f_bsize, p
        assert m.f_frsize == n.f_frsize, p
        assert m.f_blocks == n.f_blocks, p
        assert m.f_files == n.f_files, p
        assert m.f_namemax == n.f_namemax, p
        # free counts move with concurrent activity: allow 1 % of the size
        assert abs(m.f_bfree - n.f_bfree) <= n.f_blocks // 100, p
        assert abs(m.f_bavail - n.f_bavail) <= n.f_blocks // 100, p
        assert abs(m.f_ffree - n.f_ffree) <= max(n.f_files // 100, 1000), p
        assert not (m.f_flag & os.ST_RDONLY), p
    fd = os.open(view.p("d", "f"), os.O_RDONLY)
    try:
        m = os.fstatvfs(fd)
        assert (m.f_bsize, m.f_blocks) == (n.f_bsize, n.f_blocks)
    finally:
        os.close(fd)


ACCESS_MODES = [0o000, 0o644, 0o600, 0o444, 0o200, 0o755, 0o700, 0o100, 0o010, 0o001, 0o4644]


def _access_all(path):
    return {name: os.access(path, flag) for name, flag in
            (("F", os.F_OK), ("R", os.R_OK), ("W", os.W_OK), ("X", os.X_OK),
             ("RW", os.R_OK | os.W_OK), ("RWX", os.R_OK | os.W_OK | os.X_OK))}


def test_access_as_root(view):
    assert os.geteuid() == 0
    steps = []
    for m in ACCESS_MODES:
        steps += [("file %o" % m, lambda b, m=m: (write_file(b.p("f%o" % m), b"x"), os.chmod(b.p("f%o" % m), m),
                                                  _access_all(b.p("f%o" % m)))[2]),
                  ("dir %o" % m, lambda b, m=m: (os.mkdir(b.p("d%o" % m)), os.chmod(b.p("d%o" % m), m),
                                                 _access_all(b.p("d%o" % m)))[2])]
    steps += [
        ("missing", lambda b: _access_all(b.p("missing"))),
        ("through symlink", lambda b: (os.symlink("f644", b.p("ln")), _access_all(b.p("ln")))[1]),
        ("effective ids", lambda b: os.access(b.p("f644"), os.X_OK, effective_ids=True)),
    ]
    res = run_parity(view, steps)
    for m in ACCESS_MODES:
        f = res["file %o" % m]
        assert f["F"] and f["R"] and f["W"] and f["RW"], (oct(m), f)
        assert f["X"] == bool(m & 0o111), (oct(m), f)
        assert res["dir %o" % m]["X"] is True, oct(m)  # root may search any directory
    assert res["file 644"]["X"] is False
    assert res["missing"] == {k: False for k in ("F", "R", "W", "X", "RW", "RWX")}


def test_exec_permission(view):
    script = b"#!/bin/sh\necho executed \"$@\"\n"

    def run(b, name):
        try:
            return subprocess.run([b.p(name), "arg"], capture_output=True, timeout=20).stdout
        except PermissionError as e:
            return err(e.errno)

    res = run_parity(view, [
        lambda b: (write_file(b.p("x755"), script, mode=0o755), write_file(b.p("x644"), script, mode=0o644)),
        ("run 0755", lambda b: run(b, "x755")),
        ("run 0644", lambda b: run(b, "x644")),
    ])
    assert res["run 0755"] == b"executed arg\n"
    assert res["run 0644"] == err(errno.EACCES)
