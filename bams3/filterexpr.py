"""samtools' filter expressions (``samtools view -e EXPR``), evaluated over many records at once.

The language is htslib's (``hts_expr.c``; the names are ``bam_sym_lookup`` and the verdict is
``sam_passes_filter`` in ``sam.c``), as bundled with pysam (samtools/htslib 1.24). The answers
match samtools' exactly, quirks included, or the expression is refused with a one-line
:class:`~bams3.errors.UsageError` that says "not supported".

**Grammar** (htslib's recursive descent, which evaluates while it parses): ``&&``/``||`` (one
level, left to right) < ``== != =~ !~`` < ``> >= < <=`` < ``|`` < ``^`` < ``&`` < ``+ -`` <
``* / %`` < unary. Comparisons and equalities are *right*-recursive (``5 > 3 > 1`` is
``5 > (3 > 1)``); unary ``+``/``-`` take a plain term (``-!x`` is an error, ``--5`` is 5, as
the number reader takes a sign); ``!`` and ``~`` nest. Functions need their ``(`` at once, and
``default``/``pow`` their ``,`` right after the first argument. Only spaces and tabs are
white space; strings are ``"..."`` with ``\\" \\\\ \\t \\n \\r`` escapes (others are kept,
backslash and all); numbers are what C's ``strtod`` reads (``0x1F``, ``1e3``, ``inf``, ``nan``).
There are no ``<<``, ``>>`` or single-quoted strings. Names are matched by prefix in htslib,
which comes to the same as matching whole words, since a name followed by more letters is an
error there too.

**Values.** htslib's value (``hts_expr_val_t``) is a flag ``is_str``, a string buffer, a double
``d`` and an ``is_true`` override (a present tag is true even when 0). Null is a string with no
buffer (an absent tag) or a NaN number. Here a value (:class:`Val`) holds those four parts as
arrays over the records, and each operator is a vectorised transcription of its C code, so
nulls, the ``is_true`` override and string/number mixes behave as there: ``[ZZ] % 3`` is -2
for an absent tag (NaN becomes INT64_MIN), ``log([ZZ])`` is -inf (an absent tag reads as 0),
``!0.5`` is true (``!(int64_t)d``), ``"a" == length("a")`` is true (a number computed from a
string keeps its buffer, and ``==`` compares that buffer).

**Slots.** htslib writes each term into a value "slot" that may still hold an earlier term's
buffer, number and ``is_true``: a lookup of a number leaves the buffer and ``is_true`` alone,
an absent tag leaves the buffer's bytes (only its length becomes 0), a string leaves ``d``.
The right-hand terms of one ``* / %``, ``+ -``, ``&``, ``^`` or ``|`` chain share one slot
(``1 | length(qname) | [YY]`` fails where YY is absent: it reads as the string ``qname``);
function arguments, parentheses and unary operands use their caller's slot; the rest start
clean. :meth:`Node.ev` evaluates a node *into* a slot (the slot's state before) and returns
the slot's state after, which reproduces all of this.

**Failures.** A record on which htslib fails (arithmetic on a string, ``length()`` of a number,
``=~`` on a number, a ``B`` array tag) makes samtools fail, so :meth:`Expression.mask` raises
UsageError then. Refused (raising "not supported"): ``%`` by a value whose integer part is 0,
or INT64_MIN % -1 (samtools crashes); ``qual`` compared or matched as a string (htslib reads
past its unterminated buffer); regular expressions that are not string literals, or outside a
POSIX ERE subset whose Python translation is exact, or matched against non-ASCII text; several
regular expressions where htslib's cache could hand one site another's pattern (it numbers
compiled patterns by how many ran before in the record, so a skipped site shifts the rest);
white space other than spaces and tabs. A CIGAR of over 65535 operations kept in a CG tag is
put back by :class:`~bams3.fields.Fields`, as htslib puts it back. Read names are C strings, as in htslib: up to their first NUL.

``exp``, ``log`` and ``pow`` go through Python's ``math`` (the C library's functions, as htslib
calls them) one value at a time, since numpy's SIMD versions may differ in the last bit; the
rest is numpy, apart from building strings and comparing or matching them.
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from dataclasses import dataclass

import numpy as np

from .errors import UsageError

__all__ = ["Expression", "compile_expression"]

INT64_MIN = -(2**63)
NAN = float("nan")


# ---------------------------------------------------------------------------- values
@dataclass(frozen=True)
class Buf:
    """A value's string buffer (htslib's kstring) per record: ``s`` the bytes strcmp and regexec
    see (an object array, or None where no record has a buffer), ``sn`` whether there is a
    buffer (``s.s != NULL``), ``lz`` whether its length was set to 0 with its bytes kept (an
    absent tag read into a used slot), ``raw`` whether it holds base qualities (not
    NUL-terminated)."""

    s: np.ndarray | None
    sn: np.ndarray
    lz: np.ndarray
    raw: np.ndarray


@dataclass(frozen=True)
class Val:
    """One value per record: ``is_str``, ``t`` (htslib's is_true), ``d`` and the buffer. Arrays
    are shared between values, never changed in place."""

    is_str: np.ndarray
    t: np.ndarray
    d: np.ndarray
    buf: Buf


def _exists(v: Val) -> np.ndarray:
    """``hts_expr_val_exists``: a string with a buffer, or a number that is not NaN."""
    return np.where(v.is_str, v.buf.sn, ~np.isnan(v.d))


def _exists_t(v: Val) -> np.ndarray:
    """``hts_expr_val_existsT``: exists, or forced true."""
    return v.t | _exists(v)


def _truthy(v: Val) -> np.ndarray:
    """``is_true || (is_str && s.s) || d`` (NaN counts as true, as in C)."""
    return v.t | (v.is_str & v.buf.sn) | (v.d != 0)


def _undef(v: Val, m: np.ndarray) -> Val:
    """``hts_expr_val_undef`` where ``m``: a NaN number, not true; the buffer stays."""
    return Val(v.is_str & ~m, v.t & ~m, np.where(m, NAN, v.d), v.buf)


def _number(v: Val, d: np.ndarray, t: np.ndarray, no: np.ndarray) -> Val:
    """A number ``d`` (true: ``t``) written over ``v``, keeping its buffer."""
    return Val(no, t, d, v.buf)


def _i64(d: np.ndarray) -> np.ndarray:
    """C's ``(int64_t)d`` on x86-64: truncation, INT64_MIN for NaN, infinities and overflow."""
    ok = np.isfinite(d) & (d >= -(2.0**63)) & (d < 2.0**63)
    return np.where(ok, np.where(ok, d, 0).astype(np.int64), np.int64(INT64_MIN))


def _pick(m: np.ndarray, a: Val, b: Val) -> Val:
    """``a`` where ``m``, else ``b``, part by part."""
    def w(x, y):
        return x if x is y else np.where(m, x, y)
    if a.buf.s is None and b.buf.s is None:
        s = None
    else:
        s = np.where(m, _objects(a.buf, len(m)), _objects(b.buf, len(m)))
    buf = Buf(s, w(a.buf.sn, b.buf.sn), w(a.buf.lz, b.buf.lz), w(a.buf.raw, b.buf.raw))
    return Val(w(a.is_str, b.is_str), w(a.t, b.t), w(a.d, b.d), buf)


def _objects(buf: Buf, n: int) -> np.ndarray:
    return buf.s if buf.s is not None else np.full(n, None, dtype=object)


def _passes(v: Val) -> np.ndarray:
    """The end of ``hts_filter_eval2``: true if ``is_true``, else a string if it has a buffer
    (even empty), a number if it is neither NaN nor 0."""
    return np.where(v.is_str, v.t | v.buf.sn, v.t | (_exists(v) & (v.d != 0)))


# ---------------------------------------------------------------------------- the records
class _Records:
    """The records an expression is evaluated over, with each name's values made once."""

    def __init__(self, fields, header, text: str):
        self.f, self.header, self.text, self.n = fields, header, text, fields.n
        self.no = np.zeros(self.n, dtype=bool)
        self.yes = np.ones(self.n, dtype=bool)
        self.fresh = Val(self.no, self.no, np.zeros(self.n), Buf(None, self.no, self.no, self.no))
        self._memo: dict = {}

    def memo(self, key, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def fail(self, mask: np.ndarray, what: str) -> None:
        """Raise if a record meets ``mask``: one on which samtools fails too."""
        if np.any(mask):
            raise UsageError(f"filter expression {self.text!r}: {what}, so samtools fails on this input too")

    def refuse(self, mask: np.ndarray, what: str) -> None:
        """Raise if a record meets ``mask``: one whose answer we cannot give exactly."""
        if np.any(mask):
            raise UsageError(f"filter expression {self.text!r}: {what} is not supported")

    def strcmp(self, a: Buf, b: Buf, sel: np.ndarray, op) -> np.ndarray:
        """``op(strcmp(a, b), 0)`` where ``sel`` (both have buffers), False elsewhere."""
        self.refuse(sel & (a.raw | b.raw), "comparing qual as a string")
        out = np.zeros(self.n, dtype=bool)
        idx = np.flatnonzero(sel)
        if len(idx):
            out[idx] = [op(x, y) for x, y in zip(a.s[idx], b.s[idx])]
        return out

    def search(self, rx: re.Pattern, buf: Buf, sel: np.ndarray) -> np.ndarray:
        """Whether ``rx`` matches somewhere in each buffer where ``sel``."""
        self.refuse(sel & buf.raw, "matching qual against a regular expression")
        out = np.zeros(self.n, dtype=bool)
        idx = np.flatnonzero(sel)
        if len(idx):
            subjects = buf.s[idx]
            if not all(x.isascii() for x in subjects):
                self.refuse(self.yes, "matching non-ASCII text against a regular expression")
            out[idx] = [rx.search(x) is not None for x in subjects]
        return out

    def byte_stat(self, name: str, buf: Buf) -> np.ndarray:
        """``length``, ``min``, ``max`` or ``avg`` of each buffer's bytes (its length ``s.l``)."""
        has = buf.sn & ~buf.lz
        lens = np.zeros(self.n, dtype=np.int64)
        idx = np.flatnonzero(has)
        if len(idx):
            lens[idx] = np.fromiter((len(x) for x in buf.s[idx]), dtype=np.int64, count=len(idx))
        if name == "length":
            return lens.astype(np.float64)
        idx = np.flatnonzero(lens)
        out = np.full(self.n, NAN if name in ("min", "max") else 0.0)
        if len(idx):
            data = np.frombuffer(b"".join(buf.s[idx]), dtype=np.uint8)
            starts = np.concatenate([[0], np.cumsum(lens[idx])[:-1]])
            if name == "avg":  # an exact integer sum, then one division, as htslib's double sum
                out[idx] = np.add.reduceat(data, starts, dtype=np.int64) / lens[idx]
            else:
                out[idx] = (np.minimum if name == "min" else np.maximum).reduceat(data, starts)
        return out


# ---------------------------------------------------------------------------- names
_FLAG_BITS = {"paired": 0x1, "proper_pair": 0x2, "unmap": 0x4, "munmap": 0x8, "reverse": 0x10,
              "mreverse": 0x20, "read1": 0x40, "read2": 0x80, "secondary": 0x100, "qcfail": 0x200,
              "dup": 0x400, "supplementary": 0x800}
_CIGAR_TYPE = np.array([(0x3C1A7 >> (2 * op)) & 3 for op in range(16)])  # htslib's BAM_CIGAR_TYPE
_CIGAR_CHARS = b"MIDNSHP=XB??????"
_SKIP, _SOFT, _HARD = 3, 4, 5
_BASES = np.frombuffer(b"=ACMGRSVTWYHKDBN", dtype=np.uint8)


def _cigar_sum(f, kind: int) -> np.ndarray:
    """Sum of each record's CIGAR lengths that consume the query (kind 1) or reference (2):
    ``bam_cigar2qlen`` and ``bam_cigar2rlen``."""
    ops, _ = f.cigar
    rec = np.repeat(np.arange(f.n), f.ncigar)
    weights = (ops >> 4).astype(np.float64) * ((_CIGAR_TYPE[ops & 0xF] & kind) != 0)
    return np.bincount(rec, weights=weights, minlength=f.n)


def _cigar_op(f, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(operation, length) of each record's ``k``-th CIGAR operation (from the end if k < 0);
    -1 and 0 for records with fewer."""
    ops, off = f.cigar
    have = f.ncigar > (k if k >= 0 else -k - 1)
    idx = np.where(have, off[:-1] + k if k >= 0 else off[1:] + k, 0)
    op = ops[idx] if len(ops) else np.zeros(f.n, dtype=np.uint32)
    return np.where(have, op & 0xF, -1), np.where(have, op >> 4, 0)


def _hclen(f) -> np.ndarray:
    """Hard clips: the first operation if H, and the last if H and not the first."""
    (o0, l0), (oz, lz) = _cigar_op(f, 0), _cigar_op(f, -1)
    return np.where(o0 == _HARD, l0, 0) + np.where((f.ncigar > 1) & (oz == _HARD), lz, 0)


def _sclen(f) -> np.ndarray:
    """Soft clips at either end, inside hard clips, as ``bam_sym_lookup`` counts them."""
    n = f.ncigar
    (o0, l0), (o1, l1) = _cigar_op(f, 0), _cigar_op(f, 1)
    (oz, lz), (oy, ly) = _cigar_op(f, -1), _cigar_op(f, -2)
    left_s = o0 == _SOFT
    left_hs = ~left_s & (o0 == _HARD) & (o1 == _SOFT)
    left = left_hs.astype(np.int64)
    right_s = (n - 1 > left) & (oz == _SOFT)
    right_hs = ~right_s & (n - 2 > left) & (oz == _HARD) & (oy == _SOFT)
    return (np.where(left_s, l0, 0) + np.where(left_hs, l1, 0) + np.where(right_s, lz, 0)
            + np.where(right_hs, ly, 0))


def _slices(data: bytes, starts, ends) -> np.ndarray:
    out = np.empty(len(starts), dtype=object)
    out[:] = [data[a:b] for a, b in zip(np.asarray(starts).tolist(), np.asarray(ends).tolist())]
    return out


def _seq_strings(f, header) -> np.ndarray:
    data, off = f.seq
    nibbles = np.empty(2 * len(data), dtype=np.uint8)
    nibbles[0::2], nibbles[1::2] = data >> 4, data & 0xF
    starts = 2 * off[:-1]
    return _slices(_BASES[nibbles].tobytes(), starts, starts + f.qlen)


def _qnames(f, header) -> np.ndarray:
    """Read names as C strings: up to the first NUL (``l_read_name`` may hold more)."""
    names = f.names()
    data, _ = f.qname
    if np.count_nonzero(data == 0) == f.n:
        return names
    out = np.empty(f.n, dtype=object)
    out[:] = [x.split(b"\0", 1)[0] for x in names]
    return out


def _qual_strings(f, header) -> np.ndarray:
    data, off = f.qual
    return _slices(data.tobytes(), off[:-1], off[1:])


def _cigar_strings(f, header) -> np.ndarray:
    """``10M2I5S`` (length then operation, as ``bam_sym_lookup`` writes them), ``*`` if none."""
    ops, off = f.cigar
    parts = [b"%d%c" % (n, _CIGAR_CHARS[op]) for n, op in zip((ops >> 4).tolist(), (ops & 0xF).tolist())]
    out = np.empty(f.n, dtype=object)
    out[:] = [b"".join(parts[a:b]) if b > a else b"*" for a, b in zip(off[:-1].tolist(), off[1:].tolist())]
    return out


def _ref_names(header, tid: np.ndarray) -> np.ndarray:
    """``sam_hdr_tid2name``, ``*`` for no reference (no ``=`` for the mate's)."""
    refs = header.references
    names = np.empty(len(refs) + 1, dtype=object)
    names[:] = [n.encode("utf-8", "surrogateescape") for n, _ in refs] + [b"*"]
    return names[np.where((tid >= 0) & (tid < len(refs)), tid, len(refs))]


def _libraries(f, header, refuse) -> np.ndarray:
    """The LB of each record's read group (its RG tag's @RG line), "" if none (as htslib, at
    most 1023 bytes)."""
    libs: dict[bytes, bytes] = {}
    for line in header.text.encode("utf-8", "surrogateescape").split(b"\n"):
        if line.startswith(b"@RG\t"):
            tags = {t[:2]: t[3:] for t in line.rstrip(b"\r").split(b"\t")[1:] if t[2:3] == b":"}
            if b"ID" in tags and tags[b"ID"] not in libs:
                libs[tags[b"ID"]] = tags.get(b"LB", b"")[:1023]
    rg = f.tag("RG")
    refuse(rg.present & ~np.isin(rg.type, np.frombuffer(b"ZH", np.uint8)), "library with an RG tag that is not a string")
    out = np.empty(f.n, dtype=object)
    out[:] = [b"" if x is None else libs.get(x.encode("latin-1"), b"") for x in rg.strings()]
    return out


_NUMBERS = {
    "endpos": ("end", lambda f: f.end),
    "flag": ("flag", lambda f: f.flag),
    **{f"flag.{k}": ("flag", (lambda b: lambda f: f.flag & b)(b)) for k, b in _FLAG_BITS.items()},
    "hclen": ("cigar", _hclen),
    "mapq": ("mapq", lambda f: f.mapq),
    "mpos": ("mpos", lambda f: f.mpos + 1),
    "mrefid": ("mtid", lambda f: f.mtid),
    "ncigar": ("cigar", lambda f: f.ncigar),
    "pnext": ("mpos", lambda f: f.mpos + 1),
    "pos": ("pos", lambda f: f.pos + 1),
    "qlen": ("cigar", lambda f: _cigar_sum(f, 1)),
    "refid": ("tid", lambda f: f.tid),
    "rlen": ("cigar", lambda f: _cigar_sum(f, 2)),
    "sclen": ("cigar", _sclen),
    "tlen": ("tlen", lambda f: f.tlen),
}
_STRINGS = {
    "cigar": ("cigar", _cigar_strings),
    "library": ("aux", None),
    "mrname": ("mtid", lambda f, h: _ref_names(h, f.mtid)),
    "qname": ("qname", _qnames),
    "qual": ("qual", _qual_strings),
    "rname": ("tid", lambda f, h: _ref_names(h, f.tid)),
    "rnext": ("mtid", lambda f, h: _ref_names(h, f.mtid)),
    "seq": ("seq", _seq_strings),
}
_FUNCTIONS = ("avg", "default", "exists", "exp", "length", "log", "max", "min", "pow", "sqrt")
_STRING_TAG_TYPES = np.frombuffer(b"ZHA", np.uint8)


# ---------------------------------------------------------------------------- nodes
class Node:
    """A term of the expression. ``ev(records, slot)`` is the slot's state after htslib writes
    the term into it (``slot``: its state before)."""

    def kids(self) -> tuple[Node, ...]:
        return ()

    def needs(self) -> set[str]:
        return set().union(*(k.needs() for k in self.kids()))

    def ev(self, r: _Records, slot: Val) -> Val:
        raise NotImplementedError


@dataclass(eq=False)
class Num(Node):
    """A number: ``d`` set, the rest of the slot kept."""

    value: float

    def ev(self, r, slot):
        return Val(r.no, slot.t, np.full(r.n, self.value), slot.buf)


@dataclass(eq=False)
class Str(Node):
    """A string: ``is_str`` and the buffer set, ``d`` and ``is_true`` kept."""

    value: bytes

    def ev(self, r, slot):
        s = r.memo(("str", self.value), lambda: np.full(r.n, self.value, dtype=object))
        return Val(r.yes, slot.t, slot.d, Buf(s, r.yes, r.no, r.no))


@dataclass(eq=False)
class Field(Node):
    """A record field by name (``pos``, ``qname``, ...)."""

    name: str

    def needs(self):
        return {(_NUMBERS.get(self.name) or _STRINGS[self.name])[0]}

    def ev(self, r, slot):
        if self.name in _NUMBERS:
            d = r.memo(self.name, lambda: np.asarray(_NUMBERS[self.name][1](r.f), dtype=np.float64))
            return Val(r.no, slot.t, d, slot.buf)
        if self.name == "library":
            s = r.memo(self.name, lambda: _libraries(r.f, r.header, r.refuse))
        else:
            s = r.memo(self.name, lambda: _STRINGS[self.name][1](r.f, r.header))
        return Val(r.yes, slot.t, slot.d, Buf(s, r.yes, r.no, r.yes if self.name == "qual" else r.no))


@dataclass(eq=False)
class Tag(Node):
    """``[XX]``: a number, or a string (Z, H, A), true when present; absent: a string with no
    new buffer (the slot's bytes stay, length 0), ``d`` 0, not true."""

    key: bytes

    def needs(self):
        return {"aux"}

    def ev(self, r, slot):
        typ, is_num, num, strs = r.memo(("tag", self.key), lambda: self._values(r))
        absent, is_s = typ == 0, np.isin(typ, _STRING_TAG_TYPES)
        d = np.where(is_num, num, np.where(absent, 0.0, slot.d))
        s = np.where(is_s, strs, _objects(slot.buf, r.n))
        buf = Buf(s, is_s | slot.buf.sn, ~is_s & (absent | slot.buf.lz), ~is_s & slot.buf.raw)
        return Val(~is_num, ~absent, d, buf)

    def _values(self, r):
        tv = r.f.tag(self.key)
        is_num = tv.is_integer() | (tv.type == ord("f"))
        num = np.where(is_num, tv.numbers(), NAN)
        ok = (tv.type == 0) | is_num | np.isin(tv.type, _STRING_TAG_TYPES)
        r.fail(~ok, f"tag [{self.key.decode('latin-1')}] holds an array (B), which filters do not read")
        strs = np.full(r.n, None, dtype=object)
        sel = np.flatnonzero(np.isin(tv.type, _STRING_TAG_TYPES))
        if len(sel):
            strs[sel] = [x.encode("latin-1") for x in tv.strings()[sel]]
        return tv.type, is_num, num, strs


@dataclass(eq=False)
class Unary(Node):
    """``+x -x`` (x a plain term), ``!x ~x``."""

    op: str
    arg: Node

    def kids(self):
        return (self.arg,)

    def ev(self, r, slot):
        v = self.arg.ev(r, slot)
        ex = _exists(v)
        if self.op == "!":
            t = np.where(v.t, False, np.where(~ex, True, np.where(v.is_str, ~v.buf.sn, _i64(v.d) == 0)))
            return _number(v, t.astype(np.float64), t, r.no)
        r.fail(ex & v.is_str, f"{self.op} applied to a string")
        if self.op == "~":
            d = (~_i64(v.d)).astype(np.float64)
        else:
            d = -v.d if self.op == "-" else v.d
        return _undef(Val(v.is_str, d != 0, d, v.buf), ~ex)


def _mul(r: _Records, op: str, res: Val, val: Val) -> Val:
    """One step of ``mul_expr``: null in, null out (but ``%`` turns NaN into INT64_MIN)."""
    ex = _exists(res) & _exists(val)
    r.fail(ex & (res.is_str | val.is_str), f"arithmetic ({op}) on a string")
    res = _undef(res, ~ex)  # no string is left
    if op == "%":
        go = val.d != 0  # C's `if (val.d)`; else null
        a, b = _i64(res.d), _i64(val.d)
        r.refuse(go & ((b == 0) | ((a == INT64_MIN) & (b == -1))),
                 "% by a number between -1 and 1, or of a null or huge number by -1 (samtools crashes on it),")
        d = np.where(go, np.fmod(a, np.where(go & (b != 0), b, 1)).astype(np.float64), NAN)
    else:
        d = res.d * val.d if op == "*" else res.d / val.d
    return Val(r.no, ~np.isnan(d) & (d != 0), d, res.buf)


def _add(r: _Records, op: str, res: Val, val: Val) -> Val:
    """One step of ``add_expr``."""
    undef = ~(_exists(res) & _exists(val))
    r.fail(~undef & (res.is_str | val.is_str), f"arithmetic ({op}) on a string")
    d = res.d + val.d if op == "+" else res.d - val.d
    return _undef(Val(res.is_str, d != 0, d, res.buf), undef)


_BITS = {"&": np.bitwise_and, "^": np.bitwise_xor, "|": np.bitwise_or}


def _bit(r: _Records, op: str, res: Val, val: Val) -> tuple[Val, np.ndarray]:
    """One step of a ``&``, ``^`` or ``|`` chain, and where it met a null (the chain's value is
    null there at its end)."""
    ex = _exists(res) & _exists(val)
    r.fail(ex & (res.is_str | val.is_str), f"bitwise operation ({op}) on a string")
    d = _BITS[op](_i64(res.d), _i64(val.d)).astype(np.float64)
    return Val(res.is_str, d != 0, d, res.buf), ~ex


@dataclass(eq=False)
class Chain(Node):
    """``a op b op c ...`` of one level (``* / %``, ``+ -``, or one of ``& ^ |``), left to right.
    The right-hand terms share one slot, which starts clean."""

    ops: list[str]
    terms: list[Node]

    def kids(self):
        return tuple(self.terms)

    def ev(self, r, slot):
        res = self.terms[0].ev(r, slot)
        shared, nulls = r.fresh, r.no
        for op, term in zip(self.ops, self.terms[1:]):
            val = shared = term.ev(r, shared)
            if op in "*/%":
                res = _mul(r, op, res, val)
            elif op in "+-":
                res = _add(r, op, res, val)
            else:
                res, null = _bit(r, op, res, val)
                nulls = nulls | null
        return _undef(res, nulls) if self.ops[0] in _BITS else res


_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
          "==": operator.eq, "!=": operator.ne}


@dataclass(eq=False)
class Compare(Node):
    """``< <= > >=`` (numbers with numbers, strings with strings, else false) and ``== !=``
    (a string on the left compares buffers, whatever the right is)."""

    op: str
    lhs: Node
    rhs: Node

    def kids(self):
        return (self.lhs, self.rhs)

    def ev(self, r, slot):
        res, val = self.lhs.ev(r, slot), self.rhs.ev(r, r.fresh)
        ex = _exists(res) & _exists(val)
        both = res.buf.sn & val.buf.sn
        fn = _ORDER[self.op]
        if self.op in ("==", "!="):
            cmp = r.strcmp(res.buf, val.buf, ex & res.is_str & both, fn)
            if self.op == "==":
                out = np.where(res.is_str, cmp, ~val.is_str & (res.d == val.d))
            else:
                out = np.where(res.is_str, np.where(both, cmp, True), val.is_str | (res.d != val.d))
        else:
            strs = ex & res.is_str & val.is_str & both
            out = r.strcmp(res.buf, val.buf, strs, fn) | (~res.is_str & ~val.is_str & fn(res.d, val.d))
        out = out & ex
        return _undef(_number(res, out.astype(np.float64), out, r.no), ~ex)


@dataclass(eq=False)
class Match(Node):
    """``=~ !~`` against a literal POSIX extended regular expression. A string with no buffer
    (an absent tag) is not matched: the result is a defined false with its ``d``."""

    op: str
    lhs: Node
    pattern: bytes
    rx: re.Pattern

    def kids(self):
        return (self.lhs,)

    def ev(self, r, slot):
        res = self.lhs.ev(r, slot)
        r.fail(~res.is_str, f"{self.op} applied to a number")
        run = res.buf.sn
        hit = r.search(self.rx, res.buf, run)
        t = run & (hit if self.op == "=~" else ~hit)
        v = _number(res, np.where(run, t.astype(np.float64), res.d), t, r.no)
        return _undef(v, ~_exists(v))


@dataclass(eq=False)
class Logic(Node):
    """``&&`` and ``||``, left to right, both sides always evaluated; null (not existsT) makes
    a defined false, except ``||`` with a true side."""

    ops: list[str]
    terms: list[Node]

    def kids(self):
        return tuple(self.terms)

    def ev(self, r, slot):
        res = self.terms[0].ev(r, slot)
        for op, term in zip(self.ops, self.terms[1:]):
            val = term.ev(r, r.fresh)
            a, b, ta, tb = _exists_t(res), _exists_t(val), _truthy(res), _truthy(val)
            if op == "&&":
                out = a & b & ta & tb
            else:
                null = (~a & ~b) | (~a & ~tb) | (~b & ~ta)
                out = ~null & (ta | tb)
            res = _number(res, out.astype(np.float64), out, r.no)
        return res


def _c_exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def _c_log(x: float) -> float:
    return math.log(x) if x > 0 or x != x else (-math.inf if x == 0 else NAN)


_LIBM = {"exp": lambda d: _libm(_c_exp, d), "log": lambda d: _libm(_c_log, d), "sqrt": np.sqrt}


def _c_pow(x: float, y: float) -> float:
    """C's ``pow`` (Python's math.pow raises where C returns inf or NaN)."""
    try:
        return math.pow(x, y)
    except (OverflowError, ValueError):
        odd = math.isfinite(y) and y == math.floor(y) and math.fmod(y, 2) != 0
        if x == 0:
            return math.copysign(math.inf, x) if odd else math.inf
        if x < 0 and y != math.floor(y):
            return NAN
        return -math.inf if x < 0 and odd else math.inf


def _libm(fn, *args: np.ndarray) -> np.ndarray:
    return np.frompyfunc(fn, len(args), 1)(*args).astype(np.float64)


@dataclass(eq=False)
class Call(Node):
    """A function. ``length min max avg`` of a string's bytes (``is_true`` kept), ``exists``,
    ``default(a, b)``, and ``exp log sqrt pow`` (NaN: null; ``is_true`` kept)."""

    name: str
    args: list[Node]

    def kids(self):
        return tuple(self.args)

    def ev(self, r, slot):
        v = self.args[0].ev(r, slot)
        if self.name in ("length", "min", "max", "avg"):
            r.fail(~v.is_str, f"{self.name}() of a number")
            return _number(v, r.byte_stat(self.name, v.buf), v.t, r.no)
        if self.name == "exists":
            e = _exists_t(v)
            return _number(v, e.astype(np.float64), e, r.no)
        if self.name == "default":
            return _pick(~_exists_t(v), self.args[1].ev(r, r.fresh), v)
        if self.name == "pow":
            w = self.args[1].ev(r, r.fresh)
            ex = _exists(v) & _exists(w)
            r.fail(ex & (v.is_str | w.is_str), "pow() of a string")
            v = _undef(v, ~ex)
            d = np.where(ex, _libm(_c_pow, v.d, w.d), v.d)
        else:
            d = _LIBM[self.name](v.d)
        return _undef(_number(v, d, v.t, r.no), np.isnan(d))


# ---------------------------------------------------------------------------- regular expressions
_ERE_SPECIAL = b".[]()*+?{}|^$\\"
_CLASSES = {
    b"alpha": b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"upper": b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b"lower": b"abcdefghijklmnopqrstuvwxyz",
    b"digit": b"0123456789",
    b"xdigit": b"0123456789ABCDEFabcdef",
    b"alnum": b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
    b"space": b" \t\n\r\f\v",
    b"blank": b" \t",
    b"punct": bytes(c for c in range(33, 127) if not chr(c).isalnum()),
    b"print": bytes(range(32, 127)),
    b"graph": bytes(range(33, 127)),
    b"cntrl": bytes(range(32)) + b"\x7f",
}
_INTERVAL = re.compile(rb"\{([0-9]{1,3})(,([0-9]{0,3}))?\}")


class _Unsupported(Exception):
    pass


def _bracket(p: bytes, i: int) -> tuple[int, bytes]:
    """A bracket expression at ``p[i]`` (``[`` ... ``]``: backslash is literal, ``]`` first is
    literal, ``-`` first or last is literal, ranges by byte, ``[:class:]``), as a Python class
    of escaped bytes; and where it ends."""
    j = i + 1 + (p[i + 1:i + 2] == b"^")
    chars: set[int] = set()
    first = True
    while True:
        c = p[j:j + 1]
        if not c:
            raise _Unsupported("an unterminated [")
        if c == b"]" and not first:
            break
        if c == b"[" and p[j + 1:j + 2] in (b":", b"=", b"."):
            end = p.find(b":]", j + 2)
            if p[j + 1:j + 2] != b":" or end < 0 or p[j + 2:end] not in _CLASSES:
                raise _Unsupported("[= =], [. .] or an unknown [: :] class")
            chars.update(_CLASSES[p[j + 2:end]])
            j, first = end + 2, False
            continue
        if p[j + 1:j + 2] == b"-" and p[j + 2:j + 3] not in (b"]", b""):
            lo, hi = p[j], p[j + 2]
            if hi < lo or b"-" in (c, p[j + 2:j + 3]) or p[j + 2:j + 3] == b"[" or p[j + 3:j + 4] == b"-":
                raise _Unsupported("this range")
            chars.update(range(lo, hi + 1))
            j, first = j + 3, False
            continue
        if c == b"-" and not first and p[j + 1:j + 2] != b"]":
            raise _Unsupported("a - inside [ ]")
        chars.add(p[j])
        j, first = j + 1, False
    neg = b"^" if p[i + 1:i + 2] == b"^" else b""
    return j + 1, b"[" + neg + b"".join(b"\\x%02x" % c for c in sorted(chars)) + b"]"


def _ere(p: bytes) -> re.Pattern:
    """A POSIX extended regular expression (glibc, REG_EXTENDED | REG_NOSUB) as a Python one
    that matches the same strings; _Unsupported where that is not certain."""
    if not p.isascii():
        raise _Unsupported("non-ASCII characters")
    out, i, depth, prev = [], 0, 0, "start"
    while i < len(p):
        c = p[i:i + 1]
        step, piece, kind = 1, None, "atom"
        if c == b"\\":
            if not p[i + 1:i + 2] or p[i + 1:i + 2] not in _ERE_SPECIAL:
                raise _Unsupported(f"the escape \\{p[i + 1:i + 2].decode()}")
            step, piece = 2, re.escape(p[i + 1:i + 2])
        elif c == b"[":
            end, piece = _bracket(p, i)
            step = end - i
        elif c in (b"*", b"+", b"?", b"{"):
            m = _INTERVAL.match(p, i) if c == b"{" else None
            if prev != "atom" or (c == b"{" and not _interval_ok(m)):
                raise _Unsupported(f"{c.decode()} here")
            step, piece, kind = (m.end() - i if m else 1), (m.group() if m else c), "quant"
        elif c == b"(":
            if p[i + 1:i + 2] == b")":
                raise _Unsupported("an empty group")
            depth, piece, kind = depth + 1, b"(?:", "open"
        elif c == b")":
            if depth == 0 or prev in ("open", "alt"):
                raise _Unsupported("an unbalanced or empty group")
            depth, piece = depth - 1, b")"
        elif c == b"|":
            if prev in ("start", "open", "alt"):
                raise _Unsupported("an empty alternative")
            piece, kind = b"|", "alt"
        elif c in (b"^", b"$"):
            piece, kind = (b"^" if c == b"^" else rb"\Z"), "anchor"
        elif c in (b"]", b"}"):
            raise _Unsupported(f"a lone {c.decode()}")
        else:
            piece = b"." if c == b"." else re.escape(c)
        out.append(piece)
        i, prev = i + step, kind
    if depth or prev == "alt":
        raise _Unsupported("an unbalanced group or an empty alternative")
    return re.compile(b"".join(out), re.DOTALL)


def _interval_ok(m) -> bool:
    if m is None:
        return False
    lo, hi = int(m.group(1)), m.group(3)
    return lo <= 255 and (hi is None or hi == b"" or lo <= int(hi) <= 255)


def _regex_sites(node: Node) -> list[tuple[bytes, bool]]:
    """The ``=~``/``!~`` of an expression in the order htslib runs them: (pattern, whether the
    left side may be a string with no buffer, when htslib skips it)."""
    out = [s for k in node.kids() for s in _regex_sites(k)]
    if isinstance(node, Match):
        out.append((node.pattern, _may_be_null_string(node.lhs)))
    return out


def _may_be_null_string(node: Node) -> bool:
    if isinstance(node, Tag):
        return True
    return isinstance(node, Call) and node.name == "default" and any(map(_may_be_null_string, node.args))


def _check_regex_cache(root: Node) -> None:
    """htslib compiles the n-th regular expression run on a record into cache slot n (of 10)
    once, on the first record that runs n of them, and reuses it; a skipped site shifts the
    later ones, so two sites with different patterns that may both run n-th would share one
    compiled pattern."""
    spans, before = [], 0
    for k, (pattern, skippable) in enumerate(_regex_sites(root)):
        spans.append((before, k, pattern))
        before += not skippable
    for (a0, a1, pa), (b0, b1, pb) in itertools.combinations(spans, 2):
        if pa != pb and max(a0, b0) <= min(a1, b1, 9):
            raise _Unsupported("regular expressions with different patterns where an earlier one may be "
                               "skipped (htslib's cache would give a later one the wrong pattern)")


# ---------------------------------------------------------------------------- parsing
_NUMBER = re.compile(rb"""[+-]?(?:
      0[xX](?:[0-9a-fA-F]+(?:\.[0-9a-fA-F]*)?|\.[0-9a-fA-F]+)(?:[pP][+-]?[0-9]+)?
    | (?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?
    | [iI][nN][fF](?:[iI][nN][iI][tT][yY])?
    | [nN][aA][nN](?:\([0-9A-Za-z_]*\))?
)""", re.X)
_WORD = re.compile(rb"[A-Za-z0-9_.]+")
_ESCAPES = {ord('"'): b'"', ord("\\"): b"\\", ord("t"): b"\t", ord("n"): b"\n", ord("r"): b"\r"}
_SPACE = (0x20, 0x09)


def _c_number(text: bytes) -> float:
    """The value C's strtod gives ``text`` (which _NUMBER matched)."""
    t = text.decode().lower()
    body = t.lstrip("+-")
    if body.startswith("0x"):
        return float.fromhex(t)
    return NAN if body.startswith("nan") else float(t)


def _unescape(raw: bytes) -> bytes:
    """A string literal's bytes: ``\\" \\\\ \\t \\n \\r`` replaced, other escapes kept whole."""
    out, i = bytearray(), 0
    while i < len(raw):
        if raw[i] == 0x5C:
            out += _ESCAPES.get(raw[i + 1], raw[i:i + 2])
            i += 2
        else:
            out.append(raw[i])
            i += 1
    return bytes(out)


class _Parser:
    """htslib's grammar over the expression's bytes (NUL-padded, as htslib reads past a
    term's end); each method takes a position and returns (node, position after it)."""

    def __init__(self, text: str):
        self.text = text
        data = text.encode("utf-8", "surrogateescape")
        if b"\0" in data:
            self.error(data.index(b"\0"), "a NUL character is not supported")
        self.b, self.n = data + b"\0\0\0\0", len(data)

    def error(self, i: int, what: str = "cannot parse it"):
        raise UsageError(f"filter expression {self.text!r}: {what} (at character {i + 1})")

    def ws(self, i: int) -> int:
        while self.b[i] in _SPACE:
            i += 1
        return i

    def parse(self) -> Node:
        node, end = self.expression(0)
        end = self.ws(end)
        if end < self.n:
            self.error(end)
        return node

    def expression(self, i: int):
        first, end = self.equality(i)
        ops, terms = [], [first]
        while True:
            j = self.ws(end)
            op = self.b[j:j + 2]
            if op not in (b"&&", b"||"):
                break
            term, end = self.equality(j + 2)
            ops.append(op.decode())
            terms.append(term)
        return (Logic(ops, terms) if ops else first), end

    def equality(self, i: int):
        lhs, end = self.comparison(i)
        j = self.ws(end)
        op = self.b[j:j + 2]
        if op not in (b"==", b"!=", b"=~", b"!~"):
            return lhs, end
        rhs, end = self.equality(j + 2)
        if op in (b"==", b"!="):
            return Compare(op.decode(), lhs, rhs), end
        if not isinstance(rhs, Str):
            self.error(j, "a regular expression that is not a string literal is not supported")
        try:
            rx, why = _ere(rhs.value), None
        except (_Unsupported, re.error) as exc:
            why = str(exc)
        if why is not None:
            self.error(j, f"regular expression {rhs.value.decode('latin-1')!r}: {why} is not supported")
        return Match(op.decode(), lhs, rhs.value, rx), end

    def comparison(self, i: int):
        lhs, end = self.chain(i, 0)
        j = self.ws(end)
        for op in (b">=", b">", b"<=", b"<"):
            if self.b.startswith(op, j):
                rhs, end = self.comparison(j + len(op))
                return Compare(op.decode(), lhs, rhs), end
        return lhs, end

    _LEVELS = (b"|", b"^", b"&", b"+-", b"*/%")

    def chain(self, i: int, level: int):
        """``| ^ & (+ -) (* / %)`` by ``level``, each a loop over the next one (``&`` and ``|``
        not when doubled)."""
        sub = (lambda k: self.chain(k, level + 1)) if level < 4 else self.unary
        first, end = sub(i)
        ops, terms = [], [first]
        while True:
            j = self.ws(end)
            c = self.b[j:j + 1]
            if c == b"\0" or c not in self._LEVELS[level] or (c in b"&|" and self.b[j + 1:j + 2] == c):
                break
            term, end = sub(j + 1)
            ops.append(c.decode())
            terms.append(term)
        return (Chain(ops, terms) if ops else first), end

    def unary(self, i: int):
        j = self.ws(i)
        c = self.b[j:j + 1]
        if c in (b"+", b"-"):
            arg, end = self.simple(j + 1)
        elif c in (b"!", b"~"):
            arg, end = self.unary(j + 1)
        else:
            return self.simple(j)
        return Unary(c.decode(), arg), end

    def simple(self, i: int):
        j = self.ws(i)
        if self.b[j:j + 1] == b"(":
            node, end = self.expression(j + 1)
            k = self.ws(end)
            if self.b[k:k + 1] != b")":
                self.error(k, "missing ')'")
            return node, k + 1
        m = _NUMBER.match(self.b, j)
        if m:
            return Num(_c_number(m.group())), m.end()
        if self.b[j:j + 1] == b'"':
            return self.string(j)
        return self.name(j)

    def string(self, j: int):
        e = j + 1
        while self.b[e] not in (0, 0x22):
            e += 2 if self.b[e] == 0x5C and self.b[e + 1] != 0 else 1
        if self.b[e] != 0x22:
            self.error(j, "an unterminated string")
        return Str(_unescape(self.b[j + 1:e])), e + 1

    def name(self, j: int):
        b = self.b
        if b[j:j + 1] == b"[":
            if b[j + 1] and b[j + 2] and b[j + 3:j + 4] == b"]":
                return Tag(b[j + 1:j + 3]), j + 4
            self.error(j, "a tag is [XX]")
        if b[j:j + 1] in (b"\n", b"\r", b"\v", b"\f"):
            self.error(j, "white space other than spaces and tabs is not supported")
        m = _WORD.match(b, j)
        word = m.group().decode() if m else ""
        if word in _NUMBERS or word in _STRINGS:
            return Field(word), m.end()
        if word in _FUNCTIONS:
            if b[m.end():m.end() + 1] != b"(":
                self.error(m.end(), f"{word} needs its '(' right after the name")
            return self.call(word, m.end() + 1)
        self.error(j, f"unknown name {word!r}" if word else "a term is missing")

    def call(self, name: str, i: int):
        args = [None]
        args[0], end = self.expression(i)
        if name in ("default", "pow"):
            if self.b[end:end + 1] != b",":
                self.error(end, f"{name}() needs a ',' right after its first argument")
            arg, end = self.expression(self.ws(end + 1))
            args.append(arg)
        k = self.ws(end)
        if self.b[k:k + 1] != b")":
            self.error(k, "missing ')'")
        return Call(name, args), k + 1


# ---------------------------------------------------------------------------- the interface
class Expression:
    """A compiled filter expression: ``fields``, the :data:`bams3.fields.NEEDS` keys it reads,
    and :meth:`mask`."""

    def __init__(self, text: str, root: Node):
        self.text = text
        self._root = root
        self.fields = frozenset(root.needs())

    def mask(self, fields, header) -> np.ndarray:
        """True for the records samtools keeps (``sam_passes_filter`` > 0). Raises UsageError
        where samtools fails (or crashes) on one of them."""
        r = _Records(fields, header, self.text)
        with np.errstate(all="ignore"):
            return np.asarray(_passes(self._root.ev(r, r.fresh)), dtype=bool)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile_expression(text: str) -> Expression:
    """Parse a samtools filter expression; UsageError (one line) if it cannot be parsed or uses
    something not supported."""
    if not isinstance(text, str):
        raise UsageError("a filter expression must be a string")
    root = _Parser(text).parse()
    try:
        _check_regex_cache(root)
    except _Unsupported as exc:
        raise UsageError(f"filter expression {text!r}: {exc} is not supported") from None
    return Expression(text, root)
