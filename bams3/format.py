"""BAMS3 format v1: the chunk object layout, the chunk table and ``_metadata.json``.

All (de)serialisation of the format lives here; docs/format.md is the spec.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
import zlib
from typing import Any

import attrs
import numpy as np
import zstandard

from .coverage import chunk_depth
from .errors import CorruptDatasetError, DatasetError, InputError
from .records import CORE, RecordBatch, assemble, reference_span, segment_lengths, split_columns

FORMAT_NAME = "bams3"
FORMAT_VERSION = 2
# v2: _metadata.json carries a SHA-256 of its content; the chunk table records a CRC32 of each
# chunk's header and column directory (head_crc); a count slot's CRC32 covers its header too.
# v1 datasets (none of these) are still read.
METADATA_KEY = "_metadata.json"
# Readers fetch at most this much of _metadata.json and refuse a larger one; writers refuse to
# write one (a header of about 5 million @SQ lines).
MAX_METADATA_BYTES = 256 << 20
CHUNK_MAGIC = b"B3CHUNK\x01"
_CHUNK_HEAD = struct.Struct("<8sII")  # magic, n_columns, n_records
_DIR_ENTRY = struct.Struct("<BBHIQQ")  # column id, codec index, flags, crc32, stored, raw

# Column ids and types, in the order they are stored. pos and span come first so
# that a count reads one short prefix of an edge chunk.
FIXED_COLUMNS: tuple[tuple[int, str, str], ...] = (
    (0, "pos", "<i4"),  # delta-coded: first value, then differences (mod 2**32)
    (1, "span", "<i4"),  # bam_endpos - pos, derived, for region overlap only
    (2, "refid", "<i4"),
    (3, "flag", "<u2"),
    (4, "mapq", "u1"),
    (5, "bin", "<u2"),
    (6, "l_read_name", "u1"),
    (7, "n_cigar_op", "<u2"),
    (8, "l_seq", "<i4"),
    (9, "next_refid", "<i4"),
    (10, "next_pos", "<i4"),  # stored as next_pos - pos (mod 2**32)
    (11, "tlen", "<i4"),
    (12, "l_aux", "<u4"),
)
VAR_COLUMNS: tuple[tuple[int, str], ...] = ((13, "read_name"), (14, "cigar"), (15, "seq"), (16, "qual"), (17, "aux"))
COUNT_COLUMNS = 2  # pos, span
_ITEMSIZE = {cid: np.dtype(dtype).itemsize for cid, _, dtype in FIXED_COLUMNS}
FLAG_SHUFFLED = 1  # the column's bytes are grouped by significance (all first bytes, then all second, ...)
FLAG_PREDICTED = 2  # tlen only: stored as the difference from tlen_prediction() (mod 2**32)
_KNOWN_FLAGS = FLAG_SHUFFLED | FLAG_PREDICTED
TLEN_COLUMN = 11


def tlen_prediction(pos, next_pos, span, refid, next_refid) -> np.ndarray:
    """TLEN as the mate's position predicts it: ``next_pos - pos + span`` when the mate
    is to the right (exact when the mate spans as much as this read), ``next_pos - pos - span``
    when it is to the left (exact when this read ends last), 0 otherwise."""
    pos, next_pos, span = (np.asarray(x, dtype=np.int64) for x in (pos, next_pos, span))
    d = next_pos - pos
    pred = np.where(d > 0, d + span, np.where(d < 0, d - span, 0))
    return np.where((np.asarray(refid) == np.asarray(next_refid)) & (np.asarray(refid) >= 0), pred, 0)


def _wrap_i32(x: np.ndarray) -> np.ndarray:
    return ((x.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype("<i4")


def _shuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, itemsize).T.tobytes()


def _unshuffle(raw: bytes, itemsize: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(itemsize, -1).T.tobytes()

CHUNK_FIELDS = (
    "ref_id",  # reference index, -1 for unplaced reads
    "window",  # window index (pos // chunk_size), -1 for unplaced reads
    "n_records",
    "min_pos",  # 0-based leftmost position of the first record
    "max_pos",  # 0-based leftmost position of the last record
    "max_end",  # largest bam_endpos of any record (exclusive)
    "nbytes",  # size of the chunk object
    "count_nbytes",  # bytes from the start of the object through the span column
    "raw_nbytes",  # uncompressed BAM record bytes
    "slot_nbytes",  # size of each count slot at the end of the object; 0 = no count slots
    "head_crc",  # CRC32 of the chunk's header and column directory (v2; -1 in v1 tables)
)
# Readers refuse larger chunks: writers cap a chunk's raw records at 4 MiB (one record may go
# beyond), and a BAM record is at most 256 MiB (inputs.MAX_RECORD). Every allocation and
# decompression a chunk causes is capped by these recorded sizes.
MAX_CHUNK_RAW_BYTES = 1 << 30
MAX_CHUNK_BYTES = 1 << 31
OPTIONAL_CHUNK_FIELDS = {"slot_nbytes": 0, "head_crc": -1}  # absent in datasets written before they existed


def chunk_key(data_prefix: str, index: int) -> str:
    return f"{data_prefix}{index:06d}"


# --------------------------------------------------------------------------- chunks


# --------------------------------------------------------------------------- count slots
# The records' positions and spans again, cut by 16 kb sub-windows into fixed-size
# slots at the end of a chunk object: a count reads only the slots at a region's edges.
_SLOT_HEAD = struct.Struct("<IIqII")  # n_before, n_in, max_end_before, payload length, crc32
_SLOT_FIELDS = struct.Struct("<IIqI")  # the header without its crc32, which (v2) covers these and the payload


def _slot_crc_ok(blob, o: int, plen: int, crc: int, whole: bool) -> bool:
    """The slot at ``o`` matches its CRC32: over its header fields and payload (v2), or over the
    payload alone (v1)."""
    payload = blob[o + _SLOT_HEAD.size : o + _SLOT_HEAD.size + plen]
    if len(payload) != plen:
        return False
    start = zlib.crc32(blob[o : o + _SLOT_FIELDS.size]) if whole else 0
    return zlib.crc32(payload, start) == crc


def count_slot_bp(chunk_size: int) -> int:
    """Sub-window size of the count slots for a chunk size (about 16 kb, at most 256 slots)."""
    n = min(256, max(1, chunk_size // 16384))
    return -(-chunk_size // n)


def slot_range(min_pos: int, max_pos: int, window_start: int, slot_bp: int, n_slots: int) -> tuple[int, int]:
    """The first and last count slot of a chunk: those of its first and last record."""
    def slot(x: int) -> int:
        return min(max((x - window_start) // slot_bp, 0), n_slots - 1)

    return slot(min_pos), slot(max_pos)


def encode_slots(pos: np.ndarray, span: np.ndarray, window_start: int, slot_bp: int, n_slots: int,
                 codec, level) -> tuple[bytes, int]:
    """The count slots of one chunk (concatenated, each padded to the largest) and the slot size."""
    j0, j1 = slot_range(int(pos[0]), int(pos[-1]), window_start, slot_bp, n_slots)
    j = np.clip((pos - window_start) // slot_bp, 0, n_slots - 1) - j0
    n_slots = j1 - j0 + 1
    counts = np.bincount(j, minlength=n_slots)
    starts = np.zeros(n_slots + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    slot_max = np.full(n_slots, -1, dtype=np.int64)
    np.maximum.at(slot_max, j, pos + span)
    max_before = np.concatenate([[-1], np.maximum.accumulate(slot_max)[:-1]])
    slots = []
    for k in range(n_slots):
        a, b = int(starts[k]), int(starts[k + 1])
        payload = b""
        if b > a:
            rel = (pos[a:b] - (window_start + (j0 + k) * slot_bp)).astype("<i4").tobytes()
            raw = _shuffle(rel, 4) + _shuffle(span[a:b].astype("<i4").tobytes(), 4)
            payload = codec.encode(raw, level)
        fields = _SLOT_FIELDS.pack(a, b - a, int(max_before[k]), len(payload))
        slots.append(fields + struct.pack("<I", zlib.crc32(payload, zlib.crc32(fields))) + payload)
    size = max(len(x) for x in slots)
    return b"".join(x.ljust(size, b"\0") for x in slots), size


def decode_slots(blob: bytes, first: int, slot_nbytes: int, window_start: int, slot_bp: int, codec,
                 where: str, max_records: int, whole_crc: bool = True) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(n_before, max_end_before, pos, span) of consecutive slots starting at slot ``first``;
    ``max_records``, the chunk's recorded record count, caps what a slot may inflate to;
    ``whole_crc``: the slots' CRC32 covers their headers (format v2)."""
    out = []
    if slot_nbytes < _SLOT_HEAD.size:
        raise CorruptDatasetError(where, f"count slots of {slot_nbytes} bytes; the dataset is corrupt")
    for i in range(len(blob) // slot_nbytes):
        o = i * slot_nbytes
        n_before, n_in, max_before, plen, crc = _SLOT_HEAD.unpack_from(blob, o)
        payload = blob[o + _SLOT_HEAD.size : o + _SLOT_HEAD.size + plen]
        if plen + _SLOT_HEAD.size > slot_nbytes or not _slot_crc_ok(blob, o, plen, crc, whole_crc):
            raise CorruptDatasetError(where, f"checksum mismatch in count slot {first + i}; the dataset is corrupt")
        if n_in > max_records or n_before > max_records:
            raise CorruptDatasetError(where, f"count slot {first + i} claims more records than its chunk holds; "
                               "the dataset is corrupt")
        if n_in:
            raw = codec.decode(payload, 8 * n_in)
            if len(raw) != 8 * n_in:
                raise CorruptDatasetError(where, f"count slot {first + i} decodes to the wrong size; the dataset is corrupt")
            rel = np.frombuffer(_unshuffle(raw[: 4 * n_in], 4), "<i4").astype(np.int64)
            span = np.frombuffer(_unshuffle(raw[4 * n_in :], 4), "<i4").astype(np.int64)
            pos = rel + window_start + (first + i) * slot_bp
        else:
            pos = span = np.zeros(0, dtype=np.int64)
        out.append((n_before, max_before, pos, span))
    return out


SEQ_COLUMN = 15
QUAL_COLUMN = 16


def record_fields(core: np.ndarray, cigar: np.ndarray):
    """What a record-aware codec is told about the records of a chunk."""
    from .plugins import RecordFields

    return RecordFields(l_seq=core["l_seq"].astype(np.int64), flag=core["flag"].astype(np.uint16),
                        pos=core["pos"].astype(np.int64), n_cigar_op=core["n_cigar_op"].astype(np.int64),
                        cigar=np.frombuffer(cigar.tobytes(), dtype="<u4"))


def encode_chunk(batch: RecordBatch, codecs, window_start: int | None = None,
                 slot_bp: int = 0, n_slots: int = 0, column_codecs: dict[int, int] | None = None,
                 ref_length: int | None = None) -> tuple[bytes, dict[str, int]]:
    """Encode a batch of records (all one reference and window) as a chunk object.

    ``codecs`` is a sequence of (codec, level); every column uses the first unless
    ``column_codecs`` maps its id to another index (the qualities, typically).
    With ``window_start`` and ``slot_bp``, count slots are appended (placed records only).
    """
    column_codecs = column_codecs or {}
    codec, level = codecs[0]
    core = batch.core
    seg = segment_lengths(core)
    names, cigar, seq, qual, aux = split_columns(batch, seg)
    span = reference_span(core, cigar)
    if len(span) and int(span.max()) >= 1 << 31:  # stored as int32; no BAM reference is that long
        raise InputError(f"corrupt BAM record (its CIGAR spans {int(span.max()):,} bp, more than any BAM "
                         "reference holds)")
    pos = core["pos"].astype("<i4")
    arrays: list[np.ndarray] = []
    for _cid, name, dtype in FIXED_COLUMNS:
        if name == "pos":
            a = np.diff(pos, prepend=np.int32(0))
        elif name == "span":
            a = span.astype("<i4")
        elif name == "next_pos":
            a = core["next_pos"].astype("<i4") - pos
        elif name == "tlen":
            a = _wrap_i32(core["tlen"].astype(np.int64) - tlen_prediction(
                pos, core["next_pos"], span, core["refid"], core["next_refid"]))
        elif name == "l_aux":
            a = seg[:, 5].astype("<u4")
        else:
            a = core[name]
        arrays.append(np.ascontiguousarray(a, dtype=dtype))
    arrays += [names, cigar, seq, qual, aux]
    ids = [c[0] for c in FIXED_COLUMNS] + [c[0] for c in VAR_COLUMNS]
    entries, blobs = [], []
    fields = None
    for cid, arr in zip(ids, arrays):
        raw = arr.tobytes()
        flags = 0
        if _ITEMSIZE.get(cid, 1) > 1 and raw:
            raw, flags = _shuffle(raw, _ITEMSIZE[cid]), FLAG_SHUFFLED
        if cid == TLEN_COLUMN:
            flags |= FLAG_PREDICTED
        ci = column_codecs.get(cid, 0)
        c, lv = codecs[ci]
        if not raw:
            stored = b""
        elif c.record_aware:
            if fields is None:
                fields = record_fields(core, cigar)
            stored = c.encode(raw, lv, records=fields)
        else:
            stored = c.encode(raw, lv)
        entries.append(_DIR_ENTRY.pack(cid, ci, flags, zlib.crc32(stored), len(stored), len(raw)))
        blobs.append(stored)
    head = _CHUNK_HEAD.pack(CHUNK_MAGIC, len(ids), len(core)) + b"".join(entries)
    count_nbytes = len(head) + sum(len(b) for b in blobs[:COUNT_COLUMNS])
    blob = head + b"".join(blobs)
    slot_nbytes = 0
    if window_start is not None and slot_bp:
        slots, slot_nbytes = encode_slots(pos.astype(np.int64), span, window_start, slot_bp, n_slots, codec, level)
        blob += slots
    ends = pos.astype(np.int64) + span
    info = {
        "n_records": len(core),
        "min_pos": int(pos[0]),
        "max_pos": int(pos[-1]),
        "max_end": int(ends.max()),
        "nbytes": len(blob),
        "count_nbytes": count_nbytes,
        "raw_nbytes": batch.nbytes,
        "slot_nbytes": slot_nbytes,
        "head_crc": zlib.crc32(head),
    }
    if window_start is not None:
        info["_depth"] = chunk_depth(core, cigar, ref_length=ref_length)
    return blob, info


class ChunkReader:
    """Decodes (part of) one chunk object; verifies sizes and checksums of what it reads."""

    def __init__(self, blob: bytes, codecs: list, where: str, max_raw: int = MAX_CHUNK_RAW_BYTES,
                 head_crc: int = -1, version: int = FORMAT_VERSION):
        """``max_raw``: the chunk's recorded raw size; no column may claim to inflate beyond it.
        ``head_crc``: the chunk table's CRC32 of the header and column directory (v2), checked
        before any of it is used; -1: not recorded (v1)."""
        self.where = where
        self.blob = blob
        self.codecs = codecs
        self._fields = None
        self._verified = False  # every checksum checked already (verify_checksums)
        if len(blob) < _CHUNK_HEAD.size or blob[:8] != CHUNK_MAGIC:
            raise CorruptDatasetError(where, "not a bams3 chunk (bad magic); the dataset is corrupt")
        _, ncol, self.n_records = _CHUNK_HEAD.unpack_from(blob, 0)
        end_dir = _CHUNK_HEAD.size + ncol * _DIR_ENTRY.size
        if ncol > 255 or len(blob) < end_dir:
            raise CorruptDatasetError(where, "truncated chunk directory; the dataset is corrupt")
        if head_crc >= 0 and zlib.crc32(blob[:end_dir]) != head_crc:
            raise CorruptDatasetError(where, "checksum mismatch in the chunk's directory; the dataset is corrupt")
        self.whole_slot_crc = version >= 2
        self.columns: dict[int, tuple[int, int, int, int, int]] = {}
        o = end_dir
        for i in range(ncol):
            cid, codec_idx, flags, crc, stored, raw = _DIR_ENTRY.unpack_from(blob, _CHUNK_HEAD.size + i * _DIR_ENTRY.size)
            if flags & ~_KNOWN_FLAGS or codec_idx >= len(codecs) or (flags & FLAG_PREDICTED and cid != TLEN_COLUMN):
                raise DatasetError(f"{where}: column {cid} uses a feature this bams3 does not know; upgrade bams3")
            if raw > max_raw:
                raise CorruptDatasetError(where, f"column {cid} claims {raw:,} bytes, more than the chunk's recorded "
                                   f"{max_raw:,}; the dataset is corrupt")
            self.columns[cid] = (o, stored, raw, crc, codec_idx, flags)
            o += stored
        self.end = o  # where the columns end (count slots, if any, follow)

    def verify_checksums(self, slot_nbytes: int = 0) -> None:
        """Check every column's checksum and every count slot's, decoding nothing: a whole
        chunk that was fetched is verified whole, even the parts a query does not use."""
        for cid, (o, stored, _raw, crc, _c, _f) in self.columns.items():
            if zlib.crc32(self.blob[o : o + stored]) != crc or o + stored > len(self.blob):
                raise CorruptDatasetError(self.where, f"checksum mismatch in column {cid}; the dataset is corrupt")
        tail = len(self.blob) - self.end
        if tail < 0 or (tail if not slot_nbytes else tail % slot_nbytes):
            raise CorruptDatasetError(self.where, "the chunk has the wrong size; the dataset is corrupt")
        if slot_nbytes and slot_nbytes < _SLOT_HEAD.size:
            raise CorruptDatasetError(self.where, f"count slots of {slot_nbytes} bytes; the dataset is corrupt")
        for i, o in enumerate(range(self.end, len(self.blob), slot_nbytes or 1)):
            _, _, _, plen, crc = _SLOT_HEAD.unpack_from(self.blob, o)
            if plen + _SLOT_HEAD.size > slot_nbytes or not _slot_crc_ok(self.blob, o, plen, crc,
                                                                       self.whole_slot_crc):
                raise CorruptDatasetError(self.where, f"checksum mismatch in count slot {i}; the dataset is corrupt")
        self._verified = True

    def raw(self, cid: int) -> bytes:
        try:
            o, stored, raw, crc, codec_idx, flags = self.columns[cid]
        except KeyError:
            raise CorruptDatasetError(self.where, f"column {cid} is missing; the dataset is corrupt") from None
        data = self.blob[o : o + stored]
        if len(data) != stored or not self._verified and zlib.crc32(data) != crc:
            raise CorruptDatasetError(self.where, f"checksum mismatch in column {cid}; the dataset is corrupt")
        if raw == 0:
            return b""
        codec = self.codecs[codec_idx]
        try:
            if codec.record_aware:
                out = codec.decode(data, raw, records=self._record_fields())
            else:
                out = codec.decode(data, raw)
        except DatasetError:
            raise
        except Exception as exc:
            raise CorruptDatasetError(self.where, f"column {cid} does not decode ({exc}); the dataset is corrupt") from None
        if len(out) != raw:
            raise CorruptDatasetError(self.where, f"column {cid} decodes to the wrong size; the dataset is corrupt")
        if flags & FLAG_SHUFFLED:
            size = _ITEMSIZE.get(cid, 1)
            if raw % size:
                raise CorruptDatasetError(self.where, f"column {cid} has a partial value; the dataset is corrupt")
            out = _unshuffle(out, size)
        return out

    def _record_fields(self):
        from .plugins import RecordFields

        if self._fields is None:
            n_ops = self.array(7, "<u2").astype(np.int64)
            raw = self.raw(14)
            if len(raw) != 4 * int(n_ops.sum()):
                raise CorruptDatasetError(self.where, "columns disagree on CIGAR sizes; the dataset is corrupt")
            cigar = np.frombuffer(raw, dtype="<u4")
            if len(cigar) != int(n_ops.sum()):
                raise CorruptDatasetError(self.where, "columns disagree on CIGAR sizes; the dataset is corrupt")
            self._fields = RecordFields(
                l_seq=self.array(8, "<i4").astype(np.int64), flag=self.array(3, "<u2"),
                pos=np.cumsum(self.array(0, "<i4"), dtype=np.int32).astype(np.int64), n_cigar_op=n_ops, cigar=cigar)
        return self._fields

    def array(self, cid: int, dtype: str) -> np.ndarray:
        raw = self.raw(cid)
        if len(raw) % np.dtype(dtype).itemsize:
            raise CorruptDatasetError(self.where, f"column {cid} has a partial value; the dataset is corrupt")
        a = np.frombuffer(raw, dtype=dtype)
        if len(a) != self.n_records:
            raise CorruptDatasetError(self.where, f"column {cid} has the wrong length; the dataset is corrupt")
        return a

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(pos, span) of every record: all a count or a region filter needs."""
        pos = np.cumsum(self.array(0, "<i4"), dtype=np.int32).astype(np.int64)
        span = self.array(1, "<i4").astype(np.int64)
        return pos, span

    def records(self) -> RecordBatch:
        """Every record of the chunk, reassembled byte for byte."""
        n = self.n_records
        core = np.zeros(n, dtype=CORE)
        pos = np.cumsum(self.array(0, "<i4"), dtype=np.int32)
        for cid, name, dtype in FIXED_COLUMNS[2:]:
            a = self.array(cid, dtype)
            if name == "next_pos":
                core["next_pos"] = a + pos
            elif name != "l_aux":
                core[name] = a
        core["pos"] = pos
        if self.columns.get(TLEN_COLUMN, (0,) * 6)[5] & FLAG_PREDICTED:
            span = self.array(1, "<i4")
            core["tlen"] = _wrap_i32(core["tlen"].astype(np.int64) + tlen_prediction(
                pos, core["next_pos"], span, core["refid"], core["next_refid"]))
        l_aux = self.array(12, "<u4").astype(np.int64)
        seg = segment_lengths(core, check=False)
        core["block_size"] = seg[:, :5].sum(axis=1) + l_aux - 4
        cols = [np.frombuffer(self.raw(cid), dtype=np.uint8) for cid, _ in VAR_COLUMNS]
        expect = [seg[:, 1].sum(), seg[:, 2].sum(), seg[:, 3].sum(), seg[:, 4].sum(), l_aux.sum()]
        if any(len(c) != e for c, e in zip(cols, expect)):
            raise CorruptDatasetError(self.where, "columns disagree on record sizes; the dataset is corrupt")
        return assemble(core, cols)


# --------------------------------------------------------------------------- chunk table


@attrs.frozen(eq=False)
class ChunkTable:
    """Per-chunk columns (numpy int64 arrays named as CHUNK_FIELDS)."""

    columns: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.columns["ref_id"])

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(name) from None

    def validate(self, n_refs: int, chunk_size: int, n_slots: int, n_records: int, version: int = FORMAT_VERSION
                 ) -> None:
        """Refuse values no writer produces, so that nothing read from the table can make a
        reader fetch, allocate or inflate more than a real chunk needs (ValueError);
        ``n_records`` is the statistics' total, which the table must add up to."""
        if int(self.columns["n_records"].sum()) != n_records:
            raise ValueError("the chunk table and the statistics disagree on the number of records")
        if not len(self):
            return
        c = self.columns
        ref, n, raw, nb, cnb, snb = (c["ref_id"], c["n_records"], c["raw_nbytes"], c["nbytes"], c["count_nbytes"],
                                     c["slot_nbytes"])
        placed = ref >= 0
        checks = [
            ((ref < -1) | (ref >= n_refs), "chunks refer to references the header lacks"),
            ((c["window"] < -1) | (c["window"] > (1 << 62) // chunk_size), "a window is out of range"),
            ((n < 1) | (n > raw // 36), "a record count does not fit its chunk's size"),  # records are >= 36 B
            ((raw < 36) | (raw > MAX_CHUNK_RAW_BYTES), "a chunk's raw size is out of range"),
            ((nb < _CHUNK_HEAD.size) | (nb > MAX_CHUNK_BYTES), "a chunk's size is out of range"),
            ((cnb < _CHUNK_HEAD.size) | (cnb > nb), "a chunk's count prefix is out of range"),
            ((snb < 0) | (snb > nb) | (snb > 0) & ((n_slots == 0) | (snb < _SLOT_HEAD.size)), "a chunk's count slots are out of range"),
            ((c["head_crc"] < (0 if version >= 2 else -1)) | (c["head_crc"] >= 1 << 32),
             "a chunk's directory checksum is out of range"),
            (placed & ((c["min_pos"] < -1) | (c["min_pos"] > c["max_pos"]) | (c["max_pos"] >= 1 << 31)
                       | (c["max_end"] < c["max_pos"]) | (c["max_end"] > 1 << 32)),
             "a chunk's positions are out of order or range"),
        ]
        for bad, what in checks:
            if bad.any():
                raise ValueError(f"{what} (chunk {int(np.flatnonzero(bad)[0])})")
        order = np.where(ref < 0, n_refs, ref)  # readers find a reference's chunks by bisection
        if (np.diff(order) < 0).any():
            raise ValueError("chunks are out of reference order")

    @classmethod
    def from_rows(cls, rows: list[dict[str, int]]) -> ChunkTable:
        return cls({f: np.array([r[f] for r in rows], dtype=np.int64) for f in CHUNK_FIELDS})

    # Written: each field delta-coded as _DELTAS says, its int64 bytes shuffled (all first
    # bytes, then all second, ...), fields one after another, zstd, base64. Read: that or
    # the plain field-major encoding of the first datasets.
    _ENCODING = "i8-field-major-delta-shuffled+zstd+base64"
    _PLAIN = "i8-field-major+zstd+base64"
    _DELTAS = {"ref_id": None, "window": None, "min_pos": None, "max_pos": "min_pos", "max_end": "max_pos"}

    def to_json(self) -> dict[str, Any]:
        obj, frame = self.encode()
        return {**obj, "data": base64.b64encode(frame).decode()}

    def encode(self) -> tuple[dict[str, Any], bytes]:
        """The table's description and its binary form (a zstd frame)."""
        n = len(self)
        parts = []
        for f in CHUNK_FIELDS:
            v = self.columns[f].astype(np.int64)
            if f in self._DELTAS:
                base = self._DELTAS[f]
                v = np.diff(v, prepend=0) if base is None else v - self.columns[base]
            parts.append(np.ascontiguousarray(v, dtype="<i8").view(np.uint8).reshape(n, 8).T.tobytes())
        frame = zstandard.ZstdCompressor(level=19).compress(b"".join(parts))
        return {"count": n, "fields": list(CHUNK_FIELDS), "encoding": self._ENCODING}, frame

    @classmethod
    def from_json(cls, obj: dict[str, Any], frame: bytes | None = None) -> ChunkTable:
        """From the ``chunks`` object of the metadata; ``frame`` is the external table's bytes."""
        if not isinstance(obj.get("count"), int):
            raise ValueError("chunk count must be an integer")
        n = obj["count"]
        fields = list(obj["fields"])
        required = [f for f in CHUNK_FIELDS if f not in OPTIONAL_CHUNK_FIELDS]
        encoding = obj.get("encoding")
        if encoding not in (cls._ENCODING, cls._PLAIN) or any(f not in fields for f in required):
            raise ValueError("unsupported chunk table encoding")
        if n < 0 or n > 1 << 32 or len(fields) > 64:
            raise ValueError("absurd chunk count")
        want = n * len(fields) * 8
        if frame is None:
            frame = base64.b64decode(obj["data"])
        raw = zstandard.ZstdDecompressor().decompress(frame, max_output_size=max(want, 1))
        if len(raw) != want:
            raise ValueError("chunk table has the wrong size")
        if encoding == cls._PLAIN:
            mat = np.frombuffer(raw, dtype="<i8").reshape(len(fields), n)
        else:
            b = np.frombuffer(raw, dtype=np.uint8).reshape(len(fields), 8, n)
            mat = np.ascontiguousarray(b.transpose(0, 2, 1)).view("<i8").reshape(len(fields), n).copy()
            for f in ("ref_id", "window", "min_pos", "max_pos", "max_end"):  # in dependency order
                if f in fields:
                    i = fields.index(f)
                    base = cls._DELTAS[f]
                    mat[i] = np.cumsum(mat[i]) if base is None else mat[i] + mat[fields.index(base)]
        return cls({f: mat[fields.index(f)].astype(np.int64) if f in fields
                    else np.full(n, OPTIONAL_CHUNK_FIELDS[f], dtype=np.int64) for f in CHUNK_FIELDS})


# --------------------------------------------------------------------------- metadata


_CHECKSUM_KEY = b',"checksum":"sha256:'
CHUNKS_OBJECT = "_chunks"  # the external chunk table, under the data prefix
INLINE_TABLE_MAX = 32 * 1024  # larger tables are stored as an object of their own, so stats stays one small read


def _external_ref(obj: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    if "object" not in obj:
        return None
    if obj["object"] != prefix + CHUNKS_OBJECT or not isinstance(obj.get("nbytes"), int) \
            or not isinstance(obj.get("crc32"), int) or not 0 < obj["nbytes"] <= 1 << 30:
        raise ValueError("bad external chunk table reference")
    int(obj["count"])
    return dict(obj)


def _coverage_ref(obj, prefix: str) -> dict[str, Any] | None:
    from .coverage import COVERAGE_OBJECT

    if obj is None:
        return None
    if not isinstance(obj, dict) or obj.get("object") != prefix + COVERAGE_OBJECT \
            or obj.get("encoding") != "i8-delta-shuffled+zstd":
        raise ValueError("bad coverage reference")
    for k in ("bin", "bins", "nbytes", "crc32"):
        if not isinstance(obj.get(k), int) or obj[k] < 0 or obj[k] > (1 << 30 if k == "nbytes" else 1 << 40):
            raise ValueError(f"bad coverage {k}")
    return dict(obj)


def _package(name) -> str | None:
    """A distribution name (PEP 508), or None: the metadata cannot put anything else into
    the `pip install` hint a reader without the codec is shown."""
    if not name:
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?", name):
        raise ValueError("a codec's package is not a package name")
    return name


def encode_metadata(obj: dict[str, Any]) -> bytes:
    """``_metadata.json``'s bytes for the object: compact JSON that ends with the SHA-256 of
    everything before it (``"checksum":"sha256:<hex>"``, the last member)."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    if not body.startswith(b"{") or body == b"{}":
        raise ValueError("metadata must be a non-empty JSON object")
    content = body[:-1]  # up to the closing brace
    return content + _CHECKSUM_KEY + hashlib.sha256(content).hexdigest().encode() + b'"}\n'


@attrs.frozen
class CodecSpec:
    name: str
    level: int | None = None
    package: str | None = None  # the distribution that provided the codec when the dataset was written


@attrs.frozen(eq=False)
class Metadata:
    """Everything in ``_metadata.json``."""

    header_text: str
    references: tuple[tuple[str, int], ...]
    chunk_size: int
    codecs: tuple[CodecSpec, ...]
    data_prefix: str
    chunks: ChunkTable | None  # None while an external table is not loaded (see load_chunks)
    stats: dict[str, Any]
    source: dict[str, Any]
    created_by: str
    format_version: int = FORMAT_VERSION
    count_slot_bp: int = 0  # 0: chunks have no count slots
    chunks_ref: dict[str, Any] | None = None  # the external table's description (key, size, crc32)
    coverage: dict[str, Any] | None = None  # the binned-depth object's description (coverage.py)

    @property
    def chunks_key(self) -> str:
        return self.data_prefix + CHUNKS_OBJECT

    def external_chunks(self) -> bytes | None:
        """The table as an object of its own when it is too large to inline (written before the metadata)."""
        if self.chunks is None:
            return None
        _, frame = self.chunks.encode()
        return frame if len(frame) > INLINE_TABLE_MAX else None

    def load_chunks(self, frame: bytes, where: str) -> ChunkTable:
        ref = self.chunks_ref or {}
        if len(frame) != ref.get("nbytes") or zlib.crc32(frame) != ref.get("crc32"):
            raise CorruptDatasetError(where, f"the chunk table {self.chunks_key} is corrupt (size or checksum mismatch)")
        try:
            table = ChunkTable.from_json(ref, frame)
            table.validate(len(self.references), self.chunk_size, self.n_slots, self.stats["n_records"],
                           self.format_version)
        except (KeyError, TypeError, ValueError, OverflowError, zstandard.ZstdError) as exc:
            raise CorruptDatasetError(where, f"the chunk table {self.chunks_key} is malformed ({exc})") from None
        object.__setattr__(self, "chunks", table)
        return table

    @property
    def n_slots(self) -> int:
        return -(-self.chunk_size // self.count_slot_bp) if self.count_slot_bp else 0

    def _chunks_json(self) -> dict[str, Any]:
        if self.chunks is None:
            return dict(self.chunks_ref)
        obj, frame = self.chunks.encode()
        if len(frame) > INLINE_TABLE_MAX:
            return {**obj, "object": self.chunks_key, "nbytes": len(frame), "crc32": zlib.crc32(frame)}
        return {**obj, "data": base64.b64encode(frame).decode()}

    def to_json(self) -> bytes:
        obj = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "created_by": self.created_by,
            "source": self.source,
            "header": {"text": self.header_text, "references": [list(r) for r in self.references]},
            "chunk_size": self.chunk_size,
            "count_slot_bp": self.count_slot_bp,
            "codecs": [{k: v for k, v in attrs.asdict(c).items() if v is not None or k == "level"}
                       for c in self.codecs],
            "data_prefix": self.data_prefix,
            "chunks": self._chunks_json(),
            **({"coverage": self.coverage} if self.coverage else {}),
            "stats": self.stats,
        }
        return encode_metadata(obj)

    @staticmethod
    def verify_checksum(data: bytes, where: str) -> bool:
        """Check the SHA-256 that v2 metadata ends with, before any field is used. True: it
        matches; False: there is none (v1 metadata, which has none; anything newer is refused
        once its version is read). A mismatch is an error."""
        i = data.rfind(_CHECKSUM_KEY)
        if i < 0:
            return False
        tail = data[i + len(_CHECKSUM_KEY):]
        m = re.fullmatch(rb'([0-9a-f]{64})"\}\n?', tail)
        if not m or hashlib.sha256(data[:i]).hexdigest().encode() != m.group(1):
            raise CorruptDatasetError(where, "_metadata.json does not match its checksum; it is corrupt "
                               "(or was edited by hand)")
        return True

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Metadata:
        if len(data) > MAX_METADATA_BYTES:
            raise DatasetError(f"{where}: _metadata.json is larger than {MAX_METADATA_BYTES >> 20} MiB; refusing it")
        checked = cls.verify_checksum(data, where)
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise CorruptDatasetError(where, "_metadata.json is not valid JSON (truncated or corrupt)") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise DatasetError(f"{where}: _metadata.json is not bams3 metadata")
        version = obj.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorruptDatasetError(where, f"_metadata.json is malformed (format_version {version!r})")
        if version > FORMAT_VERSION:
            raise DatasetError(
                f"{where}: dataset format version {version} is newer than this bams3 reads "
                f"(up to {FORMAT_VERSION}); upgrade bams3"
            )
        if version >= 2 and not checked:
            raise CorruptDatasetError(where, "_metadata.json has lost its checksum; it is corrupt")
        try:
            prefix = obj["data_prefix"]
            if not isinstance(prefix, str) or not re.fullmatch(r"data/[A-Za-z0-9_-]{1,64}/", prefix):
                raise ValueError("data_prefix escapes the dataset")
            refs = tuple((str(n), int(l)) for n, l in obj["header"]["references"])
            if any(length < 0 or length >= 1 << 62 for _, length in refs):
                raise ValueError("absurd reference length")
            if len({n for n, _ in refs}) != len(refs):
                raise ValueError("a reference name appears twice")
            chunk_size = obj["chunk_size"]
            if not isinstance(chunk_size, int) or not 1 <= chunk_size <= 1 << 40:
                raise ValueError("chunk_size must be a positive integer")
            stats = obj["stats"]
            if not isinstance(stats, dict) or not isinstance(stats.get("n_records"), int) \
                    or not 0 <= stats["n_records"] < 1 << 48:
                raise ValueError("stats.n_records must be a non-negative integer")
            slot_bp = obj.get("count_slot_bp", 0)
            if not isinstance(slot_bp, int) or not 0 <= slot_bp <= chunk_size:
                raise ValueError("bad count_slot_bp")
            if version >= 2 and "head_crc" not in obj["chunks"]["fields"]:
                raise ValueError("the chunk table lacks the chunks' directory checksums")
            table = None if "object" in obj["chunks"] else ChunkTable.from_json(obj["chunks"])
            n_slots = -(-chunk_size // slot_bp) if slot_bp else 0
            if table is not None:
                table.validate(len(refs), chunk_size, n_slots, stats["n_records"], version)
            codecs = tuple(CodecSpec(str(c["name"]), c.get("level"), _package(c.get("package")))
                           for c in obj["codecs"])
            return cls(
                header_text=str(obj["header"]["text"]),
                references=refs,
                chunk_size=chunk_size,
                codecs=codecs,
                data_prefix=prefix,
                chunks=table,
                chunks_ref=_external_ref(obj["chunks"], prefix),
                coverage=_coverage_ref(obj.get("coverage"), prefix),
                stats=dict(stats),
                source=dict(obj.get("source", {})),
                created_by=str(obj.get("created_by", "?")),
                format_version=version,
                count_slot_bp=slot_bp,
            )
        except (KeyError, TypeError, ValueError, OverflowError, zstandard.ZstdError) as exc:
            raise CorruptDatasetError(where, f"_metadata.json is malformed ({exc})") from None
