"""The quick path's records: ``bams3 query DATASET REGION`` (SAM, no header) for one region of a
dataset (local, or on bams3's own cloud stores) that lies in a few chunks, answered before
numpy, click, attrs or pluggy is imported (they were ~0.15 s of a ~0.23 s answer of a kilobase).

Each chunk the region reaches is read whole and checked as the full reader checks it (its size,
directory, every column's CRC, every column's decoded size); its positions say which records
overlap the region, and a chunk with none is not decoded further, as the full reader does not.
The others' columns are decoded by the codecs' own decoders (``bams3.builtins._decode``, the
functions the codec plugins register), the records are joined by the full reader's C kernels
(``_kernels.layout`` and ``join``) and htslib's ``sam_format1`` writes their lines
(``bams3._pysam``'s SamFormatter, as the full command writes SAM), into memory: nothing
reaches standard output until every line is made. A remote dataset's objects are asked for
as the full command asks for them (the metadata, an external table, each chunk whole), and
handed over to it if it runs. Anything else (another option, several regions, count slots, an
outside codec, a record htslib would write otherwise, a check that fails) raises
``_Refused``, and the full command answers."""

from __future__ import annotations

import array
import itertools
import operator
import os
import struct
import zlib

from ._kernels import join, layout, overlap_mask, unshuffle
from ._quick import WIDTH, _chunk_key, _directory, _open, _Refused, _table, resolve_spans
from .layout import (
    CHUNK_HEAD,
    DIR_ENTRY,
    FLAG_DERIVED,
    FLAG_PREDICTED,
    FLAG_SHUFFLED,
    L_READ_NAME_COLUMN,
    POS_COLUMN,
    READ_NAME_COLUMN,
    SPAN_COLUMN,
    TLEN_COLUMN,
    bam_header_bytes,
    name_lengths,
)

MAX_CHUNKS = 4  # a region reaching more is answered by the full command, which decodes on threads (faster from ~4 chunks)
# the BAM core's 36 bytes (block_size first), where each fixed column's values go: column id ->
# offset (pos, next_pos and tlen are made from their columns; span and l_aux are not in it)
_CORE = {2: 4, 0: 8, 6: 12, 4: 13, 5: 14, 7: 16, 3: 18, 8: 20, 9: 24, 10: 28, 11: 32}
_READ_NAME, _CIGAR, _SEQ, _QUAL, _AUX = READ_NAME_COLUMN, 14, 15, 16, 17


class _Fields:
    """What a record-aware codec reads of the chunk's records (bams3.RecordFields' names), as
    arrays of the types the C kernels take."""

    __slots__ = ("l_seq", "flag", "pos", "n_cigar_op", "cigar", "next_pos")


def sam(dest: str, regions: list[str]) -> bytes:
    """The SAM lines ``bams3 query DEST REGION`` writes."""
    if len(regions) != 1:
        raise _Refused
    src, f, version = _open(dest)
    try:
        if f["count_slot_bp"]:
            raise _Refused
        decoders = [_decoder(name) for name, _, _ in f["codecs"]]
        t = _table(src, f, version)
        ((tid, beg, end),) = resolve_spans(f, regions)
        if tid < 0:
            raise _Refused
        chunks = [i for i, r in enumerate(t["ref_id"]) if r == tid and t["min_pos"][i] < end and t["max_end"][i] > beg]
        if len(chunks) > MAX_CHUNKS:
            raise _Refused
        # each chunk whole, as the full reader reads it (one byte more: a longer object is damage)
        blobs = src.reads([(_chunk_key(f, t, i), 0, t["nbytes"][i] + 1) for i in chunks])
        parts, starts = [], [0]
        for i, blob in zip(chunks, blobs):
            data, offsets = _records(blob, f, t, i, beg, end, decoders)
            base = starts[-1]
            parts.append(data)
            starts.extend(base + o for o in offsets[1:])
    finally:
        src.close()
    return _format(f, b"".join(parts), array.array("q", starts))


def _decoder(name: str):
    """(decode, record-aware) of one of bams3's own codecs (another is the plugin host's to find)."""
    from .builtins._decode import DECODERS

    if name not in DECODERS:
        raise _Refused
    return DECODERS[name]


