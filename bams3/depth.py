"""Exact ``samtools depth`` over many records at once (numpy, no loop per record or per base).

What is counted is what the samtools bundled with pysam (1.24) counts: ``bam2depth.c`` as
rewritten in 1.13 (``fastdepth_core``/``add_depth``, a ring buffer, no pileup) with 1.21's
``incr_hist_qual``. For one reference interval ``[beg, end)`` (0-based), as ``-a -r`` prints it:

* Records: ``tid >= 0``, overlapping the interval (``[pos, bam_endpos)``: what the region
  iterator returns), ``flag & excl_flags == 0`` (samtools' default set is 0x704 =
  UNMAP,SECONDARY,QCFAIL,DUP; ``-G`` adds to it, ``-g`` removes from it; ``excl_flags`` here is
  the resulting set), ``incl_flags == 0 or flag & incl_flags`` (``--incl-flags``: any of them),
  ``flag & require_flags == require_flags`` (``--require-flags``: all of them) and ``mapq >=
  min_mapq`` (``-Q``). Both mates of an overlapping pair count (samtools does unless ``-s``).
* Bases: each base of an M, = or X operation adds one at its reference position; each base of a
  D adds one only with ``deletions`` (``-J``); N, I, S, H and P add nothing, nor does a record
  without a CIGAR. Operation codes above X (B, undefined) make samtools fail ("Unsupported cigar
  op"), and :meth:`DepthAccumulator.add` raises ValueError.
* ``-q``/``min_bq``: a matched base counts when its quality is ``>= min_bq`` (missing qualities
  are 0xFF: they pass). A deletion (``-J``) counts whole or not at all, by the quality of the
  query base after it, and counts when there is none.
* samtools' ring buffer, reproduced: its size is a power of two (at least 2,048) greater than
  ``bam_endpos - pos + 1`` of every record read so far, a record's base at ``t`` lands in slot
  ``t mod size`` and is printed only at the live position of that slot (from ``max(beg, pos)`` up
  to the furthest ``bam_endpos`` so far). Mapped records always lie inside that. It matters for:
  unmapped records with a CIGAR (kept when ``excl_flags`` lacks 0x4): their end is ``pos + 1``,
  so their bases past the furthest end so far are lost; and zero-length M/=/X operations, which
  samtools (1.21+) takes for a run to the end of the ring array: one more at every live
  position whose slot is at or past the operation's, under ``-q`` by the qualities of the
  following query bases, wiped again where a later N (or D without ``-J``) of the same record
  lies at or past the previous furthest end (samtools zeroes those slots). Records must be added
  in file order; the interval's ring starts empty, as samtools' does for ``-r`` (without ``-r``
  the ring size also depends on earlier references' records: only zero-length operations see
  that).

Not reproduced, samtools' behaviour being undefined there: with ``-q``, qualities past the end of
SEQ (a SEQ of ``*`` with M operations, or a zero-length match's run past the read): samtools
reads past the record, here such bases count; an operation of an unmapped record longer than
the ring (samtools writes past its array): here it is cut to the ring's size.

:func:`window_means` gives the mean depth of windows of an interval (``coverage --by``).
"""

from __future__ import annotations

import attrs
import numpy as np

from .fields import Fields

DEFAULT_EXCL_FLAGS = 0x4 | 0x100 | 0x200 | 0x400  # UNMAP, SECONDARY, QCFAIL, DUP
FIELDS_NEEDED = frozenset({"flag", "mapq", "pos", "end", "tid", "cigar"})
QUALITY_FIELDS = frozenset({"qual", "qlen"})
_BLOCK = 1 << 22  # bases expanded at once for the base-quality filter

_REF = np.zeros(16, dtype=np.int64)  # M D N = X consume the reference
_REF[[0, 2, 3, 7, 8]] = 1
_QUERY = np.zeros(16, dtype=np.int64)  # M I S = X consume the query
_QUERY[[0, 1, 4, 7, 8]] = 1
_MATCH = np.zeros(16, dtype=bool)
_MATCH[[0, 7, 8]] = True
_DEL = 2
_SKIP = 3
_LAST_KNOWN_OP = 8  # X; samtools depth refuses B (9) and the undefined codes


