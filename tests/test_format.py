"""Chunk-level format rules from docs/format.md."""

from __future__ import annotations

import io
import pathlib
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bams3
from bams3.errors import DatasetError
from bams3.format import FLAG_PREDICTED, FLAG_SHUFFLED, ChunkReader
from bams3.layout import CHUNK_HEAD, DIR_ENTRY, FLAG_DERIVED

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


def test_l_read_name_is_derived_from_the_names(tmp_path):
    """l_read_name is not stored (FLAG_DERIVED): the names' NULs give it, whole or without the
    names (htsget's fields: each "*"); a derived flag anywhere else, with bytes stored, or over
    names that do not give the records' lengths is refused."""
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    ds = bams3.open(str(dest))
    reader = ds._reader(0)
    _o, stored, raw, crc, _codec, flags = reader.columns[6]
    assert (flags, stored, raw, crc) == (FLAG_DERIVED, 0, reader.n_records, 0)
    names = bytes(reader.raw(13))
    assert bytes(reader.raw(6)) == bytes(len(x) + 1 for x in names.split(b"\0")[:-1])
    whole, bare = reader.records(), ds._reader(0).records(skip=frozenset({"read_name"}))
    assert set(bare.core["l_read_name"]) == {2} and len(bare.core) == len(whole.core) > 0
    assert list(bare.core["pos"]) == list(whole.core["pos"])
    blob = _first_chunk(dest).read_bytes()
    ncol = CHUNK_HEAD.unpack_from(blob, 0)[1]
    at = {DIR_ENTRY.unpack_from(blob, CHUNK_HEAD.size + i * DIR_ENTRY.size)[0]: CHUNK_HEAD.size + i * DIR_ENTRY.size
          for i in range(ncol)}
    for cid, field, value in ((7, 2, FLAG_DERIVED), (6, 2, FLAG_DERIVED | FLAG_SHUFFLED), (6, 3, 7)):
        bad = bytearray(blob)
        entry = list(DIR_ENTRY.unpack_from(bad, at[cid]))
        entry[field] = value
        DIR_ENTRY.pack_into(bad, at[cid], *entry)
        with pytest.raises(DatasetError, match="marked derived"):
            ChunkReader(bytes(bad), ds.codecs, "x")
    for other in (names[:-1] + b"x", names + b"z\0", names[:-1] + b"y" * 300 + b"\0"):
        fewer = ChunkReader(blob, ds.codecs, "x")
        fewer._raw[13] = other  # names (as decoded) short of a NUL, one more, or a name past 255 bytes
        with pytest.raises(DatasetError, match="do not give their lengths"):
            fewer.raw(6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=8).map(lambda xs: b"\0".join(xs)), st.integers(0, 9),
       st.booleans())
def test_name_lengths_agree_with_and_without_numpy(names, n, end):
    """The quick path's (bytes) and the full reader's (numpy) derivation of l_read_name: the
    same lengths, or both refuse (not n names each ending in its only NUL, or one past 255)."""
    from bams3.format.chunk import name_lengths_array
    from bams3.layout import name_lengths

    names += b"\0" if end else b""
    ours = name_lengths(names, n)
    theirs = name_lengths_array(np.frombuffer(names, np.uint8), n)
    assert ours == (None if theirs is None else theirs.tobytes())
    if ours is not None:
        assert sum(ours) == len(names) and len(ours) == n


def test_names_that_do_not_give_their_lengths_keep_the_column(tmp_path):
    """A name holding a NUL: l_read_name is stored, and the
    records read back as samtools reads them."""
    import shutil
    import subprocess

    import pysam

    from bams3.bgzf import BgzfWriter
    from bams3.inputs import open_input
    from bams3.records import RecordBatch

    src = tmp_path / "n.bam"
    with pysam.AlignmentFile(str(src), "wb", header={"SQ": [{"SN": "c", "LN": 1000}]}) as out:
        for k in range(20):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.reference_id, a.reference_start, a.mapping_quality = f"read{k:02d}", 0, 10 * k, 5
            a.cigarstring, a.query_sequence, a.query_qualities = "4M", "ACGT", pysam.qualitystring_to_array("IIII")
            out.write(a)
    inp = open_input(str(src))
    try:
        header, batch = inp.header, RecordBatch.concat(list(inp.batches))
    finally:
        inp.close()
    data = batch.data[batch.offsets[0] : batch.offsets[-1]].copy()
    data[36 + 4] = 0  # the first record's name: "read" NUL "0" NUL
    nul = tmp_path / "nul.bam"
    with open(nul, "wb") as fh:
        w = BgzfWriter(fh)
        w.write(header.to_bam_bytes())
        w.write(data.tobytes())
        w.close()
    dest = tmp_path / "d"
    bams3.convert(str(nul), str(dest))
    reader = bams3.open(str(dest))._reader(0)
    assert reader.columns[6][5] == 0 and reader.columns[6][1] > 0  # stored
    ours = subprocess.run([shutil.which("bams3"), "query", str(dest)], check=True, capture_output=True).stdout
    assert ours == subprocess.run(["samtools", "view", str(nul)], check=True, capture_output=True).stdout
    assert ours.startswith(b"read\x000\t")  # (samtools 1.16 prints the whole l_read_name)


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


