"""Lossless on HTSlib's own test corpus: BAM -> bams3 -> BAM gives the same header
and the same records, byte for byte, for every file samtools can sort."""

from __future__ import annotations

import pytest

import bams3
from bams3.errors import InputError

from .conftest import corpus_files, corpus_id, sorted_corpus
from .oracle import raw_bam, records, view

FILES = corpus_files()
SORTED = sorted_corpus()
SORTABLE = [p for p in FILES if SORTED[p] is not None]
UNSORTABLE = [p for p in FILES if SORTED[p] is None]


@pytest.mark.parametrize("compression", ["default", "high"])
@pytest.mark.parametrize("src", SORTABLE, ids=map(corpus_id, SORTABLE))
def test_round_trip(src, compression, tmp_path):
    sorted_bam = str(SORTED[src])
    dest = str(tmp_path / "ds.bams3")
    bams3.convert(sorted_bam, dest, chunk_size=1024, compression=compression)
    out = str(tmp_path / "back.bam")
    bams3.open(dest).to_bam(out)
    h1, r1 = raw_bam(sorted_bam)
    h2, r2 = raw_bam(out)
    assert h2 == h1  # header text and reference list
    assert r2 == r1  # every record, byte for byte
    assert view(out, flags=("-h",)) == view(sorted_bam, flags=("-h",))
    assert records(out) == records(sorted_bam)


@pytest.mark.parametrize("src", UNSORTABLE, ids=map(corpus_id, UNSORTABLE))
def test_unconvertible_files_are_refused_clearly(src, tmp_path):
    """Files samtools cannot put in a BAM (positions past 2**31) get a clear error, never a partial dataset."""
    for sort in (False, True):
        dest = tmp_path / f"ds{sort}"
        with pytest.raises(InputError) as exc:
            bams3.convert(str(src), str(dest), sort=sort)
        assert str(src) in str(exc.value) and "\n" not in str(exc.value)
        assert not (dest / "_metadata.json").exists()


def test_the_corpus_is_mostly_convertible():
    assert len(SORTABLE) >= 90 and len(UNSORTABLE) <= 5


@pytest.mark.parametrize("src", FILES, ids=map(corpus_id, FILES))
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
    assert view(out, flags=("-h",)) == view(str(src), flags=("-h",))
    assert records(out) == records(str(src))
