"""Exact regions: counts equal `samtools view -c`, records equal `samtools view`, on
data with window-spanning deletions and introns, reads at reference ends, placed
unmapped reads, an empty reference and several chunk sizes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bams3

from .oracle import view, view_count
from .synth import REFS, random_regions, write_bam

CHUNK_SIZES = [1024, 4096, 65536, 1 << 20]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    bam = write_bam(str(d / "synth.bam"))
    datasets = {}
    for cs in CHUNK_SIZES:
        dest = str(d / f"cs{cs}.bams3")
        # counts from count slots (--count-slots) and from the chunks' pos/span prefix, both against samtools
        bams3.convert(bam, dest, chunk_size=cs, slots=cs in (1024, 65536))
        datasets[cs] = bams3.open(dest)
    return bam, datasets


def _our_sam(ds, regions, tmp_path) -> str:
    out = tmp_path / "out.sam"
    with open(out, "wb") as f:
        ds.write(f, regions, format="sam")
    return out.read_text()


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
def test_counts_and_records_match_samtools(synth, chunk_size, tmp_path):
    bam, datasets = synth
    ds = datasets[chunk_size]
    rng = random.Random(chunk_size)
    regions = random_regions(rng, 120)
    for region in regions:
        assert ds.count(region) == view_count(bam, region), region
    for region in regions[:40]:
        assert _our_sam(ds, region, tmp_path) == view(bam, region), region


def test_the_hard_cases_are_present(synth):
    """The data really has reads that span windows, placed unmapped reads and unplaced reads."""
    bam, datasets = synth
    ds = datasets[1024]
    t = ds.chunks
    assert (t.max_end - (t.window + 1) * 1024 > 50_000).any()  # reads reaching far into later windows
    assert view_count(bam, "*") == 50
    assert int(view_count(bam, "chrA", flags=("-f", "4"))) > 0
    assert ds.count("chrEmpty") == 0 == view_count(bam, "chrEmpty")


def test_reads_found_from_far_inside_their_intron(synth):
    """A region many windows past a spliced read's start, inside its intron, still returns it."""
    import pysam

    bam, datasets = synth
    with pysam.AlignmentFile(bam) as af:
        spliced = [r for r in af.fetch("chrA") if any(op == 3 and n > 60_000 for op, n in r.cigartuples or [])]
    assert spliced
    for r in spliced[:10]:
        mid = r.reference_start + 50_000
        region = f"chrA:{mid}-{mid + 10}"
        n = view_count(bam, region)
        assert n >= 1
        for ds in datasets.values():
            assert ds.count(region) == n
            assert any(rec.query_name == r.query_name for rec in ds.fetch(region))


def test_several_regions_in_order_like_samtools(synth, tmp_path):
    bam, datasets = synth
    ds = datasets[4096]
    regions = ["chrC:100-50000", "chrA:1-2000", "chrA:1000-3000", "*"]
    assert ds.count(regions) == view_count(bam, *regions)
    assert _our_sam(ds, regions, tmp_path) == view(bam, *regions)


def test_bed_union_like_samtools_L(synth, tmp_path):
    bam, datasets = synth
    ds = datasets[1024]
    bed = tmp_path / "r.bed"
    bed.write_text("chrA\t100\t5000\nchrA\t4000\t9000\nchrC\t0\t100\nchrA\t50000\t50001\n")
    regions = ds.bed(str(bed))
    assert ds.count(regions, union=True) == view_count(bam, flags=("-L", str(bed)))
    out = tmp_path / "o.sam"
    with open(out, "wb") as f:
        ds.write(f, regions, format="sam", union=True)
    assert out.read_text() == view(bam, flags=("-L", str(bed)))


def test_whole_dataset_in_file_order(synth, tmp_path):
    bam, datasets = synth
    ds = datasets[65536]
    assert ds.count() == view_count(bam)
    assert _our_sam(ds, None, tmp_path) == view(bam)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_regions_count_exactly(synth, data):
    bam, datasets = synth
    ds = datasets[data.draw(st.sampled_from(CHUNK_SIZES))]
    name, length = data.draw(st.sampled_from(REFS))
    beg = data.draw(st.integers(1, length + 200))
    end = data.draw(st.integers(beg, length + 200_000))
    region = f"{name}:{beg}-{end}"
    assert ds.count(region) == view_count(bam, region)
