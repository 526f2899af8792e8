"""``bams3 cohort convert``: many BAMs, one task per sample, in this process or on a real
dask.distributed LocalCluster, inputs and datasets on the S3 test server too. Every dataset
holds exactly its BAM's records (samtools view is the oracle); a failing sample is a row with
its error, the others finish, and the exit status says one failed."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pandas as pd
import pytest

import bams3.cohort
from bams3.dataset import Dataset

from .oracle import view
from .synth import write_bam

N = 4


@pytest.fixture(scope="module")
def bams(tmp_path_factory):
    d = tmp_path_factory.mktemp("bams")
    paths = [write_bam(str(d / f"p{k}.bam"), n=1500 + 300 * k, seed=k) for k in range(N)]
    broken = d / "broken.bam"  # cut short inside its records
    data = open(paths[0], "rb").read()
    broken.write_bytes(data[: len(data) // 2])
    return {"dir": d, "paths": paths, "broken": str(broken)}


def _sam(url: str) -> str:
    buf = io.BytesIO()
    Dataset.open(url).write(buf)
    return buf.getvalue().decode()


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "convert", *args], capture_output=True,
                          text=True, **kw)


def _rows(tsv: str) -> list[dict]:
    lines = tsv.splitlines()
    head = lines[0].split("\t")
    return [dict(zip(head, line.split("\t"))) for line in lines[1:]]


def test_cli_converts_each_sample_and_reports_each_failure(bams, tmp_path):
    listing = tmp_path / "samples.tsv"
    listing.write_text("# name<TAB>input, or the input alone\n"
                       + "".join(f"{p}\n" for p in bams["paths"][:2])
                       + f"third\t{bams['paths'][2]}\n"
                       + f"{bams['broken']}\n{tmp_path / 'absent.bam'}\n")
    out = tmp_path / "cohort"
    p = _cli("--from", str(listing), "--to", str(out), "-@", "2", "--chunk-size", "64K")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == ["bams3: 2 sample(s) failed (see the error column): broken, absent"]
    rows = {r["sample"]: r for r in _rows(p.stdout)}
    assert list(rows) == ["p0", "p1", "third", "broken", "absent"]
    for name, bam in (("p0", bams["paths"][0]), ("p1", bams["paths"][1]), ("third", bams["paths"][2])):
        r = rows[name]
        assert r["error"] == "" and r["dataset"] == f"{out}/{name}.bams3"
        assert _sam(r["dataset"]) == view(bam)
        ds = Dataset.open(r["dataset"])
        assert int(r["records"]) == ds.stats["n_records"] and int(r["chunks"]) == ds.stats["n_chunks"]
        assert int(r["size"]) == ds.stats["stored_bytes"] and ds.meta.chunk_size == 64 << 10
    assert "truncated" in rows["broken"]["error"] and rows["broken"]["records"] == "NA"
    assert "no such file" in rows["absent"]["error"]
    assert sorted(os.listdir(out)) == ["p0.bams3", "p1.bams3", "third.bams3"]  # nothing left of the failures


def test_a_second_run_skips_what_the_first_finished(bams, tmp_path):
    out = tmp_path / "cohort"
    first = _cli(*bams["paths"][:2], "--to", str(out))
    assert first.returncode == 0, first.stderr
    again = _cli(*bams["paths"][:3], "--to", str(out), "--skip-existing", "-o", str(tmp_path / "t.csv"))
    assert again.returncode == 0, again.stderr
    t = pd.read_csv(tmp_path / "t.csv", keep_default_na=False)
    assert list(t["note"]) == ["exists", "exists", ""] and list(t["error"]) == ["", "", ""]
    assert _sam(f"{out}/p2.bams3") == view(bams["paths"][2])
    # without --skip-existing or --force an existing dataset is a failure, never replaced
    before = open(f"{out}/p0.bams3/_metadata.json", "rb").read()
    p = _cli(bams["paths"][0], "--to", str(out))
    assert p.returncode == 1 and "already holds a bams3 dataset" in _rows(p.stdout)[0]["error"]
    assert open(f"{out}/p0.bams3/_metadata.json", "rb").read() == before
    # a dataset of another input under the name is not taken for this one's
    other = tmp_path / "other"
    other.mkdir()
    os.symlink(bams["paths"][3], other / "p0.bam")
    p = _cli(str(other / "p0.bam"), "--to", str(out), "--skip-existing")
    assert p.returncode == 1 and "another input" in _rows(p.stdout)[0]["error"]
    assert open(f"{out}/p0.bams3/_metadata.json", "rb").read() == before
    p = _cli(str(other / "p0.bam"), "--to", str(out), "--force")
    assert p.returncode == 0, p.stderr
    assert _sam(f"{out}/p0.bams3") == view(bams["paths"][3])


def test_the_chunk_limit_applies_to_every_sample(bams, tmp_path):
    """--max-chunk-raw as for convert: each sample's windows are cut into chunks of at most that
    many raw record bytes (more chunks than the default's 4 MiB), the records exact."""
    p = _cli(*bams["paths"][:2], "--to", str(tmp_path / "small"), "--max-chunk-raw", "16K", "--compression", "high")
    assert p.returncode == 0, p.stderr
    q = _cli(*bams["paths"][:2], "--to", str(tmp_path / "plain"), "--compression", "high")
    assert q.returncode == 0, q.stderr
    for name, bam in (("p0", bams["paths"][0]), ("p1", bams["paths"][1])):
        small, plain = Dataset.open(f"{tmp_path}/small/{name}.bams3"), Dataset.open(f"{tmp_path}/plain/{name}.bams3")
        assert small.stats["n_chunks"] > 2 * plain.stats["n_chunks"]
        assert max(small.source.table.raw_nbytes) < (16 << 10) + 4096  # the record reaching 16 KiB ends a chunk
        assert _sam(f"{tmp_path}/small/{name}.bams3") == view(bam)


@pytest.mark.parametrize("args, words", [
    (["--to", "x"], "IN... or with --from"),
    (["a/s.bam", "b/s.bam", "--to", "x"], "two samples are named 's'"),
    (["a.bam", "--to", "x", "--chunk-size", "12Q"], "bad chunk size"),
    (["a.bam", "--to", "x", "-o", "t.xlsx"], "unknown table format"),
    (["a.bam", "--to", "x", "--max-chunk-raw", "12Q"], "bad size '12Q' for --max-chunk-raw"),
    (["a.bam", "--to", "x", "--max-chunk-raw", "0"], "outside 1 byte to 256 MiB"),
])
def test_usage_errors_stop_before_any_sample_runs(tmp_path, args, words):
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode == 2 and words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert os.listdir(tmp_path) == []


def test_on_a_dask_local_cluster_from_s3_to_s3(bams, s3_server):
    """Inputs on the S3 test server, datasets written there, one task per sample on a real
    LocalCluster; the broken sample fails alone."""
    from distributed import Client, LocalCluster

    client = s3_server["client"]
    bucket = s3_server["bucket"]
    inputs = []
    for path in bams["paths"] + [bams["broken"]]:
        key = f"bams/{os.path.basename(path)}"
        client.upload_file(path, bucket, key)
        inputs.append(f"s3://{bucket}/{key}")
    to = f"s3://{bucket}/converted/"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as dc:
        table = bams3.cohort.convert(inputs, to, client=dc, chunk_size="128K", threads=1)
        workers = {w["host"] for w in dc.scheduler_info()["workers"].values()}
    assert workers == {"127.0.0.1"}
    assert list(table["sample"]) == [f"p{k}" for k in range(N)] + ["broken"]
    good = table[table["error"] == ""]
    assert len(good) == N and table["error"].iloc[-1] != ""
    for row in good.itertuples(index=False):
        assert row.dataset == f"{to}{row.sample}.bams3"
        assert _sam(row.dataset) == view(bams["paths"][int(row.sample[1:])])
        assert row.records == Dataset.open(row.dataset).stats["n_records"]
    listed = client.list_objects_v2(Bucket=bucket, Prefix="converted/broken.bams3/")
    assert listed.get("KeyCount", 0) == 0  # the failed conversion published nothing and left nothing


def test_cli_on_dask(bams, tmp_path):
    out = tmp_path / "cohort"
    p = _cli(*bams["paths"], "--to", str(out), "--engine", "dask", "--workers", "2", "--threads", "1")
    assert p.returncode == 0, p.stderr
    rows = _rows(p.stdout)
    assert [r["sample"] for r in rows] == [f"p{k}" for k in range(N)]
    for r, bam in zip(rows, bams["paths"]):
        assert _sam(r["dataset"]) == view(bam)