def _one_window_bam(path: str, n: int) -> str:
    """``n`` paired-looking records of 150 bp in one 1 Mbp window: ~290 bytes of BAM each."""
    import pysam

    rng = np.random.default_rng(5)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chr1", "LN": 2_000_000}]}
    starts = np.sort(rng.integers(0, 900_000, n))
    bases = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, (n, 150))]
    quals = rng.choice(np.array([2, 12, 23, 32, 37, 41], np.uint8), (n, 150))
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for i in range(n):
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.flag, r.reference_id, r.reference_start = f"p{i}", int(rng.choice([99, 147, 83, 163])), 0, int(starts[i])
            r.mapping_quality, r.cigartuples = 60, [(0, 150)]
            r.query_sequence, r.query_qualities = bases[i].tobytes().decode(), quals[i]
            r.next_reference_id, r.next_reference_start = 0, int(starts[i])
            r.set_tag("NM", int(rng.integers(0, 4)))
            out.write(r)
    pysam.index(path)
    return path


def test_high_holds_32_MiB_of_records_a_chunk_its_fixed_columns_at_16_by_plane(tmp_path):
    """--compression high stores up to 32 MiB of raw records in a chunk (CRAM 3.1 archive's
    slices hold 100,000 reads) where the default splits at 4 MiB, and codes the fixed columns
    with zstd at 16, each shuffled one by plane where that is smaller: the same records either way."""
    from bams3.builtins import zstd
    from bams3.converter import HIGH_CHUNK_RAW, MAX_CHUNK_RAW, ConvertOptions
    from bams3.format.columns import BY_NAME, shuffle

    from .oracle import view

    assert ConvertOptions.of(compression="high").chunk_raw == HIGH_CHUNK_RAW == 32 << 20
    assert ConvertOptions.of().chunk_raw == MAX_CHUNK_RAW == 4 << 20
    assert ConvertOptions.of(compression="high", max_chunk_raw=1 << 20).chunk_raw == 1 << 20
    bam = _one_window_bam(str(tmp_path / "w.bam"), 16_000)
    default, high = str(tmp_path / "default"), str(tmp_path / "high")
    bams3.convert(bam, default)
    bams3.convert(bam, high, compression="high")
    ds_default, ds_high = bams3.open(default), bams3.open(high)
    assert len(ds_default.source.table.n_records) == 2 and len(ds_high.source.table.n_records) == 1
    assert int(ds_high.source.table.raw_nbytes[0]) > MAX_CHUNK_RAW
    for ds in (ds_default, ds_high):
        buf = io.BytesIO()
        ds.write(buf, None)
        assert buf.getvalue().decode() == view(bam)
    reader = ds_high._reader(0)
    flag = BY_NAME["flag"]
    o, stored, raw, _crc, codec_idx, flags = reader.columns[flag.id]
    assert flags == FLAG_SHUFFLED and (ds_high.meta.codecs[codec_idx].name, ds_high.meta.codecs[codec_idx].level) == ("zstd", 16)
    data = shuffle(reader.array("flag").astype("<u2").tobytes(), 2)
    assert reader.blob[o : o + stored] == zstd.encode_planes(data, 16, 2)


