"""A dataset as a read-side drop-in for ``pysam.AlignmentFile``: hypothesis draws a method and its
arguments, calls them on pysam over the BAM and on bams3 over the dataset converted from it, and
the answers must be equal (reads by ``to_string()``; errors: both raise, and where pysam raises
ValueError, KeyError or IndexError, so do we). Files: the benchmark sample, the filter test BAM
(duplicates, secondary, QC-failed, unplaced reads, skips and clips) and HTSlib corpus files
(colons in reference names, no @SQ text, padding, no sequences, unmapped reads, ...)."""

from __future__ import annotations

import os
import pathlib

import pysam
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import bams3
from bams3.errors import Bams3Error
from bams3.filters import ReadFilter
from bams3.format import Selection

from . import filterbam
from .conftest import CORPUS, sorted_corpus
from .oracle import view_count

CORPUS_FILES = ["colons.bam", "range.bam", "no_hdr_sq_1.bam", "ce#5b.sam", "ce#unmap1.sam", "ce#unmap2.sam",
                "c1#pad1.sam", "c1#noseq.sam", "c1#clip.sam", "xx#pair.sam", "ce#supp.sam", "ce#large_seq.sam",
                "realn01.sam", "xx#large_aux.sam"]
SAMPLE_WINDOW = 20_000  # the sample's reads are fetched over windows of at most this many bases


@pytest.fixture(scope="module")
def files(sample_dir, sample_dataset, tmp_path_factory) -> dict[str, tuple[str, str]]:
    """name -> (indexed BAM, its dataset)."""
    d = tmp_path_factory.mktemp("pysam_api")
    out = {"sample": (str(sample_dir / "sample.bam"), sample_dataset)}
    fb = filterbam.write(str(d / "filter.bam"))
    out["filter"] = (fb, _convert(fb, d / "filter.bams3"))
    sorted_files = sorted_corpus()
    for name in CORPUS_FILES:
        bam = sorted_files[CORPUS / name]
        assert bam is not None, name
        pysam.index(str(bam))
        out[name] = (str(bam), _convert(str(bam), d / f"{name}.bams3"))
    return out


def _convert(bam: str, dest: pathlib.Path) -> str:
    bams3.convert(bam, str(dest), chunk_size=4096)
    return str(dest)


def _mapq30(read) -> bool:
    return read.mapping_quality >= 30


def _outcome(fn):
    """("ok", value) with iterators listed (reads as SAM lines), or ("error", exception)."""
    try:
        value = fn()
        if hasattr(value, "__next__"):
            value = [r.to_string() for r in value]
        return "ok", value
    except Exception as exc:  # noqa: BLE001 - any error is an outcome to compare
        return "error", exc


def _same(theirs, ours, what) -> None:
    if theirs[0] == "ok":
        assert ours == theirs, what
        return
    assert ours[0] == "error", (what, theirs, ours)
    for cls in (ValueError, KeyError, IndexError):
        if isinstance(theirs[1], cls):
            assert isinstance(ours[1], cls), (what, theirs, ours)


def _both(files, name, call, what):
    """``call`` on pysam (a freshly opened file) and on the dataset; the outcomes must agree."""
    bam, url = files[name]
    with pysam.AlignmentFile(bam) as f:
        theirs = _outcome(lambda: call(f))
    ours = _outcome(lambda: call(bams3.open(url)))
    _same(theirs, ours, what)
    return theirs


def _names(files, name):
    with pysam.AlignmentFile(files[name][0]) as f:
        return list(f.references), list(f.lengths)


def _mostly(draw, good, bad):
    """A draw from ``good``, or about one time in six from ``bad`` (the odd and the invalid)."""
    return draw(bad) if draw(st.integers(0, 5)) == 0 else draw(good)


