"""Chunk-level format rules from docs/format.md."""

from __future__ import annotations

import pathlib
import struct

import pytest

import bams3
from bams3.errors import DatasetError
from bams3.format import FLAG_PREDICTED, FLAG_SHUFFLED, ChunkReader

from .test_cli import EXAMPLE


def _first_chunk(dest: pathlib.Path) -> pathlib.Path:
    return sorted((dest / "data").rglob("000000"))[0]


def test_wide_columns_are_shuffled_and_read_back(tmp_path):
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    ds = bams3.open(str(dest))
    reader = ds._reader(0)
    flags = {cid: entry[5] for cid, entry in reader.columns.items()}
    assert flags[0] == flags[1] == FLAG_SHUFFLED  # pos, span
    assert flags[11] == FLAG_SHUFFLED | FLAG_PREDICTED  # tlen, as the difference from its prediction
    assert flags[4] == 0 and flags[16] == 0  # one-byte mapq, byte column qual
    assert ds.count("chr1") > 0


def test_unknown_flag_bit_is_refused(tmp_path):
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    chunk = _first_chunk(dest)
    blob = bytearray(chunk.read_bytes())
    struct.pack_into("<H", blob, 16 + 2, 0x8000)  # flags of the first directory entry
    with pytest.raises(DatasetError, match="upgrade bams3"):
        ChunkReader(bytes(blob), bams3.open(str(dest)).codecs, "x")
