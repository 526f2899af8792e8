"""Faults injected by a proxy on loopback in front of the S3 test server: 500, 503,
SlowDown, connections reset mid-body and bodies cut short. Queries still give exact
answers after retries, or fail with a one-line error in bounded time."""

from __future__ import annotations

import time

import pytest

import bams3
from bams3.errors import Bams3Error
from bams3_conformance.proxy import CountingProxy

from .test_cli import EXAMPLE

REGION = "chr1:10,000-60,000"
KINDS = ["500", "503", "slowdown", "reset", "short"]


@pytest.fixture(scope="module")
def faulty(s3_server):
    url = f"s3://{s3_server['bucket']}/faults/example.bams3"
    bams3.convert(EXAMPLE, url, force=True, chunk_size="256K", max_chunk_raw=1 << 18)
    ds = bams3.open(url)
    truth = {"count": ds.count(REGION), "records": b"".join(b.tobytes() for b in ds.batches(REGION)),
             "n": ds.stats["n_records"]}
    proxy = CountingProxy(s3_server["endpoint"])
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
