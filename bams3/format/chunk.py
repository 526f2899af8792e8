"""A chunk object: header, column directory, the columns, then the count slots
(docs/format.md, "Chunk objects"). Bytes in, bytes out: no store, no registry."""

from __future__ import annotations

import zlib
from collections.abc import Mapping

import attrs
import numpy as np

from ..builtins import zstd as _zstd
from ..errors import Bams3Error, CorruptDatasetError, DatasetError, InputError, PluginError
from ..layout import CHUNK_HEAD, CHUNK_MAGIC, DIR_ENTRY, MAX_CHUNK_BYTES, MAX_CHUNK_RAW_BYTES  # noqa: F401
from ..layout import FLAG_DERIVED, L_READ_NAME_COLUMN, READ_NAME_COLUMN
from ..records import CORE, RecordBatch, join, layout, reference_span, segment_lengths, split_columns
from .columns import (
    BY_NAME,
    COUNT_COLUMNS,
    FIXED,
    FLAG_PREDICTED,
    FLAG_SHUFFLED,
    KNOWN_FLAGS,
    TLEN_COLUMN,
    VARIABLE,
    Column,
    shuffle,
    stored_fixed,
    tlen_prediction,
    unshuffle,
    wrap_i32,
)
from .slots import SLOT_HEAD, SlotLayout, decode_slots, encode_slots, slot_crc_ok

_ITEMSIZE = {c.id: c.itemsize for c in FIXED}


_LAYOUT_FIELDS = frozenset({"l_read_name", "n_cigar_op", "l_seq"})  # the core fields records.layout reads


def name_lengths_array(names: np.ndarray, n: int) -> np.ndarray | None:
    """:func:`bams3.layout.name_lengths` over numpy (the writer's and the full reader's): the
    lengths (uint8) of n names each ending in its only NUL, of at most 255 bytes; else None."""
    ends = np.flatnonzero(names == 0)
    if len(ends) != n or (n and ends[-1] != len(names) - 1) or (not n and len(names)):
        return None
    lengths = np.diff(ends, prepend=-1)
    return lengths.astype(np.uint8) if not n or int(lengths.max()) <= 255 else None


def chunk_key(data_prefix: str, index: int) -> str:
    return f"{data_prefix}{index:06d}"


def directory_nbytes(n_columns: int) -> int:
    """The size of a chunk's header and column directory."""
    return CHUNK_HEAD.size + n_columns * DIR_ENTRY.size


def record_fields(core: np.ndarray, cigar: np.ndarray):
    """What a record-aware codec is told about the records of a chunk."""
    from ..plugins import RecordFields

    return RecordFields(l_seq=core["l_seq"].astype(np.int64), flag=core["flag"].astype(np.uint16),
                        pos=core["pos"].astype(np.int64), n_cigar_op=core["n_cigar_op"].astype(np.int64),
                        cigar=np.frombuffer(cigar.tobytes(), dtype="<u4"),
                        next_pos=core["next_pos"].astype(np.int64))


@attrs.frozen(eq=False)
class EncodedChunk:
    """A chunk object's bytes, its chunk table fields (``info``), and the records' CIGARs
    (concatenated, as split out to encode them: what a depth computation needs)."""

    blob: bytes
    info: dict
    cigar: np.ndarray


def _codec_failed(codec, what: str, exc: Exception, origins: Mapping[str, tuple[str, str]] | None):
    """A codec's own failure, naming the codec and (an outside one) its plugin and package."""
    plugin, package = (origins or {}).get(codec.name, (codec.name, None))
    where = f" (plugin {plugin!r} from package {package})" if package else ""
    return PluginError(f"codec {codec.name!r}{where} failed to {what} ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())})", plugin=plugin, package=package)


def _own(codec) -> bool:
    """One of bams3's own codecs (which read a column's buffer where it is; an outside one gets bytes)."""
    return getattr(codec.encode, "__module__", "").startswith("bams3.builtins.")


