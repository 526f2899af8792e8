"""samtools view's read filters, compared with samtools (pysam's) for the same options: counts and
records, through the API and the command line, on a BAM with every kind of read a filter tells
apart (tests/filterbam.py), on the benchmark sample and on HTSlib's corpus; and what a filtered
count reads (only the columns the filter needs)."""

from __future__ import annotations

import io
import json

import pysam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
from bams3.cli import main
from bams3.errors import UsageError
from bams3.filters import ReadFilter, from_options, parse_flags
from bams3 import storage
from bams3.storage import start_trace

from . import filterbam
from .conftest import corpus_files, corpus_id, sorted_corpus


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    """(BAM, dataset) of tests/filterbam.py, in small chunks so regions cut chunks."""
    return filterbam.dataset(tmp_path_factory.mktemp("filters"))


@pytest.fixture(scope="module")
def lists(tmp_path_factory):
    d = tmp_path_factory.mktemp("lists")
    (d / "rg.txt").write_text("grpB\n")
    (d / "names.txt").write_text("r00001 r00010\nread:5:5\nu001\nnot-there\n")
    (d / "nm.txt").write_text("3\n5\n")
    (d / "cb.txt").write_text("AAAC-1\nx\n")
    return d


def samtools_count(bam, args, regions=()):
    return int(pysam.view("-c", *args, bam, *regions))


def samtools_records(bam, args, regions=()):
    return pysam.view(*args, bam, *regions)


def bams3_cli(capfd, *args) -> tuple[int, str, str]:
    """Our command line, in this process: (exit status, stdout, stderr)."""
    capfd.readouterr()
    code = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return code, out, err


def ours(capfd, dest, args, regions=()):
    """(count, SAM records) from our command line, for the same arguments."""
    code, count, err = bams3_cli(capfd, "query", dest, *regions, "-c", *args)
    assert code == 0, err
    code, sam, err = bams3_cli(capfd, "query", dest, *regions, *args)
    assert code == 0, err
    return int(count), sam


# ---------------------------------------------------------------- parsing, as samtools parses
@pytest.mark.parametrize("text,value", [
    ("0x904", 0x904), ("2308", 2308), ("010", 8), ("UNMAP,SECONDARY", 0x104), ("unmap,dup", 0x404),
    ("PAIRED,PROPER_PAIR,UNMAP,MUNMAP,REVERSE,MREVERSE,READ1,READ2,SECONDARY,QCFAIL,DUP,SUPPLEMENTARY", 0xFFF),
    ("12abc", 12),
])
def test_flags_are_read_as_samtools_reads_them(text, value, fb):
    assert parse_flags(text) == value
    bam, _ = fb
    assert samtools_count(bam, ["-F", text]) == samtools_count(bam, ["-F", str(value)])


@pytest.mark.parametrize("args,message", [
    (["-F", "UNMAPPED"], "unknown flag"),
    (["-d", "N"], "tag:value"),
    (["-d", "NM", "-d", "AS:1"], "different tag"),
    (["-D", "NM"], "tag:file"),
    (["-s", "1"], "sampling"),
    (["-s", "0.5x"], "sampling"),
    (["--subsample", "1.5", "--subsample-seed", "1"], "sampling"),
    (["--subsample", "0.5"], "--subsample-seed"),
    (["-R", "/nonexistent/rg.txt"], "cannot read"),
])
def test_bad_filter_options_are_one_line_and_exit_2(args, message, fb, capfd):
    _, dest = fb
    code, out, err = bams3_cli(capfd, "query", dest, "-c", *args)
    assert code == 2 and not out, err
    assert message in err and err.count("\n") == 1 and err.startswith("bams3: ")


