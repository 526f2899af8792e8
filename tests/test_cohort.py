"""A cohort of 200+ small datasets on the S3 test server: counted in one process and on a
real dask.distributed LocalCluster, every count equal to samtools view -c on that sample's
BAM; a corrupt sample shows up as error rows while the others complete."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pandas as pd
import pysam
import pytest

import bams3
import bams3.cohort

N_SAMPLES = 203
REGIONS = ["chr1:2,000-5,000", "chr2:100-40,000", "chrX", "chr1"]
CORRUPT = "s007"


def _sample_bam(path: str, seed: int) -> None:
    """A small sorted BAM; a third of the samples have one X (half the chrX reads)."""
    rng = random.Random(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"},
              "SQ": [{"SN": "chr1", "LN": 60_000}, {"SN": "chr2", "LN": 50_000}, {"SN": "chrX", "LN": 40_000}]}
    male = seed % 3 == 0
    recs = []
    for tid, length in enumerate((60_000, 50_000, 40_000)):
        n = rng.randrange(80, 160) // (2 if tid == 2 and male else 1)
        for i in range(n):
            recs.append((tid, rng.randrange(0, length - 100), i, rng.choice([0, 16, 4 if rng.random() < .05 else 0])))
    recs.sort()
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for tid, pos, i, flag in recs:
            a = pysam.AlignedSegment(out.header)
            a.query_name = f"r{tid}_{i}"
            a.flag = flag
            a.reference_id = tid
            a.reference_start = pos
            a.mapping_quality = 60
            a.cigartuples = [(0, 50), (2, rng.randrange(0, 3)), (0, 50)]
            a.query_sequence = "".join(rng.choice("ACGT") for _ in range(100))
            a.query_qualities = pysam.qualitystring_to_array("".join(rng.choice("#+5?I") for _ in range(100)))
            out.write(a)
    pysam.index(path)


@pytest.fixture(scope="module")
def cohort(s3_server, tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    prefix = f"s3://{s3_server['bucket']}/cohort/"
    samples, expected = [], {}
    for k in range(N_SAMPLES):
        name = f"s{k:03d}"
        bam = str(d / f"{name}.bam")
        _sample_bam(bam, k)
        url = f"{prefix}{name}.bams3"
        bams3.convert(bam, url, workers=1)
        samples.append((name, url))
        expected[name] = {r: int(pysam.view("-c", bam, r)) for r in REGIONS}
    # one sample's metadata is damaged after the fact (cut short, as by a failed copy)
    client = s3_server["client"]
    key = f"cohort/{CORRUPT}.bams3/_metadata.json"
    body = client.get_object(Bucket=s3_server["bucket"], Key=key)["Body"].read()
    client.put_object(Bucket=s3_server["bucket"], Key=key, Body=body[: len(body) // 2])
    (d / "samples.txt").write_text("".join(f"{n}\t{u}\n" for n, u in samples))
    return {"prefix": prefix, "samples": samples, "expected": expected, "dir": d}


def _check(table: pd.DataFrame, cohort) -> None:
    assert len(table) == N_SAMPLES * len(REGIONS)
    bad = table[table["error"] != ""]
    assert set(bad["sample"]) == {CORRUPT}
    assert bad["error"].str.contains("corrupt").all() and bad["count"].isna().all()
    good = table[table["error"] == ""]
    for row in good.itertuples(index=False):
        assert row.count == cohort["expected"][row.sample][row.region], (row.sample, row.region)


def test_ls_lists_every_dataset(cohort):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "ls", cohort["prefix"], "--json"], capture_output=True,
                       text=True, check=True)
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(rows) == N_SAMPLES
    assert {r["name"] for r in rows} == {n for n, _ in cohort["samples"]}
    good = [r for r in rows if r["name"] != CORRUPT]
    assert all(r["format_version"] == bams3.format.FORMAT_VERSION and r["reads"] > 0 and r["chunk_size"] == 1 << 20
               for r in good)
    (bad,) = [r for r in rows if r["name"] == CORRUPT]
    assert "metadata" in bad["error"] and bad["reads"] is None


def test_count_in_one_process(cohort):
    table = bams3.cohort.count(cohort["samples"], REGIONS, workers=16)
    _check(table, cohort)


def test_count_on_a_dask_local_cluster(cohort):
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=4, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        table = bams3.cohort.count(cohort["samples"], REGIONS, client=client)
        assert len(client.scheduler_info()["workers"]) == 2
    _check(table, cohort)


def test_cli_count_to_parquet_from_prefix_and_list(cohort, tmp_path):
    out = tmp_path / "counts.parquet"
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "count", *REGIONS, "--prefix", cohort["prefix"],
                        "-o", str(out), "--engine", "dask", "--workers", "2"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "1 sample(s) failed" in p.stderr and CORRUPT in p.stderr and len(p.stderr.strip().splitlines()) == 1
    table = pd.read_parquet(out)
    table["error"] = table["error"].fillna("")
    _check(table, cohort)
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "count", "chrX", "--from",
                        str(cohort["dir"] / "samples.txt")], capture_output=True, text=True)
    lines = p.stdout.splitlines()
    assert lines[0] == "sample\tregion\tcount\tnote\terror" and len(lines) == N_SAMPLES + 1
    s001 = [line.split("\t") for line in lines if line.startswith("s001\t")][0]
    assert int(s001[2]) == cohort["expected"]["s001"]["chrX"]


def test_cohort_stats_and_coverage_show_dosage(cohort, tmp_path):
    stats = bams3.cohort.stats(cohort["samples"][:30])
    assert (stats[stats["sample"] != CORRUPT]["records"] > 0).all()
    cov = bams3.cohort.coverage(cohort["samples"][:30], bin_bp=16384)
    from bams3.plot import normalised

    _, means = normalised(cov)
    # samples with one X read about half as deep there as elsewhere
    males = [means[f"s{k:03d}"]["chrX"] for k in range(0, 30, 3)]
    females = [means[f"s{k:03d}"]["chrX"] for k in range(1, 30, 3) if f"s{k:03d}" != CORRUPT]
    assert max(males) < min(females)
    html = tmp_path / "cov.html"
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "coverage", "--bin", "16K", "--from",
                        str(cohort["dir"] / "samples.txt"), "--plot", str(html)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    text = html.read_text()
    assert text.count("<svg") == 3 and "chrX" in text and "s000" in text
    png = tmp_path / "cov.png"
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "coverage", "--bin", "16K", "--from",
                        str(cohort["dir"] / "samples.txt"), "--plot", str(png)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cohort_needs_samples():
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cohort", "count", "chr1"], capture_output=True, text=True)
    assert p.returncode == 2 and "--from" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_filtered_count_and_exact_coverage_on_a_dask_local_cluster(cohort):
    """samtools view's filters and samtools depth's, on every sample, on a real LocalCluster:
    each count equals samtools view -c with the filter, each bin the mean of samtools depth -a."""
    from distributed import Client, LocalCluster

    from bams3.depth import DepthOptions
    from bams3.filters import from_options

    flt = from_options(exclude=["REVERSE"], min_mapq=1)
    region = "chr1:2,001-5,000"
    with LocalCluster(n_workers=2, threads_per_worker=4, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        counts = bams3.cohort.count(cohort["samples"], REGIONS[:2], client=client, filters=flt)
        cov = bams3.cohort.coverage(cohort["samples"], 1000, client=client, region=region,
                                    options=DepthOptions(excl_flags="UNMAP,SECONDARY,QCFAIL,DUP,REVERSE"))
    good = counts[counts["error"] == ""]
    assert set(counts[counts["error"] != ""]["sample"]) == {CORRUPT}
    assert len(good) == (N_SAMPLES - 1) * 2
    for row in good.itertuples(index=False):
        bam = str(cohort["dir"] / f"{row.sample}.bam")
        assert row.count == int(pysam.view("-c", "-F", "0x10", bam, row.region)), (row.sample, row.region)
    cov = cov[cov["error"] == ""]
    assert len(cov) == (N_SAMPLES - 1) * 3
    for row in cov[cov["sample"].isin({n for n, _ in cohort["samples"][:30]})].itertuples(index=False):
        bam = str(cohort["dir"] / f"{row.sample}.bam")
        # samtools depth, not coverage: these reads hold zero-length deletions, where samtools
        # coverage's pileup and samtools depth differ (bams3 depth is samtools depth)
        out = pysam.depth("-a", "-G", "REVERSE", "-r", f"{row.reference}:{row.start + 1}-{row.end}", bam)
        depths = [int(line.split("\t")[2]) for line in out.splitlines()]
        assert len(depths) == row.end - row.start
        assert row.mean_depth == pytest.approx(sum(depths) / len(depths), abs=1e-9)
