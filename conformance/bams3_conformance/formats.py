"""Behaviour every output format must have. Subclass, set ``format_name`` and implement
``read_back(path) -> list of (name, flag, 1-based pos)`` for the file the format wrote."""

from __future__ import annotations

import pytest

import bams3

from .strategies import write_bam


class OutputFormatTests:
    format_name: str = ""
    __test__ = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    def read_back(self, path: str) -> list[tuple[str, int, int]]:
        raise NotImplementedError

    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls, tmp_path_factory):
        d = tmp_path_factory.mktemp("fmt")
        bam = str(d / "in.bam")
        write_bam(bam, n=2000, seed=3)
        import pysam

        pysam.index(bam)
        bams3.convert(bam, str(d / "ds"), chunk_size=4096)
        return bam, str(d / "ds")

    def _expected(self, bam, region):
        import pysam

        with pysam.AlignmentFile(bam) as f:
            return [(r.query_name, r.flag, r.reference_start + 1) for r in f.fetch(region=region.replace(",", ""))]

    @pytest.mark.parametrize("region", ["chr1", "chr1:10,000-12,000", "chr2:29,000-30,000"])
    def test_records_of_a_region(self, dataset, region, tmp_path):
        bam, ds = dataset
        fmt = bams3.get_registry().output_format(self.format_name)
        out = str(tmp_path / f"out{fmt.extensions[0]}")
        with open(out, "wb") as f:
            bams3.open(ds).write(f, region, format=self.format_name)
        assert self.read_back(out) == self._expected(bam, region)

    def test_no_records(self, dataset, tmp_path):
        _, ds = dataset
        fmt = bams3.get_registry().output_format(self.format_name)
        out = str(tmp_path / f"empty{fmt.extensions[0]}")
        with open(out, "wb") as f:
            bams3.open(ds).write(f, "chr1:1-1", format=self.format_name)
        assert self.read_back(out) == []

    def test_extension_selects_the_format(self):
        fmt = bams3.get_registry().output_format(self.format_name)
        assert fmt.extensions and bams3.get_registry().format_for_path("x" + fmt.extensions[0]) == self.format_name