@st.composite
def _region_args(draw, refs, lengths, small: bool, tid: bool = True):
    """(args, kwargs) of a region as pysam takes it: positional, keywords, old names, region
    strings (well formed or not), tids, bad coordinates; ``small``: a whole file's worth never."""
    i = draw(st.integers(0, len(refs) - 1))
    length, name = lengths[i], refs[i]
    odd = st.sampled_from([-1, -3, 2**31 - 1, 2**31, -(2**31) - 1])
    if small:
        start = _mostly(draw, st.none() | st.integers(0, length + 50), odd)
        stop = _mostly(draw, st.none() | st.integers(min(start or 0, length), length + 50), odd | st.integers(-1, length))
        contig = _mostly(draw, st.just(name), st.sampled_from([name.encode(), "*", ".", "nosuch", None]))
    else:
        start = _mostly(draw, st.integers(0, max(0, length - SAMPLE_WINDOW)), odd)
        stop = _mostly(draw, st.integers(max(start, 0), max(start, 0) + SAMPLE_WINDOW), odd)
        contig = _mostly(draw, st.just(name), st.just("nosuch"))
    form = draw(st.sampled_from(["positional", "keywords", "old names", "region"] + (["tid"] if tid else [])))
    if form == "positional":
        return (contig, start, stop), {}
    if form == "keywords":
        return (), {"contig": contig, "start": start, "stop": stop}
    if form == "old names":
        return (), {"reference": contig, "end": stop, "start": start}
    if form == "tid":
        t = _mostly(draw, st.just(i), st.integers(-2, len(refs) + 1))
        return (), {"tid": t, "start": start, "stop": stop}
    a = draw(st.integers(1, length + 10))
    b = draw(st.integers(a, a + SAMPLE_WINDOW if not small else length + 10))
    good = [f"{name}:{a}-{b}"] + ([name] if small else [])
    bad = [f"{name}:{a}", f"{name}:", f"{name}:0-{b}", f"{name}:{b + 1}-{a}", f"{name}:1,000-2,000",
           f"nosuch:{a}-{b}", f"{name}:{a}-{b}-7", f"{name}:1:5-10"] + (["*", "", "."] if small else [])
    text = _mostly(draw, st.sampled_from(good), st.sampled_from(bad))
    extra = draw(st.sampled_from([{}, {}, {"contig": refs[0]}] + ([{"start": 1, "stop": 30}] if small else [])))
    return (), {"region": text, **extra}


@settings(max_examples=250, deadline=None)
@given(data=st.data())
def test_fetch_count_and_parse_region_as_pysam(files, data):
    """fetch, count (every read_callback) and parse_region over random regions, as pysam answers."""
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    refs, lengths = _names(files, name)
    method = data.draw(st.sampled_from(["fetch", "count", "parse_region"]), label="method")
    args, kw = data.draw(_region_args(refs, lengths, small=name != "sample", tid=method != "count"), label="region")
    if method == "fetch":
        extra = {"until_eof": data.draw(st.booleans())} if name != "sample" else {}
        _both(files, name, lambda f: f.fetch(*args, **kw, **extra), ("fetch", name, args, kw, extra))
    elif method == "parse_region":
        _both(files, name, lambda f: f.parse_region(*args, **kw), ("parse_region", name, args, kw))
    else:
        cb = data.draw(st.sampled_from(["all", "nofilter", _mapq30, "bogus"]), label="read_callback")
        placed = (args and args[0] is not None) or any(kw.get(k) is not None for k in ("contig", "reference", "region"))
        if not placed or name != "sample" and data.draw(st.booleans()):
            kw["until_eof"] = True  # no region: see test_count_without_a_region_counts_every_record
        _both(files, name, lambda f: f.count(*args, **kw, read_callback=cb), ("count", name, args, kw, cb))


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_count_coverage_as_pysam(files, data):
    """count_coverage: four array('L') of A C G T equal pysam's, for every threshold and callback."""
    name = data.draw(st.sampled_from(sorted(files)), label="file")
    refs, lengths = _names(files, name)
    i = data.draw(st.integers(0, len(refs) - 1))
    if name == "sample":  # pysam counts base by base in Python: a few kbp
        start = data.draw(st.integers(0, lengths[i] - 3_000))
        stop = start + data.draw(st.integers(-1, 3_000))
    else:
        start = data.draw(st.none() | st.integers(-1, lengths[i]))
        stop = data.draw(st.none() | st.integers(-1, lengths[i] + 20))
    kw = {"quality_threshold": data.draw(st.sampled_from([15, 0, 30, -1, None, 20.7])),
          "read_callback": data.draw(st.sampled_from(["all", "nofilter", _mapq30]))}
    contig = _mostly(data.draw, st.just(refs[i]), st.just("nosuch"))
    assume(not _pysam_reads_past_the_sequence(name, kw["quality_threshold"], kw["read_callback"]))  # pinned below
    theirs = _both(files, name, lambda f: f.count_coverage(contig, start, stop, **kw), (name, contig, start, stop, kw))
    if theirs[0] == "ok":
        assert all(a.typecode == "L" for a in theirs[1])