# ---------------------------------------------------------------- every option, against samtools
CASES = [
    ["-F", "0xF04"], ["-F", "UNMAP,SECONDARY,QCFAIL,DUP"], ["-f", "3", "-F", "0x400"], ["-f", "PAIRED", "-f", "READ2"],
    ["-G", "0x404"], ["--rf", "0x600"], ["--incl-flags", "DUP,QCFAIL", "-F", "SUPPLEMENTARY"],
    ["-q", "20"], ["--min-MQ", "1"], ["-q", "255"], ["-m", "60"], ["-m", "101"],
    ["-r", "grpA"], ["-r", "grpA", "-r", "grpB"], ["-r", "nothing"], ["-R", "{rg}"], ["-R", "{rg}", "-r", "grpA"],
    ["-N", "{names}"], ["-d", "NM"], ["-d", "NM:3", "-d", "NM:0"], ["-D", "NM:{nm}"], ["-d", "XT:U"], ["-d", "CB:x"],
    ["-D", "CB:{cb}"], ["-d", "RG:grpB"], ["-d", "ZF"], ["-d", "ZZ"], ["-l", "libX"], ["-l", "libY", "-q", "5"],
    ["-s", "0.3"], ["-s", "42.3"], ["-s", "3.5e-1"], ["-s", "7.0"], ["--subsample", "0.4", "--subsample-seed", "7"],
    ["--subsample", "0.4", "--subsample-seed", "0"], ["-F", "0xF04", "-q", "20", "-r", "grpA", "-s", "11.5"],
    ["-e", "mapq >= 30 && [NM] <= 2"], ["-e", "flag.dup || !flag.proper_pair"], ["-e", "[RG] == \"grpB\""],
    ["-e", "qname =~ \"^read:\" && pos > 1000"], ["-e", "rlen > 100 || sclen > 5"], ["-e", "library == \"libY\""],
    ["-e", "exists([ZF]) && [ZF] < 1"], ["-e", "rnext == \"*\""], ["-e", "tlen < -50", "-F", "0x10"],
    ["-e", "endpos - pos > 100"],
]
REGIONS = [(), ("chr1:1000-20000",), ("chr2", "chr1:5000-6000", "chr1:5500-9000"), ("*",), ("chrM",)]


def _args(case, lists):
    return [a.format(rg=lists / "rg.txt", names=lists / "names.txt", nm=lists / "nm.txt", cb=lists / "cb.txt")
            for a in case]


@pytest.mark.parametrize("case", CASES, ids=[" ".join(c) for c in CASES])
def test_every_filter_option_equals_samtools(case, fb, lists, capfd):
    bam, dest = fb
    args = _args(case, lists)
    for regions in REGIONS:
        n, sam = ours(capfd, dest, args, regions)
        assert n == samtools_count(bam, args, regions), regions
        assert sam == samtools_records(bam, args, regions), regions


def test_read_group_filter_keeps_the_header_samtools_keeps(fb, capfd):
    bam, dest = fb
    code, out, _ = bams3_cli(capfd, "query", dest, "-h", "--no-PG", "-r", "grpB")
    assert code == 0
    assert out == pysam.view("-h", "--no-PG", "-r", "grpB", bam)
    assert "ID:grpA" not in out


# ---------------------------------------------------------------- generated combinations
FLAG_VALUES = st.sampled_from(["0x1", "0x2", "0x4", "0x10", "0x40", "0x100", "0x200", "0x400", "0x800", "0x904",
                               "0xF04", "UNMAP,DUP", "SECONDARY,SUPPLEMENTARY", "QCFAIL", "READ1,PAIRED"])


@st.composite
def filter_args(draw):
    args = []
    for opt in ("-f", "-F", "--rf", "-G"):
        if draw(st.booleans()) and draw(st.booleans()):
            args += [opt, draw(FLAG_VALUES)]
    if draw(st.booleans()):
        args += ["-q", str(draw(st.sampled_from([0, 1, 5, 20, 30, 60, 255])))]
    if draw(st.integers(0, 4)) == 0:
        args += ["-m", str(draw(st.integers(0, 120)))]
    if draw(st.integers(0, 3)) == 0:
        args += ["-r", draw(st.sampled_from(["grpA", "grpB"]))]
    if draw(st.integers(0, 3)) == 0:
        args += ["-d", draw(st.sampled_from(["NM", "AS", "NM:0", "NM:1", "XT:R", "CB:GGTT-1", "XS"]))]
    if draw(st.integers(0, 4)) == 0:
        args += ["-l", draw(st.sampled_from(["libX", "libY", "libZ"]))]
    if draw(st.integers(0, 4)) == 0:
        args += ["-s", f"{draw(st.integers(0, 50))}.{draw(st.integers(1, 9))}"]
    if draw(st.integers(0, 3)) == 0:
        args += ["-e", draw(st.sampled_from(["mapq > 10", "[NM] >= 2 || !exists([AS])", "qlen > 60 && !flag.reverse",
                                             "[XS] > [AS]", "ncigar > 1", "pos % 7 == 3", "rname != rnext"]))]
    return args