def _flags(value) -> int:
    """A flag set: an int, or samtools' spelling (``0x704``, ``UNMAP,DUP``)."""
    if isinstance(value, str):
        from .filters import parse_flags

        return parse_flags(value)
    return int(value)


@attrs.frozen
class DepthOptions:
    """The options of ``samtools depth`` that change depths: ``-Q``, ``-q``, the flag filters
    (``excl_flags`` is the whole exclusion set) and ``-J``."""

    min_mapq: int = 0
    min_bq: int = 0
    excl_flags: int = attrs.field(default=DEFAULT_EXCL_FLAGS, converter=_flags)
    incl_flags: int = attrs.field(default=0, converter=_flags)
    require_flags: int = attrs.field(default=0, converter=_flags)
    deletions: bool = False

    @classmethod
    def of(cls, *, min_mapq: int = 0, min_bq: int = 0, excl=(), incl_default=(), any_of=(), all_of=(),
           deletions: bool = False) -> DepthOptions:
        """The options as samtools depth's command line gives them: ``-G`` flags added to the
        default exclusions, ``-g`` flags taken out of them (each repeatable, names or numbers)."""
        from .filters import parse_flag_options

        return cls(min_mapq=min_mapq, min_bq=min_bq,
                   excl_flags=(DEFAULT_EXCL_FLAGS | parse_flag_options(excl)) & ~parse_flag_options(incl_default),
                   incl_flags=parse_flag_options(any_of), require_flags=parse_flag_options(all_of),
                   deletions=deletions)

    @property
    def fields(self) -> frozenset[str]:
        """The :class:`~bams3.fields.Fields` attributes :meth:`DepthAccumulator.add` reads."""
        return FIELDS_NEEDED | (QUALITY_FIELDS if self.min_bq > 0 else frozenset())

    def keep(self, f: Fields) -> np.ndarray:
        """Which records samtools depth reads (before any region test)."""
        flag = f.flag
        ok = (f.tid >= 0) & (f.pos >= 0) & ((flag & self.excl_flags) == 0)
        ok &= (flag & self.require_flags) == self.require_flags
        if self.incl_flags:
            ok &= (flag & self.incl_flags) != 0
        if self.min_mapq > 0:
            ok &= f.mapq >= self.min_mapq
        return ok


@attrs.define
class _Ops:
    """The CIGAR operations of some records: ``rec`` (index into those records), ``code``,
    ``length``, ``ref`` (reference position of the first base), ``query`` (query offset)."""

    rec: np.ndarray
    code: np.ndarray
    length: np.ndarray
    ref: np.ndarray
    query: np.ndarray


def _operations(f: Fields, sel: np.ndarray) -> _Ops:
    """The CIGAR operations of records ``sel`` of ``f``, each placed on the reference and query."""
    ops, off = f.cigar
    n = off[sel + 1] - off[sel]
    total = int(n.sum())
    first = np.cumsum(n) - n
    rec = np.repeat(np.arange(len(sel)), n)
    idx = np.repeat(off[sel] - first, n) + np.arange(total)
    op = ops[idx]
    code = (op & 0xF).astype(np.int64)
    if total and int(code.max()) > _LAST_KNOWN_OP:
        bad = "MIDNSHP=XB??????"[int(code.max())]
        raise ValueError(f"unsupported CIGAR operation {bad!r} (samtools depth refuses it too)")
    length = (op >> 4).astype(np.int64)
    ref = _within_record(length * _REF[code], first, n) + f.pos[sel][rec]
    query = _within_record(length * _QUERY[code], first, n)
    return _Ops(rec, code, length, ref, query)


