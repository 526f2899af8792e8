"""The chunk table: one row per chunk object (docs/format.md, "The chunk table"), its
encodings, its validation, and region planning over it: which chunks a selection needs."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
import zstandard

from ..layout import (
    CHUNK_FIELDS,
    CHUNK_HEAD,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_RAW_BYTES,
    MAX_OBJECT,
    OBJECT_FIELD,
    OPTIONAL_CHUNK_FIELDS,
    SLOT_HEAD,
    TABLE_DELTAS,
    TABLE_ENCODING,
    TABLE_PLAIN,
)
from .version import FORMAT_VERSION

if TYPE_CHECKING:
    from ..region import Region


def _distinct(a: np.ndarray) -> np.ndarray:
    """``np.unique(a)``: its distinct values, ascending. (np.unique imports numpy.ma, 12-16 ms
    of CPU, in the process of every query of more than one interval.)"""
    s = np.sort(a)
    return s[np.concatenate(([True], s[1:] != s[:-1]))] if len(s) else s


@attrs.frozen(eq=False)
class ChunkTable:
    """Per-chunk columns (numpy int64 arrays named as CHUNK_FIELDS)."""

    columns: dict[str, np.ndarray]
    # the placed chunks come first (validated: by reference, then the unplaced, -1)
    _n_placed: int = attrs.field(init=False, repr=False, default=attrs.Factory(
        lambda self: int(np.count_nonzero(self.columns["ref_id"] >= 0)), takes_self=True))

    def __len__(self) -> int:
        return len(self.columns["ref_id"])

    def __getattr__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise AttributeError(name) from None

    def object_of(self, index: int) -> int:
        """The number of chunk ``index``'s object under the data prefix (:func:`chunk_key`)."""
        objects = self.columns.get(OBJECT_FIELD)
        return index if objects is None else int(objects[index])

    def row(self, index: int) -> _Row:
        """One chunk's fields (``row["nbytes"]``), as ints, read when asked for."""
        return _Row(self.columns, index)

    # ---------------------------------------------------------------- region planning
    def ref_span(self, tid: int) -> tuple[int, int]:
        """The chunk indexes [lo, hi) of reference ``tid`` (chunks are in reference order)."""
        placed = self.columns["ref_id"][: self._n_placed]
        return int(np.searchsorted(placed, tid, "left")), int(np.searchsorted(placed, tid, "right"))

    def candidates(self, tid: int, beg: int, end: int) -> np.ndarray:
        """The chunks that may hold records overlapping [beg, end) of reference ``tid``
        (``tid`` -1: the unplaced records' chunks)."""
        if tid < 0:
            return np.flatnonzero(self.columns["ref_id"] == -1)
        lo, hi = self.ref_span(tid)
        sub = slice(lo, hi)
        return lo + np.flatnonzero((self.columns["min_pos"][sub] < end) & (self.columns["max_end"][sub] > beg))

    def covers(self, index: int, ivs) -> bool:
        """Every record of the chunk starts inside one of the intervals (so all of them overlap it)."""
        lo, hi = int(self.columns["min_pos"][index]), int(self.columns["max_pos"][index])
        return any(lo >= b and hi < e for b, e in ivs)

    def whole(self, index: int, ivs, filt) -> bool:
        """Every record of the chunk is selected by the plan item (intervals and filter intervals)."""
        return (self.columns["ref_id"][index] < 0 and filt is None) or self.covers(index, ivs) and (
            filt is None or self.covers(index, filt))

    def plan(self, sel: Selection) -> list[tuple[int, tuple, tuple | None]]:
        """(chunk index, intervals, filter intervals or None) in output order: a record of the
        chunk is output when it overlaps one of the intervals and (with a filter) one of the filter's."""
        plan: list = []
        if sel.multi:
            merged = merge_intervals([(r.tid, r.beg, r.end) for r in sel.regions]) if sel.regions else None
            if sel.bed is not None:
                bed = merge_intervals([(r.tid, r.beg, r.end) for r in sel.bed if r.tid >= 0])
                merged = bed if merged is None else intersect_intervals(merged, bed)
            for tid in sorted(merged, key=lambda t: (t < 0, t)):
                ivs = tuple(merged[tid])
                idx = _distinct(np.concatenate([self.candidates(tid, b, e) for b, e in ivs]))
                if tid < 0 or len(ivs) == 1:
                    plan += [(int(i), ivs, None) for i in idx]
                    continue
                # each chunk with the intervals that reach [min_pos, max_end), where its records
                # lie (merged intervals are disjoint, so their ends rise with their starts): a
                # chunk of a BED's thousand targets is given its dozen, not the thousand
                iv = np.asarray(ivs, dtype=np.int64)
                first = np.searchsorted(iv[:, 1], self.columns["min_pos"][idx], "right")
                last = np.searchsorted(iv[:, 0], self.columns["max_end"][idx], "left")
                plan += [(int(i), ivs[a:b], None) for i, a, b in zip(idx.tolist(), first.tolist(), last.tolist())]
            return plan
        bed = merge_intervals([(r.tid, r.beg, r.end) for r in sel.bed if r.tid >= 0]) if sel.bed is not None else None
        for r in sel.regions:
            filt = None
            if bed is not None:
                filt = tuple(bed.get(r.tid, ()))
                if not filt:
                    continue
            plan += [(int(i), ((r.beg, r.end),), filt) for i in self.candidates(r.tid, r.beg, r.end)]
        return plan

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
            ((nb < CHUNK_HEAD.size) | (nb > MAX_CHUNK_BYTES), "a chunk's size is out of range"),
            ((cnb < CHUNK_HEAD.size) | (cnb > nb), "a chunk's count prefix is out of range"),
            ((snb < 0) | (snb > nb) | (snb > 0) & ((n_slots == 0) | (snb < SLOT_HEAD.size)), "a chunk's count slots are out of range"),
            ((c["head_crc"] < (0 if version >= 2 else -1)) | (c["head_crc"] >= 1 << 32),
             "a chunk's directory checksum is out of range"),
            (placed & ((c["min_pos"] < -1) | (c["min_pos"] > c["max_pos"]) | (c["max_pos"] >= 1 << 31)
                       | (c["max_end"] < c["max_pos"]) | (c["max_end"] > 1 << 32)),
             "a chunk's positions are out of order or range"),
        ]
        objects = c.get(OBJECT_FIELD)
        if objects is not None:
            if version < 3:
                raise ValueError("chunk object numbers need format version 3")
            checks.append(((objects < 0) | (objects >= MAX_OBJECT), "a chunk's object number is out of range"))
            if len(_distinct(objects)) != len(objects):
                raise ValueError("two chunks name one object")
        for bad, what in checks:
            if bad.any():
                raise ValueError(f"{what} (chunk {int(np.flatnonzero(bad)[0])})")
        order = np.where(ref < 0, n_refs, ref)  # readers find a reference's chunks by bisection
        if (np.diff(order) < 0).any():
            raise ValueError("chunks are out of reference order")

    @classmethod
    def from_rows(cls, rows: list[dict[str, int]]) -> ChunkTable:
        """The table of rows in order; rows that carry an ``object`` number keep it, unless every
        chunk's number is its place in the table."""
        fields = CHUNK_FIELDS + ((OBJECT_FIELD,) if rows and OBJECT_FIELD in rows[0] else ())
        columns = {f: np.array([r[f] for r in rows], dtype=np.int64) for f in fields}
        if OBJECT_FIELD in columns and np.array_equal(columns[OBJECT_FIELD], np.arange(len(rows))):
            del columns[OBJECT_FIELD]
        return cls(columns)

    # the encodings: bams3.layout, TABLE_ENCODING
    _ENCODING, _PLAIN, _DELTAS = TABLE_ENCODING, TABLE_PLAIN, TABLE_DELTAS

    def to_json(self) -> dict[str, Any]:
        obj, frame = self.encode()
        return {**obj, "data": base64.b64encode(frame).decode()}

    def encode(self) -> tuple[dict[str, Any], bytes]:
        """The table's description and its binary form (a zstd frame)."""
        n = len(self)
        parts = []
        fields = CHUNK_FIELDS + ((OBJECT_FIELD,) if OBJECT_FIELD in self.columns else ())
        for f in fields:
            v = self.columns[f].astype(np.int64)
            if f in self._DELTAS:
                base = self._DELTAS[f]
                v = np.diff(v, prepend=0) if base is None else v - self.columns[base]
            parts.append(np.ascontiguousarray(v, dtype="<i8").view(np.uint8).reshape(n, 8).T.tobytes())
        frame = zstandard.ZstdCompressor(level=19).compress(b"".join(parts))
        return {"count": n, "fields": list(fields), "encoding": self._ENCODING}, frame

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
            for f in cls._DELTAS:  # in dependency order
                if f in fields:
                    i = fields.index(f)
                    base = cls._DELTAS[f]
                    mat[i] = np.cumsum(mat[i]) if base is None else mat[i] + mat[fields.index(base)]
        columns = {f: mat[fields.index(f)].astype(np.int64) if f in fields
                   else np.full(n, OPTIONAL_CHUNK_FIELDS[f], dtype=np.int64) for f in CHUNK_FIELDS}
        if OBJECT_FIELD in fields:
            columns[OBJECT_FIELD] = mat[fields.index(OBJECT_FIELD)].astype(np.int64)
        return cls(columns)


