"""Reads as Arrow/pandas/Polars/DuckDB frames: every column equal to what pysam says of the same
reads, projections that read only their columns, filters pushed down, and the command line's
parquet and arrow outputs."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pysam
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bams3
from bams3 import storage
from bams3.errors import UsageError
from bams3.filters import from_options
from bams3.storage import start_trace

from . import filterbam


@pytest.fixture(scope="module")
def fb(tmp_path_factory):
    return filterbam.dataset(tmp_path_factory.mktemp("frames"))


def _expected(a: pysam.AlignedSegment) -> dict:
    """The frame's row for a read, from pysam."""
    unplaced = a.reference_id < 0
    return {
        "name": a.query_name, "flag": a.flag, "rname": a.reference_name or "*",
        "pos": a.reference_start + 1,
        "end": 0 if unplaced else a.reference_end if a.reference_end is not None else a.reference_start + 1,
        "mapq": a.mapping_quality, "cigar": a.cigarstring or "*", "rnext": a.next_reference_name or "*",
        "pnext": a.next_reference_start + 1, "tlen": a.template_length,
        "seq": a.query_sequence or "*",
        "qual": pysam.qualities_to_qualitystring(a.query_qualities) if a.query_qualities is not None else "*",
        "tid": a.reference_id, "start0": a.reference_start,
        "tags": "\t".join(a.to_string().split("\t")[11:]),
    }


def _rows(table: pa.Table) -> list[dict]:
    out = table.to_pylist()
    for r in out:
        for k in ("rname", "rnext"):
            if k in r:
                r[k] = str(r[k])
    return out


@pytest.mark.parametrize("region", [None, "chr1:1000-20000", "chr2", "*"])
def test_every_column_equals_pysam(fb, region):
    bam, dest = fb
    ds = bams3.open(dest)
    table = ds.to_arrow(region, columns=list(bams3.frames.COLUMNS))
    with pysam.AlignmentFile(bam) as af:
        reads = list(af.fetch(until_eof=True) if region is None else af.fetch(region=region))
    assert table.num_rows == len(reads)
    got = _rows(table)
    for row, a in zip(got, reads):
        assert row == _expected(a), a.query_name


def test_the_schema_is_typed(fb):
    _, dest = fb
    t = bams3.open(dest).to_arrow("chr1", columns=list(bams3.frames.COLUMNS))
    types = {f.name: f.type for f in t.schema}
    assert types["flag"] == pa.uint16() and types["mapq"] == pa.uint8() and types["pos"] == pa.int64()
    assert types["tlen"] == pa.int32() and pa.types.is_dictionary(types["rname"])
    assert types["name"] == types["cigar"] == types["seq"] == types["qual"] == pa.string()
    assert [f.name for f in bams3.open(dest).arrow("chr1").schema] == list(bams3.frames.COLUMNS[:12])


def test_typed_tags(fb):
    bam, dest = fb
    t = bams3.open(dest).to_arrow("chr1", columns=["name", "tags"], with_tags={"NM": int, "RG": str, "ZF": float,
                                                                             "XT": str, "ZB": list})
    assert t.schema.field("tags").type == pa.struct([("NM", pa.int64()), ("RG", pa.string()), ("ZF", pa.float64()),
                                                     ("XT", pa.string()), ("ZB", pa.list_(pa.float64()))])
    with pysam.AlignmentFile(bam) as af:
        reads = list(af.fetch("chr1"))
    for row, a in zip(t.to_pylist(), reads):
        tags = dict(a.get_tags())
        want = {"NM": tags.get("NM"), "RG": tags.get("RG"), "ZF": tags.get("ZF"), "XT": tags.get("XT"),
                "ZB": [float(x) for x in tags["ZB"]] if "ZB" in tags else None}
        assert row["tags"] == want
    inferred = bams3.open(dest).to_arrow("chr2", columns=["tags"], with_tags=["NM", "RG"])
    assert inferred.schema.field("tags").type == pa.struct([("NM", pa.string()), ("RG", pa.string())])
    with pytest.raises(UsageError):
        bams3.open(dest).to_arrow("chr2", with_tags={"RG": int})


