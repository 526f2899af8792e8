"""Faults injected by a proxy on loopback in front of the S3 test server: 500, 503,
SlowDown, connections reset mid-body, bodies cut short and stalls past the timeout.
Queries still give exact answers after retries, or fail with a one-line error in
bounded time; conversions under faults are exact, or fail and publish nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

import bams3
from bams3.errors import Bams3Error, DatasetError
from bams3.verify import verify
from bams3.conformance.proxy import CountingProxy

from .test_cli import EXAMPLE

REGION = "chr1:10,000-60,000"
KINDS = ["500", "503", "slowdown", "reset", "short", "stall"]
# Totals per kind of fault survived, printed at the end of the run (see conftest.py).
SURVIVED: dict[str, dict[str, int]] = {"queries": {}, "conversions": {}}


@pytest.fixture(autouse=True)
def short_timeouts(monkeypatch):
    """A stalled request is given up after 1 s (instead of 60 s) and retried."""
    monkeypatch.setenv("BAMS3_TIMEOUT", "1")


def _tally(what: str, injected: dict) -> None:
    for kind, n in injected.items():
        SURVIVED[what][kind] = SURVIVED[what].get(kind, 0) + n


@pytest.fixture(scope="module")
def faulty(s3_server):
    url = f"s3://{s3_server['bucket']}/faults/example.bams3"
    bams3.convert(EXAMPLE, url, force=True, chunk_size="256K", max_chunk_raw=1 << 18)
    ds = bams3.open(url)
    truth = {"count": ds.count(REGION), "records": b"".join(b.tobytes() for b in ds.batches(REGION)),
             "n": ds.stats["n_records"]}
    proxy = CountingProxy(s3_server["endpoint"])
    proxy.stall_seconds = 3
    yield proxy, url, truth
    proxy.close()


@pytest.mark.parametrize("kind", KINDS)
def test_exact_answers_after_faults(faulty, monkeypatch, kind):
    proxy, url, truth = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    survived = 0
    for _ in range(3):  # each question meets two faults of this kind first
        proxy.faults = [kind, kind]
        proxy.injected.clear()
        ds = bams3.open(url)
        assert ds.count(REGION) == truth["count"]
        assert b"".join(b.tobytes() for b in ds.batches(REGION)) == truth["records"]
        assert ds.stats["n_records"] == truth["n"]
        assert proxy.faults == []  # every injected fault was met
        survived += proxy.injected[kind]
        _tally("queries", proxy.injected)
    assert survived == 6


def test_persistent_faults_fail_cleanly_in_bounded_time(faulty, monkeypatch):
    proxy, url, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    proxy.faults = ["503"] * 1000
    t = time.monotonic()
    with pytest.raises(Bams3Error) as exc:
        bams3.open(url)
    assert time.monotonic() - t < 60
    assert "\n" not in str(exc.value) and "testing-secret-key" not in str(exc.value)
    proxy.faults = []


def test_persistent_stalls_fail_cleanly_in_bounded_time(faulty, monkeypatch):
    proxy, url, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    proxy.faults = ["stall"] * 1000
    t = time.monotonic()
    with pytest.raises(Bams3Error, match=r"no answer for _metadata.json within 1 s after 3 attempts.*BAMS3_TIMEOUT"):
        bams3.open(url)
    assert time.monotonic() - t < 15
    proxy.faults = []


# ------------------------------------------------------------------ conversions under faults


@pytest.fixture(scope="module")
def truth_records(tmp_path_factory):
    """The example's records, as a conversion without faults stores them."""
    dest = str(tmp_path_factory.mktemp("truth") / "t.bams3")
    bams3.convert(EXAMPLE, dest, chunk_size="256K", max_chunk_raw=1 << 18)
    return b"".join(b.tobytes() for b in bams3.open(dest).batches(None))