def _records(blob: bytes, f: dict, t: dict, i: int, beg: int, end: int, decoders) -> tuple[bytes, list[int]]:
    """Chunk ``i``'s records overlapping [beg, end), back to back, and their offsets (``blob``:
    the chunk's object)."""
    n, nbytes = t["n_records"][i], t["nbytes"][i]
    if len(blob) != nbytes:
        raise _Refused
    columns = _directory(blob, f, t, i)
    for o, stored, _raw, crc, _codec, _flags in columns.values():  # every column, as the full reader checks a chunk
        if o + stored > len(blob) or zlib.crc32(blob[o : o + stored]) != crc:
            raise _Refused
    if CHUNK_HEAD.size + len(columns) * DIR_ENTRY.size + sum(e[1] for e in columns.values()) != len(blob):
        raise _Refused  # (bytes after the columns: count slots, which this dataset has none of)
    raw: dict[int, bytes] = {}
    fields = _Fields()

    def column(cid: int) -> bytes:
        if cid not in raw:
            raw[cid] = _column(blob, columns, cid, decoders, fields)
        return raw[cid]

    def values(cid: int, code: str) -> memoryview:
        data = column(cid)
        if len(data) != WIDTH[cid] * n:
            raise _Refused
        return memoryview(data).cast(code)

    pos = array.array("q", itertools.accumulate(values(POS_COLUMN, "i")))
    if n and (min(pos) < -(1 << 31) or max(pos) >= 1 << 31):
        raise _Refused  # (a running sum past int32: the full reader wraps it; no writer writes it)
    span = values(SPAN_COLUMN, "i")
    whole = t["min_pos"][i] >= beg and t["max_pos"][i] < end
    keep = b"\x01" * n if whole else overlap_mask(pos, span, beg, end)
    if not any(keep):
        return b"", [0]
    # what the record-aware codecs read, decoded first (as ChunkReader._record_fields)
    fields.l_seq = array.array("q", values(8, "i"))
    fields.flag = array.array("H", values(3, "H"))
    fields.pos = pos
    fields.n_cigar_op = array.array("q", values(7, "H"))
    if len(column(_CIGAR)) != 4 * sum(fields.n_cigar_op):
        raise _Refused  # ("columns disagree on CIGAR sizes")
    fields.cigar = array.array("I")
    fields.cigar.frombytes(raw[_CIGAR])
    # the names codec reads next_pos (relative to pos as stored)
    fields.next_pos = array.array("q", map(operator.add, pos, values(10, "i")))
    if L_READ_NAME_COLUMN in columns and columns[L_READ_NAME_COLUMN][5] & FLAG_DERIVED:  # from the names' NULs
        lengths = name_lengths(column(_READ_NAME), n)
        if lengths is None:
            raise _Refused
        raw[L_READ_NAME_COLUMN] = lengths
    core = bytearray(36 * n)
    for cid, at in _CORE.items():
        w = WIDTH[cid]
        data = column(cid) if cid != POS_COLUMN else array.array("i", pos).tobytes()
        if len(data) != w * n:
            raise _Refused
        for k in range(w):
            core[at + k :: 36] = data[k::w]
    l_aux = array.array("q", values(12, "I"))
    offsets = array.array("q", bytes(8 * (n + 1)))
    totals = layout(core, l_aux, offsets)
    variable = [column(cid) for cid in (_READ_NAME, _CIGAR, _SEQ, _QUAL, _AUX)]
    if totals is None or list(totals) != [len(v) for v in variable]:
        raise _Refused
    # next_pos (stored relative to pos) and tlen (stored as the difference from its prediction)
    # of the records given out
    next_pos, tlen = values(10, "i"), values(11, "i")
    refid, next_refid = values(2, "i"), values(9, "i")
    predicted = columns[TLEN_COLUMN][5] & FLAG_PREDICTED
    kept = [0]
    for r in itertools.compress(range(n), keep):
        p = pos[r]
        mate = _wrap(next_pos[r] + p)
        t_len = tlen[r]
        if predicted:
            d = mate - p
            guess = d + span[r] if d > 0 else d - span[r] if d < 0 else 0
            t_len = _wrap(t_len + (guess if refid[r] == next_refid[r] and refid[r] >= 0 else 0))
        struct.pack_into("<ii", core, 36 * r + 28, mate, t_len)
        kept.append(kept[-1] + offsets[r + 1] - offsets[r])
    out = bytearray(kept[-1])
    join(out, offsets, core, *variable, keep)
    return bytes(out), kept


def _column(blob: bytes, columns: dict, cid: int, decoders, fields: _Fields) -> bytes:
    """Column ``cid`` decoded and unshuffled, checked as ChunkReader._decode checks it."""
    entry = columns.get(cid)
    if entry is None:
        raise _Refused
    o, stored, raw, _crc, codec_idx, flags = entry
    if raw == 0:
        return b""
    fn, record_aware = decoders[codec_idx]
    try:
        out = fn(blob[o : o + stored], raw, records=fields) if record_aware else fn(blob[o : o + stored], raw)
    except Exception:
        raise _Refused from None
    if len(out) != raw:
        raise _Refused
    if flags & FLAG_SHUFFLED:
        size = WIDTH.get(cid, 1)
        if raw % size:
            raise _Refused
        out = unshuffle(out, size)
    return out


def _wrap(x: int) -> int:
    return (x + (1 << 31)) % (1 << 32) - (1 << 31)


def _format(f: dict, data: bytes, offsets: array.array) -> bytes:
    """The records' SAM lines, by htslib as the full command writes them, made in memory."""
    from ._pysam import formatter_for

    if len(offsets) == 1:
        return b""
    fmt = formatter_for(bam_header_bytes(f["header_text"], f["references"]), len(f["references"]))
    if fmt is None:
        raise _Refused
    fd = os.memfd_create("bams3-sam", os.MFD_CLOEXEC)
    try:
        if fmt.write_records(data, offsets, fd) != len(offsets) - 1:
            raise _Refused  # a record htslib would write otherwise: the full command's samtools child writes it
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)
        fmt.close()
