"""bams3.depth is samtools depth, base for base: per-position depths against `samtools depth -a -r`
(the samtools bundled with pysam) on the filter BAM, the synthetic BAM, hand-made odd records
and HTSlib's test files, with the options that change depths (-Q, -q, -J, -G, -g, --incl-flags,
--require-flags), whole or drawn by hypothesis. Records are added in several batches, through a
view of the fields that refuses any field the options do not declare."""

from __future__ import annotations

import pathlib

import numpy as np
import pysam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bams3.depth import FIELDS_NEEDED, DepthAccumulator, DepthOptions, window_means
from bams3.fields import Fields
from bams3.inputs import open_input
from bams3.records import RecordBatch

from . import filterbam, synth
from .conftest import corpus_files, corpus_id, sorted_corpus

UNMAP, SECONDARY, QCFAIL, DUP, SUPP = 0x4, 0x100, 0x200, 0x400, 0x800
DEFAULT = UNMAP | SECONDARY | QCFAIL | DUP


class Declared:
    """The fields of some records, refusing any the options did not declare."""

    def __init__(self, fields: Fields, names: frozenset[str]):
        self._fields, self._names = fields, names

    def __getattr__(self, name):
        assert name in self._names, f"read {name!r}, not among the declared fields {sorted(self._names)}"
        return getattr(self._fields, name)


