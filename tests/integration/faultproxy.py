"""A fault-injecting HTTP/1.1 reverse proxy for the remote-mirror tests.

It sits on 127.0.0.1 in front of a real server (Apache mod_dav, nginx, Ceph
RGW, ...) and passes every exchange through unchanged -- request line,
headers (Host included: S3 SigV4 signs it, so a client signs against the
proxy's address, which is the address it connects to anyway) and bodies,
streamed in 64 KiB pieces in both directions (Content-Length, chunked, or
until close), so a 1 GiB body passes with bounded memory.  Keep-alive is kept
on both sides: one upstream connection per client connection.

Until a rule says otherwise.  Rules are tried in order on each request; a rule
matches on method and/or a path regex (re.search on the request target, query
included) and fires from its nth match on, `times` times (None: for ever);
the first armed rule wins, but every matching rule counts the request:

    p = FaultProxy("127.0.0.1", dav_port).start()
    p.fail(503, method="PUT", retry_after=2)       # answered here, not sent
    p.fail(507, path=r"^/big", nth=3, times=None)  # 3rd match onwards
    p.slow(delay=1.0, rate=256 << 10)               # slow server, slow upload
    p.slow(response_rate=1 << 20, method="GET")     # slow download
    p.reset(method="PUT", after_bytes=8 << 20)      # RST mid-upload
    p.reset(method="GET")                           # forwarded, answer lost
    p.drop(method="PROPFIND")                       # hung server
    p.kill(method="PUT", nth=5)                     # dies: down(kill=True)
    p.down(); p.up()                                # refused / back on port
    p.wait_for(lambda: p.count("PUT") >= 2, timeout=10)
    p.log        # [(method, target, status-or-fault-name), ...]
    p.clear(); p.stop()

Standard library only.  `python3 faultproxy.py HOST:PORT` runs it by hand
(commands on stdin; see main()).
"""
import collections
import re
import select
import socket
import struct
import sys
import threading
import time

CHUNK = 64 << 10
MAX_HEAD = 64 << 10
REASONS = {400: "Bad Request", 404: "Not Found", 409: "Conflict",
           412: "Precondition Failed", 423: "Locked",
           429: "Too Many Requests", 500: "Internal Server Error",
           502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 507: "Insufficient Storage"}


class Rule:
    """One fault.  `seen` counts matching requests, `hits` the times it fired."""

    def __init__(self, action, method=None, path=None, nth=1, times=1,
                 **params):
        if nth < 1 or (times is not None and times < 1):
            raise ValueError("nth and times must be >= 1 (times None: forever)")
        self.action, self.params = action, params
        self.method = method.upper() if method else None
        self.path = re.compile(path) if path else None
        self.nth, self.times = nth, times
        self.seen = self.hits = 0

    def _matches(self, method, target):
        return (not self.method or self.method == method) and \
            (not self.path or bool(self.path.search(target)))

    def _armed(self):
        return self.seen >= self.nth and (self.times is None
                                          or self.hits < self.times)

    def __repr__(self):
        return "Rule(%s %s method=%s path=%s nth=%d times=%s hits=%d)" % (
            self.action, self.params, self.method,
            self.path.pattern if self.path else None, self.nth, self.times,
            self.hits)


