"""The cohort recipes of docs/cohorts.md, run here as far as this machine allows: GNU
parallel, an AWS Batch array job (two shards, by their environment), the Lambda handler
called as a function, and the Spark recipe in local mode. Each must give the counts of
`bams3 cohort count`, which equal samtools view -c."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pandas as pd
import pysam
import pytest

import bams3

from .test_cohort import _sample_bam

RECIPES = pathlib.Path(__file__).parent.parent / "docs" / "recipes"
REGIONS = ["chr1:2,000-5,000", "chrX"]


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipes")
    samples, expected = [], {}
    for k in range(6):
        name = f"p{k}"
        bam = str(d / f"{name}.bam")
        _sample_bam(bam, 100 + k)
        url = str(d / f"{name}.bams3")
        bams3.convert(bam, url, workers=1)
        samples.append((name, url))
        expected.update({(name, r): int(pysam.view("-c", bam, r)) for r in REGIONS})
    txt = d / "samples.txt"
    txt.write_text("".join(f"{n}\t{u}\n" for n, u in samples))
    return {"dir": d, "samples": samples, "txt": txt, "expected": expected}


def _as_dict(rows) -> dict:
    return {(s, r): int(c) for s, r, c in rows}


def test_gnu_parallel(small_cohort):
    out = {}
    for region in REGIONS:
        p = subprocess.run(["bash", str(RECIPES / "parallel.sh"), str(small_cohort["txt"]), region],
                           capture_output=True, text=True, check=True)
        lines = p.stdout.splitlines()
        assert lines[0] == "sample\tregion\tcount"
        out.update(_as_dict(line.split("\t") for line in lines[1:]))
    assert out == small_cohort["expected"]


def test_aws_batch_array_job(small_cohort):
    out = small_cohort["dir"] / "counts"
    for index in range(2):
        env = {**os.environ, "AWS_BATCH_JOB_ARRAY_INDEX": str(index), "SHARDS": "2",
               "SAMPLES": str(small_cohort["txt"]), "REGIONS": " ".join(REGIONS), "OUT": str(out)}
        subprocess.run([sys.executable, str(RECIPES / "batch_array.py")], env=env, check=True)
    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet"]
    table = pd.concat(pd.read_parquet(p) for p in parts)
    assert _as_dict(table[["sample", "region", "count"]].itertuples(index=False)) == small_cohort["expected"]


def test_lambda_handler_called_as_a_function(small_cohort, monkeypatch):
    monkeypatch.syspath_prepend(str(RECIPES))
    import lambda_handler

    event = {"samples": [list(s) for s in small_cohort["samples"]] + [["gone", "/nonexistent.bams3"]],
             "regions": REGIONS}
    rows = lambda_handler.handler(event, None)["rows"]
    good = [r for r in rows if not r["error"]]
    assert _as_dict((r["sample"], r["region"], r["count"]) for r in good) == small_cohort["expected"]
    assert {r["sample"] for r in rows if r["error"]} == {"gone"}


def test_spark_in_local_mode(small_cohort, tmp_path):
    out = tmp_path / "counts.parquet"
    p = subprocess.run([sys.executable, str(RECIPES / "spark_count.py"), str(small_cohort["txt"]), *REGIONS,
                        "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    table = pd.read_parquet(out)
    assert _as_dict(table[["sample", "region", "count"]].itertuples(index=False)) == small_cohort["expected"]