def _objects(s3_server, prefix):
    pages = s3_server["client"].get_paginator("list_objects_v2").paginate(Bucket=s3_server["bucket"], Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


@pytest.mark.parametrize("kind", KINDS)
def test_conversion_survives_faults_exactly(s3_server, faulty, truth_records, monkeypatch, kind):
    proxy, _, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    url = f"s3://{s3_server['bucket']}/faults/convert-{kind}.bams3"
    # Faults on writes and reads alike, spread over the conversion's requests.
    proxy.fault_methods = {"GET", "PUT", "POST", "HEAD", "DELETE"}
    proxy.faults = [kind, "ok", "ok"] * 4
    proxy.injected.clear()
    try:
        bams3.convert(EXAMPLE, url, chunk_size="256K", max_chunk_raw=1 << 18)
    finally:
        proxy.fault_methods = {"GET"}
        faults_left, proxy.faults = proxy.faults, []
    assert not [f for f in faults_left if f != "ok"]  # every fault was met
    assert proxy.injected[kind] == 4
    _tally("conversions", proxy.injected)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    report = verify(url, deep=True)
    assert report.ok, report.to_json()
    assert b"".join(b.tobytes() for b in bams3.open(url).batches(None)) == truth_records


@pytest.mark.parametrize("kind", ["503", "reset", "stall"])
def test_conversion_that_cannot_finish_publishes_nothing(s3_server, faulty, truth_records, monkeypatch, kind):
    """Every request starts failing half-way through (the network is lost): one clear line
    in bounded time, no _metadata.json, nothing that opens; once the network is back, running
    it again works and removes what the lost run had written."""
    proxy, _, _ = faulty
    url = f"s3://{s3_server['bucket']}/faults/lost-{kind}.bams3"
    key = url.split("/", 3)[3]
    env = {**os.environ, **s3_server["env"], "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "2",
           "BAMS3_TIMEOUT": "1"}
    cmd = [sys.executable, "-m", "bams3.cli", "convert", EXAMPLE, url, "--chunk-size", "256K", "--no-progress"]
    proxy.fault_methods = {"GET", "PUT", "POST", "HEAD", "DELETE"}
    proxy.faults = ["ok"] * 4 + [kind] * 1000  # the HEAD and LIST of the destination, then 2 of 3 chunks
    try:
        t = time.monotonic()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
        elapsed = time.monotonic() - t
    finally:
        proxy.fault_methods = {"GET"}
        proxy.faults = []
    assert p.returncode == 1, p.stderr
    assert p.stderr.startswith("bams3: ") and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert elapsed < 60
    left = _objects(s3_server, key)
    assert left and f"{key}/_metadata.json" not in left  # chunks were written, and could not be removed
    with pytest.raises(DatasetError, match="no bams3 dataset"):
        bams3.open(url)
    p = subprocess.run(cmd, capture_output=True, text=True, env={**env, "AWS_ENDPOINT_URL": s3_server["endpoint"]})
    assert p.returncode == 0, p.stderr
    assert not set(left) & set(_objects(s3_server, key))  # the lost run's chunks are gone
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    assert verify(url, deep=True).ok
    assert b"".join(b.tobytes() for b in bams3.open(url).batches(None)) == truth_records


def test_metadata_write_whose_answer_is_lost(s3_server, faulty, truth_records, monkeypatch):
    """The server stores _metadata.json but the connection drops before it answers, on
    every attempt: the converter asks the store, finds its metadata there, and succeeds."""
    proxy, _, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    url = f"s3://{s3_server['bucket']}/faults/lost-answer.bams3"
    proxy.fault_methods, proxy.fault_match = {"PUT"}, "_metadata.json"
    proxy.faults = ["reset"] * 2
    try:
        bams3.convert(EXAMPLE, url, chunk_size="256K", max_chunk_raw=1 << 18)
    finally:
        proxy.fault_methods, proxy.fault_match, proxy.faults = {"GET"}, None, []
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    assert verify(url, deep=True).ok
    assert b"".join(b.tobytes() for b in bams3.open(url).batches(None)) == truth_records


def test_metadata_write_that_cannot_be_confirmed_keeps_the_chunks(s3_server, faulty, monkeypatch):
    """If even asking fails, the converter cannot know whether the dataset was published: it
    says so, and leaves the chunks in place so that a published dataset stays whole."""
    proxy, _, _ = faulty
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    url = f"s3://{s3_server['bucket']}/faults/unconfirmed.bams3"
    proxy.fault_methods, proxy.fault_match = {"PUT", "GET"}, "_metadata.json"
    proxy.faults = ["reset"] * 2 + ["503"] * 2
    try:
        with pytest.raises(Bams3Error, match="whether it landed is unknown.*bams3 verify") as exc:
            bams3.convert(EXAMPLE, url, chunk_size="256K", max_chunk_raw=1 << 18)
    finally:
        proxy.fault_methods, proxy.fault_match, proxy.faults = {"GET"}, None, []
    assert "\n" not in str(exc.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
    assert verify(url, deep=True).ok  # it had landed: whole, and verify says so


def test_timeout_settings_are_checked(s3_server):
    from .test_cli import assert_one_line_error

    url = f"s3://{s3_server['bucket']}/faults/example.bams3"
    for name, value in (("BAMS3_TIMEOUT", "soon"), ("BAMS3_CONNECT_TIMEOUT", "-1"), ("AWS_MAX_ATTEMPTS", "0")):
        p = subprocess.run([sys.executable, "-m", "bams3.cli", "stats", url], capture_output=True,
                           env={**os.environ, name: value})
        assert_one_line_error(p, 2, name)


def test_a_fault_answered_to_a_write_keeps_the_connection_in_step(faulty):
    """The proxy reads a faulted request's body before answering: on a kept-alive
    connection, the next request is parsed from the right place."""
    import http.client

    proxy, _, _ = faulty
    proxy.fault_methods, proxy.faults = {"PUT"}, ["503"]
    host, port = proxy.endpoint.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        body = b"GET /evil HTTP/1.1\r\nHost: x\r\n\r\n"
        conn.request("PUT", "/bams3-test/faults/sync-test", body=body)
        r = conn.getresponse()
        r.read()
        assert r.status == 503
        proxy.reset()
        conn.request("GET", "/bams3-test/faults/example.bams3/_metadata.json")
        r = conn.getresponse()
        r.read()
        assert [e[1] for e in proxy.log] == ["/bams3-test/faults/example.bams3/_metadata.json"]
    finally:
        conn.close()
        proxy.fault_methods, proxy.faults = {"GET"}, []


def test_ctrl_c_ends_a_cohort_run_whose_requests_stall(s3_server, faulty, tmp_path):
    """Every request stalls (6 attempts of 6 s each per sample): Ctrl-C ends the run at once, in
    one line, without waiting for the requests in flight or trying again."""
    proxy, url, _ = faulty
    listing = tmp_path / "samples.txt"
    listing.write_text("".join(f"s{i}\t{url}\n" for i in range(4)))
    env = {**os.environ, **s3_server["env"], "AWS_ENDPOINT_URL": proxy.endpoint, "AWS_MAX_ATTEMPTS": "6",
           "BAMS3_TIMEOUT": "6"}
    proxy.stall_seconds = 8
    proxy.faults = ["stall"] * 1000
    try:
        code, out, err, took = interrupt_when_stalled(
            proxy, [sys.executable, "-m", "bams3.cli", "cohort", "stats", "--from", str(listing), "-@", "4"], env,
            stalls=4)  # every sample is waiting on a request
    finally:
        proxy.faults = []
        proxy.stall_seconds = 3
    assert (code, err, out) == (130, "bams3: interrupted\n", "")
    assert took < 3, took


def interrupt_when_stalled(proxy, cmd: list[str], env: dict, stalls: int = 1) -> tuple[int, str, str, float]:
    """Run ``cmd``; once ``stalls`` of its requests are stalled at the proxy, Ctrl-C it: its
    status, stdout, stderr and the seconds it took to end after the signal."""
    proxy.injected.clear()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 30
    while proxy.injected.get("stall", 0) < stalls:
        assert time.monotonic() < deadline and p.poll() is None, (proxy.injected, p.poll())
        time.sleep(0.05)
    t = time.monotonic()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    return p.returncode, out, err, time.monotonic() - t


@pytest.mark.parametrize("kind", ["503", "stall"])
def test_keys_with_403_and_404_are_never_taken_for_statuses(s3_server, faulty, monkeypatch, kind):
    """Every key of this dataset holds 403 and 404 (as a dataset of 404+ chunks has them): a 503
    or a timeout on it is said as what it was, by kind, never as "access denied" or missing."""
    from bams3.errors import StorageError

    proxy, _, _ = faulty
    url = f"s3://{s3_server['bucket']}/faults/run403/404.bams3"
    bams3.convert(EXAMPLE, url, force=True, chunk_size="256K")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    ds = bams3.open(url)
    proxy.faults = [kind] * 1000
    try:
        with pytest.raises(StorageError) as caught:
            list(ds.batches("chr1:1-200000"))
    finally:
        proxy.faults = []
    err = caught.value
    assert err.kind == ("server" if kind == "503" else "timeout"), (err.kind, str(err))
    assert err.key.startswith("data/") and "run403/404.bams3" in str(err)  # obstore's own message held them too
    assert "denied" not in str(err) and "credentials" not in str(err) and "no bams3 dataset" not in str(err)
    assert ("503" in str(err)) == (kind == "503")
