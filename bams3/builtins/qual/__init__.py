"""bams3 codec plugin ``qual``: base qualities with a per-cycle or previous-quality context model.

Base qualities are the column that dominates a dataset, and most of what is
predictable in them depends on the sequencing cycle (the position in the read
as sequenced: reversed for reverse-strand records, whose qualities BAM stores
reversed) and on whether the record is the first or second read of a pair.
This codec groups the qualities of a chunk by that context, stores each
context's symbol frequencies, and codes each group with an asymmetric numeral
system (static rANS, 32 interleaved states with 16-bit renormalisation, in
``_rans.c``, releasing the GIL: decoded with AVX2 and encoded 32 states at a time with
AVX-512 where the CPU has them, to the same bytes as the scalar loops) under that context's distribution: within
about 1% of the conditional entropy, with no per-read overhead, decoding at
several hundred MB/s per thread.

Contexts come from other columns (``l_seq`` and ``flag``), which the reader
decodes first, so decoding never waits on its own output: it is one loop in C
per chunk. The codec is record-aware: the host passes
``records`` (a :class:`bams3.RecordFields`) to ``encode`` and ``decode``.

Payload (little-endian)::

    b"BQ", version u8 = 1, scheme u8 (1, 2: context = min(cycle, 511) * 2 + read2; 3: below)
    A u16, the A distinct quality bytes (ascending)
    K u16, the K context ids used (u16 each, ascending)
    T u32, T bytes of zstd: u16 frequencies, K rows of A, each row summing to 4096
    the rANS stream, to the end; symbol i (schemes 1, 2: of the qualities grouped by context;
    scheme 3: in read order, below) uses state i % S:
      scheme 1: S = 4 u32 states in [2^23, 2^31), then bytes (byte-wise renormalisation)
      schemes 2, 3: S = 32 u32 states in [2^16, 2^32), then u16 words (one at most per symbol)

Scheme 2 is written (its decoder takes a step with no loop or branch, and 32 states are four
AVX2 registers), or scheme 3 where it codes the chunk at least 3% smaller (judged on its first
records, up to 2^17 qualities but at least one record); scheme 1, which bams3 wrote before scheme 2, is still read.

Scheme 3 (``_qctx.c``) has the same header, but its contexts are
``(p * 32 + min(cycle // 16, 31)) * 2 + read2``, p the symbol of the quality before in the read
(A at its first cycle): real instruments' qualities follow the one before them more than the
cycle. Its symbols are in read order, four records at a time cycle by cycle (see ``_qctx.c``),
32 states as scheme 2, and it is decoded by one scalar loop (A <= 64; at most 1,024 contexts).
"""

from __future__ import annotations

import struct

import numpy as np

from bams3.plugin_api import Codec, hookimpl

from .. import _qctx, _rans
from .._decode import (
    QUAL_MAGIC,
    QUAL_MAX_A3,
    QUAL_MAX_CYCLE,
    QUAL_MAX_ROWS3,
    QUAL_N_CTX,
    QUAL_N_CTX3,
    QUAL_VERSION,
)
from .._decode import qual as decode
from ..zstd import _compressor

_MAGIC, _VERSION = QUAL_MAGIC, QUAL_VERSION
_SCHEME = 2  # written, or 3 where it codes a chunk smaller; 1, 2 and 3 are read
_N_CTX3, _MAX_ROWS3, _MAX_A3 = QUAL_N_CTX3, QUAL_MAX_ROWS3, QUAL_MAX_A3  # scheme 3's limits (bams3/builtins/_decode.py)
_SAMPLE = 1 << 17  # qualities the choice of scheme looks at
_MARGIN = 0.97  # scheme 3 decodes in one scalar loop: it must save 3% to be chosen
_MAX_CYCLE, _N_CTX = QUAL_MAX_CYCLE, QUAL_N_CTX
_M = 4096  # frequencies per context sum to this (12 bits)


