"""bams3 codec plugin ``qual``: base qualities with a per-cycle context model.

Base qualities are the column that dominates a dataset, and most of what is
predictable in them depends on the sequencing cycle (the position in the read
as sequenced: reversed for reverse-strand records, whose qualities BAM stores
reversed) and on whether the record is the first or second read of a pair.
This codec groups the qualities of a chunk by that context, stores the symbol
counts of each context, and codes each group with an asymmetric numeral
system (``constriction``'s ANS coder) under that context's exact distribution:
about the conditional entropy, with no per-read overhead.

Contexts come from other columns (``l_seq`` and ``flag``), which the reader
decodes first, so decoding never waits on its own output: it is a few hundred
vectorised calls per chunk. The codec is record-aware: the host passes
``records`` (a :class:`bams3.RecordFields`) to ``encode`` and ``decode``.

Payload (little-endian)::

    b"BQ", version u8 = 1, scheme u8 = 1 (context = min(cycle, 511) * 2 + read2)
    A u16, the A distinct quality bytes (ascending)
    K u16, the K context ids used (u16 each, ascending)
    T u32, T bytes of zstd: u32 counts, K rows of A
    the ANS words (u32), to the end
"""

from __future__ import annotations

import struct
import threading

import constriction
import numpy as np
import zstandard

import bams3

_MAGIC = b"BQ"
_VERSION = 1
_SCHEME = 1
_MAX_CYCLE = 511
_N_CTX = (_MAX_CYCLE + 1) * 2
_Categorical = constriction.stream.model.Categorical
_AnsCoder = constriction.stream.stack.AnsCoder
_local = threading.local()


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
    m = q.reshape(-1, length).copy()
    m[rev] = m[rev, ::-1]  # sequencing-cycle order
    n1 = int((~r2).sum())
    stacked = np.concatenate([m[~r2], m[r2]]) if n1 not in (0, len(m)) else m
    grouped = np.ascontiguousarray(stacked.T)  # row c: cycle c of every first read, then of every second
    for c in range(length):
        row = grouped[c]
        if n1:
            counts[2 * c] = np.bincount(row[:n1], minlength=256)
        if n1 < len(m):
            counts[2 * c + 1] = np.bincount(row[n1:], minlength=256)
    return grouped.ravel(), counts


def _ungroup(grouped: np.ndarray, layout) -> np.ndarray:
    length, rev, r2, ctx = layout
    if ctx is not None:
        order = np.argsort(ctx, kind="stable")
        out = np.empty_like(grouped)
        out[order] = grouped
        return out
    n = len(r2)
    n1 = int((~r2).sum())
    stacked = grouped.reshape(length, n).T
    m = np.empty((n, length), dtype=grouped.dtype)
    if n1 in (0, n):
        m[:] = stacked
    else:
        m[~r2] = stacked[:n1]
        m[r2] = stacked[n1:]
    m[rev] = m[rev, ::-1]
    return m.ravel()


def encode(data: bytes, level: int | None, *, records) -> bytes:
    q = np.frombuffer(data, dtype=np.uint8)
    layout = _contexts(records, len(q))
    grouped, counts256 = _grouped(q, layout)
    vals = np.flatnonzero(counts256.sum(axis=0)).astype(np.uint8)
    a = len(vals)
    lut = np.zeros(256, dtype=np.uint8)
    lut[vals] = np.arange(a, dtype=np.uint8)
    sym = lut[grouped]
    used = np.flatnonzero(counts256.sum(axis=1)).astype(np.uint16)
    table = counts256[used][:, vals].astype("<u4")
    coder = _AnsCoder()
    bounds = np.concatenate([[0], np.cumsum(table.sum(axis=1), dtype=np.int64)])
    sym32 = sym.astype(np.int32)
    if a > 1:
        for k in range(len(used) - 1, -1, -1):
            row = table[k].astype(np.float64)
            coder.encode_reverse(sym32[bounds[k] : bounds[k + 1]], _Categorical(row / row.sum(), perfect=False))
    words = coder.get_compressed().astype("<u4").tobytes() if a > 1 else b""
    tz = zstandard.ZstdCompressor(level=19).compress(table.tobytes())
    head = _MAGIC + struct.pack("<BBH", _VERSION, _SCHEME, a) + vals.tobytes()
    head += struct.pack("<H", len(used)) + used.astype("<u2").tobytes() + struct.pack("<I", len(tz)) + tz
    return head + words


def decode(data: bytes, raw_size: int, *, records) -> bytes:
    if data[:2] != _MAGIC or len(data) < 6:
        raise ValueError("not a qual-codec payload")
    version, scheme, a = struct.unpack_from("<BBH", data, 2)
    if version != _VERSION or scheme != _SCHEME:
        raise ValueError(f"qual codec payload version {version}/{scheme} is not supported; upgrade bams3")
    o = 6
    if not 1 <= a <= 256:
        raise ValueError("bad alphabet size")
    vals = np.frombuffer(data, dtype=np.uint8, count=a, offset=o)
    o += a
    (k,) = struct.unpack_from("<H", data, o)
    o += 2
    used = np.frombuffer(data, dtype="<u2", count=k, offset=o).astype(np.int64)
    o += 2 * k
    (tlen,) = struct.unpack_from("<I", data, o)
    o += 4
    if (len(used) and used.max() >= _N_CTX) or o + tlen > len(data):
        raise ValueError("bad context table")
    want = k * a * 4
    raw_table = zstandard.ZstdDecompressor().decompress(data[o : o + tlen], max_output_size=max(want, 1))
    if len(raw_table) != want:
        raise ValueError("context table has the wrong size")
    table = np.frombuffer(raw_table, dtype="<u4").reshape(k, a).astype(np.int64)
    o += tlen
    layout = _contexts(records, raw_size)
    # The contexts the records imply must be exactly the table's.
    if layout[3] is None:
        length, _rev, r2, _ = layout
        n2 = int(r2.sum())
        n1 = len(r2) - n2
        expect = np.zeros(_N_CTX, dtype=np.int64)
        expect[0 : 2 * length : 2] = n1
        expect[1 : 2 * length : 2] = n2
    else:
        expect = np.bincount(layout[3].astype(np.int64), minlength=_N_CTX)
    got = np.zeros(_N_CTX, dtype=np.int64)
    got[used] = table.sum(axis=1)
    if not np.array_equal(expect, got):
        raise ValueError("context counts do not match the records")
    bounds = np.concatenate([[0], np.cumsum(table.sum(axis=1))])
    if a == 1:
        sym = np.zeros(raw_size, dtype=np.int64)
    else:
        words = np.frombuffer(data, dtype="<u4", offset=o, count=(len(data) - o) // 4).astype(np.uint32)
        coder = _AnsCoder(words)
        sym = np.empty(raw_size, dtype=np.int32)
        for i in range(k):
            n = int(bounds[i + 1] - bounds[i])
            if n:
                row = table[i].astype(np.float64)
                sym[bounds[i] : bounds[i + 1]] = coder.decode(_Categorical(row / row.sum(), perfect=False), n)
    if len(sym) and (sym.min() < 0 or sym.max() >= a):
        raise ValueError("decoded symbol out of range")
    grouped = vals[sym]
    return _ungroup(grouped, layout).tobytes()


@bams3.hookimpl
def bams3_register_codecs(register):
    register(bams3.Codec(name="qual", encode=encode, decode=decode, record_aware=True,
                         description="base qualities: per-cycle, per-read context model with ANS (constriction)"))