def _rst(sock):
    """Close with SO_LINGER 0: the peer gets a TCP RST, not a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class _Peer:
    """A socket and the buffered reader the head parser and bodies share."""

    def __init__(self, sock):
        self.sock, self.rf = sock, sock.makefile("rb")

    def close(self, rst=False):
        self.rf.close()          # drops makefile's reference to the fd first
        if rst:
            _rst(self.sock)
        else:
            self.sock.close()


def _read_head(rf):
    """Start line and header lines (raw bytes) up to the blank line.
    None on a clean EOF before the first byte."""
    lines, size = [], 0
    while True:
        line = rf.readline(MAX_HEAD)
        if not line:
            if lines:
                raise ConnectionError("EOF inside a message head")
            return None
        if not lines and line in (b"\r\n", b"\n"):
            continue             # stray CRLF between messages (RFC 9112 2.2)
        size += len(line)
        if size > MAX_HEAD or not line.endswith(b"\n"):
            raise ValueError("message head too long")
        if line in (b"\r\n", b"\n"):
            return lines, b"".join(lines) + line
        lines.append(line)


def _headers(lines):
    h = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        key = name.strip().lower()
        h[key] = (h[key] + ", " if key in h else "") + value.strip()
    return h


def _fixed(rf, n):
    while n > 0:
        piece = rf.read1(min(n, CHUNK))
        if not piece:
            raise ConnectionError("peer closed inside a body")
        n -= len(piece)
        yield piece


def _chunked(rf):
    """The chunked body as it is on the wire, framing included."""
    while True:
        line = rf.readline(1024)
        if not line.endswith(b"\n"):
            raise ConnectionError("bad chunk size line")
        yield line
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:          # trailers, then the final CRLF
                t = rf.readline(MAX_HEAD)
                if not t.endswith(b"\n"):
                    raise ConnectionError("bad trailer")
                yield t
                if t in (b"\r\n", b"\n"):
                    return
        yield from _fixed(rf, size)
        yield from _fixed(rf, 2)


def _until_close(rf):
    while True:
        piece = rf.read1(CHUNK)
        if not piece:
            return
        yield piece


def _body(rf, h, request, method=None, status=None):
    """(pieces, framed): framed False means the body ends at EOF."""
    if not request and (method == "HEAD" or 100 <= status < 200
                        or status in (204, 304)):
        return iter(()), True
    if "chunked" in h.get("transfer-encoding", "").lower():
        return _chunked(rf), True
    if "content-length" in h:
        return _fixed(rf, int(h["content-length"].split(",")[0])), True
    return (iter(()), True) if request else (_until_close(rf), False)


def _wants_close(lines, h):
    conn = h.get("connection", "").lower()
    return "close" in conn or (lines[0].split()[0] == b"HTTP/1.0" or
                               lines[0].rstrip().endswith(b"HTTP/1.0")) \
        and "keep-alive" not in conn


class FaultProxy:
    def __init__(self, upstream_host, upstream_port, host="127.0.0.1", port=0,
                 upstream_timeout=60.0, upstream_idle=2.0):
        """upstream_timeout: seconds a socket operation on the upstream may
        block.  upstream_idle: an upstream connection idle longer than this
        is not reused (a server closing it at that moment, e.g. Apache's
        KeepAliveTimeout 5 s, would fail a request no rule asked to fail)."""
        self.upstream = (upstream_host, upstream_port)
        self.upstream_timeout = upstream_timeout
        self.upstream_idle = upstream_idle
        self.host, self.port = host, port
        self.rules, self.log = [], []
        self.counts = collections.Counter()   # (method, target) -> requests
        self._cond = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._lsock = None
        self._conns = set()      # open client sockets, for down(kill)/stop
        self._ups = set()        # open upstream sockets, for stop
        self._threads = []
        self.connections = 0     # client connections accepted

    # ---- life cycle --------------------------------------------------------
    def start(self):
        self.up()
        return self

    def up(self):
        """Listen (again) on the same port."""
        with self._cond:
            if self._lsock is not None:
                return
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((self.host, self.port))
            s.listen(128)
            self.port = s.getsockname()[1]
            self._lsock = s
            self._spawn(self._accept_loop, s)

    def down(self, kill=False):
        """Stop listening: new connections are refused.  Connections already
        open finish their exchanges, unless kill (server killed): they are
        cut too."""
        with self._cond:
            s, self._lsock = self._lsock, None
            if s is not None:
                try:
                    s.shutdown(socket.SHUT_RDWR)   # wakes accept() on Linux
                except OSError:
                    pass
                s.close()
            if kill:
                for c in list(self._conns):
                    try:
                        c.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

    def stop(self):
        self._stop.set()
        self.down(kill=True)
        with self._cond:
            for u in list(self._ups):
                try:
                    u.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        for t in list(self._threads):
            t.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    # ---- rules -------------------------------------------------------------
    def add(self, rule):
        with self._cond:
            self.rules.append(rule)
        return rule

    def fail(self, code, retry_after=None, body=None, **match):
        """Answer `code` without forwarding (the request body is read and
        discarded first, so the connection stays usable)."""
        return self.add(Rule("status", code=code, retry_after=retry_after,
                             body=body, **match))

    def slow(self, delay=0.0, rate=None, response_rate=None, **match):
        """Wait `delay` s before forwarding; send the request body upstream
        at most `rate` bytes/s, the response body to the client at most
        `response_rate` bytes/s."""
        return self.add(Rule("slow", delay=delay, rate=rate,
                             response_rate=response_rate, **match))

    def reset(self, after_bytes=None, **match):
        """Forward the head and `after_bytes` bytes of the request body (as
        on the wire), then RST the client.  None, or a shorter body: the
        whole request is forwarded and the client gets a RST instead of the
        answer.  0: nothing is forwarded."""
        return self.add(Rule("reset", after_bytes=after_bytes, **match))

    def drop(self, **match):
        """Read the request, never answer (until the client gives up)."""
        return self.add(Rule("drop", **match))

    def kill(self, **match):
        """The server dies on this request: down(kill=True), unanswered."""
        return self.add(Rule("kill", **match))

    def clear(self):
        with self._cond:
            self.rules.clear()

    # ---- observation ------------------------------------------------------
    def count(self, method=None, path=None):
        """Requests received (forwarded or not), by method and path regex."""
        rx = re.compile(path) if path else None
        with self._cond:
            return sum(n for (m, t), n in self.counts.items()
                       if (method is None or m == method.upper())
                       and (rx is None or rx.search(t)))

    def wait_for(self, predicate, timeout):
        """Wait until predicate() is true (rechecked on every request and
        every logged exchange); TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError("faultproxy: condition not met in %ss"
                                   % timeout)

    def _record(self, method, target, status):
        with self._cond:
            self.log.append((method, target, status))
            self._cond.notify_all()

    # ---- serving -----------------------------------------------------------
    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads = [x for x in self._threads if x.is_alive()] + [t]
        t.start()

    def _accept_loop(self, lsock):
        while True:
            try:
                sock, _ = lsock.accept()
            except OSError:
                return           # down(): the listener was shut down
            with self._cond:
                if self._stop.is_set():
                    _rst(sock)
                    return
                self._conns.add(sock)
                self.connections += 1
            self._spawn(self._serve, sock)

    def _serve(self, sock):
        client, state = _Peer(sock), {"up": None, "used": 0.0}
        rst = False
        try:
            while not self._stop.is_set():
                got = _read_head(client.rf)
                if got is None:
                    break
                keep, rst = self._exchange(client, state, *got)
                if not keep:
                    break
        except (OSError, ValueError):
            pass
        finally:
            with self._cond:     # no shutdown() from down/stop on a dead fd
                self._conns.discard(sock)
                self._close_up(state)
                client.close(rst=rst)

    def _exchange(self, client, state, lines, head):
        """One request.  Returns (keep the connection, end it with a RST)."""
        parts = lines[0].decode("latin-1").split()
        if len(parts) != 3:
            raise ValueError("bad request line")
        method, target = parts[0].upper(), parts[1]
        h = _headers(lines)
        with self._cond:
            self.counts[(method, target)] += 1
            rule = None          # every matching rule counts the request
            for r in self.rules:
                if r._matches(method, target):
                    r.seen += 1
                    if rule is None and r._armed():
                        rule = r
            if rule is not None:
                rule.hits += 1
            self._cond.notify_all()
        act = rule.action if rule else None
        body, _ = _body(client.rf, h, True)
        expect = "100-continue" in h.get("expect", "").lower()
        keep = not _wants_close(lines, h)

        if act == "status":
            code, p = rule.params["code"], rule.params
            if expect:           # the client holds its body: answer, close
                keep = False
            else:
                for _ in body:
                    pass
            text = p["body"] if p["body"] is not None else \
                "faultproxy: %d\n" % code
            data = text.encode() if isinstance(text, str) else text
            out = "HTTP/1.1 %d %s\r\nContent-Length: %d\r\n" % (
                code, REASONS.get(code, "Fault"), len(data))
            if p["retry_after"] is not None:
                out += "Retry-After: %s\r\n" % p["retry_after"]
            if not keep:
                out += "Connection: close\r\n"
            self._record(method, target, code)
            client.sock.sendall(out.encode() + b"\r\n" +
                                (b"" if method == "HEAD" else data))
            return keep, False
        if act == "drop":
            self._record(method, target, "drop")
            while not self._stop.is_set():      # until the client hangs up
                r, _, _ = select.select([client.sock], [], [], 0.2)
                if r and not client.sock.recv(CHUNK):
                    break
            return False, False
        if act == "kill":
            self._record(method, target, "kill")
            self.down(kill=True)
            return False, True
        if act == "reset" and rule.params["after_bytes"] == 0:
            self._record(method, target, "reset")
            return False, True
        if act == "slow" and rule.params["delay"]:
            self._stop.wait(rule.params["delay"])
        return self._forward(client, state, method, target, head, body,
                             expect, keep, rule)

    def _close_up(self, state):
        with self._cond:
            if state["up"] is not None:
                self._ups.discard(state["up"].sock)
                state["up"].close()
                state["up"] = None

    def _upstream(self, state):
        if state["up"] is not None:    # reuse unless the server closed it
            r, _, _ = select.select([state["up"].sock], [], [], 0)
            if r or time.monotonic() - state["used"] > self.upstream_idle:
                self._close_up(state)
        if state["up"] is None:
            sock = socket.create_connection(self.upstream,
                                            timeout=self.upstream_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._cond:
                self._ups.add(sock)
                state["up"] = _Peer(sock)
        return state["up"]

    def _send_body(self, body, dst, rate, limit):
        """Pump pieces to dst; False if `limit` bytes went and it stopped."""
        sent, t0 = 0, time.monotonic()
        for piece in body:
            if limit is not None and sent + len(piece) >= limit:
                dst.sendall(piece[:limit - sent])
                return False
            if rate:
                for i in range(0, len(piece), max(1, rate // 10)):
                    part = piece[i:i + max(1, rate // 10)]
                    dst.sendall(part)
                    sent += len(part)
                    ahead = sent / rate - (time.monotonic() - t0)
                    if ahead > 0 and self._stop.wait(ahead):
                        raise ConnectionError("proxy stopped")
            else:
                dst.sendall(piece)
                sent += len(piece)
        return True

    def _response_head(self, up, client, expect=False):
        """The upstream's final response head; 1xx ones go to the client
        (but a 100 awaited for `Expect: 100-continue` is returned)."""
        while True:
            got = _read_head(up.rf)
            if got is None:
                raise ConnectionError("upstream closed without answering")
            lines, head = got
            status = int(lines[0].split()[1])
            if status >= 200 or status == 101 or (expect and status == 100):
                return lines, head, status
            client.sock.sendall(head)

    def _forward(self, client, state, method, target, head, body, expect,
                 keep, rule):
        act = rule.action if rule else None
        rate = rule.params["rate"] if act == "slow" else None
        limit = rule.params["after_bytes"] if act == "reset" else None
        try:
            up = self._upstream(state)
        except OSError:
            msg = b"faultproxy: upstream unreachable\n"
            self._record(method, target, 502)
            client.sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nConnection: "
                                b"close\r\nContent-Length: %d\r\n\r\n%s"
                                % (len(msg), msg))
            return False, False
        try:
            up.sock.sendall(head)
            early = None
            if expect:
                early = self._response_head(up, client, expect=True)
                if early[2] != 100:       # final answer before the body
                    keep = False
                else:
                    client.sock.sendall(early[1])
                    early = None
            if early is None:
                if not self._send_body(body, up.sock, rate, limit):
                    self._record(method, target, "reset")
                    return False, True
                lines, rhead, status = self._response_head(up, client)
            else:
                lines, rhead, status = early
        except (OSError, ValueError):
            self._record(method, target, "upstream-error")
            return False, False
        if act == "reset":        # the server did it; the answer is lost
            self._record(method, target, "reset")
            return False, True
        rh = _headers(lines)
        rbody, framed = _body(up.rf, rh, False, method, status)
        self._record(method, target, status)   # before the client sees it
        client.sock.sendall(rhead)
        try:
            self._send_body(rbody, client.sock, rule.params["response_rate"]
                            if act == "slow" else None, None)
        except (OSError, ValueError):
            return False, False  # cut in the middle: the client sees it
        if status == 101 or not framed or _wants_close(lines, rh):
            keep = False
        state["used"] = time.monotonic()
        if not keep:
            self._close_up(state)
        return keep, False


def main(argv):
    """python3 faultproxy.py UPSTREAM_HOST:PORT [LISTEN_PORT]
    Then one command a line on stdin, e.g.
      fail 503 method=PUT path=^/a nth=2 times=3 retry_after=5
      slow delay=1 rate=65536 | reset after_bytes=1048576 method=PUT
      drop method=GET | kill | down | up | clear | rules | counts | log"""
    if len(argv) not in (2, 3) or ":" not in argv[1]:
        print(main.__doc__, file=sys.stderr)
        return 2
    host, port = argv[1].rsplit(":", 1)
    p = FaultProxy(host, int(port), port=int(argv[2]) if len(argv) > 2
                   else 0).start()
    print("faultproxy: listening on %s -> %s" % (p.address, argv[1]),
          flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        cmd, args, kw = words[0], [w for w in words[1:] if "=" not in w], {}
        for w in words[1:]:
            if "=" in w:
                k, v = w.split("=", 1)
                kw[k] = None if v == "forever" else \
                    v if k in ("method", "path") else float(v) \
                    if "." in v else int(v)
        try:
            if cmd == "fail":
                print(p.fail(int(args[0]), **kw))
            elif cmd in ("slow", "reset", "drop", "kill"):
                print(getattr(p, cmd)(**kw))
            elif cmd in ("down", "up", "clear"):
                getattr(p, cmd)()
            elif cmd in ("rules", "log"):
                print("\n".join(map(str, getattr(p, cmd))))
            elif cmd == "counts":
                for (m, t), n in sorted(p.counts.items()):
                    print(n, m, t)
            else:
                print("unknown command: %s" % cmd)
        except (TypeError, ValueError, IndexError) as e:
            print("error: %s" % e)
        sys.stdout.flush()
    p.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