def test_filters_and_regions_select_what_samtools_selects(fb):
    bam, dest = fb
    ds = bams3.open(dest)
    flt = from_options(exclude=["0xF04"], min_mapq=20, read_group=["grpA"])
    for regions in (None, ["chr1:1000-20000", "chr2:1-500"], "chrM"):
        names = ds.to_arrow(regions, columns=["name", "flag", "pos"], filters=flt).to_pylist()
        args = ["-F", "0xF04", "-q", "20", "-r", "grpA", bam] + ([] if regions is None else
                                                                  [regions] if isinstance(regions, str) else regions)
        sam = [line.split("\t") for line in pysam.view(*args).splitlines()]
        assert [(r["name"], r["flag"], r["pos"]) for r in names] == [(s[0], int(s[1]), int(s[3])) for s in sam]


def test_a_projection_reads_only_its_columns(sample_dataset, monkeypatch):
    monkeypatch.setattr(storage, "_traced", None)
    start_trace()
    ds = bams3.open(sample_dataset)
    region = f"{ds.references[0]}:1,000,001-2,000,000"
    t = ds.to_arrow(region, columns=["pos", "mapq", "flag"])
    log = [e for store in storage._traced for e in store.counter.log]
    small = sum(e[3] for e in log if e[1] and "data/" in e[1])
    assert t.num_rows == ds.count(region)
    monkeypatch.setattr(storage, "_traced", None)
    start_trace()
    ds = bams3.open(sample_dataset)
    whole = ds.to_arrow(region)
    log = [e for store in storage._traced for e in store.counter.log]
    full = sum(e[3] for e in log if e[1] and "data/" in e[1])
    assert whole.num_rows == t.num_rows and small < 0.05 * full


def test_pandas_polars_and_duckdb_read_it(fb):
    bam, dest = fb
    ds = bams3.open(dest)
    df = ds.to_pandas("chr1", columns=["mapq", "flag"])
    assert len(df) == int(pysam.view("-c", bam, "chr1"))
    import polars as pl

    frame = ds.to_polars("chr1", columns=["mapq"])
    assert isinstance(frame, pl.DataFrame) and frame.height == len(df)
    assert ds.to_polars("chr1", columns=["mapq"], lazy=True).collect().equals(frame)
    import duckdb

    r = ds.arrow("chr1", columns=["mapq", "flag"])  # noqa: F841 - DuckDB reads it by name
    got = duckdb.sql("select mapq, count(*) as n from r group by 1 order by 1").fetchall()
    want = np.unique(df["mapq"], return_counts=True)
    assert got == [(int(m), int(n)) for m, n in zip(*want)]


def test_bad_columns_are_one_line(fb):
    _, dest = fb
    with pytest.raises(UsageError, match="no frame column"):
        bams3.open(dest).to_arrow(columns=["pos", "nope"])


def test_query_writes_parquet_and_arrow(fb, tmp_path):
    from bams3.cli import main

    bam, dest = fb
    for fmt, read in (("parquet", lambda p: __import__("pyarrow.parquet").parquet.read_table(p)),
                      ("arrow", lambda p: pa.ipc.open_file(p).read_all())):
        out = tmp_path / f"r.{fmt}"
        assert main(["query", dest, "chr1", "-F", "0x4", "-o", str(out)]) == 0
        t = read(str(out))
        assert t.num_rows == int(pysam.view("-c", "-F", "0x4", bam, "chr1"))
        assert t.column_names == list(bams3.frames.COLUMNS[:13])  # every SAM field, tags as SAM text
    buf = io.BytesIO()
    bams3.open(dest).write(buf, "chr2", format="arrow")
    assert pa.ipc.open_file(pa.BufferReader(buf.getvalue())).read_all().num_rows == int(pysam.view("-c", bam, "chr2"))