def load(path: str, parts: int = 3) -> tuple[list[tuple[str, int]], RecordBatch, list[Fields]]:
    """The references, all records and the records cut into ``parts`` batches."""
    inp = open_input(path)
    refs = list(inp.header.references)
    batch = RecordBatch.concat(list(inp.batches))
    inp.close()
    cuts = [len(batch) * k // parts for k in range(parts + 1)]
    return refs, batch, [Fields.of_batch(batch.slice(a, b)) for a, b in zip(cuts[:-1], cuts[1:])]


def samtools_depth(bam: str, name: str, beg: int, end: int, args=()) -> np.ndarray:
    """`samtools depth -a -r name:beg+1-end`: every position of [beg, end), checked, and its depth."""
    text = pysam.depth("-a", "-r", f"{{{name}}}:{beg + 1}-{end}", *args, bam)
    rows = [line.split("\t") for line in text.splitlines()]
    assert [r[0] for r in rows] == [name] * (end - beg)
    assert [int(r[1]) for r in rows] == list(range(beg + 1, end + 1))
    return np.array([int(r[2]) for r in rows], dtype=np.int64)


def our_depth(parts: list[Fields], tid: int, beg: int, end: int, opts: DepthOptions) -> np.ndarray:
    acc = DepthAccumulator(beg, end, tid=tid)
    for f in parts:
        acc.add(Declared(f, opts.fields), opts)
    return acc.depth


def assert_same(bam, parts, refs, tid, beg, end, args, opts):
    expect = samtools_depth(bam, refs[tid][0], beg, end, args)
    got = our_depth(parts, tid, beg, end, opts)
    assert got.dtype == np.int64 and len(got) == end - beg
    bad = np.flatnonzero(got != expect)
    assert not len(bad), (f"{args} {refs[tid][0]}:{beg + 1}-{end}: {len(bad)} positions differ, first at "
                          f"{beg + bad[0] + 1}: samtools {expect[bad[0]]}, ours {got[bad[0]]}")
    return expect


# (samtools depth arguments, the same as options); -G adds to the default set, -g takes from it
OPTION_SETS = [
    ([], DepthOptions()),
    (["-Q", "20"], DepthOptions(min_mapq=20)),
    (["-q", "25"], DepthOptions(min_bq=25)),
    (["--min-BQ", "41"], DepthOptions(min_bq=41)),
    (["-J"], DepthOptions(deletions=True)),
    (["-G", "0"], DepthOptions(excl_flags=DEFAULT)),
    (["-G", "SUPPLEMENTARY,READ2"], DepthOptions(excl_flags="UNMAP,SECONDARY,QCFAIL,DUP,SUPPLEMENTARY,READ2")),
    (["-g", "DUP,QCFAIL"], DepthOptions(excl_flags=UNMAP | SECONDARY)),
    (["-g", "0x704"], DepthOptions(excl_flags=0)),
    (["--incl-flags", "READ1,REVERSE"], DepthOptions(incl_flags="READ1,REVERSE")),
    (["--require-flags", "PAIRED,PROPER_PAIR"], DepthOptions(require_flags=0x3)),
    (["--excl-flags", "0x800", "--require-flags", "0x40", "-Q", "13", "-q", "20", "-J"],
     DepthOptions(excl_flags=DEFAULT | SUPP, require_flags=0x40, min_mapq=13, min_bq=20, deletions=True)),
    # "0x10,0x80" is 0x10 to samtools (a number, read as far as it goes) and to us
    (["-g", "DUP", "--incl-flags", "0x10,0x80", "-J", "-Q", "1"],
     DepthOptions(excl_flags=UNMAP | SECONDARY | QCFAIL, incl_flags="0x10,0x80", deletions=True, min_mapq=1)),
    (["-g", "SECONDARY,DUP", "-J", "-Q", "60"], DepthOptions(excl_flags=UNMAP | QCFAIL, deletions=True, min_mapq=60)),
]


def set_id(args) -> str:
    return " ".join(args) or "defaults"


@pytest.fixture(scope="module")
def filter_bam(tmp_path_factory):
    path = filterbam.write(str(tmp_path_factory.mktemp("depth") / "filter.bam"))
    return (path, *load(path))


@pytest.mark.parametrize("args,opts", OPTION_SETS, ids=[set_id(a) for a, _ in OPTION_SETS])
def test_filter_bam_whole_references(filter_bam, args, opts):
    bam, refs, _, parts = filter_bam
    for tid, (_, length) in enumerate(refs):
        expect = assert_same(bam, parts, refs, tid, 0, length, args, opts)
        assert expect.any()


def test_the_options_change_depths(filter_bam):
    """Each option set gives depths of its own on the filter BAM (the data has what they tell apart)."""
    bam, refs, _, parts = filter_bam
    seen = {our_depth(parts, 0, 0, refs[0][1], opts).tobytes() for _, opts in OPTION_SETS}
    assert len(seen) == len(OPTION_SETS) - 1  # -G 0 is the default set


@st.composite
def depth_options(draw):
    """samtools depth arguments and the same options. With -q, secondary records stay out: the
    filter BAM's have SEQ `*`, whose qualities samtools reads past the record (undefined)."""
    args: list[str] = []
    excl = DEFAULT
    add = draw(st.sampled_from([0, SUPP, DUP | SUPP, 0x10, 0x40, 0x2]))
    remove = draw(st.sampled_from([0, DUP, QCFAIL, SECONDARY | DUP, UNMAP, DEFAULT]))
    if add:
        args += ["-G", hex(add)]
    if remove:
        args += ["-g", str(remove)]
    excl = (excl | add) & ~remove
    incl = draw(st.sampled_from([0, 0, 0x10, 0x40 | 0x80, 0x800, 0x2]))
    if incl:
        args += ["--incl-flags", str(incl)]
    req = draw(st.sampled_from([0, 0, 0x1, 0x3, 0x41, 0x20]))
    if req:
        args += ["--require-flags", hex(req)]
    mapq = draw(st.sampled_from([0, 0, 1, 5, 20, 42, 60, 255]))
    if mapq:
        args += ["-Q", str(mapq)]
    bq = draw(st.sampled_from([0, 0, 1, 10, 21, 25, 30, 38, 41, 255]))
    if bq:
        args += ["-q", str(bq)]
        if excl & SECONDARY == 0:
            args += ["-G", "SECONDARY"]
            excl |= SECONDARY
    if draw(st.booleans()):
        args.append("-J")
    opts = DepthOptions(min_mapq=mapq, min_bq=bq, excl_flags=excl, incl_flags=incl, require_flags=req,
                        deletions="-J" in args)
    return args, opts


@settings(max_examples=60, deadline=None)
@given(data=st.data(), options=depth_options())
def test_drawn_regions_and_options(filter_bam, data, options):
    bam, refs, batch, _ = filter_bam
    args, opts = options
    tid = data.draw(st.integers(0, len(refs) - 1), label="tid")
    length = refs[tid][1]
    beg = data.draw(st.integers(0, length - 1), label="beg")
    end = data.draw(st.integers(beg + 1, min(length, beg + 5_000)), label="end")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(batch)), max_size=4), label="cuts"))
    bounds = [0, *cuts, len(batch)]
    parts = [Fields.of_batch(batch.slice(a, b)) for a, b in zip(bounds[:-1], bounds[1:])]
    assert_same(bam, parts, refs, tid, beg, end, args, opts)


