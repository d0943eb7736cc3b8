"""The WebDAV client of the remote mirror (src/mirror/dav.c) against real
servers: Apache mod_dav, nginx + dav-ext and rclone serve webdav (the
least faithful), started here unprivileged on loopback (davservers.py).
The C check program tests/unit/dav_check drives every pfs_remote_ops call; this side checks its verdict, the capabilities
it found against what the server does when asked directly, the requests
the server logged, and what the server's directory holds afterwards."""

import hashlib
import http.client
import os
import subprocess

import pytest

from conftest import PRISMFS
from davservers import KINDS, dav_server

DAV_CHECK = os.path.join(os.path.dirname(PRISMFS), "tests", "unit", "dav_check")


@pytest.fixture(params=KINDS)
def server(request):
    if not os.access(DAV_CHECK, os.X_OK):
        pytest.fail(f"{DAV_CHECK} is not built")
    with dav_server(request.param) as s:
        yield s


def run_check(url, keep):
    p = subprocess.run([DAV_CHECK, url, str(keep)], capture_output=True, text=True,
                       timeout=600)
    return p.returncode, p.stdout, p.stderr


def raw(server, method, path, body=b"", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def server_honours(server):
    """What the server does when asked directly, on a name of our own."""
    found = set()
    assert raw(server, "PUT", "/direct-probe", b"x")[0] in (200, 201, 204)
    if raw(server, "PUT", "/direct-probe", b"y", {"If-None-Match": "*"})[0] == 412:
        found.add("if_match")
    body = (b'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:t">'
            b"<D:set><D:prop><Z:k>v</Z:k></D:prop></D:set></D:propertyupdate>")
    st, reply = raw(server, "PROPPATCH", "/direct-probe", body,
                    {"Content-Type": "application/xml"})
    if st == 207 and b" 200 " in reply and b" 403 " not in reply:
        found.add("meta")
    raw(server, "PUT", "/direct-probe", b"z", {"Date": "Mon, 01 Jan 2001 00:00:00 GMT"})
    if os.stat(os.path.join(server.root, "direct-probe")).st_mtime == 978307200:
        found.add("mtime_date")
    assert raw(server, "DELETE", "/direct-probe")[0] in (200, 204)
    return found


def tree(root):
    """Every name under root, relative, skipping Apache's property store."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".DAV"]
        rel = os.path.relpath(dirpath, root)
        for n in dirnames:
            out.add(os.path.normpath(os.path.join(rel, n)) + "/")
        for n in filenames:
            out.add(os.path.normpath(os.path.join(rel, n)))
    return out


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_every_call(server, tmp_path):
    rc, out, err = run_check(server.url, tmp_path)
    assert rc == 0, out + err + server.error_log()[-3000:]
    assert "FAIL" not in out and out.rstrip().endswith("all ok"), out
    assert err == "", err
    lines = out.splitlines()
    caps = set(next(l for l in lines if l.startswith("caps")).split()[1:])
    server_line = next(l for l in lines if l.startswith("server "))
    # rclone sends no Server header.
    assert server_line.split(" ", 1)[1].lower().startswith(
        server.kind if server.kind != "rclone" else ""), server_line

    # The probe's findings are what the server does when asked directly.
    honours = server_honours(server)
    assert caps & {"if_match", "meta", "mtime_date"} == honours, (caps, honours)
    for name in ("ok big 20971520", "ok move-dir", "ok move-noreplace", "ok remove",
                 "ok list 1000"):
        assert name in lines, out
    assert ("ok create-refused" in lines) == ("if_match" in caps)
    assert ("ok stale-etag" in lines) == ("if_match" in caps)
    assert ("ok meta" in lines) == ("meta" in caps)

    # The listing of 1,000 names was one PROPFIND (Depth 1) of the directory.
    log = server.access_log()
    assert len([1 for m, p, s in log if m == "PUT" and p.startswith("/many/")]) == 1000
    last_put = max(i for i, (m, p, s) in enumerate(log) if m == "PUT" and p.startswith("/many/"))
    listing = [(m, s) for m, p, s in log[last_put:] if p in ("/many", "/many/")]
    assert listing[:1] == [("PROPFIND", None if server.kind == "rclone" else "207")], listing
    # After it, only the checks' own requests on other names (none here).
    assert len([1 for m, s in listing if m == "PROPFIND"]) == 1, listing
    # The probe left nothing, and removed its file by name.
    assert not [n for n in os.listdir(server.root) if n.startswith(".prismfs-probe")]

    # What the server's directory holds, read directly.
    names = tree(server.root)
    expect = {"d/", "d/big.bin", "d/e.txt", "m2/", "m2/sub/", "m2/sub/a", "x2", "many/"}
    expect |= {f"many/f {i:04d}" for i in range(1000)}
    if "meta" in caps:
        expect.add("metadir/")
    if caps & {"meta", "mtime_date"}:
        expect.add("dated")
    assert names == expect, (names - expect, expect - names)
    assert sha(os.path.join(server.root, "d", "big.bin")) == sha(tmp_path / "big.bin")
    assert os.path.getsize(tmp_path / "big.bin") == 20 << 20
    assert read(os.path.join(server.root, "d", "e.txt")) == (
        b"two!" if "if_match" in caps else b"one")
    assert read(os.path.join(server.root, "m2", "sub", "a")) == b"alpha"
    assert read(os.path.join(server.root, "x2")) == b"first"
    for i in (0, 1, 517, 999):
        assert read(os.path.join(server.root, "many", f"f {i:04d}")) == f"many/f {i:04d}".encode()
    if "mtime_date" in caps:
        assert os.stat(os.path.join(server.root, "dated")).st_mtime == 1234567890


def test_open_refuses(server, tmp_path):
    # A root that does not exist: open fails with one line naming it, and
    # nothing is written on the server.
    rc, out, err = run_check(server.url + "/no-such-root", tmp_path)
    assert rc == 1 and err == "", out + err
    assert out.startswith("FAIL open: PROPFIND /: HTTP 404"), out
    assert os.listdir(server.root) == []
    rc, out, _ = run_check("ftp://127.0.0.1/", tmp_path)
    assert rc == 1 and "must start with http://, https://, dav:// or davs://" in out, out
    # dav:// is http:// by another name; a user:password is accepted
    # (these servers ask for none).
    url = server.url.replace("http://", "dav://user:pw%40x@") + "/no-such-root"
    rc, out, err = run_check(url, tmp_path)
    assert rc == 1 and "HTTP 404" in out and err == "", out + err
    # The password is not repeated in messages.
    assert "pw" not in out, out


def test_basic_auth(tmp_path):
    # user:password in the address reaches a server that requires them
    # (escapes undone: the password holds an '@' and a ':'); a wrong one is
    # refused at open with EACCES's status, and nothing is written.
    with dav_server("apache", auth=("alice", "s3:cr@t")) as s:
        host = s.url.split("://", 1)[1]
        rc, out, err = run_check(f"http://alice:wrong@{host}", tmp_path)
        assert rc == 1 and out.startswith("FAIL open: OPTIONS /: HTTP 401"), out + err
        assert os.listdir(s.root) == []
        rc, out, err = run_check(f"davs://alice:s3%3Acr%40t@{host}", tmp_path)
        assert rc == 1 and "FAIL open" in out, out  # TLS to a plain-HTTP port
        rc, out, err = run_check(f"dav://alice:s3%3Acr%40t@{host}", tmp_path)
        assert rc == 0 and out.rstrip().endswith("all ok"), out + err + s.error_log()[-2000:]
        assert err == "", err
        assert "s3:cr@t" not in out and "s3%3Acr%40t" not in out
        assert read(os.path.join(s.root, "x2")) == b"first"
        statuses = {st for m, p, st in s.access_log()}
        assert "401" in statuses  # the wrong password was asked for, and refused