def _contexts(records, n: int):
    """Per record layout and the context of every quality, in stored order.

    Returns (fixed_length or None, rev mask, read2 mask, ctx array or None).
    ``ctx`` is only built for the general (variable-length) path.
    """
    l_seq = np.asarray(records.l_seq, dtype=np.int64)
    flag = np.asarray(records.flag, dtype=np.uint16)
    if len(l_seq) != len(flag) or (len(l_seq) and l_seq.min() < 0) or int(l_seq.sum()) != n:
        raise ValueError("record lengths do not match the quality column")
    rev = (flag & 16) != 0
    r2 = ((flag >> 7) & 1).astype(np.int64)
    if len(l_seq) and l_seq.min() == l_seq.max() and l_seq[0] <= _MAX_CYCLE + 1:
        return int(l_seq[0]), rev, r2.astype(bool), None
    starts = np.zeros(len(l_seq) + 1, dtype=np.int64)
    np.cumsum(l_seq, out=starts[1:])
    idx = np.arange(n, dtype=np.int64) - np.repeat(starts[:-1], l_seq)
    cyc = np.where(np.repeat(rev, l_seq), np.repeat(l_seq, l_seq) - 1 - idx, idx)
    ctx = (np.minimum(cyc, _MAX_CYCLE) * 2 + np.repeat(r2, l_seq)).astype(np.uint16)
    return None, rev, r2.astype(bool), ctx


def _grouped(q: np.ndarray, layout) -> tuple[np.ndarray, np.ndarray]:
    """Qualities reordered so that each context's are contiguous (ascending context; stable:
    within a context, stored order), and the count of every byte value in every context
    (shape: contexts x 256)."""
    length, rev, r2, ctx = layout
    counts = np.zeros((_N_CTX, 256), dtype=np.int64)
    if ctx is not None:
        order = np.argsort(ctx, kind="stable")
        counts.ravel()[:] = np.bincount(ctx.astype(np.int64) * 256 + q, minlength=_N_CTX * 256)
        return q[order], counts
    # in C: row c holds cycle c (sequencing order) of every first read, then of every second
    grouped, rows = _rans.group_fixed(q, length, np.ascontiguousarray(rev, dtype=np.uint8),
                                      np.ascontiguousarray(r2, dtype=np.uint8))
    counts[: 2 * length] = np.frombuffer(rows, dtype=np.int64).reshape(2 * length, 256)
    return np.frombuffer(grouped, dtype=np.uint8), counts


def _normalise(counts: np.ndarray) -> np.ndarray:
    """Counts (K x A) -> frequencies summing to 4096 per row, >= 1 wherever a count is."""
    tot = counts.sum(axis=1, keepdims=True)
    f = (counts * _M) // tot
    f[(counts > 0) & (f == 0)] = 1
    # each row's largest frequency takes up the difference (in one step, for all rows at once,
    # where it can: where it cannot give enough, the loop below takes from the next largest too)
    diff = _M - f.sum(axis=1)
    j = np.argmax(f, axis=1)
    rows = np.arange(len(f))
    one = (diff > 0) | (f[rows, j] - 1 >= -diff)
    f[rows[one], j[one]] += diff[one]
    for r in np.flatnonzero(f.sum(axis=1) != _M):
        row = f[r]
        diff = _M - int(row.sum())
        while diff:
            j = int(np.argmax(row))
            step = diff if diff > 0 else -min(-diff, int(row[j]) - 1)
            row[j] += step
            diff -= step
    return f.astype("<u2")


def _bits(counts: np.ndarray) -> float:
    """Bytes the counts (contexts x symbols) take coded by their own frequencies (the entropy)."""
    n = counts.sum(axis=1, keepdims=True)
    nz = counts > 0
    return float((counts[nz] * np.log2((np.broadcast_to(n, counts.shape))[nz] / counts[nz])).sum()) / 8


def _table(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, bytes]:
    """The contexts used (ids), their frequencies and the table as stored (zstd)."""
    used = np.flatnonzero(counts.sum(axis=1))
    freqs = _normalise(counts[used])
    return used, freqs, _compressor(12).compress(freqs.tobytes())  # 19: 0.4% smaller, 2.4x the time


def _fields(records):
    return (np.ascontiguousarray(records.l_seq, dtype=np.int64), np.ascontiguousarray(records.flag, dtype=np.uint16))


