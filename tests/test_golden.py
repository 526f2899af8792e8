"""Datasets written by earlier releases keep reading back to the same records."""

from __future__ import annotations

import gzip
import pathlib

import pytest

import bams3

from .oracle import view

GOLDEN = sorted((pathlib.Path(__file__).parent / "golden").glob("v*/*.bams3"))


def test_golden_datasets_exist():
    assert len(GOLDEN) >= 3


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_golden_dataset_reads_back(path, tmp_path):
    out = tmp_path / "out.bam"
    bams3.open(str(path)).to_bam(str(out))
    # (gzipped: the clone stays light)
    expected = gzip.decompress(path.with_name(path.name.removesuffix(".bams3") + ".expected.sam.gz").read_bytes())
    assert view(str(out), flags=("-h",)) == expected.decode()
