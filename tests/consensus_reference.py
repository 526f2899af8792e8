"""The consensus codec as first written, in numpy (commit 05994ae replaced it with C): the
reference that ``bams3/builtins/_consensus.c`` must match byte for byte (tests/test_consensus.py).
The payload is described in ``bams3/builtins/consensus.py`` and docs/format.md §6.4."""

from __future__ import annotations

import struct

import numpy as np
import zstandard

_MAGIC = b"BS"
_VERSION = 1
_ACGT = np.array([1, 2, 4, 8], dtype=np.uint8)  # BAM's 4-bit codes of A, C, G, T
_CODE_TO_IDX = np.full(16, 255, dtype=np.uint8)
_CODE_TO_IDX[_ACGT] = np.arange(4, dtype=np.uint8)
_QCONS = np.zeros(16, dtype=np.int64)
_QCONS[[0, 1, 4, 7, 8]] = 1  # M I S = X
_RCONS = np.zeros(16, dtype=np.int64)
_RCONS[[0, 2, 3, 7, 8]] = 1  # M D N = X
_ALIGNED = np.zeros(16, dtype=bool)
_ALIGNED[[0, 7, 8]] = True


def _unpack(data: bytes, l_seq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-base codes (uint8) and the pad nibbles of odd-length records."""
    packed = np.frombuffer(data, dtype=np.uint8)
    both = np.empty(len(packed) * 2, dtype=np.uint8)
    both[0::2] = packed >> 4
    both[1::2] = packed & 15
    nbytes = (l_seq + 1) // 2
    odd = (l_seq & 1) == 1
    if not odd.any():
        return both, np.zeros(0, dtype=np.uint8)
    ends = np.cumsum(nbytes) * 2 - 1  # index of each record's last nibble
    pad_at = ends[odd]
    keep = np.ones(len(both), dtype=bool)
    keep[pad_at] = False
    return both[keep], both[pad_at]


def _pack(codes: np.ndarray, l_seq: np.ndarray, pads: np.ndarray) -> bytes:
    nbytes = (l_seq + 1) // 2
    odd = (l_seq & 1) == 1
    both = np.zeros(int(nbytes.sum()) * 2, dtype=np.uint8)
    if odd.any():
        ends = np.cumsum(nbytes) * 2 - 1
        keep = np.ones(len(both), dtype=bool)
        keep[ends[odd]] = False
        both[keep] = codes
        both[ends[odd]] = pads
    else:
        both[:] = codes
    return ((both[0::2] << 4) | both[1::2]).astype(np.uint8).tobytes()


def _reference_positions(records, n_bases: int) -> np.ndarray:
    """The reference position of every base (int32), -1 where the base is not aligned."""
    l_seq = np.asarray(records.l_seq, dtype=np.int64)
    n_ops = np.asarray(records.n_cigar_op, dtype=np.int64)
    pos = np.asarray(records.pos, dtype=np.int64)
    flag = np.asarray(records.flag, dtype=np.int64)
    ops = np.asarray(records.cigar, dtype=np.uint32)
    refpos = np.full(n_bases, -1, dtype=np.int32)
    if len(ops) == 0:
        return refpos
    n = len(l_seq)
    oplen = (ops >> 4).astype(np.int64)
    optype = (ops & 15).astype(np.int64)
    rec = np.repeat(np.arange(n), n_ops)
    q = oplen * _QCONS[optype]
    r = oplen * _RCONS[optype]
    first = np.cumsum(n_ops) - n_ops  # index of each record's first op
    qcum = np.cumsum(q) - q
    rcum = np.cumsum(r) - r
    has = n_ops > 0
    qstart_rec = np.zeros(n, dtype=np.int64)
    rstart_rec = np.zeros(n, dtype=np.int64)
    qstart_rec[has] = qcum[first[has]]
    rstart_rec[has] = rcum[first[has]]
    q_within = qcum - qstart_rec[rec]
    r_within = rcum - rstart_rec[rec]
    qlen = np.bincount(rec, weights=q, minlength=n).astype(np.int64)
    usable = has & (qlen == l_seq) & ((flag & 4) == 0) & (pos >= 0)
    sel = _ALIGNED[optype] & usable[rec] & (oplen > 0)
    if not sel.any():
        return refpos
    base0 = np.cumsum(l_seq) - l_seq
    lens = oplen[sel]
    starts_b = base0[rec[sel]] + q_within[sel]
    starts_r = pos[rec[sel]] + r_within[sel]
    offs = np.cumsum(lens) - lens
    # Per-base arrays in int32 (a chunk holds far fewer than 2**31 bases; positions are int32 in BAM).
    step = np.arange(int(lens.sum()), dtype=np.int32)
    step -= np.repeat(offs.astype(np.int32), lens)
    idx = np.repeat(starts_b.astype(np.int32), lens)
    idx += step
    step += np.repeat(starts_r.astype(np.int32), lens)
    refpos[idx] = step
    return refpos


def _z(data: bytes, level) -> bytes:
    c = zstandard.ZstdCompressor(level=19 if level is None else int(level)).compress(data)
    return struct.pack("<I", len(c)) + c


def encode(data: bytes, level: int | None, *, records) -> bytes:
    l_seq = np.asarray(records.l_seq, dtype=np.int64)
    codes, pads = _unpack(data, l_seq)
    refpos = _reference_positions(records, len(codes))
    aligned = refpos >= 0
    rp = refpos[aligned]
    ac = codes[aligned]
    if len(rp):
        lo = int(rp.min())
        rel = rp - lo
        span = int(rel.max()) + 1
        counts = np.stack([np.bincount(rel[ac == c], minlength=span) for c in _ACGT])
        cons_idx = np.argmax(counts, axis=0).astype(np.uint8)
        covered = np.bincount(rel, minlength=span) > 0
        stored = cons_idx[covered]
        pred = _ACGT[cons_idx[rel]]
    else:
        stored = np.zeros(0, dtype=np.uint8)
        pred = np.zeros(0, dtype=np.uint8)
    mism = np.flatnonzero(ac != pred)
    gaps = np.diff(mism, prepend=0).astype("<u4")
    packed_cons = np.packbits(np.unpackbits(stored[:, None], axis=1)[:, 6:].ravel()).tobytes()
    level = 19 if level is None else level
    return (_MAGIC + struct.pack("<BB", _VERSION, 0)
            + _z(packed_cons, level)
            + _z(gaps.view(np.uint8).reshape(-1, 4).T.tobytes(), level)
            + _z(ac[mism].tobytes(), level)
            + _z(codes[~aligned].tobytes(), level)
            + _z(pads.tobytes(), level))


def _sections(data: bytes, sizes: list[int]) -> list[bytes]:
    out, o = [], 4
    d = zstandard.ZstdDecompressor()
    for want in sizes:
        if o + 4 > len(data):
            raise ValueError("truncated consensus payload")
        (n,) = struct.unpack_from("<I", data, o)
        o += 4
        raw = d.decompress(data[o : o + n], max_output_size=max(want, 1)) if n else b""
        if len(raw) != want:
            raise ValueError("a consensus payload section has the wrong size")
        out.append(raw)
        o += n
    return out


def decode(data: bytes, raw_size: int, *, records) -> bytes:
    if data[:2] != _MAGIC or len(data) < 4:
        raise ValueError("not a consensus-codec payload")
    if data[2] != _VERSION:
        raise ValueError(f"consensus codec payload version {data[2]} is not supported; upgrade bams3")
    l_seq = np.asarray(records.l_seq, dtype=np.int64)
    if int(((l_seq + 1) // 2).sum()) != raw_size:
        raise ValueError("record lengths do not match the sequence column")
    n_bases = int(l_seq.sum())
    refpos = _reference_positions(records, n_bases)
    aligned = refpos >= 0
    rp = refpos[aligned]
    n_odd = int((l_seq & 1).sum())
    if len(rp):
        lo = int(rp.min())
        rel = rp - lo
        covered = np.bincount(rel, minlength=int(rel.max()) + 1) > 0
        n_cov = int(covered.sum())
    else:
        rel = rp
        covered = np.zeros(0, dtype=bool)
        n_cov = 0
    # The mismatch count is not stored: read the gaps section's size from its frame.
    o = 4
    (n0,) = struct.unpack_from("<I", data, o)
    o1 = o + 4 + n0
    if o1 + 4 > len(data):
        raise ValueError("truncated consensus payload")
    (n1,) = struct.unpack_from("<I", data, o1)
    gaps_raw = zstandard.ZstdDecompressor().decompress(data[o1 + 4 : o1 + 4 + n1],
                                                       max_output_size=4 * max(len(rp), 1)) if n1 else b""
    if len(gaps_raw) % 4:
        raise ValueError("bad gaps section")
    n_mism = len(gaps_raw) // 4
    cons_raw, _, mism_raw, unal_raw, pads_raw = _sections(
        data, [(n_cov + 3) // 4, 4 * n_mism, n_mism, n_bases - len(rp), n_odd])
    cons_idx = np.unpackbits(np.frombuffer(cons_raw, np.uint8)).reshape(-1, 2)[:n_cov]
    cons_idx = (cons_idx[:, 0] << 1) | cons_idx[:, 1]
    full = np.zeros(len(covered), dtype=np.uint8)
    full[covered] = _ACGT[cons_idx]
    ac = full[rel] if len(rp) else np.zeros(0, dtype=np.uint8)
    gaps = np.frombuffer(gaps_raw, np.uint8).reshape(4, -1).T.copy().view("<u4").ravel().astype(np.int64)
    mism = np.cumsum(gaps)
    if n_mism and (mism[-1] >= len(ac) or (gaps[1:] == 0).any()):
        raise ValueError("mismatch positions out of range")
    ac[mism] = np.frombuffer(mism_raw, np.uint8)
    codes = np.empty(n_bases, dtype=np.uint8)
    codes[aligned] = ac
    codes[~aligned] = np.frombuffer(unal_raw, np.uint8)
    if len(codes) and codes.max() > 15:
        raise ValueError("base code out of range")
    pads = np.frombuffer(pads_raw, np.uint8)
    if len(pads) and pads.max() > 15:
        raise ValueError("pad nibble out of range")
    return _pack(codes, l_seq, pads)