def _lut(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct values of ``q`` (ascending) and the table from a value to its symbol."""
    vals = np.flatnonzero(np.frombuffer(_qctx.histogram(q), np.int64)).astype(np.uint8)
    lut = np.zeros(256, dtype=np.uint8)
    lut[vals] = np.arange(len(vals), dtype=np.uint8)
    return vals, lut


def _choose(q: np.ndarray, records) -> bool:
    """Whether scheme 3 codes these qualities smaller than scheme 2 (by _MARGIN), judged on the
    first records (at most _SAMPLE qualities, at least one record): each scheme's entropy there,
    scaled to the chunk, plus an estimate of its table."""
    l_seq, flag = _fields(records)
    if not len(q) or not len(l_seq):
        return False
    ends = np.cumsum(l_seq)
    m = int(ends[max(int(np.searchsorted(ends, _SAMPLE, side="right")) - 1, 0)])
    vals, lut = _lut(q[:m])
    a = len(vals)
    if a > _MAX_A3 or not m:  # (not qualities an instrument writes: the tables would be large)
        return False
    c3, c2, counted = _qctx.counts(q, l_seq, flag, lut.tobytes(), a, _SAMPLE)
    c3 = np.frombuffer(c3, np.int64).reshape(-1, a)
    c2 = np.frombuffer(c2, np.int64).reshape(-1, a)
    if counted != m or np.count_nonzero(c3.sum(axis=1)) > _MAX_ROWS3 // 2:
        return False
    scale = len(q) / m
    # a table as stored takes 1.1-1.7 bytes a frequency that is not 0 (zstd of u16 rows)
    cost3 = _bits(c3) * scale + 1.5 * np.count_nonzero(c3)
    cost2 = _bits(c2) * scale + 1.5 * np.count_nonzero(c2)
    return cost3 < _MARGIN * cost2


def _encode3(q: np.ndarray, records) -> bytes | None:
    """Scheme 3's payload (None: it would use more contexts, or values, than a reader takes)."""
    vals, lut = _lut(q)
    a = len(vals)
    if not a or a > _MAX_A3:
        return None
    l_seq, flag = _fields(records)
    c3, _, _ = _qctx.counts(q, l_seq, flag, lut.tobytes(), a, len(q))
    used, freqs, tz = _table(np.frombuffer(c3, np.int64).reshape(-1, a))
    if len(used) > _MAX_ROWS3:
        return None
    rows = np.full((a + 1) * _N_CTX3, -1, dtype=np.int32)
    rows[used] = np.arange(len(used), dtype=np.int32)
    stream = _qctx.encode(q, l_seq, flag, lut.tobytes(), freqs.tobytes(), rows.tobytes(), a)
    head = _MAGIC + struct.pack("<BBH", _VERSION, 3, a) + vals.tobytes()
    head += struct.pack("<H", len(used)) + used.astype("<u2").tobytes() + struct.pack("<I", len(tz)) + tz
    return head + stream


def encode(data: bytes, level: int | None, *, records, scheme: int | None = None) -> bytes:
    """Scheme 2, or 3 where it is smaller (``scheme`` forces one: 1, 2 or 3)."""
    q = np.frombuffer(data, dtype=np.uint8)
    if scheme == 3 or scheme is None and _choose(q, records):
        out = _encode3(q, records)
        if out is not None:
            return out
    if scheme in (None, 3):
        scheme = _SCHEME
    layout = _contexts(records, len(q))
    grouped, counts256 = _grouped(q, layout)
    vals = np.flatnonzero(counts256.sum(axis=0)).astype(np.uint8)
    a = len(vals)
    lut = np.zeros(256, dtype=np.uint8)
    lut[vals] = np.arange(a, dtype=np.uint8)  # the encoder maps each value to its symbol
    used = np.flatnonzero(counts256.sum(axis=1)).astype(np.uint16)
    counts = counts256[used][:, vals]
    freqs = _normalise(counts)
    bounds = np.zeros(len(used) + 1, dtype="<i8")
    np.cumsum(counts.sum(axis=1), out=bounds[1:])
    stream = _rans.encode(grouped, bounds.tobytes(), freqs.tobytes(), a, scheme, lut.tobytes())
    tz = _compressor(12).compress(freqs.tobytes())
    head = _MAGIC + struct.pack("<BBH", _VERSION, scheme, a) + vals.tobytes()
    head += struct.pack("<H", len(used)) + used.astype("<u2").tobytes() + struct.pack("<I", len(tz)) + tz
    return head + stream


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="qual", encode=encode, decode=decode, record_aware=True, column="qual",
                         description="base qualities: per-cycle, per-read context model, rANS"))
