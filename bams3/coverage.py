"""Binned depth, computed while converting, so coverage is answered without reading reads.

Per reference, per bin of ``COVERAGE_BIN`` bp, the sum over the bin's positions of
the depth there, as ``samtools depth`` counts it by default: bases of M/=/X CIGAR
operations of records without flags UNMAP, SECONDARY, QCFAIL or DUP (0x704);
deletions and skips do not count, and a zero-length match counts as one base. The mean depth of a bin is that sum divided by
the bin's length, and any coarser bin is a sum of these.
"""

from __future__ import annotations

import zlib

import numpy as np
import zstandard

from .format.metadata import COVERAGE_OBJECT  # noqa: F401 (named by the format; used here by callers)

COVERAGE_BIN = 16384
EXCLUDE_FLAGS = 0x4 | 0x100 | 0x200 | 0x400
_ALIGNED = np.zeros(16, dtype=bool)
_ALIGNED[[0, 7, 8]] = True
_RCONS = np.zeros(16, dtype=np.int64)
_RCONS[[0, 2, 3, 7, 8]] = 1


def chunk_depth(core: np.ndarray, cigar: np.ndarray, n_ops: np.ndarray | None = None, bin_bp: int = COVERAGE_BIN,
                ref_length: int | None = None) -> tuple[int, np.ndarray]:
    """The depth sums of one chunk's records (all on one reference): (first bin, sums per bin from it).
    Bases at or past ``ref_length`` are not counted: depth is of the reference's positions.
    ``n_ops``: each record's number of operations in ``cigar`` (default: the core's)."""
    ops = cigar.view("<u4")
    n_ops = (core["n_cigar_op"] if n_ops is None else n_ops).astype(np.int64)
    keep = ((core["flag"] & EXCLUDE_FLAGS) == 0) & (core["refid"] >= 0) & (core["pos"] >= 0)
    if not keep.any() or not len(ops):
        return 0, np.zeros(0, dtype=np.int64)
    rec = np.repeat(np.arange(len(core)), n_ops)
    oplen = (ops >> 4).astype(np.int64)
    optype = (ops & 0xF).astype(np.int64)
    r = oplen * _RCONS[optype]
    rcum = np.cumsum(r) - r  # reference offset of each op from its record's start, after the next lines
    first = np.cumsum(n_ops) - n_ops
    has = n_ops > 0
    base = np.zeros(len(core), dtype=np.int64)
    base[has] = rcum[first[has]]
    sel = _ALIGNED[optype] & keep[rec]
    s = core["pos"].astype(np.int64)[rec[sel]] + rcum[sel] - base[rec[sel]]
    e = s + np.maximum(oplen[sel], 1)  # samtools depth counts a zero-length match as one base
    if ref_length is not None:
        e = np.minimum(e, ref_length)
        inside = e > s
        s, e = s[inside], e[inside]
    if not len(s):
        return 0, np.zeros(0, dtype=np.int64)
    b0, b1 = s // bin_bp, (e - 1) // bin_bp
    lo = int(b0.min())
    out = np.zeros(int(b1.max()) - lo + 1, dtype=np.int64)
    same = b0 == b1
    out += np.bincount(b0[same] - lo, weights=(e - s)[same], minlength=len(out)).astype(np.int64)
    if not same.all():  # operations that cross bin edges (long matches): split them
        s, e, b0, b1 = s[~same], e[~same], b0[~same], b1[~same]
        out += np.bincount(b0 - lo, weights=(b0 + 1) * bin_bp - s, minlength=len(out)).astype(np.int64)
        out += np.bincount(b1 - lo, weights=e - b1 * bin_bp, minlength=len(out)).astype(np.int64)
        inner = b1 - b0 - 1
        if inner.any():
            mid = np.repeat(b0 + 1, inner) + (np.arange(int(inner.sum())) - np.repeat(np.cumsum(inner) - inner, inner))
            out += np.bincount(mid - lo, minlength=len(out)).astype(np.int64) * bin_bp
    return lo, out


class DepthAccumulator:
    """Bin sums for every reference, added chunk by chunk."""

    def __init__(self, references, bin_bp: int = COVERAGE_BIN):
        self.bin_bp = bin_bp
        self.lengths = [int(length) for _, length in references]
        self.nbins = [max(1, -(-length // bin_bp)) for length in self.lengths]
        self.offsets = np.concatenate([[0], np.cumsum(self.nbins)]).astype(np.int64)
        self.sums = np.zeros(int(self.offsets[-1]), dtype=np.int64)

    def add(self, ref_id: int, first_bin: int, sums: np.ndarray) -> None:
        if ref_id < 0 or not len(sums):
            return
        n = self.nbins[ref_id]
        a, b = first_bin, min(first_bin + len(sums), n)
        if b > a:
            self.sums[self.offsets[ref_id] + a : self.offsets[ref_id] + b] += sums[: b - a]
        if first_bin + len(sums) > n and sums[b - a :].any():
            raise ValueError("depth past the reference's end")  # chunk_depth clips at the end: never

    def encode(self) -> bytes:
        return zstandard.ZstdCompressor(level=19).compress(
            np.diff(self.sums, prepend=0).astype("<i8").view(np.uint8).reshape(-1, 8).T.tobytes())

    def describe(self, key: str, frame: bytes) -> dict:
        return {"object": key, "bin": self.bin_bp, "bins": int(len(self.sums)), "nbytes": len(frame),
                "crc32": zlib.crc32(frame), "encoding": "i8-delta-shuffled+zstd"}


def decode_depth(frame: bytes, ref: dict, where: str) -> np.ndarray:
    from .errors import CorruptDatasetError

    n = int(ref["bins"])
    if len(frame) != ref["nbytes"] or zlib.crc32(frame) != ref["crc32"]:
        raise CorruptDatasetError(where, "the coverage object is corrupt (size or checksum mismatch)")
    try:
        raw = zstandard.ZstdDecompressor().decompress(frame, max_output_size=8 * n)
    except zstandard.ZstdError:
        raise CorruptDatasetError(where, "the coverage object does not decode; the dataset is corrupt") from None
    if len(raw) != 8 * n:
        raise CorruptDatasetError(where, "the coverage object has the wrong size; the dataset is corrupt")
    deltas = np.frombuffer(raw, dtype=np.uint8).reshape(8, n).T.copy().view("<i8").ravel()
    return np.cumsum(deltas)


def bin_table(sums: np.ndarray, references, bin_bp: int, stored_bin: int, region=None) -> list[tuple]:
    """(reference, start, end, mean depth) rows at ``bin_bp`` (a multiple of the stored bin),
    for every reference or for the region (ref_id, beg, end) given, 0-based half-open."""
    if bin_bp % stored_bin:
        raise ValueError(f"the bin must be a multiple of {stored_bin:,} bp")
    k = bin_bp // stored_bin
    rows = []
    offset = 0
    for tid, (name, length) in enumerate(references):
        nb = max(1, -(-length // stored_bin))
        per = sums[offset : offset + nb]
        offset += nb
        if region is not None and tid != region[0]:
            continue
        pad = (-len(per)) % k
        coarse = np.concatenate([per, np.zeros(pad, dtype=per.dtype)]).reshape(-1, k).sum(axis=1)
        starts = np.arange(len(coarse), dtype=np.int64) * bin_bp
        ends = np.minimum(starts + bin_bp, length)
        for i in range(len(coarse)):
            beg, end = int(starts[i]), int(ends[i])
            if region is not None and (end <= region[1] or beg >= region[2]):
                continue
            if end > beg:
                rows.append((name, beg, end, float(coarse[i]) / (end - beg)))
    return rows
