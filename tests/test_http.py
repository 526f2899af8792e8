"""Datasets published on a plain web server are read over http://, with range requests."""

from __future__ import annotations

import pytest

import bams3
from bams3.errors import DatasetError

from .httpserver import StaticServer
from .oracle import raw_bam, view_count
from .test_cli import EXAMPLE


def test_read_a_dataset_from_a_web_server(tmp_path):
    site = tmp_path / "site"
    bams3.convert(EXAMPLE, str(site / "ex.bams3"), chunk_size="256K")
    server = StaticServer(str(site))
    try:
        url = f"{server.url}/ex.bams3"
        ds = bams3.open(url)
        assert ds.stats["n_records"] == view_count(EXAMPLE)
        server.requests.clear()
        assert ds.count("chr1:20,000-30,000") == view_count(EXAMPLE, "chr1:20000-30000")
        assert server.requests and all(rng for _, _, rng in server.requests)  # ranges only
        out = tmp_path / "back.bam"
        ds.to_bam(str(out))
        assert raw_bam(str(out)) == raw_bam(EXAMPLE)
        with pytest.raises(DatasetError, match="no bams3 dataset"):
            bams3.open(f"{server.url}/nothing.bams3")
    finally:
        server.close()