@pytest.mark.parametrize("name", ["c1#pad1.sam", "c1#noseq.sam", "c1#clip.sam", "filter"])
def test_count_coverage_of_padded_clipped_and_sequenceless_reads(files, name):
    """Padding (which moves pysam's query position: pairs past the sequence count nothing), clips,
    reads without sequence or qualities, every threshold and callback, whole references."""
    refs, _ = _names(files, name)
    for threshold in (0, 15, -1):
        for cb in ("all", "nofilter", _mapq30):
            for ref in refs:
                if _pysam_reads_past_the_sequence(name, threshold, cb):
                    ours = bams3.open(files[name][1]).count_coverage(ref, quality_threshold=0, read_callback=cb)
                    assert [list(a) for a in ours] == PAD1_THRESHOLD_0
                    continue
                theirs = _both(files, name, lambda f: f.count_coverage(ref, quality_threshold=threshold, read_callback=cb),
                               (name, ref, threshold, cb))
                assert theirs[0] == "ok"


PAD1_THRESHOLD_0 = [[9, 9, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 8, 8, 0, 4, 0, 0, 0, 0], [0, 0, 0, 0, 7, 1, 4, 4, 0, 0],
                    [0, 0, 0, 0, 0, 2, 3, 1, 5, 5]]  # A, C, G, T: 70 in all


def _pysam_reads_past_the_sequence(name, threshold, callback) -> bool:
    """count_coverage of c1#pad1's padded reads with every quality counted (threshold 0) and
    their reads kept ("all", "nofilter"): pysam's query position runs past these reads'
    sequences, so its answer depends on what memory holds there (undefined). It counts nothing
    there in 300 of 300 runs here, but two CI runs saw one base more (71 where 70, once with
    each callback). Ours is pinned to that usual answer; every other case is compared with pysam."""
    return name == "c1#pad1.sam" and threshold == 0 and callback in ("all", "nofilter")


def _pileup_summary(columns) -> list:
    return [(c.reference_name, c.reference_pos, c.nsegments,
             [(r.alignment.query_name, r.query_position, r.is_del, r.is_refskip, r.indel, r.is_head, r.is_tail)
              for r in c.pileups], c.get_query_sequences(mark_matches=True, add_indels=True))
            for c in columns]


PILEUP_OPTIONS = [{}, {"truncate": True}, {"stepper": "nofilter"}, {"min_base_quality": 0, "ignore_orphans": False},
                  {"flag_filter": 0, "ignore_overlaps": False}, {"max_depth": 5}]


@pytest.mark.parametrize("name, region", [("sample", ("chr1", 100_000, 100_300)), ("sample", ("chrM", 0, 200)),
                                          ("filter", ("chr1", 0, 2_000)), ("filter", ("chr2", None, None)),
                                          ("ce#5b.sam", (None, None, None)), ("c1#pad1.sam", (None, None, None)),
                                          ("filter", ("chr1", 500, 500)), ("filter", ("nosuch", 1, 5))])