@pytest.fixture(scope="module")
def synth_bam(tmp_path_factory):
    path = synth.write_bam(str(tmp_path_factory.mktemp("depth") / "synth.bam"))
    return (path, *load(path, parts=5))


@pytest.mark.parametrize("args,opts", [OPTION_SETS[0], OPTION_SETS[2], OPTION_SETS[4], OPTION_SETS[7]],
                         ids=lambda v: set_id(v) if isinstance(v, list) else "")
def test_synthetic_bam_long_deletions_and_introns(synth_bam, args, opts):
    """Reads whose deletions and introns reach 20 kb and 100 kb, reads at reference ends, an empty reference."""
    bam, refs, _, parts = synth_bam
    for tid, (_, length) in enumerate(refs):
        assert_same(bam, parts, refs, tid, 0, length, args, opts)
    assert_same(bam, parts, refs, 0, 123_456, 131_000, args, opts)


# Records samtools treats oddly: zero-length matches (samtools counts one more at every live
# position of the ring from there, wiped again by a later skip), unmapped records with a CIGAR
# (their bases past the furthest end so far are lost), no CIGAR, SEQ `*`, =/X/P/H, a deletion
# at the end of a read, reads past the reference's end, a read long enough to double the ring.
ODD = """\
a1\t0\tc\t100\t60\t50M\t*\t0\t0\t{s50}\t{q50}
a2\t0\tc\t105\t60\t5M0M5M\t*\t0\t0\tACGTACGTAC\tIIIII#IIII
a3\t0\tc\t110\t60\t3M0=4N3M2D3M0X2N2M\t*\t0\t0\tACGTACGTACG\tIIIIIIIIIII
a4\t4\tc\t120\t0\t30M\t*\t0\t0\t*\t*
a5\t0\tc\t130\t60\t*\t*\t0\t0\tACGT\tIIII
a6\t0\tc\t140\t60\t2S3=1X2P2H3N4M5I2M3D\t*\t0\t0\tACGTACGTACGTACGTA\tII#II#II#II#II#II
a7\t0\tc\t150\t60\t10M\t*\t0\t0\t*\t*
c1\t0\tc\t160\t60\t3M2D3M\t*\t0\t0\tACGTAC\tIII#II
c2\t16\tc\t161\t60\t1S2M4D3M1S\t*\t0\t0\tACGTACG\t#I#IIII
a8\t4\tc\t170\t0\t2M0M3N5M\t*\t0\t0\t*\t*
a9\t16\tc\t200\t60\t3000M\t*\t0\t0\t*\t*
b1\t1024\tc\t300\t60\t20M\t*\t0\t0\t*\t*
b2\t256\tc\t300\t0\t20M\t*\t0\t0\t*\t*
b3\t512\tc\t300\t60\t20M\t*\t0\t0\t*\t*
b4\t2048\tc\t310\t60\t5H20M\t*\t0\t0\t*\t*
b5\t0\tc\t2040\t60\t4M0M6M\t*\t0\t0\t*\t*
b6\t0\tc\t4090\t60\t3M0M1D4M\t*\t0\t0\t*\t*
d1\t0\tc\t4201\t60\t1000M\t*\t0\t0\t*\t*
d2\t0\tc\t4499\t60\t2M0M2M\t*\t0\t0\t*\t*
b7\t0\tc\t8000\t60\t0M\t*\t0\t0\t*\t*
b8\t0\tc\t9995\t60\t20M\t*\t0\t0\t*\t*
"""


@pytest.fixture(scope="module")
def odd_bam(tmp_path_factory):
    d = tmp_path_factory.mktemp("odd")
    sam = d / "odd.sam"
    body = ODD.format(s50="ACGT" * 12 + "AC", q50="I#5?" * 12 + "I#")
    sam.write_text("@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:c\tLN:10000\n" + body)
    bam = str(d / "odd.bam")
    pysam.sort("-o", bam, str(sam), catch_stdout=False)
    pysam.index(bam)
    return (bam, *load(bam, parts=4))


ODD_SETS = [
    ([], DepthOptions()),
    (["-J"], DepthOptions(deletions=True)),
    (["-g", "UNMAP"], DepthOptions(excl_flags=SECONDARY | QCFAIL | DUP)),
    (["-g", "0x704", "-J"], DepthOptions(excl_flags=0, deletions=True)),
    (["-G", "SUPPLEMENTARY", "-Q", "1"], DepthOptions(excl_flags=DEFAULT | SUPP, min_mapq=1)),
    (["--require-flags", "UNMAP", "-g", "UNMAP"], DepthOptions(excl_flags=SECONDARY | QCFAIL | DUP, require_flags=4)),
]


