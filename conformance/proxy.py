"""A counting HTTP proxy on loopback: forwards every request to an upstream server
and records what crossed the wire (requests, response bytes), as a server's
access log would. Used to measure what a query costs, for bams3 and samtools alike."""

from __future__ import annotations

import http.client
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client hanging up mid-response is not news
        pass


class CountingProxy:
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self._log: list[tuple[str, str, str | None, int, int]] = []  # method, path, range, status, body bytes
        self.lock = threading.Lock()
        self._settled = threading.Condition(self.lock)
        self._inflight = 0  # requests being answered: their entries are not in the log yet
        # Fault injection: faults.pop(0) decides the fate of the next request whose method is in
        # fault_methods (GET unless changed), if the list is not empty:
        #   "503" / "500" / "slowdown" (an S3 SlowDown 503): answered by the proxy, not forwarded;
        #   "reset": GET: the connection drops (RST) mid-body; other methods: forwarded (the write
        #            lands upstream) but the connection drops before the response;
        #   "short": GET: the body ends early, connection closed; other methods: as "reset" with a FIN;
        #   "stall": nothing is sent for stall_seconds, then the connection closes.
        #   "whole": GET: forwarded without its Range header (a server that ignores Range answers
        #            200 with the whole object);
        #   "long": GET: the body goes on past its Content-Length (junk after the real bytes) and the
        #           connection stays open, so the client reads the junk as its next answer.
        #   "ok": passed through untouched (to space faults out).
        # fault_match, if set, limits faults to requests whose path contains it.
        # self.injected counts what was done, per kind.
        self.faults: list[str] = []
        self.fault_methods: set[str] = {"GET"}
        self.fault_match: str | None = None
        self.stall_seconds = 10.0
        self.injected: dict[str, int] = {}
        handler = type("Handler", (_Handler,), {"proxy": self})

        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def log(self) -> list[tuple[str, str, str | None, int, int]]:
        """Every request answered so far. A client can read the last byte of a response
        before the proxy has logged it: wait (briefly) for requests still being answered."""
        with self._settled:
            self._settled.wait_for(lambda: self._inflight == 0, timeout=5)
            return list(self._log)

    def reset(self) -> None:
        with self._settled:
            self._settled.wait_for(lambda: self._inflight == 0, timeout=5)
            self._log.clear()

    def gets(self) -> list:
        return [e for e in self.log if e[0] == "GET"]

    def bytes_out(self) -> int:
        return sum(e[4] for e in self.log)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    """Forwards one client connection's requests upstream, counting and (when asked) faulting them."""

    proxy: CountingProxy  # set per proxy (a subclass each)

    protocol_version = "HTTP/1.1"
    # A response goes out in several writes (status and headers, then the body in pieces). With
    # Nagle's algorithm a write waits for the peer to acknowledge the one before, and on a kept
    # connection the client delays that acknowledgement (40 ms on Linux): every request after a
    # connection's first took ~45 ms, where the server answers in ~2. Sent at once, as a server
    # on S3's side of the wire would.
    disable_nagle_algorithm = True

    def log_message(self, *args):  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _fault(self) -> str | None:
        if self.command not in self.proxy.fault_methods:
            return None
        if self.proxy.fault_match is not None and self.proxy.fault_match not in self.path:
            return None
        with self.proxy.lock:
            if not self.proxy.faults:
                return None
            kind = self.proxy.faults.pop(0)
            if kind == "ok":
                return None
            self.proxy.injected[kind] = self.proxy.injected.get(kind, 0) + 1
        if kind in ("500", "503", "slowdown"):
            self._body()  # read whatever was sent, so the connection stays in step
            code = 500 if kind == "500" else 503
            msg = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>" \
                if kind == "slowdown" else b"<Error><Code>InternalError</Code></Error>"
            self.send_response_only(code)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(msg)))
            self.end_headers()
            self.wfile.write(msg)
            with self.proxy.lock:
                self.proxy._log.append((self.command, self.path, self.headers.get("Range"), code, 0))
            return kind
        if kind == "stall":
            time.sleep(self.proxy.stall_seconds)
            self.close_connection = True
            with self.proxy.lock:
                self.proxy._log.append((self.command, self.path, self.headers.get("Range"), 0, 0))
        return kind  # "reset" / "short": forwarded, then cut (below)

    def _relay(self, resp, fault: str | None) -> int:
        """The response body, passed on piece by piece (or faulted); the bytes delivered (also in
        ``self._sent`` as they go, so a client that hangs up mid-body is counted for what it got:
        htslib reads open-ended ranges and closes the connection when it has enough)."""
        sent = self._sent = 0
        while self.command != "HEAD":
            piece = resp.read(1 << 16)
            if not piece:
                break
            if fault == "long":  # the real bytes, then junk beyond the Content-Length
                rest = resp.read()
                junk = piece + rest + b"<junk past the Content-Length>" * 64
                self.wfile.write(junk)
                sent += len(junk)
                self.wfile.flush()
                break  # the connection stays open: the junk is read as the next answer
            if fault in ("reset", "short"):  # half the body, then the connection goes
                piece = piece[: max(1, len(piece) // 2)]
                self.wfile.write(piece)
                sent += len(piece)
                self.wfile.flush()
                self._drop(rst=fault == "reset")  # RST, or a FIN for "short"
                break
            self.wfile.write(piece)  # counted as it is delivered
            sent += len(piece)
            self._sent = sent
        return sent

    def _drop(self, rst: bool):
        if rst:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _forward(self):
        with self.proxy.lock:
            self.proxy._inflight += 1
        try:
            self._answer()
        finally:
            with self.proxy.lock:
                self.proxy._inflight -= 1
                self.proxy._settled.notify_all()

    def _answer(self):
        fault = self._fault()
        if fault in ("500", "503", "slowdown", "stall"):
            return
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        if fault == "whole":  # a server that ignores Range: the whole object, 200
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        # one upstream connection per client connection, kept while responses are read whole
        conn = getattr(self, "_upstream", None)
        fresh = conn is None
        if fresh:
            conn = self._upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
        sent = 0
        status = 0
        complete = False
        try:
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
            except (http.client.RemoteDisconnected, ConnectionError, BrokenPipeError):
                if fresh:
                    raise
                conn.close()  # the kept connection had gone stale: once more on a new one
                conn = self._upstream = http.client.HTTPConnection(*self.proxy.upstream, timeout=60)
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
            status = resp.status
            if fault in ("reset", "short") and self.command != "GET":  # done upstream, never answered
                resp.read()
                complete = True
                self._drop(rst=fault == "reset")
                return
            self.send_response_only(resp.status, resp.reason)
            chunked = resp.getheader("Content-Length") is None and self.command != "HEAD"
            for k, v in resp.getheaders():
                if k.lower() not in HOP:
                    self.send_header(k, v)
            if chunked:  # rare: pass the body on in one piece with its length
                data = resp.read()
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                sent = len(data)
            else:
                self.end_headers()
                sent = self._relay(resp, fault)
            complete = resp.isclosed() or self.command == "HEAD"
        except (ConnectionResetError, BrokenPipeError):
            self.close_connection = True  # the client stopped reading: count what it got
            sent = max(sent, getattr(self, "_sent", 0))
        finally:
            if not complete or resp.will_close:
                conn.close()
                self._upstream = None
            with self.proxy.lock:
                self.proxy._log.append((self.command, self.path, self.headers.get("Range"), status, sent))

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _forward