def test_pileup_as_pysam(files, name, region):
    """pileup's columns (position, depth, each read's name, query position, deletion/skip/indel,
    the bases) equal pysam's, with its options."""
    for opts in PILEUP_OPTIONS:
        _both(files, name, lambda f: _pileup_summary(f.pileup(*region, **opts)), (name, region, opts))
    bam, url = files[name]
    if name == "sample" and region[0] == "chr1":
        ref = str(pathlib.Path(bam).parent / "ref.fa")
        with pysam.AlignmentFile(bam) as f, pysam.FastaFile(ref) as fa:
            want = _pileup_summary(f.pileup(*region, stepper="samtools", fastafile=fa, compute_baq=True))
        with pysam.FastaFile(ref) as fa:
            assert _pileup_summary(bams3.open(url).pileup(*region, stepper="samtools", fastafile=fa,
                                                          compute_baq=True)) == want


@pytest.mark.parametrize("name", ["filter", *CORPUS_FILES])
def test_header_references_statistics_and_iteration(files, name):
    """The header (dict, text, lookups), references, index statistics and every record in file
    order by iterating the dataset itself and by head(n)."""
    bam, url = files[name]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f:
        assert ds.references == f.references and ds.lengths == f.lengths and ds.nreferences == f.nreferences
        assert ds.header.to_dict() == f.header.to_dict() and str(ds.header) == str(f.header) == ds.text
        assert ds.header.nreferences == f.header.nreferences and ds.header.lengths == f.header.lengths
        assert ds.header.names == list(f.header.references) and len(ds.header) == len(f.header)
        assert [k in ds.header for k in ("SQ", "HD", "CO")] == [k in f.header for k in ("SQ", "HD", "CO")]
        for ref in [*f.references, "nosuch", "*"]:
            _same(_outcome(lambda: f.get_tid(ref)), _outcome(lambda: ds.get_tid(ref)), ref)
            _same(_outcome(lambda: f.get_reference_length(ref)), _outcome(lambda: ds.get_reference_length(ref)), ref)
            assert ds.is_valid_reference_name(ref) == f.is_valid_reference_name(ref)
        for tid in range(-2, f.nreferences + 2):
            _same(_outcome(lambda: f.get_reference_name(tid)), _outcome(lambda: ds.get_reference_name(tid)), tid)
            assert ds.is_valid_tid(tid) == f.is_valid_tid(tid)
        assert ds.get_index_statistics() == f.get_index_statistics()
        assert (ds.mapped, ds.unmapped, ds.nocoordinate) == (f.mapped, f.unmapped, f.nocoordinate)
        assert ds.check_index() is f.check_index() is True and ds.has_index() is f.has_index() is True
        every = [r.to_string() for r in f]
    assert [r.to_string() for r in ds] == every
    assert [r.to_string() for r in bams3.open(url).head(7)] == every[:7]
    assert ds.filename == url.encode() and not ds.is_remote and ds.is_bam and not ds.closed


def test_iterating_a_large_dataset_is_iterating_the_bam(files):
    bam, url = files["sample"]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f:
        for _ in range(3):
            assert next(ds).to_string() == next(f).to_string()
        assert [r.to_string() for r in ds.head(500)] == [r.to_string() for r in f.head(500)]
    assert next(iter(ds)).to_string() == [r.to_string() for r in ds.head(4)][3]  # goes on where it was


def test_fetch_of_the_benchmark_megabase_as_pysam(files):
    """The timed fetch of the benchmark (1 Mbp, 132,883 reads), positional and by region string."""
    bam, url = files["sample"]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f:
        want = [r.to_string() for r in f.fetch("chr1", 999_999, 2_000_000)]
    assert len(want) == 132_883
    assert [r.to_string() for r in ds.fetch("chr1", 999_999, 2_000_000)] == want
    assert ds.count(region="chr1:1000000-2000000") == ds.count("chr1", 999_999, 2_000_000) == len(want)


