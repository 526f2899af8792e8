"""The columns of a chunk: ids, names and types in storage order, and the transforms applied
to them before coding (docs/format.md, "Columns")."""

from __future__ import annotations

import attrs
import numpy as np

from .. import _kernels
from ..layout import FLAG_PREDICTED, FLAG_SHUFFLED, KNOWN_FLAGS, POS_COLUMN, SPAN_COLUMN, TLEN_COLUMN  # noqa: F401


@attrs.frozen
class Column:
    """A column of a chunk: its id in the column directory, its name, and its numpy type
    (None: variable-length bytes, one record's after another)."""

    id: int
    name: str
    dtype: str | None = None

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize if self.dtype else 1


# In the order they are stored. pos and span come first so that a count reads one short
# prefix of an edge chunk.
FIXED: tuple[Column, ...] = (
    Column(POS_COLUMN, "pos", "<i4"),  # delta-coded: first value, then differences (mod 2**32)
    Column(SPAN_COLUMN, "span", "<i4"),  # bam_endpos - pos, derived, for region overlap only
    Column(2, "refid", "<i4"),
    Column(3, "flag", "<u2"),
    Column(4, "mapq", "u1"),
    Column(5, "bin", "<u2"),
    Column(6, "l_read_name", "u1"),
    Column(7, "n_cigar_op", "<u2"),
    Column(8, "l_seq", "<i4"),
    Column(9, "next_refid", "<i4"),
    Column(10, "next_pos", "<i4"),  # stored as next_pos - pos (mod 2**32)
    Column(TLEN_COLUMN, "tlen", "<i4"),  # with FLAG_PREDICTED: stored as tlen - tlen_prediction() (mod 2**32)
    Column(12, "l_aux", "<u4"),
)
VARIABLE: tuple[Column, ...] = (
    Column(13, "read_name"), Column(14, "cigar"), Column(15, "seq"), Column(16, "qual"), Column(17, "aux"),
)
ALL: tuple[Column, ...] = FIXED + VARIABLE
BY_NAME: dict[str, Column] = {c.name: c for c in ALL}
BY_ID: dict[int, Column] = {c.id: c for c in ALL}
COUNT_COLUMNS = 2  # pos and span: the prefix a count reads

# the old tuple forms, for code written against them
FIXED_COLUMNS: tuple[tuple[int, str, str], ...] = tuple((c.id, c.name, c.dtype) for c in FIXED)
VAR_COLUMNS: tuple[tuple[int, str], ...] = tuple((c.id, c.name) for c in VARIABLE)
SEQ_COLUMN = BY_NAME["seq"].id
QUAL_COLUMN = BY_NAME["qual"].id



def tlen_prediction(pos, next_pos, span, refid, next_refid) -> np.ndarray:
    """TLEN as the mate's position predicts it: ``next_pos - pos + span`` when the mate
    is to the right (exact when the mate spans as much as this read), ``next_pos - pos - span``
    when it is to the left (exact when this read ends last), 0 otherwise."""
    pos, next_pos, span = (np.asarray(x, dtype=np.int64) for x in (pos, next_pos, span))
    d = next_pos - pos
    pred = np.where(d > 0, d + span, np.where(d < 0, d - span, 0))
    return np.where((np.asarray(refid) == np.asarray(next_refid)) & (np.asarray(refid) >= 0), pred, 0)


def wrap_i32(x: np.ndarray) -> np.ndarray:
    """int64 values as int32, modulo 2**32."""
    return ((x.astype(np.int64) + (1 << 31)) % (1 << 32) - (1 << 31)).astype("<i4")


def shuffle(raw: bytes, itemsize: int) -> bytes:
    """Bytes grouped by significance: every value's first byte, then every second byte, ...
    (in C: numpy's transposed copy took ~0.13 ms a column of a chunk, 11 columns a chunk)."""
    return _kernels.shuffle(raw, itemsize)


def unshuffle(raw: bytes, itemsize: int) -> bytes:
    return _kernels.unshuffle(raw, itemsize)


def stored_fixed(core: np.ndarray, span: np.ndarray, l_aux: np.ndarray) -> list[tuple[Column, np.ndarray]]:
    """The fixed columns as stored (before shuffling and coding), from the records' BAM core
    fields, their reference spans and aux lengths."""
    pos = core["pos"].astype("<i4")
    out = []
    for col in FIXED:
        if col.name == "pos":
            a = np.diff(pos, prepend=np.int32(0))
        elif col.name == "span":
            a = span.astype("<i4")
        elif col.name == "next_pos":
            a = core["next_pos"].astype("<i4") - pos
        elif col.name == "tlen":
            a = wrap_i32(core["tlen"].astype(np.int64) - tlen_prediction(
                pos, core["next_pos"], span, core["refid"], core["next_refid"]))
        elif col.name == "l_aux":
            a = l_aux.astype("<u4")
        else:
            a = core[col.name]
        out.append((col, np.ascontiguousarray(a, dtype=col.dtype)))
    return out
