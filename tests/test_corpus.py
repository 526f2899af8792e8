"""Lossless on HTSlib's own test corpus: BAM -> bams3 -> BAM gives the same header
and the same records, byte for byte, for every file samtools can sort."""

from __future__ import annotations

import pysam
import pytest

import bams3
from bams3.errors import InputError

from .conftest import CORPUS, corpus_files
from .oracle import raw_bam, records, view

FILES = corpus_files()


def _sorted_bam(src, tmp_path):
    out = str(tmp_path / "sorted.bam")
    try:
        pysam.sort("-o", out, str(src), catch_stdout=False)
    except pysam.SamtoolsError:
        return None
    return out


@pytest.mark.parametrize("src", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_round_trip(src, tmp_path):
    sorted_bam = _sorted_bam(src, tmp_path)
    if sorted_bam is None:
        # samtools cannot read it either: we must refuse it with a clear error, not lose data.
        with pytest.raises(InputError):
            bams3.convert(str(src), str(tmp_path / "direct.bams3"), sort=True)
        assert not (tmp_path / "direct.bams3" / "_metadata.json").exists()
        return
    dest = str(tmp_path / "ds.bams3")
    bams3.convert(sorted_bam, dest, chunk_size=1024)
    out = str(tmp_path / "back.bam")
    bams3.open(dest).to_bam(out)
    h1, r1 = raw_bam(sorted_bam)
    h2, r2 = raw_bam(out)
    assert h2 == h1  # header text and reference list
    assert r2 == r1  # every record, byte for byte
    assert view(out, "-h") == view(sorted_bam, "-h")
    assert records(out) == records(sorted_bam)


@pytest.mark.parametrize("src", FILES, ids=[str(p.relative_to(CORPUS)) for p in FILES])
def test_direct_input_sorted_or_refused(src, tmp_path):
    """SAM/BAM straight from the corpus: converted exactly when sorted, else a clear sort hint."""
    dest = tmp_path / "ds.bams3"
    try:
        bams3.convert(str(src), str(dest))
    except InputError as exc:
        assert "sort" in str(exc) or "cannot" in str(exc) or "not" in str(exc)
        assert not (dest / "_metadata.json").exists()
        return
    out = str(tmp_path / "back.bam")
    bams3.open(str(dest)).to_bam(out)
    assert view(out, "-h") == view(str(src), "-h")
    assert records(out) == records(str(src))
