"""bams3 cp: a dataset copied between stores (local, the S3 test server, memory) reads back
exactly, is checked object by object on the way, is published with _metadata.json last and
conditionally, and follows convert's destination rules. Faults mid-copy are retried, or the
copy fails in one line and publishes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import bams3
from bams3.errors import DatasetError, DatasetExistsError
from bams3.verify import verify
from bams3.conformance.proxy import CountingProxy

from .test_cli import BAMS3, EXAMPLE, assert_one_line_error

REGION = "chr1:10,000-60,000"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    dest = tmp_path_factory.mktemp("cp") / "src.bams3"
    bams3.convert(EXAMPLE, str(dest), chunk_size="256K")
    ds = bams3.open(str(dest))
    return {"url": str(dest), "records": b"".join(b.tobytes() for b in ds.batches(None)),
            "count": ds.count(REGION), "meta": json.loads((dest / "_metadata.json").read_bytes())}


def _same_dataset(url: str, source) -> None:
    ds = bams3.open(url)
    assert b"".join(b.tobytes() for b in ds.batches(None)) == source["records"]
    assert ds.count(REGION) == source["count"]
    assert ds.coverage("chr1", 65536) == bams3.open(source["url"]).coverage("chr1", 65536)
    report = verify(url, deep=True)
    assert report.ok, report.to_json()
    # every member of the metadata as it was, but where the data lives
    got = json.loads(ds.store.get("_metadata.json"))
    want = source["meta"]
    assert got["data_prefix"] != want["data_prefix"]
    for key in set(want) - {"data_prefix", "coverage", "checksum"}:
        assert got[key] == want[key], key
    assert {k: v for k, v in got["coverage"].items() if k != "object"} == \
        {k: v for k, v in want["coverage"].items() if k != "object"}


def test_local_to_s3_to_memory_to_local(source, s3_server, tmp_path):
    s3 = f"s3://{s3_server['bucket']}/cp/sample.bams3"
    p = subprocess.run([BAMS3, "cp", source["url"], s3, "--json"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["records"] == source["meta"]["stats"]["n_records"] and summary["objects"] >= 3
    _same_dataset(s3, source)
    res = bams3.copy(s3, "memory://cp-test/sample.bams3")
    assert res.records == summary["records"]
    _same_dataset("memory://cp-test/sample.bams3", source)
    back = tmp_path / "back.bams3"
    bams3.copy("memory://cp-test/sample.bams3", str(back))
    _same_dataset(str(back), source)


def test_destination_rules_are_converts(source, tmp_path):
    dest = tmp_path / "d"
    (dest / "data").mkdir(parents=True)
    (dest / "data" / "notes.txt").write_text("mine")
    assert_one_line_error(subprocess.run([BAMS3, "cp", source["url"], str(dest)], capture_output=True), 1,
                          "not empty")
    assert (dest / "data" / "notes.txt").read_text() == "mine" and not (dest / "_metadata.json").exists()
    (dest / "data" / "notes.txt").unlink()
    bams3.copy(source["url"], str(dest))
    first = bams3.open(str(dest)).meta.data_prefix
    with pytest.raises(DatasetExistsError, match="--force"):
        bams3.copy(source["url"], str(dest))
    (dest / "mine.txt").write_text("mine too")
    bams3.copy(source["url"], str(dest), force=True)
    assert (dest / "mine.txt").read_text() == "mine too"
    assert not (dest / first).exists()  # the replaced run is gone, nothing else
    (dest / "mine.txt").unlink()  # (verify would list it as extra)
    _same_dataset(str(dest), source)
    assert_one_line_error(subprocess.run([BAMS3, "cp", str(tmp_path / "nothing"), str(tmp_path / "x")],
                                         capture_output=True), 1, "no bams3 dataset")
    assert not (tmp_path / "x").exists()


def test_a_corrupt_source_is_never_published(source, tmp_path):
    bad = tmp_path / "bad.bams3"
    bams3.copy(source["url"], str(bad))
    chunk = sorted((bad / bams3.open(str(bad)).meta.data_prefix).glob("0*"))[1]
    blob = bytearray(chunk.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    chunk.write_bytes(bytes(blob))
    out = tmp_path / "out.bams3"
    p = subprocess.run([BAMS3, "cp", str(bad), str(out)], capture_output=True)
    assert_one_line_error(p, 1, "is corrupt", chunk.name)
    assert not out.exists()  # the directory made for the copy is removed with its run


def test_metadata_is_written_last_and_faults_mid_copy(source, s3_server, monkeypatch):
    proxy = CountingProxy(s3_server["endpoint"])
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        monkeypatch.setenv("BAMS3_TIMEOUT", "1")
        url = f"s3://{s3_server['bucket']}/cp/faulty.bams3"
        # transient faults on the writes, spread over the copy: retried, the copy is exact
        proxy.fault_methods = {"PUT", "POST"}
        proxy.faults = ["ok", "503", "ok", "reset", "ok", "stall"]
        bams3.copy(source["url"], url, workers=2)
        assert not [f for f in proxy.faults if f != "ok"]
        puts = [path for method, path, _, status, _ in proxy.log if method == "PUT" and status == 200]
        assert puts[-1].endswith("/_metadata.json") and all(not p.endswith("_metadata.json") for p in puts[:-1])
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
        _same_dataset(url, source)
        # the network is lost half-way: one line, nothing published, the run removed once it is back
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
        lost = f"s3://{s3_server['bucket']}/cp/lost.bams3"
        proxy.faults = ["ok", "ok"] + ["503"] * 1000
        env = {**os.environ, "AWS_MAX_ATTEMPTS": "2"}
        p = subprocess.run([sys.executable, "-m", "bams3.cli", "cp", source["url"], lost, "-@", "1"],
                           capture_output=True, env=env, timeout=120)
        assert_one_line_error(p, 1)
        proxy.faults = []
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server["endpoint"])
        with pytest.raises(DatasetError, match="no bams3 dataset"):
            bams3.open(lost)
        bams3.copy(source["url"], lost)  # again, with the network back: whole, and the lost run removed
        _same_dataset(lost, source)
        keys = [o["Key"] for o in s3_server["client"].list_objects_v2(
            Bucket=s3_server["bucket"], Prefix="cp/lost.bams3/").get("Contents", [])]
        prefix = bams3.open(lost).meta.data_prefix
        assert all(k.endswith("_metadata.json") or f"/{prefix}" in k for k in keys), keys
    finally:
        proxy.fault_methods = {"GET"}
        proxy.faults = []
        proxy.close()
