"""A plain static web server on loopback with byte-range support (as nginx or S3
website hosting serve public files), for reading datasets over http://."""

from __future__ import annotations

import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer


class StaticServer:
    def __init__(self, root: str):
        self.requests: list[tuple[str, str, str | None]] = []
        server = self

        class Handler(SimpleHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=root, **kwargs)

            def log_message(self, *args):
                pass

            def _serve(self, body: bool):
                rng = self.headers.get("Range")
                server.requests.append((self.command, self.path, rng))
                path = self.translate_path(self.path)
                if not os.path.isfile(path):
                    self.send_error(404)
                    return
                with open(path, "rb") as f:
                    data = f.read()
                status, start, end = 200, 0, len(data)
                m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
                if m:
                    status, start = 206, int(m.group(1))
                    end = min(int(m.group(2)) + 1, len(data)) if m.group(2) else len(data)
                self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(data[start:end])

            def do_GET(self):
                self._serve(True)

            def do_HEAD(self):
                self._serve(False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