def _fixed_length_bam(path: str, n: int = 1500, length: int = 100, seed: int = 3) -> str:
    """Reads of one length off a random genome (so the chunks' consensus is a real one), with
    mismatches, soft clips, insertions and deletions, both strands, first and second reads,
    unmapped mates placed beside theirs, and unplaced reads at the end."""
    import random

    import pysam

    rng = random.Random(seed)
    genome = "".join(rng.choice("ACGT") for _ in range(60_000))
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "g", "LN": len(genome)}]}
    recs = []
    for i in range(n):
        r = pysam.AlignedSegment()
        r.query_name = f"q{i // 2}"
        start = rng.randrange(len(genome) - 2 * length)
        shape = rng.random()
        cigar = [(0, length)] if shape < 0.6 else [(4, 7), (0, length - 7)] if shape < 0.7 else \
            [(0, 40), (1, 3), (0, length - 43)] if shape < 0.85 else [(0, 50), (2, 4), (0, length - 50)]
        ref = iter(genome[start:])
        seq = []
        for op, n_op in cigar:
            if op == 0:
                seq += [next(ref) if rng.random() > 0.02 else rng.choice("ACGTN") for _ in range(n_op)]
            elif op == 2:
                for _ in range(n_op):
                    next(ref)
            else:
                seq += [rng.choice("ACGT") for _ in range(n_op)]
        unmapped = rng.random() < 0.03
        r.query_sequence = "".join(seq)
        r.query_qualities = pysam.qualitystring_to_array("".join(chr(33 + rng.choice((2, 11, 25, 37, 40)))
                                                                 for _ in range(length)))
        r.reference_id, r.reference_start = 0, start
        r.flag = (1 | 8 | 4 | rng.choice((0x40, 0x80))) if unmapped else 1 | 2 | rng.choice((0x40, 0x80)) | rng.choice((0, 16))
        r.cigartuples = None if unmapped else cigar
        r.mapping_quality = 0 if unmapped else rng.randint(0, 60)
        r.next_reference_id, r.next_reference_start = 0, start + rng.randint(-300, 300) if start > 300 else start
        r.template_length = 0 if unmapped else rng.randint(-400, 400)
        r.set_tag("NM", rng.randint(0, 4))
        recs.append(r)
    for i in range(30):
        r = pysam.AlignedSegment()
        r.query_name, r.query_sequence, r.flag = f"u{i}", "ACGT" * (length // 4), 4
        r.query_qualities = pysam.qualitystring_to_array("I" * length)
        r.reference_id = r.reference_start = r.next_reference_id = r.next_reference_start = -1
        recs.append(r)
    recs.sort(key=lambda r: (r.reference_id < 0, r.reference_start))
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for r in recs:
            out.write(r)
    return path


@pytest.fixture(scope="module")
def keep_datasets(tmp_path_factory):
    """Datasets of small chunks: reads of one length (the qualities' fixed-length path), of many
    lengths (tests/synth.py), and the example BAM's."""
    from .synth import write_bam

    root = tmp_path_factory.mktemp("keep")
    out = []
    for name, bam in (("fixed", _fixed_length_bam(str(root / "fixed.bam"))),
                      ("varied", write_bam(str(root / "varied.bam"), n=1500, seed=8)), ("example", EXAMPLE)):
        bams3.convert(bam, str(root / f"{name}.bams3"), chunk_size="8K")
        out.append(bams3.open(str(root / f"{name}.bams3")))
    return out


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_chunks_few_records_are_assembled_as_they_are_among_all(keep_datasets, data):
    """ChunkReader.records(keep=mask), which fills in and decodes only what the kept records need
    when they are fewer than half (the sequences and, for reads of one length, the qualities:
    only the kept records' are written out), gives the records records() gives, selected by the
    mask: byte for byte, for masks of any density, runs or scattered."""
    ds = data.draw(st.sampled_from(keep_datasets))
    index = data.draw(st.integers(0, len(ds.chunks) - 1))
    n = int(ds.chunks.n_records[index])
    kind = data.draw(st.sampled_from(["scattered", "run", "one", "dense"]))
    if kind == "run":
        a = data.draw(st.integers(0, n - 1))
        mask = np.zeros(n, bool)
        mask[a : a + data.draw(st.integers(1, max(1, n // 3)))] = True
    elif kind == "one":
        mask = np.zeros(n, bool)
        mask[data.draw(st.integers(0, n - 1))] = True
    else:
        rng = np.random.default_rng(data.draw(st.integers(0, 1 << 30)))
        mask = rng.random(n) < (0.08 if kind == "scattered" else 0.8)
    whole = ds._reader(index).records().select(mask)
    reader = ds._reader(index)
    part = reader.records(keep=mask)
    assert bytes(part.data) == bytes(whole.data) and list(part.offsets) == list(whole.offsets)
    assert part.core.tobytes() == whole.core.tobytes()
    if np.count_nonzero(mask) < n // 2:  # the sequences (and qualities) were decoded for the kept records only
        own = {c.name for c in ds.codecs}
        assert ("consensus" not in own or 15 not in reader._raw) and 13 in reader._raw
