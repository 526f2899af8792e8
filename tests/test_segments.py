"""pysam records made in C (``bams3/_segments.c``, through pysam's own makeAlignedSegment): equal
to what htslib reads from the same bytes, htslib's reading kept for the records it would change,
and the records freed by reference counting without the cycle collector."""

from __future__ import annotations

import gc
import sys

import pysam
import pytest

import bams3
import bams3._pysam

from . import filterbam
from .synth import write_cg_bam


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    return filterbam.dataset(tmp_path_factory.mktemp("segments"))


def test_this_pysam_is_made_for_in_c():
    """The fast path is on here (pysam exports makeAlignedSegment and the layout check passes), so
    the tests below exercise it."""
    assert bams3._pysam._maker() is not None


def test_records_are_made_in_c_and_equal_htslibs(filtered, monkeypatch):
    bam, url = filtered

    def refused(*args, **kwargs):
        raise AssertionError("htslib read a batch")

    monkeypatch.setattr(bams3._pysam, "records_via_htslib", refused)
    with pysam.AlignmentFile(bam) as f:
        want = [r.to_string() for r in f.fetch(until_eof=True)]
        region = [(r.to_string(), r.bin, r.header.references) for r in f.fetch("chr1", 10_000, 40_000)]
    ds = bams3.open(url)
    assert [r.to_string() for r in ds.fetch(until_eof=True)] == want
    assert [(r.to_string(), r.bin, r.header.references) for r in ds.fetch("chr1", 10_000, 40_000)] == region


def test_records_htslib_would_change_are_read_by_htslib(tmp_path, monkeypatch):
    """A CIGAR kept in a CG tag (the record stores a placeholder soft clip of the whole read):
    htslib moves it into place when it reads the record, so its batch goes through htslib."""
    bam = write_cg_bam(str(tmp_path / "cg.bam"))
    with pysam.AlignmentFile(bam) as f:
        want = [r.to_string() for r in f.fetch(until_eof=True)]
    assert "\t4M2I4M\t" in want[17] and "CG:" not in want[17]  # htslib moved it
    dest = str(tmp_path / "cg.bams3")
    bams3.convert(bam, dest)
    calls = []
    real = bams3._pysam.records_via_htslib

    def spy(header, batches):
        calls.append(1)
        return real(header, batches)

    monkeypatch.setattr(bams3._pysam, "records_via_htslib", spy)
    got = [r.to_string() for r in bams3.open(dest).fetch(until_eof=True)]
    assert got == want
    assert calls  # the batch holding record 17 was read by htslib


def test_made_records_are_untracked_and_freed(filtered):
    _, url = filtered
    ds = bams3.open(url)
    header = ds.header.pysam
    before = sys.getrefcount(header)
    reads = list(ds.fetch("chr1", 10_000, 40_000))
    assert len(reads) > 100
    assert not any(gc.is_tracked(r) for r in reads)
    assert [r.query_qualities for r in reads[:5]]  # the cache in use, still fine
    assert sys.getrefcount(header) == before + len(reads)  # each record holds the header
    del reads
    gc.collect()
    assert sys.getrefcount(header) == before  # every record freed


def test_without_the_c_path_htslib_reads_every_batch(filtered, monkeypatch):
    """A pysam that does not export makeAlignedSegment, or whose layout the check refuses: every
    record goes through htslib, with the same result."""
    bam, url = filtered
    monkeypatch.setattr(bams3._pysam, "_MAKER", False)
    with pysam.AlignmentFile(bam) as f:
        want = [r.to_string() for r in f.fetch("chr1", 10_000, 40_000)]
    reads = list(bams3.open(url).fetch("chr1", 10_000, 40_000))
    assert [r.to_string() for r in reads] == want
    assert all(gc.is_tracked(r) for r in reads)  # htslib's, as pysam makes them