REGION = st.sampled_from([(), ("chr1",), ("chr1:1-15000",), ("chr1:20000-40000", "chr2:100-9000"), ("*",),
                          ("chr2:1-30000", "chrM")])


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=filter_args(), regions=REGION, multi=st.booleans())
def test_generated_filters_equal_samtools(fb, args, regions, multi):
    bam, dest = fb
    ds = bams3.open(dest)
    flt = _api_filter(args)
    extra = ["-M"] if multi and regions else []
    want = samtools_count(bam, args + extra, regions)
    assert ds.count(list(regions), multi=bool(extra), filters=flt) == want
    buf = io.BytesIO()
    ds.write(buf, list(regions), multi=bool(extra), filters=flt)
    assert buf.getvalue().decode() == samtools_records(bam, args + extra, regions)


def _api_filter(args) -> ReadFilter:
    """The same filter through the Python API (from_options), from command-line arguments."""
    kw: dict = {}
    names = {"-f": "require", "-F": "exclude", "--rf": "any_of", "-G": "not_all", "-r": "read_group", "-d": "tag"}
    it = iter(args)
    for a in it:
        v = next(it)
        if a in names:
            kw.setdefault(names[a], []).append(v)
        elif a == "-q":
            kw["min_mapq"] = int(v)
        elif a == "-m":
            kw["min_qlen"] = int(v)
        elif a == "-l":
            kw["library"] = v
        elif a == "-s":
            kw["subsample_combined"] = v
        elif a == "-e":
            kw["expression"] = v
    return from_options(**kw)


# ---------------------------------------------------------------- the sample and the corpus
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=filter_args(), start=st.integers(0, 7_000_000), length=st.sampled_from([1_000, 100_000, 1_000_000]))
def test_generated_filters_on_the_sample(sample_dir, sample_dataset, args, start, length):
    bam = str(sample_dir / "sample.bam")
    ds = bams3.open(sample_dataset)
    name = ds.references[0]
    region = f"{name}:{start + 1}-{start + length}"
    flt = _api_filter(args)
    assert ds.count(region, filters=flt) == samtools_count(bam, args, [region])
    if length <= 100_000:
        buf = io.BytesIO()
        ds.write(buf, region, filters=flt)
        assert buf.getvalue().decode() == samtools_records(bam, args, [region])


def test_whole_sample_filtered_count(sample_dir, sample_dataset):
    bam = str(sample_dir / "sample.bam")
    args = ["-F", "0xF04", "-q", "20"]
    assert bams3.open(sample_dataset).count(filters=_api_filter(args)) == samtools_count(bam, args)


CORPUS = [p for p in corpus_files() if sorted_corpus()[p] is not None]


@pytest.mark.parametrize("src", CORPUS, ids=map(corpus_id, CORPUS))
def test_filters_on_the_corpus(src, tmp_path):
    bam = str(sorted_corpus()[src])
    dest = str(tmp_path / "ds.bams3")
    bams3.convert(bam, dest, chunk_size=1024)
    ds = bams3.open(dest)
    for args in (["-F", "0x904"], ["-f", "0x1", "-q", "1"], ["-G", "0x3", "-d", "NM"], ["-s", "3.5", "-m", "5"],
                 ["-r", "grp1", "-l", "lib1"]):
        flt = _api_filter(args)
        assert ds.count(filters=flt) == samtools_count(bam, args), args
        buf = io.BytesIO()
        ds.write(buf, filters=flt)
        assert buf.getvalue().decode() == samtools_records(bam, args), args