def _within_record(step: np.ndarray, first: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Exclusive running sums of ``step`` restarting at each record's first operation."""
    cum = np.zeros(len(step) + 1, dtype=np.int64)
    np.cumsum(step, out=cum[1:])
    return cum[:-1] - np.repeat(cum[first], n)


@attrs.define
class _Ring:
    """samtools' ring buffer when each record (at ``pos``) is added: ``live`` (the first position not yet
    written out: ``max(beg, pos)``), ``before`` (``end_pos`` then: the furthest end of the kept
    records before it), ``reach`` (the same with it) and ``size`` (a power of two, at least 2,048,
    greater than ``bam_endpos - pos + 1`` of every record so far)."""

    pos: np.ndarray
    live: np.ndarray
    before: np.ndarray
    reach: np.ndarray
    size: np.ndarray


class DepthAccumulator:
    """Per-base depth over ``[beg, end)`` of one reference (0-based), records added batch by
    batch in file order; ``tid``, when given, ignores records of other references."""

    def __init__(self, beg: int, end: int, tid: int | None = None):
        if end < beg:
            raise ValueError(f"an interval ends before it begins: [{beg}, {end})")
        self.beg, self.end, self.tid = int(beg), int(end), tid
        self._diff = np.zeros(self.end - self.beg + 1, dtype=np.int64)  # whole intervals
        self._bases = np.zeros(self.end - self.beg, dtype=np.int64)  # single bases
        self._reach = 0  # samtools' end_pos, carried from batch to batch
        self._span = 0  # the longest bam_endpos - pos + 1 so far

    @property
    def depth(self) -> np.ndarray:
        return np.cumsum(self._diff[:-1]) + self._bases

    def add(self, f: Fields, opts: DepthOptions) -> None:
        """Count the records of ``f`` (one batch, on this reference) as ``samtools depth`` does."""
        keep = opts.keep(f) & (f.pos < self.end) & (f.end > self.beg)
        if self.tid is not None:
            keep &= f.tid == self.tid
        sel = np.flatnonzero(keep)
        if not len(sel):
            return
        ring = self._ring(f.pos[sel], f.end[sel])
        o = _operations(f, sel)
        size = ring.size[o.rec]
        match = _MATCH[o.code]
        phantom = match & (o.length == 0)  # samtools' ring-end run: see the module's notes
        n = np.where(phantom, size - o.ref % size, np.minimum(o.length, size))
        whole = match & ~phantom if opts.min_bq <= 0 else np.zeros_like(match)
        if opts.deletions:
            dels = o.code == _DEL
            if opts.min_bq > 0:
                dels &= _passes(f, sel, o.rec, o.query, opts.min_bq)
            whole |= dels
        w = np.flatnonzero(whole)
        self._add_intervals(o.ref[w], n[w], o.rec[w], ring)
        single = np.flatnonzero(phantom | (match if opts.min_bq > 0 else False))
        if len(single):
            # bases of an operation inside its record's own end are where they are: only those
            # in the interval need looking at; others (phantoms, unmapped records) may wrap
            plain = ~phantom[single] & (o.ref[single] + n[single] <= f.end[sel][o.rec[single]])
            first = np.where(plain, np.clip(self.beg - o.ref[single], 0, n[single]), 0)
            last = np.where(plain, np.clip(self.end - o.ref[single], first, n[single]), n[single])
            self._add_bases(f, sel, o, single, first, last - first, ring, opts)

    def _ring(self, pos: np.ndarray, end: np.ndarray) -> _Ring:
        reach = np.maximum.accumulate(np.concatenate([[self._reach], end]))
        span = np.maximum.accumulate(np.concatenate([[self._span], end - pos + 1]))[1:]
        self._reach, self._span = int(reach[-1]), int(span[-1])
        size = np.maximum(2048, np.ldexp(1.0, np.frexp(span.astype(np.float64))[1]).astype(np.int64))
        return _Ring(pos, np.maximum(pos, self.beg), reach[:-1], reach[1:], size)

    def _visible(self, t: np.ndarray, rec: np.ndarray, ring: _Ring) -> tuple[np.ndarray, np.ndarray]:
        """Where ring slot ``t mod size`` is written out (the live position there) and whether
        that is a position of the interval still live."""
        live, size = ring.live[rec], ring.size[rec]
        v = live + (t - live) % size
        return v, (v >= self.beg) & (v < np.minimum(self.end, ring.reach[rec]))

    def _add_intervals(self, a: np.ndarray, n: np.ndarray, rec: np.ndarray, ring: _Ring) -> None:
        """Add one at ring slots ``[a, a + n)`` (n <= size): at most two runs of live positions."""
        live, size = ring.live[rec], ring.size[rec]
        off = (a - live) % size
        lo = np.concatenate([live + off, live])
        hi = np.concatenate([live + np.minimum(size, off + n), live + np.maximum(0, off + n - size)])
        top = np.minimum(self.end, np.concatenate([ring.reach[rec], ring.reach[rec]]))
        lo, hi = np.maximum(lo, self.beg), np.minimum(hi, top)
        ok = hi > lo
        size_d = len(self._diff)
        self._diff += np.bincount(lo[ok] - self.beg, minlength=size_d)
        self._diff -= np.bincount(hi[ok] - self.beg, minlength=size_d)

    def _add_bases(self, f, sel, o: _Ops, idx, first, count, ring: _Ring, opts: DepthOptions) -> None:
        """Bases ``first .. first + count`` of operations ``idx`` one by one (matches under ``-q``,
        zero-length matches), a block of about ``_BLOCK`` bases at a time."""
        cum = np.cumsum(count)
        cuts = np.searchsorted(cum, np.arange(_BLOCK, int(cum[-1]), _BLOCK), side="right")
        for a, b in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [len(idx)]])):
            c = count[a:b]
            op = np.repeat(idx[a:b], c)
            step = np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c) + np.repeat(first[a:b], c)
            rec = o.rec[op]
            v, ok = self._visible(o.ref[op] + step, rec, ring)
            if opts.min_bq > 0:
                ok &= _passes(f, sel, rec, o.query[op] + step, opts.min_bq)
            ph = np.flatnonzero(ok & (o.length[op] == 0))
            if len(ph):
                ok[ph] = ~_erased(o, op[ph], v[ph], ring, opts.deletions)
            self._bases += np.bincount(v[ok] - self.beg, minlength=len(self._bases))