def encode_chunk(batch: RecordBatch, codecs, window_start: int | None = None,
                 slot_bp: int = 0, n_slots: int = 0, column_codecs: dict[int, int] | None = None,
                 origins: Mapping[str, tuple[str, str]] | None = None) -> EncodedChunk:
    """Encode a batch of records (all one reference and window) as a chunk object.

    ``codecs`` is a sequence of (codec, level); every column uses the first unless
    ``column_codecs`` maps its id to another index (the qualities, typically).
    With ``window_start`` and ``slot_bp``, count slots are appended (placed records only).
    ``origins``: outside codecs' (plugin, package), named when they fail.
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
    columns = stored_fixed(core, span, seg[:, 5]) + list(zip(VARIABLE, (names, cigar, seq, qual, aux)))
    entries, blobs = [], []
    fields = None
    # l_read_name repeats what the names' NULs say: not stored where they say it exactly
    lengths = name_lengths_array(np.asarray(names, dtype=np.uint8), len(core))
    derived = len(core) and lengths is not None and np.array_equal(lengths, core["l_read_name"])
    for col, arr in columns:
        ci = column_codecs.get(col.id, 0)
        c, lv = codecs[ci]
        flags = 0
        if col.id == L_READ_NAME_COLUMN and derived:
            entries.append(DIR_ENTRY.pack(col.id, ci, FLAG_DERIVED, 0, 0, len(arr)))
            blobs.append(b"")
            continue
        if col.itemsize > 1 and len(arr):
            raw, flags = shuffle(arr.tobytes(), col.itemsize), FLAG_SHUFFLED
        elif _own(c):
            raw = arr  # no copy
        else:
            raw = arr.tobytes()
        if col.id == TLEN_COLUMN:
            flags |= FLAG_PREDICTED
        try:
            if not len(raw):
                stored = b""
            elif flags & FLAG_SHUFFLED and c.encode is _zstd.encode:  # bams3's own zstd: by plane where smaller
                stored = _zstd.encode_planes(raw, lv, col.itemsize)
            elif c.record_aware:
                if fields is None:
                    fields = record_fields(core, cigar)
                stored = c.encode(raw, lv, records=fields)
            else:
                stored = c.encode(raw, lv)
        except Bams3Error:
            raise
        except Exception as exc:
            raise _codec_failed(c, f"encode column {col.name}", exc, origins) from exc
        entries.append(DIR_ENTRY.pack(col.id, ci, flags, zlib.crc32(stored), len(stored), len(raw)))
        blobs.append(stored)
    head = CHUNK_HEAD.pack(CHUNK_MAGIC, len(columns), len(core)) + b"".join(entries)
    count_nbytes = len(head) + sum(len(b) for b in blobs[:COUNT_COLUMNS])
    blob = head + b"".join(blobs)
    pos = core["pos"].astype(np.int64)
    slot_nbytes = 0
    if window_start is not None and slot_bp:
        slots, slot_nbytes = encode_slots(pos, span, window_start, slot_bp, n_slots, codec, level)
        blob += slots
    info = {
        "n_records": len(core),
        "min_pos": int(pos[0]),
        "max_pos": int(pos[-1]),
        "max_end": int((pos + span).max()),
        "nbytes": len(blob),
        "count_nbytes": count_nbytes,
        "raw_nbytes": batch.nbytes,
        "slot_nbytes": slot_nbytes,
        "head_crc": zlib.crc32(head),
    }
    return EncodedChunk(blob, info, cigar)


class ChunkReader:
    """Decodes (part of) one chunk object; verifies sizes and checksums of what it reads.

    Made from the object's first bytes (``blob``: at least its header and directory; the whole
    object, or a prefix) and, for columns fetched on their own, ``pieces``: {column id: its
    stored bytes}. Columns are asked for by name (``array("flag")``) or id."""

    def __init__(self, blob: bytes, codecs: list, where: str, max_raw: int = MAX_CHUNK_RAW_BYTES,
                 head_crc: int = -1, version: int = 2, pieces: Mapping[int, bytes] | None = None,
                 origins: Mapping[str, tuple[str, str]] | None = None):
        """``max_raw``: the chunk's recorded raw size; no column may claim to inflate beyond it.
        ``head_crc``: the chunk table's CRC32 of the header and column directory (v2), checked
        before any of it is used; -1: not recorded (v1). ``origins``: outside codecs' (plugin,
        package): their failures name them."""
        self.where = where
        self.origins = dict(origins or {})
        self.blob = blob
        self.codecs = codecs
        self.pieces = dict(pieces or {})
        self._fields = None
        self._positions = None
        self._raw: dict[int, bytes] = {}
        self._verified = False  # every checksum checked already (verify_checksums)
        if len(blob) < CHUNK_HEAD.size or blob[:8] != CHUNK_MAGIC:
            raise CorruptDatasetError(where, "not a bams3 chunk (bad magic); the dataset is corrupt")
        _, ncol, self.n_records = CHUNK_HEAD.unpack_from(blob, 0)
        end_dir = directory_nbytes(ncol)
        if ncol > 255 or len(blob) < end_dir:
            raise CorruptDatasetError(where, "truncated chunk directory; the dataset is corrupt")
        if head_crc >= 0 and zlib.crc32(blob[:end_dir]) != head_crc:
            raise CorruptDatasetError(where, "checksum mismatch in the chunk's directory; the dataset is corrupt")
        self.whole_slot_crc = version >= 2
        self.columns: dict[int, tuple[int, int, int, int, int, int]] = {}  # id: offset, stored, raw, crc, codec, flags
        o = end_dir
        for i in range(ncol):
            cid, codec_idx, flags, crc, stored, raw = DIR_ENTRY.unpack_from(blob, CHUNK_HEAD.size + i * DIR_ENTRY.size)
            if flags & ~KNOWN_FLAGS or codec_idx >= len(codecs) or (flags & FLAG_PREDICTED and cid != TLEN_COLUMN):
                raise DatasetError(f"{where}: column {cid} uses a feature this bams3 does not know; upgrade bams3")
            if flags & FLAG_DERIVED and (cid != L_READ_NAME_COLUMN or flags != FLAG_DERIVED or stored or crc):
                raise CorruptDatasetError(where, f"column {cid} is marked derived; the dataset is corrupt")
            if raw > max_raw:
                raise CorruptDatasetError(where, f"column {cid} claims {raw:,} bytes, more than the chunk's recorded "
                                          f"{max_raw:,}; the dataset is corrupt")
            if cid in self.columns:
                raise CorruptDatasetError(where, f"column {cid} appears twice in the chunk's directory; "
                                          "the dataset is corrupt")
            self.columns[cid] = (o, stored, raw, crc, codec_idx, flags)
            o += stored
        self.end = o  # where the columns end (count slots, if any, follow)

    def has(self, column: str | int) -> bool:
        """Whether this reader holds the column's bytes (in its blob, or fetched on their own)."""
        cid = column if isinstance(column, int) else BY_NAME[column].id
        if cid in self.pieces:
            return True
        entry = self.columns.get(cid)
        return entry is not None and entry[0] + entry[1] <= len(self.blob)

    def extent(self, column: str | int) -> tuple[int, int]:
        """The bytes [start, end) of a column's stored form in the chunk object."""
        o, stored = self._entry(column)[:2]
        return o, o + stored

    def verify_checksums(self, slot_nbytes: int = 0) -> None:
        """Check every column's checksum and every count slot's, decoding nothing: a whole
        chunk that was fetched is verified whole, even the parts a query does not use."""
        for cid, (o, stored, _raw, crc, _c, _f) in self.columns.items():
            if zlib.crc32(self.blob[o : o + stored]) != crc or o + stored > len(self.blob):
                raise CorruptDatasetError(self.where, f"checksum mismatch in column {cid}; the dataset is corrupt")
        tail = len(self.blob) - self.end
        if tail < 0 or (tail if not slot_nbytes else tail % slot_nbytes):
            raise CorruptDatasetError(self.where, "the chunk has the wrong size; the dataset is corrupt")
        if slot_nbytes and slot_nbytes < SLOT_HEAD.size:
            raise CorruptDatasetError(self.where, f"count slots of {slot_nbytes} bytes; the dataset is corrupt")
        for i, o in enumerate(range(self.end, len(self.blob), slot_nbytes or 1)):
            _, _, _, plen, crc = SLOT_HEAD.unpack_from(self.blob, o)
            if plen + SLOT_HEAD.size > slot_nbytes or not slot_crc_ok(self.blob, o, plen, crc, self.whole_slot_crc):
                raise CorruptDatasetError(self.where, f"checksum mismatch in count slot {i}; the dataset is corrupt")
        self._verified = True

    def verify_slots(self, layout: SlotLayout | None, codec, n_records: int) -> None:
        """Decode every count slot (as a count would), so a damaged one is found now."""
        if layout is None:
            return
        if layout.base != self.end or len(self.blob) - layout.base != layout.count * layout.size:
            raise CorruptDatasetError(self.where, "the chunk holds other count slots than its records need; "
                                      "the dataset is corrupt")
        decode_slots(self.blob[layout.base:], 0, layout.size, layout.start_of(0), layout.slot_bp, codec,
                     self.where, n_records, whole_crc=self.whole_slot_crc)

    def _entry(self, column: str | int) -> tuple[int, int, int, int, int, int]:
        cid = column if isinstance(column, int) else BY_NAME[column].id
        try:
            return self.columns[cid]
        except KeyError:
            raise CorruptDatasetError(self.where, f"column {cid} is missing; the dataset is corrupt") from None

    def raw(self, column: str | int) -> bytes:
        """A column's bytes, decoded and unshuffled: checked against its CRC32 and sizes (once:
        the qualities' codec reads the lengths, flags, positions and CIGARs the records read too)."""
        cid = column if isinstance(column, int) else BY_NAME[column].id
        out = self._raw.get(cid)
        if out is None:
            out = self._raw[cid] = self._decode(cid)
        return out

    def _decode(self, cid: int, keep: bytes | None = None) -> bytes:
        """Column ``cid`` decoded, checked; ``keep`` (a byte a record), for a codec of bams3's
        own that can (``decode.keeps``): only those records' bytes are decoded, the others'
        left 0 (not kept by raw())."""
        o, stored, raw, crc, codec_idx, flags = self._entry(cid)
        if flags & FLAG_DERIVED:  # l_read_name, from the names
            out = name_lengths_array(np.frombuffer(self.raw(READ_NAME_COLUMN), np.uint8), self.n_records)
            if out is None or len(out) != raw:
                raise CorruptDatasetError(self.where, "the read names do not give their lengths; the dataset is corrupt")
            return out.tobytes()
        data = self.pieces[cid] if cid in self.pieces else self.blob[o : o + stored]
        if len(data) != stored or not (self._verified and cid not in self.pieces) and zlib.crc32(data) != crc:
            raise CorruptDatasetError(self.where, f"checksum mismatch in column {cid}; the dataset is corrupt")
        if raw == 0:
            return b""
        codec = self.codecs[codec_idx]
        try:
            if keep is not None:
                out = codec.decode(data, raw, records=self._record_fields(), keep=keep)
            elif codec.record_aware:
                out = codec.decode(data, raw, records=self._record_fields(with_next_pos=cid == READ_NAME_COLUMN))
            else:
                out = codec.decode(data, raw)
        except DatasetError:
            raise
        except Exception as exc:
            if codec.name in self.origins:  # an outside codec: corrupt data, or a broken plugin
                err = _codec_failed(codec, f"decode column {cid} of {self.where}", exc, self.origins)
                raise PluginError(f"{err}; the dataset may be damaged (`bams3 verify`), or the plugin broken",
                                  plugin=err.plugin, package=err.package) from exc
            raise CorruptDatasetError(self.where, f"column {cid} does not decode ({exc}); "
                                      "the dataset is corrupt") from None
        if len(out) != raw:
            raise CorruptDatasetError(self.where, f"column {cid} decodes to the wrong size; the dataset is corrupt")
        if flags & FLAG_SHUFFLED:
            size = _ITEMSIZE.get(cid, 1)
            if raw % size:
                raise CorruptDatasetError(self.where, f"column {cid} has a partial value; the dataset is corrupt")
            out = unshuffle(out, size)
        return out

    def _part(self, cid: int, sub, keep) -> bytes:
        """A variable column for records(): only the kept records' bytes where ``sub`` (the
        records records() fills in) is a few of them and the column's codec can decode only
        those (a BED's intervals keep ~6% of each chunk's records); else raw()."""
        if isinstance(sub, slice) or cid in self._raw:
            return self.raw(cid)
        entry = self.columns.get(cid)
        codec = self.codecs[entry[4]] if entry is not None and entry[4] < len(self.codecs) else None
        if codec is None or entry[2] == 0 or entry[5] & (FLAG_DERIVED | FLAG_SHUFFLED) or not (
                codec.record_aware and _own(codec) and getattr(codec.decode, "keeps", False)):
            return self.raw(cid)
        return self._decode(cid, np.ascontiguousarray(keep, dtype=np.bool_).view(np.uint8))

    def _record_fields(self, with_next_pos: bool = False):
        """What a record-aware codec is told; ``with_next_pos``: next_pos too (for the codec of
        the read names, which is decoded after next_pos)."""
        from ..plugins import RecordFields

        if with_next_pos:
            fields = self._record_fields()
            next_pos = fields.pos + self.array("next_pos").astype(np.int64)  # (stored relative to pos)
            return attrs.evolve(fields, next_pos=next_pos)
        if self._fields is None:
            n_ops = self.array("n_cigar_op").astype(np.int64)
            raw = self.raw("cigar")
            if len(raw) != 4 * int(n_ops.sum()):
                raise CorruptDatasetError(self.where, "columns disagree on CIGAR sizes; the dataset is corrupt")
            cigar = np.frombuffer(raw, dtype="<u4")
            self._fields = RecordFields(
                l_seq=self.array("l_seq").astype(np.int64), flag=self.array("flag"),
                pos=self.pos(), n_cigar_op=n_ops, cigar=cigar)
        return self._fields

    def array(self, column: str | int | Column, dtype: str | None = None) -> np.ndarray:
        """A fixed column's values as stored (``pos`` as deltas, ``next_pos`` relative to ``pos``,
        ``tlen`` as predicted), one per record."""
        if isinstance(column, Column):
            column = column.id
        if dtype is None:
            dtype = BY_NAME[column].dtype if isinstance(column, str) else next(c.dtype for c in FIXED if c.id == column)
        raw = self.raw(column)
        if len(raw) % np.dtype(dtype).itemsize:
            raise CorruptDatasetError(self.where, f"column {column} has a partial value; the dataset is corrupt")
        a = np.frombuffer(raw, dtype=dtype)
        if len(a) != self.n_records:
            raise CorruptDatasetError(self.where, f"column {column} has the wrong length; the dataset is corrupt")
        return a

    def pos(self) -> np.ndarray:
        """Every record's 0-based position (int64)."""
        return self._pos32().astype(np.int64)

    def _pos32(self) -> np.ndarray:
        """The positions as BAM stores them (int32: the running sum of the deltas, modulo 2**32),
        summed once (a chunk's reading asked for them three or four times)."""
        if self._positions is None:
            self._positions = np.cumsum(self.array("pos"), dtype=np.int32)
        return self._positions

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(pos, span) of every record: all a count or a region filter needs."""
        return self.pos(), self.array("span").astype(np.int64)

    def records(self, skip: frozenset[str] = frozenset(), keep: np.ndarray | None = None) -> RecordBatch:
        """Every record of the chunk, reassembled byte for byte. ``skip``: variable columns left
        unread (``read_name``, ``cigar``, ``seq``, ``qual``, ``aux``), filled as SAM's defaults
        (htsget's ``fields``): the name ``*``, no CIGAR, no sequence (so no qualities), qualities
        ``*`` (0xFF) under a sequence, no tags. ``keep`` (a boolean mask): only those records
        are assembled. When it keeps fewer than half, the others' core fields are not filled in
        (but for the sizes that place every record), and bams3's own sequence and quality codecs
        write out only the kept records' bases and qualities (every column is still decoded and
        checked whole: its stream runs through every record)."""
        n = self.n_records
        core = np.zeros(n, dtype=CORE)
        pos = self._pos32()
        sub = slice(None)  # the records whose core is filled in
        if keep is not None and len(keep) == n and np.count_nonzero(keep) < n // 2:
            sub = np.flatnonzero(keep)  # (a BED's intervals keep a few records of each chunk)
        derived_skipped = "read_name" in skip and self.columns.get(L_READ_NAME_COLUMN, (0,) * 6)[5] & FLAG_DERIVED
        for col in FIXED[2:]:
            if col.id == L_READ_NAME_COLUMN and derived_skipped:  # (names unread: "*" each, below)
                core["l_read_name"] = 2
                continue
            a = self.array(col)
            if col.name == "next_pos":
                core["next_pos"][sub] = a[sub] + pos[sub]
            elif col.name in _LAYOUT_FIELDS:  # every record's: they place the records in the columns
                core[col.name] = a
            elif col.name != "l_aux":
                core[col.name][sub] = a[sub]
        core["pos"][sub] = pos[sub]
        if self.columns.get(TLEN_COLUMN, (0,) * 6)[5] & FLAG_PREDICTED:
            span = self.array("span")
            core["tlen"][sub] = wrap_i32(core["tlen"][sub].astype(np.int64) + tlen_prediction(
                pos[sub], core["next_pos"][sub], span[sub], core["refid"][sub], core["next_refid"][sub]))
        l_aux = self.array("l_aux").astype(np.int64)
        offsets, totals = layout(core, l_aux)  # name, CIGAR, sequence, quality and aux sizes as stored
        if totals is None:
            raise CorruptDatasetError(self.where, "columns disagree on record sizes; the dataset is corrupt")
        expect = dict(zip(("read_name", "cigar", "seq", "qual", "aux"), totals))
        fill: dict[str, np.ndarray] = {}
        if "read_name" in skip:
            core["l_read_name"] = 2
            fill["read_name"] = np.tile(np.frombuffer(b"*\0", dtype=np.uint8), n)
        if "cigar" in skip:
            core["n_cigar_op"] = 0
            fill["cigar"] = np.zeros(0, dtype=np.uint8)
        if "seq" in skip:
            core["l_seq"] = 0
            fill["seq"] = fill["qual"] = np.zeros(0, dtype=np.uint8)
        elif "qual" in skip:
            fill["qual"] = np.full(int(expect["qual"]), 0xFF, dtype=np.uint8)
        if "aux" in skip:
            l_aux = np.zeros(n, dtype=np.int64)
            fill["aux"] = np.zeros(0, dtype=np.uint8)
        cols = []
        for col in VARIABLE:
            if col.name in fill:
                cols.append(fill[col.name])
                continue
            c = np.frombuffer(self._part(col.id, sub, keep), dtype=np.uint8)
            if len(c) != expect[col.name]:
                raise CorruptDatasetError(self.where, "columns disagree on record sizes; the dataset is corrupt")
            cols.append(c)
        if skip:
            offsets, _ = layout(core, l_aux)
        return join(core, offsets, cols, keep)
