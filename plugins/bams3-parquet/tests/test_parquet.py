"""bams3-parquet's own tests: bams3's conformance kit for output formats, and the columns."""

from __future__ import annotations

import pyarrow.parquet as pq

from bams3.conformance.formats import OutputFormatTests


class TestParquetFormat(OutputFormatTests):
    format_name = "rawparquet"

    def read_back(self, path):
        t = pq.read_table(path)
        return list(zip(t["name"].to_pylist(), t["flag"].to_pylist(), t["pos"].to_pylist()))


def test_columns_match_pysam(tmp_path):
    import pysam

    import bams3
    from bams3.conformance.strategies import write_bam

    bam = str(tmp_path / "in.bam")
    write_bam(bam, n=500, seed=9)
    pysam.index(bam)
    bams3.convert(bam, str(tmp_path / "ds"))
    out = tmp_path / "all.raw.parquet"
    with open(out, "wb") as f:
        bams3.open(str(tmp_path / "ds")).write(f, format="rawparquet")
    t = pq.read_table(out).to_pylist()
    with pysam.AlignmentFile(bam) as f:
        recs = list(f)
    assert len(t) == len(recs) == 500
    for row, r in zip(t, recs):
        assert row["name"] == r.query_name and row["reference"] == r.reference_name
        assert row["seq"] == r.query_sequence and list(row["qual"]) == list(r.query_qualities)
        assert row["cigar"] == [length << 4 | op for op, length in r.cigartuples]
        assert row["tlen"] == r.template_length and row["mapq"] == r.mapping_quality
