"""Binned depth stored at conversion equals samtools depth, bin for bin, exactly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pysam
import pytest

import bams3

from .conftest import corpus_files, corpus_id, sorted_corpus

SORTED = sorted_corpus()
WITH_READS = [p for p in corpus_files() if SORTED[p] is not None]


def depth_sums(bam: str, references, bin_bp: int) -> list[np.ndarray]:
    """Per reference, per bin: the sum of samtools depth -a over the bin (the oracle)."""
    text = pysam.depth(bam, catch_stdout=True)  # positions of depth 0 add nothing
    out = {name: np.zeros(max(1, -(-length // bin_bp)), dtype=np.int64) for name, length in references}
    lengths = dict(references)
    for line in text.splitlines():
        name, pos, depth = line.split("\t")
        if int(pos) <= lengths[name]:  # samtools depth also reports positions past a reference's end
            out[name][(int(pos) - 1) // bin_bp] += int(depth)
    return [out[name] for name, _ in references]


@pytest.mark.parametrize("src", WITH_READS, ids=map(corpus_id, WITH_READS))
def test_corpus_depth_equals_samtools_depth(src, tmp_path, monkeypatch):
    from bams3 import converter
    from bams3 import coverage as cov

    bam = str(SORTED[src])
    with pysam.AlignmentFile(bam, check_sq=False) as f:
        refs = list(zip(f.references, f.lengths))
    dest = str(tmp_path / "d")
    # 16 bp bins, so that the corpus' short references have several
    b = 16 if sum(length for _, length in refs) < 5_000_000 else cov.COVERAGE_BIN
    monkeypatch.setattr(converter, "chunk_depth", lambda core, cigar, n_ops=None, ref_length=None: cov.chunk_depth(core, cigar, n_ops, b, ref_length))
    monkeypatch.setattr(converter, "DepthAccumulator", lambda refs_: cov.DepthAccumulator(refs_, b))
    bams3.convert(bam, dest, chunk_size=1024)
    ds = bams3.open(dest)
    assert ds.meta.coverage["bin"] == b
    ours = ds.depth_sums()
    expect = np.concatenate(depth_sums(bam, refs, b) or [np.zeros(0, dtype=np.int64)])
    assert np.array_equal(ours, expect)


def test_sample_coverage_matches_samtools(sample_dataset, sample_dir):
    bam = str(sample_dir / "sample.bam")
    ds = bams3.open(sample_dataset)
    rows = ds.coverage("chr1:1-200000")
    assert [r[1] for r in rows[:3]] == [0, 16384, 32768]
    for name, beg, end, mean in rows:
        text = pysam.depth("-a", "-r", f"{name}:{beg + 1}-{end}", bam, catch_stdout=True)
        total = sum(int(line.split("\t")[2]) for line in text.splitlines())
        assert mean == pytest.approx(total / (end - beg), abs=1e-12)
    # coarser bins are sums of the stored ones; whole references agree with samtools coverage
    (row,) = [r for r in ds.coverage(bin_bp=4 << 20) if r[0] == "chrM"]
    meandepth = float(pysam.coverage("-r", "chrM", bam, catch_stdout=True).splitlines()[1].split("\t")[6])
    assert round(row[3], 4) == pytest.approx(meandepth, abs=1e-4)


def test_cli_coverage_reads_only_metadata_and_the_bins(sample_dataset):
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "coverage", sample_dataset, "--bin", "1M", "--trace"],
                       capture_output=True, text=True, check=True)
    lines = p.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["chr1", "0", "1048576"]
    assert float(lines[0].split("\t")[3]) > 5
    assert "total 2 requests" in p.stderr
    bad = subprocess.run([sys.executable, "-m", "bams3.cli", "coverage", sample_dataset, "--bin", "5K"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "multiple of 16,384" in bad.stderr and len(bad.stderr.splitlines()) == 1
