"""Azurite, Microsoft's Azure Storage emulator (the npm package ``azurite``), as a child
process on 127.0.0.1: the blob service only, in memory, on a free port. It is installed
with npm on first use into the test cache (``.cache/azurite``; BAMS3_TEST_CACHE moves
it), as the benchmark sample is built on first use, and needs node and npm (Debian's
``nodejs``)."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import pathlib
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request

# the last release whose package.json accepts node 20 (Debian's nodejs here); 3.36 wants node 21+
VERSION = "3.35.0"
# Azurite's well-known development account and key (published by Microsoft; not a secret)
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class AzuriteError(RuntimeError):
    pass


def install(cache: pathlib.Path) -> pathlib.Path:
    """Azurite ``VERSION`` under ``cache/azurite`` (installed there first if it is not), and the
    path of its blob service's script."""
    home = cache / "azurite"
    main = home / "node_modules" / "azurite" / "dist" / "src" / "blob" / "main.js"
    package = home / "node_modules" / "azurite" / "package.json"
    if main.exists() and json.loads(package.read_text()).get("version") == VERSION:
        return main
    _need("node", "npm")
    cache.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="azurite-", dir=cache))  # installed aside, then moved in whole
    try:
        p = subprocess.run(["npm", "install", "--prefix", str(work), "--no-audit", "--no-fund", "--ignore-scripts",
                            "--prefer-offline", "--loglevel=error", f"azurite@{VERSION}"],
                           capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise AzuriteError(f"npm install azurite@{VERSION} failed: {(p.stderr or p.stdout).strip()[-1500:]}")
        shutil.rmtree(home, ignore_errors=True)
        try:
            os.rename(work, home)
        except OSError:  # another session installed it meanwhile
            if not main.exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return main


def _need(*tools: str) -> None:
    missing = [tool for tool in tools if not shutil.which(tool)]
    if missing:
        raise AzuriteError(f"{' and '.join(missing)} not found: the az:// tests run Azurite, installed with npm "
                           "on first use (apt-get install nodejs; see the README's test command)")


class Azurite:
    """The blob service on 127.0.0.1, its data in memory. ``env`` holds the settings a bams3
    process needs to reach it (obstore's emulator mode, the port in AZURITE_BLOB_STORAGE_URL)."""

    def __init__(self, cache: pathlib.Path, timeout: float = 60):
        _need("node")
        main = install(cache)
        self.workdir = tempfile.mkdtemp(prefix="bams3-azurite-")  # anything it writes stays here
        self.proc = subprocess.Popen(
            [shutil.which("node"), str(main), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
             "--extentMemoryLimit", "2048", "--loose", "--skipApiVersionCheck", "--disableTelemetry", "--silent"],
            cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue = queue.Queue()
        log: list[str] = []

        def drain():
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=drain, daemon=True).start()
        deadline = time.monotonic() + timeout
        self.endpoint = None
        while self.endpoint is None:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                what = "stopped" if self.proc.poll() is not None else f"did not answer within {timeout:g} s"
                self.stop()
                raise AzuriteError(f"Azurite {what}: {''.join(log).strip()[-1500:]}")
            log.append(line)
            m = re.search(r"listens on (http://127\.0\.0\.1:\d+)", line)
            if m:
                self.endpoint = m.group(1)
        threading.Thread(target=lambda: [None for _ in iter(lines.get, None)], daemon=True).start()
        self.env = {"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": self.endpoint,
                    "AZURE_STORAGE_ACCOUNT_NAME": ACCOUNT, "AZURE_STORAGE_ACCOUNT_KEY": KEY}

    def create_container(self, name: str) -> None:
        """``PUT /account/name?restype=container``, signed with the account key (Shared Key)."""
        date = email.utils.formatdate(usegmt=True)
        version = "2021-08-06"
        path = f"/{ACCOUNT}/{name}"
        # verb, 11 empty standard headers, the x-ms- headers, then the resource (the account twice: path style)
        text = ("PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
                f"/{ACCOUNT}{path}\nrestype:container")
        sig = base64.b64encode(hmac.new(base64.b64decode(KEY), text.encode(), hashlib.sha256).digest()).decode()
        req = urllib.request.Request(f"{self.endpoint}{path}?restype=container", method="PUT", headers={
            "x-ms-date": date, "x-ms-version": version, "Authorization": f"SharedKey {ACCOUNT}:{sig}",
            "Content-Length": "0"})
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never through a proxy
        with direct.open(req, timeout=30) as r:
            assert r.status == 201, r.status

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
