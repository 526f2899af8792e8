"""``bams3 serve --viewer`` in a real browser: Debian's chromium, headless, driven by Selenium
through Debian's chromedriver (no browser download). igv.js is installed from npm into the test
cache (``.cache/igvjs``) and served from 127.0.0.1, as ``--igv-js`` lets a site do; the test asks
igv.js itself, in the page, for the alignments it loaded at the locus."""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import tempfile
import threading
import time

import pysam
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service


from . import filterbam
from .conftest import CACHE, ROOT
from .test_serve import Spawned

IGV_VERSION = "3.8.10"  # the build the viewer loads by default (bams3.serve.IGV_JS)


def install_igv(cache: pathlib.Path) -> pathlib.Path:
    """igv.js ``IGV_VERSION``'s dist directory under ``cache/igvjs``, installed with npm first if it
    is not there."""
    home = cache / "igvjs"
    dist = home / "node_modules" / "igv" / "dist"
    package = home / "node_modules" / "igv" / "package.json"
    if (dist / "igv.min.js").exists() and json.loads(package.read_text()).get("version") == IGV_VERSION:
        return dist
    cache.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(tempfile.mkdtemp(prefix="igvjs-", dir=cache))
    try:
        p = subprocess.run(["npm", "install", "--prefix", str(work), "--no-audit", "--no-fund", "--ignore-scripts",
                            "--prefer-offline", "--loglevel=error", f"igv@{IGV_VERSION}"],
                           capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, f"npm install igv@{IGV_VERSION} failed: {(p.stderr or p.stdout)[-1500:]}"
        shutil.rmtree(home, ignore_errors=True)
        try:
            os.rename(work, home)
        except OSError:  # another session installed it meanwhile
            assert (dist / "igv.min.js").exists()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dist


@pytest.fixture(scope="module")
def igv_site():
    """igv.js's files over HTTP on 127.0.0.1 (as a site would host its own copy)."""
    dist = install_igv(CACHE)
    handler = functools.partial(_Quiet, directory=str(dist))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/igv.min.js"
    httpd.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser():
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def test_the_viewer_lists_the_datasets_and_igv_js_loads_their_reads(igv_site, browser, tmp_path):
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    bam, _ = filterbam.dataset(prefix, "f")
    filterbam.dataset(prefix, "g")
    (tmp_path / "token").write_text("view-token\n")
    run = Spawned(str(prefix), "--viewer", "--igv-js", igv_site, "--token-file", str(tmp_path / "token"))
    try:
        browser.get(f"{run.base}/#token=view-token")
        links = _wait(browser, "return [...document.querySelectorAll('#list a')].map(a => a.textContent)",
                      lambda v: v)
        assert links == ["f", "g"]
        with pysam.AlignmentFile(bam) as f:
            ref = f.references[0]
            want = {r.query_name for r in f.fetch(ref, 1000, 4000)}
        browser.get(f"{run.base}/view/f?locus={ref}:1001-4000#token=view-token")
        state = _wait(browser, "return window.bams3 && (window.bams3.ready || window.bams3.error) ? "
                               "{ready: window.bams3.ready, error: window.bams3.error || null} : null", lambda v: v)
        assert state == {"ready": True, "error": None}
        names = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const track = window.bams3.browser.findTracks(t => t.type === "alignment")[0];
            track.featureSource.getAlignments(arguments[0], 1000, 4000).then(c => {
              let als = [];
              if (c.packedAlignmentRows) for (const row of c.packedAlignmentRows) als = als.concat(row.alignments);
              else als = c.allAlignments ? c.allAlignments() : c.alignments;
              done(als.map(a => a.readName || (a.firstAlignment && a.firstAlignment.readName)));
            }).catch(e => done("error: " + e));
        """, ref)
        assert isinstance(names, list) and names, names
        assert set(names) <= want and len(set(names)) >= 0.5 * len({n for n in want})
        shot = ROOT / ".cache" / "artefacts" / "viewer.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        # without the token the page says so, in one line, and igv.js loads nothing
        browser.get(f"{run.base}/view/f?locus={ref}:1001-4000")
        state = _wait(browser, "return window.bams3 && window.bams3.error ? window.bams3.error : null", lambda v: v)
        assert "bearer token" in state
    finally:
        err = run.stop()
    assert "view-token" not in err and "Traceback" not in err


def _wait(driver, script, ok, timeout=60):
    deadline = time.time() + timeout
    while True:
        value = driver.execute_script(script)
        if ok(value):
            return value
        assert time.time() < deadline, f"the page did not get there: {driver.execute_script('return document.body.innerText')}"
        time.sleep(0.2)