# ---------------------------------------------------------------- everywhere that reads records
def test_to_bam_and_fetch_and_cohort_take_filters(fb, tmp_path, capfd):
    bam, dest = fb
    args = ["-F", "0x400", "-q", "20"]
    out = str(tmp_path / "out.bam")
    code, _, err = bams3_cli(capfd, "to-bam", dest, out, "--read-group", "grpA", "--region", "chr1", *args)
    assert code == 0, err
    assert pysam.view(out) == pysam.view("-r", "grpA", *args, bam, "chr1")
    names = [a.query_name for a in bams3.open(dest).fetch("chr2", filters=_api_filter(args))]
    assert names == [a.query_name for a in pysam.AlignmentFile(bam).fetch("chr2")
                     if not a.flag & 0x400 and a.mapping_quality >= 20]
    samples = tmp_path / "samples.txt"
    samples.write_text(dest + "\n")
    code, table_text, err = bams3_cli(capfd, "cohort", "count", "chr1:1-30000", "chr2", "--from", samples, *args,
                                      "-r", "grpB", "-o", "-", "--no-progress")
    assert code == 0, err
    rows = [line.split("\t") for line in table_text.splitlines()[1:]]
    assert [int(row[2]) for row in rows] == [samtools_count(bam, args + ["-r", "grpB"], [reg])
                                             for reg in ("chr1:1-30000", "chr2")]
    table = bams3.cohort.count([dest], ["chrM"], filters=_api_filter(["-f", "UNMAP"]))
    assert list(table["count"]) == [samtools_count(bam, ["-f", "UNMAP"], ["chrM"])]


def test_json_count_reports_the_filters(fb, capfd):
    _, dest = fb
    _, text, _ = bams3_cli(capfd, "query", dest, "chr1", "-c", "--json", "-F", "UNMAP,DUP", "-q", "20")
    out = json.loads(text)
    assert out["filters"] == {"exclude": 0x404, "min_mapq": 20}


def test_a_bad_expression_fails_before_any_work(fb):
    with pytest.raises(UsageError):
        from_options(expression="mapq >=")


# ---------------------------------------------------------------- what a filtered count reads
def test_a_flag_and_mapq_count_reads_two_columns_of_a_chunk(fb, monkeypatch):
    """Only the directory, pos/span, refid, flag and MAPQ are read (two ranged reads a chunk at
    most): never the reads."""
    bam, dest = fb
    monkeypatch.setattr(storage, "_traced", None)
    start_trace()
    ds = bams3.open(dest)
    t = ds.chunks
    n = ds.count(filters=_api_filter(["-F", "0xF04", "-q", "20"]))
    log = [entry for store in storage._traced for entry in store.counter.log]
    assert n == samtools_count(bam, ["-F", "0xF04", "-q", "20"])
    chunk_reads = [e for e in log if "/data/" in (e[1] or "") or (e[1] or "").startswith("data/")]
    assert chunk_reads and len(chunk_reads) <= 2 * len(t)
    moved = sum(e[3] for e in chunk_reads)
    assert moved < 0.25 * int(t.nbytes.sum())


def test_a_filtered_record_query_skips_chunks_it_rejects_whole(fb, monkeypatch):
    """Records with a filter: the filter's columns first, then the rest of a chunk only when one
    of its records passes. A filter no record passes reads no sequence, quality or tag."""
    bam, dest = fb
    monkeypatch.setattr(storage, "_traced", None)
    start_trace()
    ds = bams3.open(dest)
    buf = io.BytesIO()
    ds.write(buf, "chr1", filters=_api_filter(["-f", "0x400", "-F", "0x400"]))
    assert buf.getvalue() == b"" == samtools_records(bam, ["-f", "0x400", "-F", "0x400"], ["chr1"]).encode()
    log = [entry for store in storage._traced for entry in store.counter.log]
    moved = sum(e[3] for e in log if e[1] and "data/" in e[1])
    assert 0 < moved < 0.1 * int(ds.chunks.nbytes.sum())