def test_the_docs_example_runs_as_written(tmp_path, monkeypatch):
    """docs/frames.md's Python block, in a directory holding sample.bams3 (the example BAM)."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parents[1]
    (block,) = re.findall(r"```python\n(.*?)```", (root / "docs" / "frames.md").read_text(), re.S)
    bams3.convert(str(root / "bams3" / "data" / "example.bam"), str(tmp_path / "sample.bams3"))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, "docs/frames.md", "exec"), scope)  # noqa: S102 - the page's own example
    assert scope["df"].height == bams3.open("sample.bams3").count("chr1") > 0


def test_cohort_frame_on_a_dask_local_cluster(fb, tmp_path):
    """bams3.cohort.frame: one partition per sample and region, tagged with the sample, filtered
    and projected on the workers of a real LocalCluster; the rows are samtools'."""
    from distributed import Client, LocalCluster

    import bams3.cohort

    from . import synth

    bam, dest = fb
    other = synth.write_bam(str(tmp_path / "s.bam"), n=300)
    pysam.index(other)
    other_ds = str(tmp_path / "s.bams3")
    bams3.convert(other, other_ds)
    flt = from_options(exclude=["0x904"], min_mapq=1)
    regions = ["chr1:1000-30000", "chrA:1-100000"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        df = bams3.cohort.frame([("fb", dest), ("syn", other_ds)], regions, columns=["name", "pos", "rname"],
                                filters=flt)
        assert df.npartitions == 4 and list(df.columns) == ["sample", "name", "pos", "rname"]
        got = client.compute(df).result()
    for sample, path in (("fb", bam), ("syn", other)):
        refs = set(pysam.AlignmentFile(path).references)
        want = []
        for region in regions:
            if region.split(":")[0] in refs:
                want += [(s[0], int(s[3]), s[2]) for s in
                         (line.split("\t") for line in pysam.view("-F", "0x904", "-q", "1", path, region).splitlines())]
        rows = got[got["sample"] == sample]
        assert list(zip(rows["name"], rows["pos"], rows["rname"])) == want and want


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, (1 << 28) - 1), st.integers(0, 15)), max_size=6), max_size=30),
       st.lists(st.integers(0, 41), max_size=30))
def test_text_kernels_match_a_plain_transcription(cigars, lengths):
    """The C kernels that write CIGAR and sequence text: every operation length (up to 2^28 - 1)
    and code (above 9: ``?``, as htslib's bam_cigar_opchr), records without any (``*``), odd and
    even sequence lengths."""
    from bams3.frames import cigar_text, seq_text

    ops = np.array([(n << 4) | c for cig in cigars for n, c in cig], dtype="<u4")
    off = np.zeros(len(cigars) + 1, dtype=np.int64)
    np.cumsum([len(c) for c in cigars], out=off[1:])
    text, toff = cigar_text(ops, off)
    got = [text[a:b].tobytes().decode() for a, b in zip(toff[:-1], toff[1:])]
    assert got == ["".join(f"{n}{'MIDNSHP=XB??????'[c]}" for n, c in cig) or "*" for cig in cigars]

    rng = np.random.default_rng(len(lengths))
    qlen = np.array(lengths, dtype=np.int64)
    packed = rng.integers(0, 256, int(((qlen + 1) // 2).sum()), dtype=np.uint8)
    poff = np.zeros(len(qlen) + 1, dtype=np.int64)
    np.cumsum((qlen + 1) // 2, out=poff[1:])
    text, toff = seq_text(packed, poff, qlen)
    got = [text[a:b].tobytes().decode() for a, b in zip(toff[:-1], toff[1:])]
    want = []
    for i, n in enumerate(lengths):
        nib = [v for b in packed[poff[i]:poff[i + 1]].tolist() for v in (b >> 4, b & 15)][:n]
        want.append("".join("=ACMGRSVTWYHKDBN"[v] for v in nib) or "*")
    assert got == want
    if len(qlen):
        with pytest.raises(ValueError):
            seq_text(packed, poff, qlen + 2)  # lengths the packed bytes do not hold
