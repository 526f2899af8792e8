"""moto's S3 server as a child process on 127.0.0.1 (its own interpreter, so it never
competes for a GIL with the code under test or a proxy).

It serves moto's S3 application itself, as ``python -m moto.server`` does for a request
it finds to be S3's, with two costs of that server left out, since on a small machine
they come out of the CPU of the clients being measured (about half of ~3 ms a request):

- the access log: werkzeug writes a line per request, through a logger, to a pipe that
  this process must drain;
- finding the service: moto's dispatcher works out which of its ~150 services each request
  is for, listing its package directory every time, to choose the S3 application.

What the server answers is unchanged: the same S3 application, state and werkzeug server
(one thread and one connection per request, as werkzeug closes each)."""

from __future__ import annotations

import subprocess
import sys
import threading

_SERVE = """
from moto.moto_server.werkzeug_app import create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

WSGIRequestHandler.log_request = lambda self, code="-", size="-": None  # no access log line per request
server = make_server("127.0.0.1", 0, create_backend_app("s3"), threaded=True)
print(f"port {server.port}", flush=True)
server.serve_forever()
"""


class MotoServer:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _SERVE], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        port = None
        for line in self.proc.stdout:  # the port it bound (anything before it is a warning)
            if line.startswith("port "):
                port = int(line.split()[1])
                break
        if not port:
            self.proc.kill()
            raise RuntimeError("moto's server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # drain its errors
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