@pytest.mark.parametrize("args,opts", ODD_SETS, ids=[set_id(a) for a, _ in ODD_SETS])
def test_odd_records(odd_bam, args, opts):
    bam, refs, _, parts = odd_bam
    assert_same(bam, parts, refs, 0, 0, 10_000, args, opts)
    for beg, end in [(99, 160), (150, 400), (2040, 2060), (4095, 4100), (4190, 5200), (7999, 8001), (9990, 10_000)]:
        assert_same(bam, parts, refs, 0, beg, end, args, opts)


def test_zero_length_match_counts_to_the_ring_end(odd_bam):
    """The oracle's own quirk, pinned: a 0M adds one at every live position from its slot to the
    end of the ring's array (4,096 slots once the 3,000 bp read is in), is wiped by a later D or N
    past the furthest end so far, and is seen only by regions its record overlaps."""
    bam, refs, _, parts = odd_bam
    depth = assert_same(bam, parts, refs, 0, 0, 10_000, [], DepthOptions())
    assert depth[2039:2050].tolist() == [2] * 4 + [3] * 6 + [2]  # b5 4M0M6M over a9 (0-based 199..3198)
    assert depth[3198:3200].tolist() == [2, 0]  # ... up to a9's end
    assert depth[4089:4098].tolist() == [1, 1, 1, 0, 2, 2, 2, 1, 0]  # b6 3M0M1D4M: wiped at D, ends at 4096
    assert depth[7998:8001].tolist() == [0, 1, 0]  # b7: a lone 0M counts at its position (1-based 8000)
    # d2 2M0M2M over d1 (0-based 4200..5199), in a region without a9: a ring of 2,048, to d1's end
    near = our_depth(parts, 0, 4190, 5200, DepthOptions())[[9, 10, 307, 308, 309, 310, 311, 312, 1009]]
    assert near.tolist() == [0, 1, 1, 2, 2, 3, 3, 2, 2]
    assert samtools_depth(bam, "c", 3195, 3200).tolist() == [1] * 4 + [0]  # b5 is not in this region
    assert our_depth(parts, 0, 3195, 3200, DepthOptions()).tolist() == [1] * 4 + [0]


def test_quality_filter_reads_qualities_of_the_right_bases(odd_bam):
    """-q on the odd records that have SEQ and no zero-length match (whose run reads qualities
    past SEQ): a deletion is judged by the base after it, or counts at the read's end."""
    bam, refs, _, _ = odd_bam
    path = str(pathlib.Path(bam).with_name("seq.bam"))
    with pysam.AlignmentFile(bam) as src, pysam.AlignmentFile(path, "wb", template=src) as out:
        for r in src:
            if r.query_name in {"a1", "a6", "c1", "c2"}:
                out.write(r)
    pysam.index(path)
    _, batch, parts = load(path)
    assert len(batch) == 4
    for q in (10, 20, 21):
        for args, opts in [(["-q", str(q)], DepthOptions(min_bq=q)),
                           (["-q", str(q), "-J"], DepthOptions(min_bq=q, deletions=True))]:
            assert_same(path, parts, refs, 0, 90, 180, args, opts)
    assert our_depth(parts, 0, 163, 165, DepthOptions(min_bq=20, deletions=True)).tolist() == [1, 1]  # c2's D only


def test_unknown_cigar_operation_is_refused_as_samtools_refuses_it(tmp_path):
    sam = tmp_path / "b.sam"
    sam.write_text("@HD\tVN:1.6\tSO:coordinate\n@SQ\tSN:c\tLN:100\nr\t0\tc\t10\t60\t5M2B5M\t*\t0\t0\t*\t*\n")
    bam = str(tmp_path / "b.bam")
    pysam.view("-b", "-o", bam, str(sam), catch_stdout=False)
    pysam.index(bam)
    with pytest.raises(pysam.SamtoolsError, match="Unsupported cigar op"):
        pysam.depth("-a", "-r", "c:1-100", bam)
    refs, _, parts = load(bam, parts=1)
    with pytest.raises(ValueError, match="unsupported CIGAR operation 'B'"):
        our_depth(parts, 0, 0, 100, DepthOptions())