def test_mate_and_introns_as_pysam(files):
    bam, url = files["filter"]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f:
        assert ds.find_introns(ds.fetch("chr1")) == f.find_introns(f.fetch("chr1"))
        assert sum(ds.find_introns(ds.fetch("chr1")).values()) > 10
        theirs = list(f.fetch("chr2", 0, 4_000))
        ours = list(ds.fetch("chr2", 0, 4_000))
        found = 0
        for a, b in zip(theirs, ours):
            t, o = _outcome(lambda: f.mate(a)), _outcome(lambda: ds.mate(b))
            if t[0] == "ok":
                found += 1
                t = ("ok", t[1].to_string())
                o = ("ok", o[1].to_string()) if o[0] == "ok" else o
            _same(t, o, a.to_string())
        assert found > 20 and len(theirs) > 40


def test_count_without_a_region_counts_every_record(files):
    """The one kept difference: count() with no region is `samtools view -c` (unplaced records
    too, as bams3 always counted); pysam's leaves them out. fetch() with no region is pysam's."""
    bam, url = files["filter"]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f, pysam.AlignmentFile(bam) as g, pysam.AlignmentFile(bam) as h:
        placed = f.count()  # (moves f to the unplaced records: until_eof goes on from there)
        assert ds.count() == view_count(bam) == g.count(until_eof=True) == ds.count(until_eof=True) > placed
        assert sum(1 for _ in ds.fetch()) == placed == ds.count(".") - f.nocoordinate
        assert ds.count(read_callback="all") == h.count(until_eof=True, read_callback="all")
        assert ds.count(until_eof=True) - placed == f.count(until_eof=True) == f.nocoordinate > 0


def test_bams3_selections_still_work(files, tmp_path):
    """What bams3's callers pass: samtools region strings (which pysam refuses), lists of them,
    -M and -L, read filters, Selections; counts equal samtools'."""
    bam, url = files["filter"]
    ds = bams3.open(url)
    assert ds.count("chr1:1,001-5,000") == view_count(bam, "chr1:1001-5000") == ds.count(region="chr1:1001-5000")
    assert ds.count("chr1:1001-5000") == ds.count("chr1", 1000, 5000) == sum(1 for _ in ds.fetch("chr1:1001-5000"))
    bed = tmp_path / "t.bed"
    bed.write_text("chr1\t2000\t9000\nchr2\t0\t500\n")
    regions = ["chr1:1-5000", "chr1:3000-8000", "chr2"]
    for multi in (False, True):
        flags = ("-L", str(bed)) + (("-M",) if multi else ())
        assert ds.count(regions, multi=multi, bed=str(bed)) == view_count(bam, *regions, flags=flags)
        assert ds.count(regions=regions, union=multi, bed=str(bed)) == view_count(bam, *regions, flags=flags)
    assert ds.count(bed=str(bed)) == view_count(bam, flags=("-L", str(bed)))
    assert ds.count("chr1", 0, 9000, bed=str(bed)) == view_count(bam, "chr1:1-9000", flags=("-L", str(bed)))
    flt = ReadFilter(exclude=0x4, min_mapq=20)
    assert ds.count(filters=flt) == view_count(bam, flags=("-F", "4", "-q", "20"))
    assert ds.count("chr2", filters=flt) == sum(1 for _ in ds.fetch("chr2", filters=flt)) == view_count(
        bam, "chr2", flags=("-F", "4", "-q", "20"))
    sel = ds.selection(["chr1:100-900", "chrM"], multi=True)
    assert isinstance(sel, Selection) and ds.count(sel) == view_count(bam, "chr1:100-900", "chrM", flags=("-M",))
    assert ds.count("chr1", 0, 9000, read_callback="all", filters=flt) == view_count(
        bam, "chr1:1-9000", flags=("-F", "0x704", "-q", "20"))


def test_named_callbacks_make_no_read_objects(files, monkeypatch):
    """count and count_coverage with "all"/"nofilter" work from the columns: no AlignedSegment
    (which only a callable read_callback needs)."""
    import bams3._pysam

    bam, url = files["filter"]
    ds = bams3.open(url)
    with pysam.AlignmentFile(bam) as f:
        want = [f.count("chr1", 0, 30_000, read_callback=cb) for cb in ("all", "nofilter")]
        cov = f.count_coverage("chr1", 100, 20_000, read_callback="all")

    def no_reads(*args, **kwargs):
        raise AssertionError("read objects were made")

    monkeypatch.setattr(bams3._pysam, "segments", no_reads)
    assert [ds.count("chr1", 0, 30_000, read_callback=cb) for cb in ("all", "nofilter")] == want
    assert ds.count_coverage("chr1", 100, 20_000, read_callback="all") == cov
    with pytest.raises(AssertionError):
        ds.count("chr1", 0, 30_000, read_callback=_mapq30)


