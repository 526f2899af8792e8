"""Count slots: the records' positions and spans again, cut by ~16 kb sub-windows into
fixed-size slots at the end of a chunk object, so that a count reads only the slots at a
region's edges (docs/format.md, "Count slots"). Where a chunk's slots lie is computed here
and only here (:class:`SlotLayout`)."""

from __future__ import annotations

import struct
import zlib

import attrs
import numpy as np

from ..errors import CorruptDatasetError
from ..layout import SLOT_HEAD
from .columns import shuffle, unshuffle

SLOT_FIELDS = struct.Struct("<IIqI")  # the header without its crc32, which (v2) covers these and the payload


def count_slot_bp(chunk_size: int) -> int:
    """Sub-window size of the count slots for a chunk size (about 16 kb, at most 256 slots)."""
    n = min(256, max(1, chunk_size // 16384))
    return -(-chunk_size // n)


def slot_range(min_pos: int, max_pos: int, window_start: int, slot_bp: int, n_slots: int) -> tuple[int, int]:
    """The first and last count slot of a chunk: those of its first and last record."""
    def slot(x: int) -> int:
        return min(max((x - window_start) // slot_bp, 0), n_slots - 1)

    return slot(min_pos), slot(max_pos)


@attrs.frozen
class SlotLayout:
    """Where one chunk's count slots lie: the window's slots ``first``..``last`` (of
    ``slot_bp`` bases from ``window_start``), stored from byte ``base`` of the chunk object,
    ``size`` bytes each."""

    window_start: int
    slot_bp: int
    first: int
    last: int
    base: int
    size: int

    @classmethod
    def of(cls, row, chunk_size: int, slot_bp: int, n_slots: int) -> SlotLayout | None:
        """The layout of a chunk table row (a mapping of its fields, e.g. :meth:`ChunkTable.row`),
        or None when the chunk has no slots."""
        size = int(row["slot_nbytes"])
        if not size or not slot_bp or row["ref_id"] < 0:
            return None
        w0 = int(row["window"]) * chunk_size
        j0, j1 = slot_range(int(row["min_pos"]), int(row["max_pos"]), w0, slot_bp, n_slots)
        return cls(w0, slot_bp, j0, j1, int(row["nbytes"]) - (j1 - j0 + 1) * size, size)

    @property
    def count(self) -> int:
        return self.last - self.first + 1

    def slot(self, x: int) -> int:
        """The slot (0 = this chunk's first) holding position ``x``, clamped to the chunk's."""
        return min(max((x - self.window_start) // self.slot_bp, self.first), self.last) - self.first

    def byte_range(self, a: int, b: int) -> tuple[int, int]:
        """The bytes of this chunk's slots ``a``..``b`` (inclusive, 0 = the first)."""
        return self.base + a * self.size, self.base + (b + 1) * self.size

    def start_of(self, a: int) -> int:
        """The first position of this chunk's slot ``a``."""
        return self.window_start + (self.first + a) * self.slot_bp


def slot_crc_ok(blob, o: int, plen: int, crc: int, whole: bool) -> bool:
    """The slot at ``o`` matches its CRC32: over its header fields and payload (v2), or over the
    payload alone (v1)."""
    payload = blob[o + SLOT_HEAD.size : o + SLOT_HEAD.size + plen]
    if len(payload) != plen:
        return False
    start = zlib.crc32(blob[o : o + SLOT_FIELDS.size]) if whole else 0
    return zlib.crc32(payload, start) == crc


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
            raw = shuffle(rel, 4) + shuffle(span[a:b].astype("<i4").tobytes(), 4)
            payload = codec.encode(raw, level)
        fields = SLOT_FIELDS.pack(a, b - a, int(max_before[k]), len(payload))
        slots.append(fields + struct.pack("<I", zlib.crc32(payload, zlib.crc32(fields))) + payload)
    size = max(len(x) for x in slots)
    return b"".join(x.ljust(size, b"\0") for x in slots), size


def decode_slots(blob: bytes, first: int, slot_nbytes: int, window_start: int, slot_bp: int, codec,
                 where: str, max_records: int, whole_crc: bool = True) -> list[tuple[int, int, np.ndarray, np.ndarray]]:
    """(n_before, max_end_before, pos, span) of consecutive slots starting at slot ``first``
    (``window_start``: the start of the chunk's first slot); ``max_records``, the chunk's
    recorded record count, caps what a slot may inflate to; ``whole_crc``: the slots' CRC32
    covers their headers (format v2)."""
    out = []
    if slot_nbytes < SLOT_HEAD.size:
        raise CorruptDatasetError(where, f"count slots of {slot_nbytes} bytes; the dataset is corrupt")
    for i in range(len(blob) // slot_nbytes):
        o = i * slot_nbytes
        n_before, n_in, max_before, plen, crc = SLOT_HEAD.unpack_from(blob, o)
        payload = blob[o + SLOT_HEAD.size : o + SLOT_HEAD.size + plen]
        if plen + SLOT_HEAD.size > slot_nbytes or not slot_crc_ok(blob, o, plen, crc, whole_crc):
            raise CorruptDatasetError(where, f"checksum mismatch in count slot {first + i}; the dataset is corrupt")
        if n_in > max_records or n_before > max_records:
            raise CorruptDatasetError(where, f"count slot {first + i} claims more records than its chunk holds; "
                                      "the dataset is corrupt")
        if n_in:
            raw = codec.decode(payload, 8 * n_in)
            if len(raw) != 8 * n_in:
                raise CorruptDatasetError(where, f"count slot {first + i} decodes to the wrong size; "
                                          "the dataset is corrupt")
            rel = np.frombuffer(unshuffle(raw[: 4 * n_in], 4), "<i4").astype(np.int64)
            span = np.frombuffer(unshuffle(raw[4 * n_in :], 4), "<i4").astype(np.int64)
            pos = rel + window_start + (first + i) * slot_bp
        else:
            pos = span = np.zeros(0, dtype=np.int64)
        out.append((n_before, max_before, pos, span))
    return out
