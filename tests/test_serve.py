"""``bams3 serve``: htsget 1.3 tickets and data read by real clients on 127.0.0.1 (htslib through
pysam, the ``htsget`` package from PyPI, plain HTTP with ranges and CORS), compared with
``samtools view`` of the original BAM."""

from __future__ import annotations

import concurrent.futures
import gzip
import hashlib
import io
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import htsget
import pysam
import pytest
import uvicorn

import bams3
from bams3.serve import Server

from . import filterbam


class Running:
    """A Server's app under uvicorn on a free port of 127.0.0.1, on a thread."""

    def __init__(self, app):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            assert time.time() < deadline, "the server did not start"
            time.sleep(0.02)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    prefix = tmp_path_factory.mktemp("serve")
    bam, _ = filterbam.dataset(prefix)  # the prefix served holds f.bams3
    return bam, str(prefix)


class Spawned:
    """``bams3 serve`` itself in a process of its own: htslib, called in this process through
    pysam, holds the GIL while it reads, so its server cannot be a thread here."""

    def __init__(self, target, *args):
        import subprocess
        import sys

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.proc = subprocess.Popen([sys.executable, "-m", "bams3.cli", "serve", target, "--port", str(self.port),
                                      *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 30
        while True:
            assert self.proc.poll() is None, self.proc.stderr.read().decode()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.time() < deadline, "bams3 serve did not start"
                time.sleep(0.1)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return err.decode()


@pytest.fixture(scope="module")
def spawned(fb):
    run = Spawned(fb[1])
    yield run
    run.stop()


@pytest.fixture(scope="module")
def served(fb, tmp_path_factory):
    log = io.StringIO()
    run = Running(Server(fb[1], access_log=log).app())
    run.log = log
    yield run
    run.stop()


@pytest.fixture(scope="module")
def guarded(fb):
    run = Running(Server(fb[1], token="s3cret-token").app())
    yield run
    run.stop()


def _get(url, headers=None, data=None, method=None):
    req = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _records(sam: str) -> list[str]:
    return [line for line in sam.splitlines() if line and not line.startswith("@")]


def _regions(bam):
    with pysam.AlignmentFile(bam) as f:
        refs = list(zip(f.references, f.lengths))
    name, length = refs[0]
    out = [({}, []), ({"referenceName": name}, [name]), ({"referenceName": "*"}, ["*"])]
    rng = random.Random(5)
    for _ in range(8):
        a = rng.randrange(0, length)
        b = rng.randrange(a, min(length, a + 3000) + 1)
        out.append(({"referenceName": name, "start": a, "end": b}, [f"{name}:{a + 1}-{b}"] if b > a else None))
    out.append(({"referenceName": name, "start": 0, "end": 1}, [f"{name}:1-1"]))
    out.append(({"referenceName": name, "start": length - 1}, [f"{name}:{length}-"]))
    return out


def test_htslib_reads_tickets_as_samtools_reads_the_bam(fb, spawned):
    """samtools (pysam's htslib) opens the ticket URL as a BAM: records and counts identical to
    ``samtools view`` of the original for every region, ``*`` and the whole file."""
    bam, _ = fb
    for params, region in _regions(bam):
        if region is None:
            continue
        url = f"{spawned.base}/reads/f?" + urllib.parse.urlencode(params)
        got = pysam.view(url)
        want = pysam.view(bam, *region)
        assert _records(got) == _records(want), params
        assert pysam.view("-c", url).strip() == pysam.view("-c", bam, *region).strip()
    url = f"{spawned.base}/reads/f?class=header"
    assert pysam.view("-H", "--no-PG", url) == pysam.view("-H", "--no-PG", bam)
    assert _records(pysam.view(url)) == []


def test_sample_megabase_and_what_fields_save(sample_dataset, sample_dir):
    """The benchmark sample served as one dataset: 1 Mbp identical to samtools; with
    fields=QNAME,FLAG,RNAME,POS,MAPQ the other variable columns are not read from the store,
    and the records keep those fields (the rest as SAM's defaults)."""
    from bams3.storage import start_trace, trace_totals

    bam = str(sample_dir / "sample.bam")
    start_trace()  # the server's store, opened from now on, counts what it reads
    run = Running(Server(sample_dataset).app())
    try:
        ident = sample_dataset.rstrip("/").rsplit("/", 1)[-1].removesuffix(".bams3")
        base = f"{run.base}/reads/{ident}?referenceName=chr1&start=999999&end=2000000"
        before = trace_totals()["bytes_in"]
        full = pysam.view(_download(base))
        full_bytes = trace_totals()["bytes_in"] - before
        assert _records(full) == _records(pysam.view(bam, "chr1:1000000-2000000"))
        before = trace_totals()["bytes_in"]
        few = pysam.view(_download(base + "&fields=QNAME,FLAG,RNAME,POS,MAPQ"))
        few_bytes = trace_totals()["bytes_in"] - before
        want = [r.split("\t") for r in _records(full)]
        got = [r.split("\t") for r in _records(few)]
        assert len(got) == len(want) == 132883
        for g, w in zip(got, want):
            assert g[:5] == w[:5] and g[6:9] == w[6:9]  # name, flag, rname, pos, mapq; rnext, pnext, tlen
            assert g[5] == "*" and g[9] == "*" and g[10] == "*"  # CIGAR, SEQ, QUAL unread
        # the qualities alone (most of a chunk) are more than the fields ticket reads in all
        ds = bams3.open(sample_dataset)
        reg = ds.region("chr1:1000000-2000000")
        qual_bytes = sum(e - s for i in ds.chunks.candidates(reg.tid, reg.beg, reg.end)
                         for s, e in [ds.source.directory(int(i)).extent("qual")])
        assert 0 < few_bytes < full_bytes - qual_bytes, (few_bytes, full_bytes, qual_bytes)
    finally:
        run.stop()


def _download(url: str, headers=None) -> str:
    """A ticket's data, fetched with urllib, in a temporary BAM file."""
    status, _, raw = _get(url, headers)
    assert status == 200, raw
    return served_tmp(b"".join(_fetch(u) for u in json.loads(raw)["htsget"]["urls"]))


def test_fields_and_tags_fill_what_is_not_read(fb, spawned):
    bam, _ = fb
    url = f"{spawned.base}/reads/f?referenceName={_first_ref(bam)}&fields=QNAME,SEQ,QUAL&tags="
    got = [r.split("\t") for r in _records(pysam.view(url))]
    want = [r.split("\t") for r in _records(pysam.view(bam, _first_ref(bam)))]
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0] and g[9:11] == w[9:11] and g[5] == "*" and len(g) == 11  # no CIGAR, no tags
    # QUAL without SEQ: BAM keeps qualities only under a sequence, so the sequence comes too
    got = [r.split("\t") for r in _records(pysam.view(url.replace("fields=QNAME,SEQ,QUAL", "fields=QUAL")))]
    assert [g[9:11] for g in got] == [w[9:11] for w in want]
    assert all(g[0] == "*" for g in got)


def _first_ref(bam):
    with pysam.AlignmentFile(bam) as f:
        return f.references[0]


def test_the_htsget_client_from_pypi_writes_a_bam_samtools_accepts(fb, served, tmp_path):
    bam, _ = fb
    ref = _first_ref(bam)
    out = tmp_path / "out.bam"
    with open(out, "wb") as f:
        htsget.get(f"{served.base}/reads/f", f, reference_name=ref, start=100, end=5000)
    pysam.quickcheck(str(out))
    assert _records(pysam.view(str(out))) == _records(pysam.view(bam, f"{ref}:101-5000"))


def test_post_with_several_regions_gives_each_read_once_in_file_order(fb, served):
    bam, _ = fb
    ref = _first_ref(bam)
    body = json.dumps({"format": "BAM", "regions": [{"referenceName": ref, "start": 100, "end": 3000},
                                                     {"referenceName": ref, "start": 2000, "end": 6000},
                                                     {"referenceName": "*"}]}).encode()
    status, headers, raw = _get(f"{served.base}/reads/f", {"Content-Type": "application/json"}, body, "POST")
    assert status == 200
    data = b"".join(_fetch(u) for u in json.loads(raw)["htsget"]["urls"])
    path = served_tmp(data)
    assert _records(pysam.view(path)) == _records(pysam.view("-M", bam, f"{ref}:101-3000", f"{ref}:2001-6000", "*"))


def served_tmp(data: bytes) -> str:
    import tempfile

    f = tempfile.NamedTemporaryFile(suffix=".bam", delete=False)
    f.write(data)
    f.close()
    return f.name


def _fetch(u: dict) -> bytes:
    url = u["url"]
    if url.startswith("data:"):
        import base64

        return base64.b64decode(url.split(",", 1)[1])
    status, _, data = _get(url, u.get("headers"))
    assert status == 200
    return data


def test_the_specs_errors(fb, served, guarded):
    def error(url, headers=None, data=None, method=None):
        status, h, body = _get(url, headers, data, method)
        return status, json.loads(body)["htsget"]["error"]

    b = served.base
    assert error(f"{b}/reads/nothere") == (404, "NotFound")
    assert error(f"{b}/reads/..%2Ff") == (404, "NotFound")
    assert error(f"{b}/reads/f?referenceName=nosuchref") == (404, "NotFound")
    assert error(f"{b}/reads/f?referenceName=chr1&start=x") == (400, "InvalidInput")
    assert error(f"{b}/reads/f?start=5") == (400, "InvalidInput")
    assert error(f"{b}/reads/f?referenceName=*&start=5") == (400, "InvalidInput")
    ref = _first_ref(fb[0])
    assert error(f"{b}/reads/f?referenceName={ref}&start=10&end=5") == (400, "InvalidRange")
    assert error(f"{b}/reads/f?format=CRAM") == (400, "UnsupportedFormat")
    assert error(f"{b}/reads/f?format=VCF") == (400, "UnsupportedFormat")
    assert error(f"{b}/reads/f?fields=QNAME,NOPE") == (400, "InvalidInput")
    assert error(f"{b}/reads/f?fields=" + ",".join(["QNAME"] * 5000)) == (400, "InvalidInput")
    assert error(f"{b}/reads/f?tags=NM&notags=NM") == (400, "InvalidInput")
    assert error(f"{b}/reads/f?class=body2") == (400, "InvalidInput")
    assert error(f"{b}/reads/f", {"Content-Type": "application/json"}, b"{not json", "POST") == (400, "InvalidInput")
    assert error(f"{b}/reads/f", {}, json.dumps({"regions": [{"start": 1}]}).encode(), "POST") == (400, "InvalidInput")
    assert error(f"{b}/data/f/body?chunk=999999&all=1") == (404, "NotFound")
    g = guarded.base
    # the spec's table: PermissionDenied "authorization is required", InvalidAuthentication
    # "authorization provided is invalid"
    assert error(f"{g}/reads/f") == (403, "PermissionDenied")
    assert error(f"{g}/reads/f", {"Authorization": "Bearer wrong"}) == (401, "InvalidAuthentication")
    assert error(f"{g}/data/f/header", {"Authorization": "Basic eDp5"}) == (403, "PermissionDenied")
    assert error(f"{g}/reads/service-info") == (403, "PermissionDenied")
    assert error(f"{b}/reads/f?class=header&referenceName={ref}") == (400, "InvalidInput")
    assert error(f"{b}/reads/f?class=header&fields=QNAME") == (400, "InvalidInput")
    assert _get(f"{b}/reads/f?class=header&format=BAM")[0] == 200
    assert error(f"{b}/reads/f.bai") == (426, "HtsgetRequired")
    assert error(f"{b}/reads/f", {}, b"{" + b" " * (5 << 20) + b"}", "POST") == (413, "PayloadTooLarge")


def test_the_token_travels_with_the_ticket_and_is_never_logged(fb, guarded, served, tmp_path):
    bam, _ = fb
    status, _, raw = _get(f"{guarded.base}/reads/f", {"Authorization": "Bearer s3cret-token"})
    assert status == 200
    urls = json.loads(raw)["htsget"]["urls"]
    assert all(u["headers"]["Authorization"] == "Bearer s3cret-token" for u in urls if not u["url"].startswith("data:"))
    out = tmp_path / "t.bam"
    with open(out, "wb") as f:
        htsget.get(f"{guarded.base}/reads/f", f, bearer_token="s3cret-token")
    assert _records(pysam.view(str(out))) == _records(pysam.view(bam))
    _get(f"{served.base}/reads/f", {"Authorization": "Bearer s3cret-token"})
    log = served.log.getvalue()
    assert "GET /reads/f" in log and "s3cret" not in log


def test_ranges_cors_and_service_info(fb, served):
    status, _, raw = _get(f"{served.base}/reads/f")
    body_url = json.loads(raw)["htsget"]["urls"][1]["url"]
    _, _, whole = _get(body_url)
    assert gzip.decompress(whole)  # BGZF blocks: a gzip stream
    parts = []
    for a in range(0, len(whole), 1000):
        status, headers, part = _get(body_url, {"Range": f"bytes={a}-{a + 999}"})
        assert status == 206 and headers["Content-Range"] == f"bytes {a}-{min(a + 999, len(whole) - 1)}/{len(whole)}"
        parts.append(part)
    assert b"".join(parts) == whole
    assert _get(body_url, {"Range": f"bytes={len(whole)}-"})[0] == 416
    status, headers, _ = _get(f"{served.base}/reads/f", {"Origin": "http://viewer.example",
                                                         "Access-Control-Request-Method": "GET",
                                                         "Access-Control-Request-Headers": "Authorization"},
                              method="OPTIONS")
    assert status == 200 and headers["access-control-allow-origin"] in ("*", "http://viewer.example")
    status, _, raw = _get(f"{served.base}/reads/service-info")
    info = json.loads(raw)
    assert status == 200 and info["type"]["artifact"] == "htsget" and info["htsget"]["formats"] == ["BAM"]


def test_64_concurrent_clients_all_exact_in_bounded_memory(fb, spawned):
    """64 clients at once, each a ticket and its data for a region: every one exact, and the
    server's peak memory stays bounded (chunks are made two at a time, whatever the clients)."""
    bam, _ = fb
    cases = [(p, r) for p, r in _regions(bam) if r is not None]
    want = [hashlib.md5("\n".join(_records(pysam.view(bam, *r))).encode()).hexdigest() for _, r in cases]

    def client(i):
        p = cases[i % len(cases)][0]
        path = _download(f"{spawned.base}/reads/f?" + urllib.parse.urlencode(p))
        got = hashlib.md5("\n".join(_records(pysam.view(path))).encode()).hexdigest()
        os.unlink(path)
        return got == want[i % len(cases)]

    with concurrent.futures.ThreadPoolExecutor(64) as ex:
        assert all(ex.map(client, range(64)))
    with open(f"/proc/{spawned.proc.pid}/status") as f:
        peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    assert peak_kb < 400_000, f"the server peaked at {peak_kb / 1024:.0f} MB"


def test_sixteen_clients_of_a_megabase_in_bounded_memory(sample_dataset, sample_dir):
    """16 clients at once fetching the sample's megabase (11 chunks, ~10 MB of BAM each) from the
    command: every count right, the server's peak memory bounded (two chunks made at a time,
    256 MB of made chunks kept at most)."""
    bam = str(sample_dir / "sample.bam")
    want = pysam.view("-c", bam, "chr1:1000000-2000000").strip()
    run = Spawned(sample_dataset)
    try:
        ident = sample_dataset.rstrip("/").rsplit("/", 1)[-1].removesuffix(".bams3")

        def client(i):
            start = 999_999 + 1000 * (i % 4)  # four different tickets, each asked for four times
            path = _download(f"{run.base}/reads/{ident}?referenceName=chr1&start={start}&end=2000000")
            try:
                return pysam.view("-c", path).strip() == pysam.view("-c", bam, f"chr1:{start + 1}-2000000").strip()
            finally:
                os.unlink(path)

        with concurrent.futures.ThreadPoolExecutor(16) as ex:
            assert all(ex.map(client, range(16)))
        assert want
        with open(f"/proc/{run.proc.pid}/status") as f:
            peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
        assert peak_kb < 450_000, f"the server peaked at {peak_kb / 1024:.0f} MB"
    finally:
        assert "Traceback" not in run.stop()


def test_bams3_serve_over_an_s3_prefix_with_a_token_file(fb, s3_server, tmp_path):
    """The command itself over a prefix on the S3 test server: a token from a file, the access
    log in a file, htslib's answers identical to samtools view of the BAM."""
    bam, _ = fb
    bams3.convert(bam, f"s3://{s3_server['bucket']}/served/f.bams3", chunk_size=16 << 10)
    (tmp_path / "token").write_text("from-a-file\n")
    log = tmp_path / "access.log"
    run = Spawned(f"s3://{s3_server['bucket']}/served", "--token-file", str(tmp_path / "token"),
                  "--access-log", str(log))
    try:
        ref = _first_ref(bam)
        path = _download(f"{run.base}/reads/f?referenceName={ref}&start=500&end=9000",
                         {"Authorization": "Bearer from-a-file"})
        assert _records(pysam.view(path)) == _records(pysam.view(bam, f"{ref}:501-9000"))
        assert _get(f"{run.base}/reads/f")[0] == 403  # no token: PermissionDenied
        assert _get(f"{run.base}/reads/g", {"Authorization": "Bearer from-a-file"})[0] == 404
    finally:
        err = run.stop()
    lines = log.read_text().splitlines()
    assert any('"GET /reads/f?referenceName=' in x and " 200 " in x for x in lines)
    assert any(" 403 " in x for x in lines) and "from-a-file" not in log.read_text() + err
    assert "Traceback" not in err
