"""Behaviour every output format must have. Subclass, set ``format_name``, and implement
``read_back(path)``: the records of the file the format wrote, each a dict of the SAM fields
the format holds, named as in ``FIELDS`` and valued as ``samtools view`` prints them
(``pos`` 1-based, ``next_ref`` a name or ``*`` (never ``=``), ``seq`` and ``qual`` as SAM text,
``tags`` the list of ``TG:T:VALUE`` strings).

A format that holds only some fields says which in ``fields`` (BED: name, ref, pos, ...).
One that changes what it holds (FASTQ reverse-complements reverse-strand reads, and keeps
only primary records) overrides ``expected(row)``: the SAM row as the format should give it
back, or ``None`` for a record it leaves out. ``read_back`` may still return
``(name, flag, pos)`` tuples, as kits before 0.2 asked: that is ``fields = ("name", "flag",
"pos")``.
"""

from __future__ import annotations

import pytest

import bams3

from .strategies import write_rich_bam

FIELDS = ("name", "flag", "ref", "pos", "mapq", "cigar", "next_ref", "next_pos", "tlen", "seq", "qual", "tags")


def sam_row(line: str) -> dict:
    """A SAM line as a dict of FIELDS."""
    c = line.rstrip("\n").split("\t")
    return {"name": c[0], "flag": int(c[1]), "ref": c[2], "pos": int(c[3]), "mapq": int(c[4]), "cigar": c[5],
            "next_ref": c[2] if c[6] == "=" else c[6], "next_pos": int(c[7]), "tlen": int(c[8]), "seq": c[9],
            "qual": c[10], "tags": c[11:]}


class OutputFormatTests:
    format_name: str = ""
    fields: tuple[str, ...] = FIELDS
    __test__ = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    def read_back(self, path: str) -> list[dict]:
        raise NotImplementedError

    def expected(self, row: dict) -> dict | None:
        """The SAM row as this format gives it back (None: the format leaves it out)."""
        return row

    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls, tmp_path_factory):
        d = tmp_path_factory.mktemp("fmt")
        bam = str(d / "in.bam")
        write_rich_bam(bam, n=1000, seed=3)
        import pysam

        pysam.index(bam)
        bams3.convert(bam, str(d / "ds"), chunk_size=4096)
        return bam, str(d / "ds")

    def _compare(self, got, bam, region):
        import pysam

        text = pysam.view(bam, region.replace(",", "")) if region else pysam.view(bam)
        want = [self.expected(sam_row(line)) for line in text.splitlines() if line]
        want = [w for w in want if w is not None]
        fields = self.fields
        if got and isinstance(got[0], tuple):  # the old read_back: (name, flag, pos)
            fields = ("name", "flag", "pos")
            got = [dict(zip(fields, g)) for g in got]
        assert len(got) == len(want), f"{len(got)} records where samtools gives {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            for f in fields:
                gv = sorted(g[f]) if f == "tags" else g[f]
                wv = sorted(w[f]) if f == "tags" else w[f]
                assert gv == wv, f"record {i + 1} ({w['name']}): {f} is {gv!r}, samtools says {wv!r}"

    def _write(self, ds, region, path):
        with open(path, "wb") as f:
            bams3.open(ds).write(f, region, format=self.format_name)
            assert not f.closed, "the writer closed the file it was given (close() must leave it open)"
            f.write(b"")  # still writable

    @pytest.mark.parametrize("region", ["chr1", "chr1:10,000-12,000", "chr2:29,000-30,000", None])
    def test_records_of_a_region(self, dataset, region, tmp_path):
        """Every field the format holds equals what samtools gives for the same records."""
        bam, ds = dataset
        fmt = bams3.get_registry().output_format(self.format_name)
        out = str(tmp_path / f"out{fmt.extensions[0]}")
        self._write(ds, region, out)
        self._compare(self.read_back(out), bam, region)

    def test_no_records(self, dataset, tmp_path):
        _, ds = dataset
        fmt = bams3.get_registry().output_format(self.format_name)
        out = str(tmp_path / f"empty{fmt.extensions[0]}")
        self._write(ds, "chr1:1-1", out)
        assert list(self.read_back(out)) == []

    def test_extension_selects_the_format(self):
        fmt = bams3.get_registry().output_format(self.format_name)
        assert fmt.extensions and bams3.get_registry().format_for_path("x" + fmt.extensions[0]) == self.format_name
