"""Statistics stored at conversion equal what samtools flagstat and idxstats print."""

from __future__ import annotations

import shutil

import pysam
import pytest

import bams3
from bams3.stats import flagstat_text, idxstats_text

from .conftest import corpus_id, sorted_corpus
from .oracle import flagstat_json, idxstats, samtools

JSON_KEYS = {
    "total": "total", "primary": "primary", "secondary": "secondary", "supplementary": "supplementary",
    "duplicates": "duplicates", "primary duplicates": "primary_duplicates", "mapped": "mapped",
    "primary mapped": "primary_mapped", "paired in sequencing": "paired", "read1": "read1", "read2": "read2",
    "properly paired": "properly_paired", "with itself and mate mapped": "both_mapped",
    "singletons": "singletons", "with mate mapped to a different chr": "mate_diff_chr",
    "with mate mapped to a different chr (mapQ >= 5)": "mate_diff_chr_mapq5",
}


def assert_stats_match(bam: str, ds) -> None:
    fs = ds.stats["flagstat"]
    oracle = flagstat_json(bam)
    for theirs, ours in JSON_KEYS.items():
        assert fs[ours] == [oracle["QC-passed reads"][theirs], oracle["QC-failed reads"][theirs]], theirs
    assert flagstat_text(fs) == samtools("flagstat", bam)
    assert ds.stats["n_records"] == int(pysam.samtools.view("-c", bam, catch_stdout=True))


def test_benchmark_sample_stats(sample_dir, sample_dataset):
    bam = str(sample_dir / "sample.bam")
    ds = bams3.open(sample_dataset)
    assert_stats_match(bam, ds)
    assert ds.stats["idxstats"] == idxstats(bam)
    assert idxstats_text(ds.stats["idxstats"]) == samtools("idxstats", bam)
    with pysam.AlignmentFile(bam) as af:
        bases = sum(r.query_length for r in af.fetch(until_eof=True))
    assert ds.stats["total_bases"] == bases


SORTED = sorted_corpus()
SORTABLE = [p for p, bam in SORTED.items() if bam is not None]


@pytest.mark.parametrize("src", SORTABLE, ids=map(corpus_id, SORTABLE))
def test_corpus_stats(src, tmp_path):
    bam = str(tmp_path / "sorted.bam")
    shutil.copy(SORTED[src], bam)
    bams3.convert(bam, str(tmp_path / "ds"))
    ds = bams3.open(str(tmp_path / "ds"))
    assert_stats_match(bam, ds)
    pysam.index(bam)
    assert ds.stats["idxstats"] == idxstats(bam)
