"""Cohorts at the edges: a region on a reference one sample lacks, names from @RG SM, sample
lists with spaces in paths, references named like region syntax, and Ctrl-C."""

from __future__ import annotations

import csv
import io
import os
import pathlib
import signal
import subprocess
import sys
import time

import pysam
import pytest

import bams3
import bams3.cohort

from .test_cli import BAMS3, assert_one_line_error


def _bam(path: pathlib.Path, refs, sm: list[str] | None = None, n: int = 60, seed: int = 0) -> str:
    import random

    rng = random.Random(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": s, "LN": length} for s, length in refs]}
    if sm is not None:
        header["RG"] = [{"ID": f"g{i}", "SM": s} for i, s in enumerate(sm)]
    recs = sorted((tid, rng.randrange(0, length - 100)) for tid, (_, length) in enumerate(refs) for _ in range(n))
    with pysam.AlignmentFile(str(path), "wb", header=header) as out:
        for i, (tid, pos) in enumerate(recs):
            a = pysam.AlignedSegment(out.header)
            a.query_name = f"r{i}"
            a.reference_id, a.reference_start, a.mapping_quality = tid, pos, 60
            a.cigartuples = [(0, 50)]
            a.query_sequence = "A" * 50
            a.query_qualities = pysam.qualitystring_to_array("I" * 50)
            if sm:
                a.set_tag("RG", "g0")
            out.write(a)
    pysam.index(str(path))
    return str(path)


def _table(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t"))


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    d = tmp_path_factory.mktemp("edges")
    full = _bam(d / "full.bam", [("chr1", 10_000), ("chr2", 8_000), ("{x}", 5_000), ("a:b", 5_000)], ["NA12878"])
    small = _bam(d / "small.bam", [("chr1", 10_000)], ["NA12891"], seed=1)
    two = _bam(d / "two.bam", [("chr1", 10_000), ("chr2", 8_000)], ["A", "B"], seed=2)
    space_dir = d / "with space"
    space_dir.mkdir()
    urls = {}
    for name, bam in (("full", full), ("small", small), ("two", two)):
        dest = space_dir / f"{name}.bams3"
        bams3.convert(bam, str(dest))
        urls[name] = str(dest)
    listing = d / "samples.txt"
    listing.write_text("".join(f"{u}\n" for u in urls.values()))  # paths with a space, no names
    return {"dir": d, "bams": {"full": full, "small": small, "two": two}, "urls": urls, "list": listing}


def _cohort(*args) -> subprocess.CompletedProcess:
    return subprocess.run([BAMS3, "cohort", *map(str, args)], capture_output=True, text=True)


def test_a_missing_reference_counts_zero_for_that_region_only(samples):
    p = _cohort("count", "chr1:1-5000", "chr2", "--from", samples["list"])
    assert p.returncode == 0, p.stderr
    rows = {(r["sample"], r["region"]): r for r in _table(p.stdout)}
    for name in ("full", "small", "two"):
        bam = samples["bams"][name]
        assert int(rows[(name, "chr1:1-5000")]["count"]) == int(pysam.view("-c", bam, "chr1:1-5000"))
        assert rows[(name, "chr1:1-5000")]["note"] == "" and rows[(name, "chr1:1-5000")]["error"] == ""
    assert rows[("small", "chr2")]["count"] == "0" and rows[("small", "chr2")]["note"] == "missing_reference"
    assert rows[("small", "chr2")]["error"] == ""
    assert int(rows[("full", "chr2")]["count"]) == int(pysam.view("-c", samples["bams"]["full"], "chr2"))


def test_sample_names_from_read_groups(samples):
    p = _cohort("count", "chr1", "--from", samples["list"], "--sample-name", "rg")
    rows = _table(p.stdout)
    by = {r["sample"]: r for r in rows}
    assert by["NA12878"]["error"] == "" and by["NA12891"]["error"] == ""
    assert "several samples" in by["two"]["error"] and by["two"]["count"] == "NA"
    assert "1 sample(s) failed" in p.stderr
    table = bams3.cohort.stats(list(samples["urls"].values()), sample_names="rg")
    assert set(table["sample"]) == {"NA12878", "NA12891", "two"}


def test_a_sample_list_keeps_spaces_in_paths(samples):
    p = _cohort("stats", "--from", samples["list"])
    assert p.returncode == 0, p.stderr
    assert [r["url"] for r in _table(p.stdout)] == list(samples["urls"].values())
    named = samples["dir"] / "named.txt"
    named.write_text(f"my sample\t{samples['urls']['full']}\n")
    rows = _table(_cohort("stats", "--from", named).stdout)
    assert rows[0]["sample"] == "my sample" and rows[0]["error"] == ""


def test_reference_names_like_region_syntax_in_a_bed(samples):
    """{x} and a:b in a BED file are references as named, in cohort count as in query."""
    bed = samples["dir"] / "odd.bed"
    bed.write_text("{x}\t0\t5000\na:b\t100\t900\n")
    p = _cohort("count", "-L", bed, "--from", samples["list"])
    assert p.returncode == 0, p.stderr
    rows = {(r["sample"], r["region"]): r for r in _table(p.stdout)}
    full = samples["bams"]["full"]
    for line, label in (("{x}\t0\t5000\n", "{x}:1-5000"), ("a:b\t100\t900\n", "a:b:101-900")):
        one = samples["dir"] / "one.bed"  # samtools reaches {x} only through a BED (region syntax reads x)
        one.write_text(line)
        assert int(rows[("full", label)]["count"]) == int(pysam.view("-c", "-L", str(one), full)) > 0
    assert rows[("small", "{x}:1-5000")]["note"] == "missing_reference"
    q = subprocess.run([BAMS3, "query", samples["urls"]["full"], "-L", bed, "-c"], capture_output=True, text=True)
    assert int(q.stdout) == int(pysam.view("-c", "-L", str(bed), full))


def test_an_unknown_table_format_fails_before_any_sample_runs(samples):
    p = subprocess.run([BAMS3, "cohort", "count", "chr1", "--from", str(samples["list"]), "-o", "out.xlsx"],
                       capture_output=True, cwd=samples["dir"])
    assert_one_line_error(p, 2, "unknown table format")


@pytest.mark.parametrize("engine", ["local", "dask"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_stops_a_cohort_run_within_seconds(samples, tmp_path, engine, sig):
    """40 samples of 3,000 regions each (a minute's work): interrupted after it starts, the run
    ends within seconds, in one line, without finishing the queued samples."""
    listing = tmp_path / "many.txt"
    listing.write_text("".join(f"s{i}\t{samples['urls']['full']}\n" for i in range(40)))
    regions = tmp_path / "many.bed"
    regions.write_text("".join(f"chr1\t{i}\t{i + 100}\n" for i in range(0, 9000, 3)))
    p = subprocess.Popen([BAMS3, "cohort", "count", "-L", str(regions), "--from", str(listing), "--engine", engine,
                          "-@", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4 if engine == "local" else 12)  # a LocalCluster takes a few seconds to start
    assert p.poll() is None, "the run ended before it could be interrupted"
    t = time.monotonic()
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    took = time.monotonic() - t
    want = (130, "bams3: interrupted\n") if sig == signal.SIGINT else (143, "bams3: terminated\n")
    assert (p.returncode, err) == want
    assert out == "" and took < 15, took


def test_without_pandas_a_cohort_table_says_what_to_install(samples, tmp_path):
    """A plain `pip install .` lacks pandas: one line naming the extra, before any sample runs."""
    blocker = tmp_path / "no-pandas" / "pandas"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('pandas is not installed here')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker.parent)}
    p = subprocess.run([BAMS3, "cohort", "coverage", "--from", str(samples["list"]), "--plot", str(tmp_path / "c.html")],
                       capture_output=True, env=env)
    assert_one_line_error(p, 2, "pip install 'bams3[cohort]'")
    assert not (tmp_path / "c.html").exists()
    code = f"import bams3.cohort as c; c.stats([{samples['urls']['full']!r}])"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "UsageError: cohort tables need pandas" in p.stderr