# ------------------------------------------------------------------ HTSlib's files
def _readable(src: pathlib.Path) -> tuple[str, list] | None:
    """The sorted BAM of a corpus file and its regions of placed reads, or None when samtools
    cannot sort or index it or it has none (decided here, at collection; see test_corpus_selection)."""
    bam = sorted_corpus()[src]
    if bam is None:
        return None
    try:
        pysam.index(str(bam))
    except pysam.SamtoolsError:
        return None
    spans: dict[int, list[int]] = {}
    with pysam.AlignmentFile(str(bam), check_sq=False) as f:
        for r in f:
            if r.reference_id >= 0 and r.reference_start >= 0:
                end = max(r.reference_end or 0, r.reference_start + 1)
                s = spans.setdefault(r.reference_id, [r.reference_start, end])
                s[1] = max(s[1], end)
        lengths = f.lengths
    regions = []
    for tid, (a, b) in sorted(spans.items()):
        a, b = max(0, a - 5), min(lengths[tid], b + 5)
        if b - a <= 100_000:
            regions.append((tid, a, b))
        else:  # Mb-long reads and references: their ends and middle
            mid = (a + b) // 2
            regions += [(tid, a, a + 40_000), (tid, mid - 10_000, mid + 10_000), (tid, b - 40_000, b)]
    return (str(bam), regions) if regions else None


CORPUS = {src: _readable(src) for src in corpus_files()}
WITH_READS = [src for src, v in CORPUS.items() if v is not None]
CORPUS_SETS = [OPTION_SETS[0], OPTION_SETS[4], OPTION_SETS[8],
               (["-q", "20", "-Q", "1"], DepthOptions(min_bq=20, min_mapq=1))]


def test_corpus_selection():
    """HTSlib's files with placed reads take part (62 of 97 at this writing; the rest are unmapped
    reads, FASTQ conversions or have no @SQ): the selection above is not quietly empty."""
    assert len(WITH_READS) >= 60, f"only {len(WITH_READS)} of {len(CORPUS)} corpus files have placed reads"


@pytest.mark.corpus
@pytest.mark.parametrize("src", WITH_READS, ids=map(corpus_id, WITH_READS))
def test_corpus_matches_samtools(src):
    bam, regions = CORPUS[src]
    refs, batch, parts = load(bam, parts=2)
    f = Fields.of_batch(batch)
    ops, off = f.cigar
    queried = np.concatenate([[0], np.cumsum(np.isin(ops & 0xF, [0, 1, 4, 7, 8]) * (ops >> 4))])
    # SEQ `*` with query bases in its CIGAR: samtools -q reads qualities past the record (undefined)
    seqless = bool(((f.qlen == 0) & (queried[off[1:]] > queried[off[:-1]])).any())
    zero_match = bool((np.isin(ops & 0xF, [0, 7, 8]) & (ops >> 4 == 0)).any())
    checked = 0
    for args, opts in CORPUS_SETS:
        if opts.min_bq and (seqless or zero_match):
            continue
        for tid, beg, end in regions:
            assert_same(bam, parts, refs, tid, beg, end, args, opts)
            checked += 1
    assert checked >= len(regions) * 3


# ------------------------------------------------------------------ the small parts
def test_fields_declared():
    assert DepthOptions().fields == FIELDS_NEEDED == {"flag", "mapq", "pos", "end", "tid", "cigar"}
    assert DepthOptions(min_bq=1).fields == FIELDS_NEEDED | {"qual", "qlen"}
    assert DepthOptions(excl_flags="UNMAP,dup").excl_flags == 0x404
    assert DepthOptions(incl_flags="0x10").incl_flags == 16
    assert DepthOptions().excl_flags == 0x704


def test_window_means(filter_bam):
    bam, refs, _, parts = filter_bam
    depth = our_depth(parts, 0, 1_000, 9_000, DepthOptions())
    windows = [(1_000, 2_000), (1_500, 1_501), (8_000, 9_000), (3_000, 3_000), (1_000, 9_000)]
    means = window_means(depth, 1_000, windows)
    assert means[:3] == [depth[:1000].mean(), float(depth[500]), depth[7000:].mean()]
    assert np.isnan(means[3]) and means[4] == pytest.approx(depth.mean())
    expect = samtools_depth(bam, "chr1", 1_000, 2_000)
    assert means[0] == expect.mean()
    with pytest.raises(ValueError):
        window_means(depth, 1_000, [(999, 1_100)])
