"""Region sets exactly as samtools view reads them, on hypothesis-drawn region lists and BED
files (overlapping, adjacent, unsorted, past the reference ends): REGIONs one after another
(a record in two regions twice), -M (each record once, in file order, over their union),
-L alone (records overlapping the BED), -L with REGIONs (records in the regions that also
overlap the BED) and -M -L (records overlapping the intersection). Counts and records equal
samtools' (pysam's bundled samtools on the indexed source BAM)."""

from __future__ import annotations

import os
import pathlib
import tempfile

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3

from .synth import REFS, write_bam
from .test_cli import assert_one_line_error, run

_DIR = pathlib.Path(tempfile.mkdtemp(prefix="bams3-regionsets-"))
BAM = write_bam(str(_DIR / "synth.bam"), n=3000, seed=5)
DATASETS = {}
for _cs in (4096, 65536):
    bams3.convert(BAM, str(_DIR / f"cs{_cs}.bams3"), chunk_size=_cs)
    DATASETS[_cs] = bams3.open(str(_DIR / f"cs{_cs}.bams3"))
PLACED = [(n, l) for n, l in REFS if n != "chrEmpty"] + [("chrEmpty", 10_000)]


@st.composite
def intervals(draw, max_size=8):
    """(name, beg0, end0) intervals: short and long, overlapping, adjacent, past the end."""
    out = []
    for _ in range(draw(st.integers(1, max_size))):
        name, length = draw(st.sampled_from(PLACED))
        beg = draw(st.integers(0, length + 200))
        size = draw(st.sampled_from([1, 10, 100, 1_000, 5_000, 50_000, 400_000]))
        end = beg + draw(st.integers(1, size))
        out.append((name, beg, end))
        if draw(st.booleans()):  # a neighbour: adjacent or overlapping
            out.append((name, end - draw(st.integers(0, min(50, end - beg))), end + draw(st.integers(1, 2_000))))
    return out


def _region_text(name, beg, end, draw_style: int) -> str:
    if draw_style == 0:
        return f"{name}:{beg + 1}-{end}"
    if draw_style == 1:
        return f"{name}:{beg + 1:,}-{end:,}"
    return f"{name}:{beg + 1}"  # to the end of the reference


@st.composite
def region_lists(draw):
    ivs = draw(intervals())
    texts = [_region_text(*iv, draw(st.integers(0, 2))) for iv in ivs]
    if draw(st.integers(0, 9)) == 0:
        texts.append("*")
    if draw(st.integers(0, 9)) == 0:
        texts.append(draw(st.sampled_from([n for n, _ in PLACED])))
    return draw(st.permutations(texts))


def _bed(path: pathlib.Path, ivs) -> str:
    path.write_text("".join(f"{n}\t{b}\t{e}\n" for n, b, e in ivs))
    return str(path)


def _samtools(*args) -> str:
    return pysam.samtools.view("--no-PG", *args, catch_stdout=True)


def _ours(ds, regions, bed=None, multi=False) -> str:
    path = _DIR / f"out-{os.getpid()}.sam"
    with open(path, "wb") as f:
        ds.write(f, list(regions), bed=bed, multi=multi)
    return path.read_text()


CHECK = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CHECK
@given(regions=region_lists(), cs=st.sampled_from(sorted(DATASETS)), multi=st.booleans())
def test_region_lists(regions, cs, multi):
    ds = DATASETS[cs]
    flags = ["-M"] if multi else []
    assert ds.count(regions, multi=multi) == int(pysam.samtools.view("-c", *flags, BAM, *regions, catch_stdout=True))
    assert _ours(ds, regions, multi=multi) == _samtools(*flags, BAM, *regions)


@CHECK
@given(bed=intervals(40), cs=st.sampled_from(sorted(DATASETS)))
def test_each_chunk_of_a_bed_is_given_the_intervals_that_reach_it(bed, cs):
    """A BED's plan (-L, or -M): each chunk once, with exactly the merged intervals of its
    reference that reach [min_pos, max_end), where its records lie: every chunk any of them
    reaches, and none other (so a chunk of a thousand targets' BED tests a dozen)."""
    from bams3.format.table import merge_intervals

    ds = DATASETS[cs]
    t = ds.chunks
    sel = ds.selection(bed=_bed(_DIR / f"p-{os.getpid()}.bed", bed), multi=True)
    merged = merge_intervals([(r.tid, r.beg, r.end) for r in sel.bed if r.tid >= 0])
    plan = ds._plan(sel)
    assert len({index for index, _, _ in plan}) == len(plan)
    want = {}
    for tid, ivs in merged.items():
        for i in range(len(t)):
            if t.ref_id[i] == tid:
                reach = tuple(iv for iv in ivs if iv[0] < t.max_end[i] and iv[1] > t.min_pos[i])
                if reach:
                    want[i] = reach
    assert {index: tuple(ivs) for index, ivs, _ in plan} == want


@CHECK
@given(bed=intervals(12), regions=st.one_of(st.just([]), region_lists()), cs=st.sampled_from(sorted(DATASETS)),
       multi=st.booleans())
def test_bed_files_with_and_without_regions(bed, regions, cs, multi):
    ds = DATASETS[cs]
    path = _bed(_DIR / f"t-{os.getpid()}.bed", bed)
    flags = ["-L", path] + (["-M"] if multi else [])
    try:
        want_n = int(pysam.samtools.view("-c", *flags, BAM, *regions, catch_stdout=True))
        want = _samtools(*flags, BAM, *regions)
    except pysam.SamtoolsError as exc:  # samtools -M -L refuses an empty intersection; it selects nothing
        assert multi and regions and "Region list is empty" in str(exc)
        assert ds.count(regions, bed=path, multi=multi) == 0 and _ours(ds, regions, path, multi) == ""
        return
    assert ds.count(regions, bed=path, multi=multi) == want_n
    assert _ours(ds, regions, path, multi) == want


