"""The fault-injecting proxy (faultproxy.py) itself, in front of a real
HTTP/1.1 server started here (http.server storing PUT bodies in a temp dir),
driven over real sockets with http.client.  The remote-mirror tests put the
same proxy in front of Apache, nginx and RGW."""
import hashlib
import http.client
import http.server
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse

import pytest

from faultproxy import FaultProxy

MiB = 1 << 20


class Store(http.server.BaseHTTPRequestHandler):
    """PUT stores the body (streamed; kept only when complete), GET/HEAD
    serve it (GET ?chunked: chunked response), DELETE removes it, any other
    method answers 207 naming itself."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _file(self):
        path = urllib.parse.urlsplit(self.path).path
        return os.path.join(self.server.root,
                            hashlib.sha256(path.encode()).hexdigest())

    def _seen(self):
        self.server.seen.append((self.command, self.path,
                                 dict(self.headers.items()),
                                 self.client_address))

    def _body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", ""):
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return
                while size:
                    piece = self.rfile.read(min(size, 1 << 16))
                    if not piece:
                        raise ConnectionError("short chunk")
                    size -= len(piece)
                    yield piece
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", 0))
        while n:
            piece = self.rfile.read(min(n, 1 << 16))
            if not piece:
                raise ConnectionError("short body")
            n -= len(piece)
            yield piece

    def _answer(self, code, data=b"", extra=()):
        self.send_response(code)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_PUT(self):
        self._seen()
        dst = self._file()
        # A part file of its own: the handler of a PUT whose client was cut
        # may still be reading what the proxy passed on when the retry
        # comes, and a shared NAME.part let its late writes land in the
        # retry's file, renamed into place by then (seen under load).
        part = "%s.part-%d" % (dst, threading.get_ident())
        try:
            with open(part, "wb") as f:
                for piece in self._body():
                    f.write(piece)
        except BaseException:
            os.unlink(part)
            raise
        os.rename(part, dst)
        self._answer(201)

    def do_GET(self):
        self._seen()
        try:
            f = open(self._file(), "rb")
        except FileNotFoundError:
            return self._answer(404, b"no such file\n")
        chunked = self.path.endswith("?chunked")
        with f:
            self.send_response(200)
            if chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length",
                                 str(os.fstat(f.fileno()).st_size))
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                piece = f.read(1 << 16)
                if chunked:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                elif piece:
                    self.wfile.write(piece)
                if not piece:
                    break

    do_HEAD = do_GET

    def do_DELETE(self):
        self._seen()
        try:
            os.unlink(self._file())
        except FileNotFoundError:
            return self._answer(404)
        self._answer(204)

    def _other(self):
        self._seen()
        data = b"".join(self._body())
        self._answer(207, b"%s %s %d\n" % (self.command.encode(),
                                           self.path.encode(), len(data)),
                     [("Content-Type", "text/plain")])

    do_POST = do_OPTIONS = do_PROPFIND = do_PROPPATCH = do_MKCOL = \
        do_MOVE = do_COPY = do_LOCK = do_UNLOCK = _other


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass                     # cut bodies are what the faults are for


@pytest.fixture
def upstream(tmp_path):
    srv = Server(("127.0.0.1", 0), Store)
    srv.root, srv.seen = str(tmp_path), []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def proxy(upstream):
    p = FaultProxy("127.0.0.1", upstream.server_address[1]).start()
    yield p
    p.stop()


def conn(p, timeout=30):
    return http.client.HTTPConnection("127.0.0.1", p.port, timeout=timeout)


def request(p, method, path, body=None, headers=None, c=None, **kw):
    """One exchange; returns (status, headers, body)."""
    c = c or conn(p)
    c.request(method, path, body=body, headers=headers or {}, **kw)
    r = c.getresponse()
    return r.status, r.headers, r.read()


def blocks(total, seed=b"x", size=MiB):
    """A deterministic body in `size` pieces and the sha256 it will have."""
    base = hashlib.sha256(seed).digest() * (size // 32)
    h = hashlib.sha256()

    def gen():
        for i in range(total // size):
            piece = i.to_bytes(8, "little") + base[8:]
            h.update(piece)
            yield piece
    return gen(), h


def vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise LookupError(field)


def test_200mib_put_get_stream_with_bounded_memory(proxy, upstream):
    size = 200 * MiB
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")             # resets VmHWM, the peak RSS, to the current
    base = vm("VmHWM")
    body, h = blocks(size)
    c = conn(proxy)
    status, _, _ = request(proxy, "PUT", "/big", body=body, c=c,
                           headers={"Content-Length": str(size)})
    assert status == 201
    sent = h.hexdigest()
    c.request("GET", "/big")
    r = c.getresponse()
    assert r.status == 200 and int(r.headers["Content-Length"]) == size
    got, n = hashlib.sha256(), 0
    while True:
        piece = r.read(MiB)
        if not piece:
            break
        got.update(piece)
        n += len(piece)
    peak = vm("VmHWM") - base
    assert n == size and got.hexdigest() == sent
    stored = hashlib.sha256()
    with open(os.path.join(upstream.root, hashlib.sha256(b"/big")
                           .hexdigest()), "rb") as f:
        for piece in iter(lambda: f.read(MiB), b""):
            stored.update(piece)
    assert stored.hexdigest() == sent
    # Proxy, client and server share this process: all of them streamed.
    assert peak < size // 8, "peak RSS grew by %d bytes" % peak
    assert proxy.connections == 1
    assert proxy.log == [("PUT", "/big", 201), ("GET", "/big", 200)]


METHODS = ["GET", "PUT", "HEAD", "DELETE", "PROPFIND", "PROPPATCH", "MKCOL",
           "MOVE", "COPY", "OPTIONS", "POST", "LOCK", "UNLOCK"]


def test_every_method_and_header_passes_unchanged_on_one_connection(
        proxy, upstream):
    c = conn(proxy)
    request(proxy, "PUT", "/m", body=b"seed", c=c)
    upstream.seen.clear()
    want = {"Host": "bucket.s3.example:8443", "X-Amz-Date": "20261206T000000Z",
            "Authorization": "AWS4-HMAC-SHA256 Credential=k/x, Signature=ab",
            "Depth": "1", "Destination": "http://h/n"}
    for m in METHODS:
        status, _, data = request(proxy, m, "/m?q=1", c=c,
                                  body=None if m in ("GET", "HEAD", "DELETE")
                                  else b"<x/>",
                                  headers=want)
        assert status in (200, 201, 204, 207), (m, status)
        if m not in ("PUT", "GET", "HEAD", "DELETE"):
            assert data == b"%s /m?q=1 4\n" % m.encode()
    assert [s[0] for s in upstream.seen] == METHODS
    for _, path, headers, _ in upstream.seen:
        assert path == "/m?q=1"
        for k, v in want.items():
            assert headers[k] == v
    # keep-alive on both sides: one client and one upstream connection
    assert proxy.connections == 1
    assert len({s[3] for s in upstream.seen}) == 1
    for m in METHODS:
        assert proxy.count(m, r"^/m\?q=1$") == 1
    assert proxy.counts[("PUT", "/m?q=1")] == 1


def test_chunked_request_and_response_bodies(proxy, upstream):
    body, h = blocks(8 * MiB, b"c", size=300_001 * 3)
    c = conn(proxy)
    c.request("PUT", "/ch", body=body, encode_chunked=True)
    r = c.getresponse()
    r.read()
    assert r.status == 201
    assert upstream.seen[-1][2]["Transfer-Encoding"] == "chunked"
    for path in ("/ch", "/ch?chunked"):
        status, headers, data = request(proxy, "GET", path, c=c)
        assert status == 200 and hashlib.sha256(data).hexdigest() == \
            h.hexdigest()
    assert headers["Transfer-Encoding"] == "chunked"
    assert proxy.connections == 1


@pytest.mark.parametrize("code", [500, 503, 409, 412, 507])
def test_status_answered_without_forwarding(proxy, upstream, code):
    rule = proxy.fail(code, method="PUT", retry_after=7 if code == 503
                      else None)
    c = conn(proxy)
    status, headers, _ = request(proxy, "PUT", "/s", body=b"a" * 100000, c=c)
    assert status == code
    assert headers.get("Retry-After") == ("7" if code == 503 else None)
    assert upstream.seen == [] and rule.hits == 1
    assert request(proxy, "GET", "/s", c=c)[0] == 404   # never stored
    # one-shot: the next PUT goes through, on the same connection
    assert request(proxy, "PUT", "/s", body=b"b", c=c)[0] == 201
    assert request(proxy, "GET", "/s", c=c)[2] == b"b"
    assert proxy.connections == 1
    assert proxy.log[0] == ("PUT", "/s", code)


def test_nth_match_times_and_clear(proxy, upstream):
    proxy.fail(500, method="GET", path="^/n$", nth=2, times=2)
    request(proxy, "PUT", "/n", body=b"n")
    c = conn(proxy)
    got = [request(proxy, "GET", "/n", c=c)[0] for _ in range(4)]
    assert got == [200, 500, 500, 200]
    assert request(proxy, "GET", "/other", c=c)[0] == 404
    forever = proxy.fail(503, path="^/n", times=None)
    assert [request(proxy, "HEAD", "/n", c=c)[0] for _ in range(3)] == \
        [503] * 3
    assert forever.hits == 3
    proxy.clear()
    assert request(proxy, "HEAD", "/n", c=c)[0] == 200
    # the nth match counts requests an earlier rule answered
    proxy.fail(500, method="GET")
    proxy.fail(409, method="GET", nth=2, times=None)
    assert [request(proxy, "GET", "/n", c=c)[0] for _ in range(3)] == \
        [500, 409, 409]
    assert proxy.count("GET", "^/n$") == 7 and proxy.count("HEAD") == 4


def test_delay_before_forwarding(proxy, upstream):
    proxy.slow(delay=1.0, method="GET")
    t0 = time.monotonic()
    assert request(proxy, "GET", "/d")[0] == 404
    assert time.monotonic() - t0 >= 1.0
    assert upstream.seen[0][0] == "GET"


def test_rate_limited_upload(proxy, upstream):
    proxy.slow(rate=512 << 10, method="PUT")
    t0 = time.monotonic()
    assert request(proxy, "PUT", "/r", body=b"r" * MiB)[0] == 201
    # 1 MiB at 512 KiB/s cannot take less than 2 s (less the first piece)
    assert time.monotonic() - t0 >= 1.9
    assert request(proxy, "GET", "/r")[2] == b"r" * MiB


def test_rate_limited_download(proxy, upstream):
    assert request(proxy, "PUT", "/r", body=b"r" * MiB)[0] == 201
    proxy.slow(response_rate=512 << 10, method="GET")
    t0 = time.monotonic()
    assert request(proxy, "GET", "/r")[2] == b"r" * MiB
    assert time.monotonic() - t0 >= 1.9


def test_reset_in_the_middle_of_a_large_upload(proxy, upstream):
    proxy.reset(method="PUT", after_bytes=4 * MiB)
    body, _ = blocks(64 * MiB)
    with pytest.raises(ConnectionError):   # reset, broken pipe, disconnected
        request(proxy, "PUT", "/u", body=body,
                headers={"Content-Length": str(64 * MiB)})
    proxy.wait_for(lambda: ("PUT", "/u", "reset") in proxy.log, 10)
    # the server got a cut body and kept nothing; the next try goes through
    assert request(proxy, "GET", "/u")[0] == 404
    assert request(proxy, "PUT", "/u", body=b"ok")[0] == 201
    assert request(proxy, "GET", "/u")[2] == b"ok"


def test_reset_before_answering(proxy, upstream):
    proxy.reset(method="PUT")
    with pytest.raises(ConnectionError):
        request(proxy, "PUT", "/a", body=b"done")
    # the server did the work; only the answer was lost
    assert request(proxy, "GET", "/a")[2] == b"done"
    proxy.reset(method="GET", after_bytes=0)
    with pytest.raises(ConnectionError):
        request(proxy, "GET", "/a")
    assert [s[0] for s in upstream.seen] == ["PUT", "GET"]


def test_drop_makes_the_client_time_out(proxy, upstream):
    proxy.drop(method="GET")
    c = conn(proxy, timeout=1)
    with pytest.raises(TimeoutError):
        request(proxy, "GET", "/h", c=c)
    c.close()
    assert upstream.seen == [] and proxy.log == [("GET", "/h", "drop")]
    assert request(proxy, "GET", "/h")[0] == 404


def test_down_refuses_up_reopens_in_flight_finishes(proxy, upstream):
    request(proxy, "PUT", "/f", body=b"f")
    proxy.slow(delay=1.0, method="GET")
    result = []
    t = threading.Thread(target=lambda: result.append(
        request(proxy, "GET", "/f")))
    t.start()
    proxy.wait_for(lambda: proxy.count("GET") == 1, 10)
    port = proxy.port
    proxy.down()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
    with pytest.raises(ConnectionRefusedError):
        request(proxy, "GET", "/f")
    t.join(10)
    assert result and result[0][0] == 200 and result[0][2] == b"f"
    proxy.up()
    assert proxy.port == port
    assert request(proxy, "GET", "/f")[2] == b"f"


def test_kill_cuts_the_request_and_refuses_until_up(proxy, upstream):
    idle = conn(proxy)
    assert request(proxy, "GET", "/k", c=idle)[0] == 404
    proxy.kill(method="PUT")
    with pytest.raises(ConnectionError):
        request(proxy, "PUT", "/k", body=b"k")
    assert ("PUT", "/k", "kill") in proxy.log and upstream.seen[-1][0] == "GET"
    with pytest.raises(ConnectionRefusedError):
        request(proxy, "GET", "/k")
    # the idle keep-alive connection was cut too
    idle.auto_open = 0
    with pytest.raises((ConnectionError, http.client.NotConnected)):
        request(proxy, "GET", "/k", c=idle)
    proxy.up()
    assert request(proxy, "PUT", "/k", body=b"k")[0] == 201


def test_expect_100_continue(proxy, upstream):
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    f = s.makefile("rb")
    s.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
              b"Expect: 100-continue\r\n\r\n")
    assert f.readline().startswith(b"HTTP/1.1 100")
    while f.readline() != b"\r\n":
        pass
    s.sendall(b"abc")
    assert f.readline().startswith(b"HTTP/1.1 201")
    f.close()
    s.close()
    assert request(proxy, "GET", "/e")[2] == b"abc"
    # a fault answers at once; the client keeps its body and the connection
    # closes
    proxy.fail(507, method="PUT")
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    s.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
              b"Expect: 100-continue\r\n\r\n")
    data = b""
    while True:
        piece = s.recv(4096)
        if not piece:
            break
        data += piece
    s.close()
    assert data.startswith(b"HTTP/1.1 507") and b"Connection: close" in data


def test_upstream_unreachable_is_502(upstream):
    port = upstream.server_address[1]
    upstream.shutdown()
    upstream.server_close()
    with FaultProxy("127.0.0.1", port) as p:
        assert request(p, "GET", "/")[0] == 502
        assert p.log == [("GET", "/", 502)]


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_upload_with_expect_continue_and_keepalive(proxy, upstream,
                                                        tmp_path):
    """libcurl (what prismfs's HTTP client is built on) sends
    `Expect: 100-continue` with a large PUT and reuses its connection."""
    src = tmp_path / "src"
    src.write_bytes(os.urandom(3 * MiB))
    url = "http://127.0.0.1:%d/c" % proxy.port
    out = subprocess.run(["curl", "-sS", "--fail", "-H", "Expect: 100-continue",
                          "-T", str(src), url, "-o", "/dev/null", "--next",
                          "-sS", "--fail", url, "-o", str(tmp_path / "dst")],
                         capture_output=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "dst").read_bytes() == src.read_bytes()
    assert "Expect" in upstream.seen[0][2] and proxy.connections == 1
    proxy.fail(507, method="PUT")
    out = subprocess.run(["curl", "-sS", "-H", "Expect: 100-continue", "-T",
                          str(src), url, "-o", "/dev/null", "-w",
                          "%{http_code}"], capture_output=True, timeout=60)
    assert out.stdout == b"507"


def test_idle_upstream_connection_is_not_reused(upstream):
    with FaultProxy("127.0.0.1", upstream.server_address[1],
                    upstream_idle=0.2) as p:
        c = conn(p)
        request(p, "GET", "/i", c=c)
        request(p, "GET", "/i", c=c)
        time.sleep(0.5)
        request(p, "GET", "/i", c=c)
    ports = [s[3] for s in upstream.seen]
    assert ports[0] == ports[1] != ports[2] and p.connections == 1
