"""The format's byte layout (docs/format.md): the chunk header and column directory, the size
limits, the column flags and ids a count reads, the chunk table's fields and encodings.

Standard library only, so that the quick path (``bams3._quick``) reads the same constants as
``bams3.format`` without importing numpy. ``bams3.format`` takes them from here; nothing
defines them twice."""

from __future__ import annotations

import struct

CHUNK_MAGIC = b"B3CHUNK\x01"
CHUNK_HEAD = struct.Struct("<8sII")  # magic, n_columns, n_records
DIR_ENTRY = struct.Struct("<BBHIQQ")  # column id, codec index, flags, crc32, stored, raw
MAX_CHUNK_RAW_BYTES = 1 << 30
MAX_CHUNK_BYTES = 1 << 31
SLOT_HEAD = struct.Struct("<IIqII")  # a count slot's header: n_before, n_in, max_end_before, payload length, crc32

# the ids of the columns a count reads (the chunk's first two), and of tlen
POS_COLUMN, SPAN_COLUMN, TLEN_COLUMN = 0, 1, 11
L_READ_NAME_COLUMN, READ_NAME_COLUMN = 6, 13
# column directory flags
FLAG_SHUFFLED = 1  # the column's bytes are grouped by significance (all first bytes, then all second, ...)
FLAG_PREDICTED = 2  # tlen only: stored as the difference from tlen_prediction() (mod 2**32)
FLAG_DERIVED = 4  # l_read_name only: not stored; each record's name's bytes in read_name, to its NUL
KNOWN_FLAGS = FLAG_SHUFFLED | FLAG_PREDICTED | FLAG_DERIVED


def name_lengths(names: bytes, n: int) -> bytes | None:
    """The l_read_name column of ``n`` records from their read_name column: each name's bytes
    up to and including its NUL (one byte each). None when that is not n names each ending in
    its only NUL, of at most 255 bytes (a column a writer would not derive)."""
    if names.count(0) != n or (n and names[-1:] != b"\0") or (not n and names):
        return None
    try:
        lengths = bytes(map(len, names.split(b"\0")[:-1])) if n else b""
    except ValueError:  # a name of 256 bytes or more
        return None
    return lengths.translate(_PLUS_ONE) if b"\xff" not in lengths else None


_PLUS_ONE = bytes((i + 1) % 256 for i in range(256))

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
OPTIONAL_CHUNK_FIELDS = {"slot_nbytes": 0, "head_crc": -1}  # absent in datasets written before they existed
# v3, written only where chunks are not numbered in table order (a sharded conversion): the
# number of each chunk's object under the data prefix. Absent: chunk i is object i.
OBJECT_FIELD = "object"
MAX_OBJECT = 1 << 40

# The chunk table's encodings. Written: each field delta-coded as TABLE_DELTAS says (None: from
# the row before; a name: from that field of the same row), its int64 bytes shuffled (all first
# bytes, then all second, ...), fields one after another, zstd, base64. Read: that or the plain
# field-major encoding of the first datasets.
TABLE_ENCODING = "i8-field-major-delta-shuffled+zstd+base64"
TABLE_PLAIN = "i8-field-major+zstd+base64"
TABLE_DELTAS = {"ref_id": None, "window": None, "min_pos": None, "max_pos": "min_pos", "max_end": "max_pos",
                OBJECT_FIELD: None}


def bam_header_bytes(text: str, references) -> bytes:
    """A BAM header's bytes (SAM specification 4.2: magic, the text, the references), as an
    uncompressed BAM stream starts: what htslib reads the header of records from."""
    raw = text.encode("utf-8", "surrogateescape")
    parts = [b"BAM\x01", struct.pack("<i", len(raw)), raw, struct.pack("<i", len(references))]
    for name, length in references:
        nb = name.encode() + b"\x00"
        parts += [struct.pack("<i", len(nb)), nb, struct.pack("<i", length)]
    return b"".join(parts)