class _Row:
    """One row of the chunk table, a mapping of field names to ints."""

    __slots__ = ("_columns", "_index")

    def __init__(self, columns: dict[str, np.ndarray], index: int):
        self._columns, self._index = columns, index

    def __getitem__(self, field: str) -> int:
        return int(self._columns[field][self._index])

    def keys(self):
        return self._columns.keys()

    def __iter__(self):
        return iter(self._columns)


@attrs.frozen
class Selection:
    """What a query selects: regions in order, BED intervals (``-L``; None: no BED) and ``-M``
    (see :meth:`bams3.dataset.Dataset.count`)."""

    regions: tuple[Region, ...] = ()
    bed: tuple[Region, ...] | None = None
    multi: bool = False


def merge_intervals(items) -> dict[int, list[tuple[int, int]]]:
    """Per reference, the union of (tid, beg, end) intervals as sorted, disjoint intervals.
    Intervals that touch are merged (samtools merges adjacent BED intervals too)."""
    by_tid: dict[int, list[tuple[int, int]]] = {}
    for tid, b, e in items:
        by_tid.setdefault(tid, []).append((b, e))
    for tid, ivs in by_tid.items():
        ivs.sort()
        merged = [list(ivs[0])]
        for b, e in ivs[1:]:
            if b <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([b, e])
        by_tid[tid] = [(b, e) for b, e in merged]
    return by_tid


def intersect_intervals(a: dict, b: dict) -> dict[int, list[tuple[int, int]]]:
    """Per reference, the intersection of two sets of sorted, disjoint intervals."""
    out = {}
    for tid in a.keys() & b.keys():
        x, y, i, j, res = a[tid], b[tid], 0, 0, []
        while i < len(x) and j < len(y):
            lo, hi = max(x[i][0], y[j][0]), min(x[i][1], y[j][1])
            if lo < hi:
                res.append((lo, hi))
            if x[i][1] < y[j][1]:
                i += 1
            else:
                j += 1
        if res:
            out[tid] = res
    return out
