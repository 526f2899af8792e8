"""pytest plugin (entry point ``pytest11``): fixtures for testing bams3 plugins.

- ``bams3_bam``: a small, sorted, indexed BAM (2 references, 1,000 reads) and its path;
- ``bams3_dataset``: that BAM converted to a dataset in a temporary directory: (bam, dataset path).
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def bams3_bam(tmp_path_factory) -> str:
    import pysam

    from .strategies import write_bam

    path = str(tmp_path_factory.mktemp("bams3-kit") / "kit.bam")
    write_bam(path, n=1000, seed=11)
    pysam.index(path)
    return path


@pytest.fixture(scope="session")
def bams3_dataset(bams3_bam, tmp_path_factory) -> tuple[str, str]:
    import bams3

    dest = str(tmp_path_factory.mktemp("bams3-kit") / "kit.bams3")
    bams3.convert(bams3_bam, dest, chunk_size=4096)
    return bams3_bam, dest
