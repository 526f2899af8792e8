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


def _flagstat_one_by_one(flags, refids, next_refids, mapqs) -> dict[str, list[int]]:
    """samtools' bam_stat.c, record by record (the definition the bulk counting must equal)."""
    from bams3.stats import FLAGSTAT_KEYS

    out = {k: [0, 0] for k in FLAGSTAT_KEYS}
    for flag, refid, mrefid, mapq in zip(flags, refids, next_refids, mapqs):
        w = 1 if flag & 0x200 else 0
        out["total"][w] += 1
        if flag & 0x100:
            out["secondary"][w] += 1
        elif flag & 0x800:
            out["supplementary"][w] += 1
        else:
            out["primary"][w] += 1
            if flag & 0x1:
                out["paired"][w] += 1
                if flag & 0x40:
                    out["read1"][w] += 1
                if flag & 0x80:
                    out["read2"][w] += 1
                if (flag & 0x2) and not flag & 0x4:
                    out["properly_paired"][w] += 1
                if not flag & 0x4 and not flag & 0x8:
                    out["both_mapped"][w] += 1
                    if mrefid != refid:
                        out["mate_diff_chr"][w] += 1
                        if mapq >= 5:
                            out["mate_diff_chr_mapq5"][w] += 1
                if not flag & 0x4 and flag & 0x8:
                    out["singletons"][w] += 1
            if not flag & 0x4:
                out["primary_mapped"][w] += 1
            if flag & 0x400:
                out["primary_duplicates"][w] += 1
        if not flag & 0x4:
            out["mapped"][w] += 1
        if flag & 0x400:
            out["duplicates"][w] += 1
    return out


def test_bulk_flagstat_equals_bam_stat_record_by_record():
    """Any flag (all 16 bits), references and MAPQ, in batches that are then merged."""
    import numpy as np

    from bams3.records import CORE
    from bams3.stats import StatsAccumulator

    rng = np.random.default_rng(7)
    whole = StatsAccumulator(3)
    cores = []
    for n in (1, 17, 5000):
        core = np.zeros(n, dtype=CORE)
        core["flag"] = rng.integers(0, 1 << 16, n)
        core["refid"] = rng.integers(-1, 3, n)
        core["next_refid"] = rng.integers(-1, 3, n)
        core["mapq"] = rng.integers(0, 256, n)
        part = StatsAccumulator(3)
        part.add(core, 0)
        whole.merge(part)
        cores.append(core)
    core = np.concatenate(cores)
    refs = [("a", 10), ("b", 10), ("c", 10)]
    got = whole.result(refs, 0, 0)
    assert got["flagstat"] == _flagstat_one_by_one(*(core[f].tolist() for f in ("flag", "refid", "next_refid",
                                                                                "mapq")))
    assert got["n_records"] == len(core) and got["idxstats"][-1][3] == int((core["refid"] < 0).sum())
