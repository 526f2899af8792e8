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


def test_a_column_listed_twice_in_the_directory_is_refused(tmp_path):
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    blob = bytearray(_first_chunk(dest).read_bytes())
    struct.pack_into("<B", blob, 16 + 24, 0)  # the second directory entry (span) claims to be column 0 (pos)
    with pytest.raises(DatasetError, match="column 0 appears twice"):
        ChunkReader(bytes(blob), bams3.open(str(dest)).codecs, "x")


def test_count_slots_must_be_exactly_those_the_records_need(tmp_path):
    """A chunk whose object holds one slot more than its first and last records span (each
    slot's own checksum intact) is refused by verify: a count would read the wrong slots."""
    from bams3.format import SlotLayout

    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest), slots=True)
    ds = bams3.open(str(dest))
    row = ds.chunks.row(0)
    layout = ds.source.layout(0)
    assert layout is not None and layout.base + layout.count * layout.size == row["nbytes"]
    blob = _first_chunk(dest).read_bytes()
    ds.source.check(blob, 0)  # as written: fine
    longer = blob + blob[layout.base : layout.base + layout.size]
    reader = ChunkReader(longer, ds.codecs, "x", head_crc=row["head_crc"])
    reader.verify_checksums(layout.size)  # every slot's checksum holds
    with pytest.raises(DatasetError, match="other count slots than its records need"):
        reader.verify_slots(layout, ds.codecs[0], row["n_records"])
    moved = SlotLayout(layout.window_start, layout.slot_bp, layout.first, layout.last, layout.base + 1, layout.size)
    with pytest.raises(DatasetError, match="other count slots"):
        ChunkReader(blob, ds.codecs, "x").verify_slots(moved, ds.codecs[0], row["n_records"])


@pytest.mark.parametrize("args, says", [
    (["--qual-codec", "consensus"], "models the seq column, not qual"),
    (["--seq-codec", "qual"], "models the qual column, not seq"),
    (["--codec", "qual"], "give it with --qual-codec, not --codec"),
    (["--codec", "consensus"], "give it with --seq-codec, not --codec"),
])
def test_a_record_aware_codec_is_refused_for_a_column_it_does_not_model(tmp_path, args, says):
    import subprocess
    import sys

    dest = tmp_path / "d"
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "convert", EXAMPLE, str(dest), *args],
                       capture_output=True, text=True)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and says in p.stderr, p.stderr
    assert not dest.exists()


def test_a_coverage_bin_of_zero_is_a_corrupt_dataset_not_a_crash(tmp_path):
    import json

    from bams3.format import METADATA_KEY, encode_metadata

    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    meta = json.loads((dest / METADATA_KEY).read_bytes())
    meta.pop("checksum")
    meta["coverage"]["bin"] = 0
    (dest / METADATA_KEY).write_bytes(encode_metadata(meta))
    with pytest.raises(DatasetError, match="bad coverage bin"):
        bams3.open(str(dest))