def test_the_issue_cases():
    """-L chr2.bed with a chr1 region is 0 (it was 265: a union); the same through the CLI."""
    bed = _bed(_DIR / "chrB.bed", [("chrB", 0, 5000)])
    ds = DATASETS[4096]
    assert ds.count(["chrA:100001-101000"], bed=bed) == 0 == int(
        pysam.samtools.view("-c", "-L", bed, BAM, "chrA:100001-101000", catch_stdout=True))
    p = run("query", ds.url, "chrA:100001-101000", "-L", bed, "-c", check=True)
    assert p.stdout == b"0\n"
    both = ["chrA:1-5000", "chrA:3000-8000"]
    p = run("query", ds.url, *both, "-c", check=True)
    assert int(p.stdout) == int(pysam.samtools.view("-c", BAM, *both, catch_stdout=True))
    p = run("query", ds.url, *both, "-M", "-c", check=True)
    assert int(p.stdout) == int(pysam.samtools.view("-c", "-M", BAM, *both, catch_stdout=True))


def test_a_region_on_an_unknown_reference_is_refused():
    """samtools warns and carries on (an answer without that region); bams3 refuses in one line."""
    ds = DATASETS[4096]
    assert_one_line_error(run("query", ds.url, "chrA:1-100", "chrZ:1-100", "-c"), 2, "unknown reference 'chrZ'")
    bed = _bed(_DIR / "z.bed", [("chrZ", 0, 100)])
    assert_one_line_error(run("query", ds.url, "-L", bed, "-c"), 2, "unknown reference 'chrZ'")


@pytest.mark.parametrize("n", [2000])
def test_thousands_of_regions_in_any_order(n):
    """Many regions sharing chunks, unsorted: each chunk is decoded once per window, and the
    records come out in the regions' order, as samtools gives them."""
    import random

    rng = random.Random(n)
    regions = []
    for _ in range(n):
        name, length = rng.choice(PLACED[:3])
        beg = rng.randrange(length)
        regions.append(f"{name}:{beg + 1}-{beg + rng.randint(1, 3000)}")
    ds = DATASETS[65536]
    decodes = []
    reader = ds._reader
    ds._reader = lambda index, prefix_only=False: decodes.append(index) or reader(index, prefix_only)
    try:
        assert _ours(ds, regions) == _samtools(BAM, *regions)
    finally:
        ds._reader = reader
    assert len(decodes) == len(set(decodes)) <= len(ds.chunks)


def test_bed_files_gzipped_from_a_pipe_or_in_any_encoding():
    """A gzipped BED and a BED through a pipe (bash's <(...)) count as samtools counts them; a
    name that is not UTF-8 is a reference bams3 lacks, said in one line, never a traceback."""
    import gzip
    import subprocess

    ds = DATASETS[4096]
    plain = _bed(_DIR / "g.bed", [("chrA", 1000, 90_000), ("chrB", 0, 5000)])
    want = int(pysam.samtools.view("-c", "-L", plain, BAM, catch_stdout=True))
    gz = _DIR / "g.bed.gz"
    gz.write_bytes(gzip.compress(pathlib.Path(plain).read_bytes()))
    assert int(pysam.samtools.view("-c", "-L", str(gz), BAM, catch_stdout=True)) == want
    assert int(run("query", ds.url, "-L", gz, "-c", check=True).stdout) == want
    run("to-bam", ds.url, _DIR / "g.bam", "-L", gz, check=True)
    assert int(pysam.samtools.view("-c", str(_DIR / "g.bam"), catch_stdout=True)) == want
    p = subprocess.run(["bash", "-c", f"bams3 query {ds.url} -c -L <(cat {plain})"], capture_output=True)
    assert p.returncode == 0 and int(p.stdout) == want, p.stderr
    latin = _DIR / "latin.bed"
    latin.write_bytes(b"chr\xe9\t0\t100\n")
    assert_one_line_error(run("query", ds.url, "-L", latin, "-c"), 2, "unknown reference 'chr\\udce9'")
    broken = _DIR / "broken.bed.gz"
    broken.write_bytes(gzip.compress(b"chrA\t0\t100\n" * 1000)[:60])
    assert_one_line_error(run("query", ds.url, "-L", broken, "-c"), 2, "broken.bed.gz")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 80), st.integers(0, 9)), max_size=40),
       st.lists(st.tuples(st.integers(0, 80), st.integers(0, 12)), max_size=12))
def test_the_overlap_mask_is_the_plain_definition(records, ivs):
    """The mask that cuts a chunk by many intervals (one binary search per record) keeps
    exactly the records [pos, pos + span) overlapping some [b, e): intervals in any order,
    overlapping, empty; reads of span 0."""
    import numpy as np

    from bams3.dataset import _overlap_mask

    pos = np.array([p for p, _ in records], dtype=np.int64)
    span = np.array([s for _, s in records], dtype=np.int64)
    ivs = [(b, b + n) for b, n in ivs]
    want = [any(p < e and p + s > b for b, e in ivs) for p, s in records]
    assert _overlap_mask(pos, span, ivs).tolist() == want
