"""moto's standalone S3 server as a child process on 127.0.0.1 (its own interpreter, so
it never competes for a GIL with the code under test or a proxy)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading


class MotoServer:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        port = None
        for line in self.proc.stdout:  # werkzeug prints the port it bound
            m = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if not port:
            self.proc.kill()
            raise RuntimeError("moto's server did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stdout], daemon=True).start()  # drain its log
        self.endpoint = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