def test_errors_are_pysam_errors_and_bams3_errors(files):
    """Bad regions raise ValueError (pysam's) that are also bams3's RegionError; a bad length
    lookup KeyError; a bad tid IndexError."""
    ds = bams3.open(files["filter"][1])
    for call in (lambda: ds.count("nosuch"), lambda: ds.fetch("chr1:9-1"), lambda: ds.fetch("chr1", 10, 5),
                 lambda: ds.count(region="chr1:0-100"), lambda: ds.fetch(["chr1", "chrZ"])):
        with pytest.raises(ValueError) as exc:
            call()
        assert isinstance(exc.value, Bams3Error) and "\n" not in str(exc.value)
    with pytest.raises(KeyError):
        ds.get_reference_length("nosuch")
    with pytest.raises(IndexError):
        ds.fetch(tid=99)
    with pytest.raises(TypeError):
        ds.count("chr1", "5", 10)


def test_close_and_context_manager(files):
    bam, url = files["filter"]
    with bams3.open(url) as ds, pysam.AlignmentFile(bam) as f:
        assert ds.is_open and f.is_open and ds.is_open() and not ds.closed
        next(ds)
    for g in (ds, f):
        assert g.closed and not g.is_open
        for call in (g.fetch, g.count, g.check_index, lambda: g.references, lambda: g.get_tid("chr1"),
                     lambda: g.pileup("chr1"), lambda: g.mapped):
            with pytest.raises(ValueError):
                call()


def test_alignmentfile_opens_a_dataset_as_pysam_opens_a_bam(files):
    bam, url = files["filter"]
    ds = bams3.AlignmentFile(url, "rb")
    assert ds.count("chr1", 0, 1000) == pysam.AlignmentFile(bam, "rb").count("chr1", 0, 1000) > 0
    assert bams3.AlignmentFile(pathlib.Path(url)).references == ("chr1", "chr2", "chrM")
    with pytest.raises(ValueError):
        bams3.AlignmentFile(url, "wb")
    copy = ds.header.copy()
    out = os.path.join(os.path.dirname(url), "written.bam")
    with pysam.AlignmentFile(out, "wb", header=copy) as w:
        for r in ds.fetch("chrM"):
            w.write(r)
    assert pysam.AlignmentFile(out).count(until_eof=True) == ds.count("chrM")


def _sortable() -> list[pathlib.Path]:
    return [p for p, bam in sorted_corpus().items() if bam is not None]


@pytest.mark.parametrize("src", _sortable(), ids=lambda p: str(p.relative_to(CORPUS)))
def test_every_corpus_file_reads_as_pysam_reads_it(src, tmp_path):
    """Every sortable HTSlib corpus file: header (dict and text), references, index statistics,
    every record by iteration and by fetch of each reference and of the unplaced reads."""
    bam = str(sorted_corpus()[src])
    pysam.index(bam)
    ds = bams3.open(_convert(bam, tmp_path / "ds.bams3"))
    with pysam.AlignmentFile(bam, check_sq=False) as f:
        assert (ds.references, ds.lengths) == (f.references, f.lengths)
        assert ds.header.to_dict() == f.header.to_dict() and str(ds.header) == str(f.header)
        assert ds.get_index_statistics() == f.get_index_statistics() and ds.unmapped == f.unmapped
        every = [r.to_string() for r in f]
    for name in (*ds.references, "*"):  # a fresh file each: "*" reads on from the file's position
        with pysam.AlignmentFile(bam, check_sq=False) as f:
            assert [r.to_string() for r in ds.fetch(name)] == [r.to_string() for r in f.fetch(name)], name
    assert [r.to_string() for r in ds] == every