def _erased(o: _Ops, op: np.ndarray, v: np.ndarray, ring: _Ring, deletions: bool) -> np.ndarray:
    """Whether what zero-length matches ``op`` added at ``v`` is wiped by a later N (or D without
    ``-J``) of the same record: samtools zeroes such a run's positions at or past ``end_pos``."""
    rec = o.rec[op]
    rel = o.ref - ring.pos[o.rec]  # >= 0 and non-decreasing within a record
    at = v - ring.pos[rec]  # >= 0: v is live, at or past the record's position
    scale = int(max(rel.max(), at.max())) + 1
    j = np.searchsorted(o.rec * scale + rel, rec * scale + at, side="right") - 1
    skip = (o.code[j] == _SKIP) | ((o.code[j] == _DEL) & (not deletions))
    inside = (o.rec[j] == rec) & (v >= o.ref[j]) & (v < o.ref[j] + o.length[j])
    return skip & inside & (j > op) & (v >= ring.before[rec])


def _passes(f: Fields, sel: np.ndarray, rec: np.ndarray, query: np.ndarray, min_bq: int) -> np.ndarray:
    """Whether the query bases ``query`` of records ``sel[rec]`` count under ``-q min_bq``: their
    quality is at least ``min_bq``, or they lie past the end of SEQ."""
    qual, off = f.qual
    rows = sel[rec]
    inside = query < f.qlen[rows]
    out = ~inside
    at = off[rows[inside]] + query[inside]
    out[inside] = qual[at] >= min_bq
    return out


def window_means(depth: np.ndarray, beg: int, windows) -> list[float]:
    """The mean depth of each window ``(start, end)`` (0-based, half-open, inside the interval
    ``depth`` covers from ``beg``); NaN for an empty window."""
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 2) - beg
    if len(w) and (w.min() < 0 or w.max() > len(depth) or (w[:, 1] < w[:, 0]).any()):
        raise ValueError(f"a window is outside [{beg}, {beg + len(depth)}) or ends before it begins")
    cum = np.zeros(len(depth) + 1, dtype=np.int64)
    np.cumsum(depth, out=cum[1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((cum[w[:, 1]] - cum[w[:, 0]]) / (w[:, 1] - w[:, 0])).tolist()
