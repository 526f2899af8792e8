"""bams3 verify: every object checked; missing, extra and corrupt ones reported, exit 1."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import pytest

import bams3
from bams3.format import encode_metadata

from .test_cli import EXAMPLE


def _verify(*args):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "verify", *map(str, args), "--json"], capture_output=True,
                       text=True)
    return p.returncode, json.loads(p.stdout) if p.stdout.strip() else None, p.stderr


@pytest.fixture
def ds(tmp_path) -> pathlib.Path:
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest), chunk_size="256K", max_chunk_raw=1 << 18)
    return dest


def _chunks(dest):
    return sorted(p for p in (dest / "data").rglob("*") if p.is_file() and p.name.isdigit())


def test_a_good_dataset_verifies_deeply(ds):
    rc, rep, _ = _verify(ds, "--deep")
    assert rc == 0 and rep["ok"] and rep["stats_match"] is True
    assert rep["records"] == bams3.open(str(ds)).stats["n_records"]
    assert rep["objects"] == len(_chunks(ds)) + 3  # chunks, coverage, the run marker, _metadata.json


def test_missing_extra_and_corrupt_objects_are_named(ds):
    chunks = _chunks(ds)
    assert len(chunks) >= 3
    blob = bytearray(chunks[1].read_bytes())
    blob[len(blob) // 3] ^= 0x40
    chunks[1].write_bytes(bytes(blob))
    chunks[2].unlink()
    (ds / "data" / "leftover").write_bytes(b"x")
    rc, rep, _ = _verify(ds)
    assert rc == 1 and not rep["ok"]
    rel = lambda p: str(p.relative_to(ds))  # noqa: E731
    assert rep["missing"] == [rel(chunks[2])]
    assert rep["extra"] == ["data/leftover"]
    assert [c["object"] for c in rep["corrupt"]] == [rel(chunks[1])]
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "verify", str(ds)], capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout.splitlines()[-1].startswith("FAILED")


def test_deep_finds_statistics_that_do_not_add_up(ds):
    meta = json.loads((ds / "_metadata.json").read_text())
    meta["stats"]["flagstat"]["duplicates"][0] += 1
    (ds / "_metadata.json").write_bytes(encode_metadata(meta))
    assert _verify(ds)[0] == 0  # objects are all intact
    rc, rep, _ = _verify(ds, "--deep")
    assert rc == 1 and rep["stats_match"] is False


def test_verify_over_s3(s3_server, tmp_path):
    url = f"s3://{s3_server['bucket']}/verify/d.bams3"
    bams3.convert(EXAMPLE, url, force=True)
    rc, rep, _ = _verify(url, "--deep")
    assert rc == 0 and rep["ok"] and rep["records"] > 0
    s3_server["client"].put_object(Bucket=s3_server["bucket"], Key="verify/d.bams3/data/junk", Body=b"1")
    rc, rep, _ = _verify(url)
    assert rc == 1 and rep["extra"] == ["data/junk"]


def test_missing_dataset_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "verify", str(tmp_path / "nope")], capture_output=True,
                       text=True)
    assert p.returncode == 1 and len(p.stderr.strip().splitlines()) == 1 and "no bams3 dataset" in p.stderr
    shutil.rmtree(tmp_path, ignore_errors=True)
