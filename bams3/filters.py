"""The read filters of ``samtools view`` (1.16 and later), with its spelling and semantics,
evaluated over many records at once and asking only for the columns they need.

A :class:`ReadFilter` rejects a record exactly where samtools' ``process_aln`` does, in its
order: the filter expression (``-e``), ``-m``, ``-q``/``-f``/``-F``, ``-G``, ``--rf``, the
subsample (``-s``: samtools' own hash of the read name, so the same reads are kept), the read
groups (``-r``/``-R``: a record without an RG tag is kept, as samtools keeps it), the tag
(``-d``/``-D``), the read names (``-N``) and the library (``-l``). Region selection (REGION,
``-L``, ``-M``) is the dataset's own and is not here.

:attr:`ReadFilter.fields` names what it reads (:mod:`bams3.fields`): a filter on flag and
MAPQ needs two small columns of each chunk, not the reads.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading

import attrs
import numpy as np

from .errors import UsageError
from .fields import Fields, TagValues
from .records import Header

from .flagtext import FLAG_NAMES, parse_flag_options, parse_flags  # noqa: F401 (as before: bams3.filters.parse_flags)


def read_tokens(path: str, what: str) -> frozenset[str]:
    """The whitespace-separated words of a file (as samtools reads -R, -N and -D files; words are
    cut at 1,023 characters as its ``fscanf("%1023s")`` cuts them)."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read {what} file {path}: {exc.strerror or exc}") from None
    out = set()
    for word in text.split():
        while word:
            out.add(word[:1023].decode("latin-1"))
            word = word[1023:]
    return frozenset(out)


_RAND_LOCK = threading.Lock()


@functools.lru_cache(maxsize=64)
def _libc_rand_after(seed: int) -> int:
    """``srand(seed); rand()`` as samtools computes it (the C library's generator, whose state
    is the process's: one thread at a time, once per seed)."""
    libc = ctypes.CDLL(None)
    with _RAND_LOCK:
        libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        return int(libc.rand()) & 0xFFFFFFFF


def subsample_seed(seed: int) -> int:
    """The seed samtools hashes with: a non-zero seed is replaced by the C library's first random
    number after ``srand(seed)``."""
    seed &= 0xFFFFFFFF
    return _libc_rand_after(seed) if seed else 0


def x31_hash(names: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """khash's ``__ac_X31_hash_string`` of every read name (bytes with their NUL, back to back),
    over all names at once: one step per character position. Characters are signed, as C's
    ``char`` is on the platforms samtools runs on."""
    n = len(offsets) - 1
    lens = np.diff(offsets) - 1  # without the NUL
    h = np.zeros(n, dtype=np.uint32)
    if not n:
        return h
    signed = names.view(np.int8).astype(np.int64).astype(np.uint32)
    longest = int(lens.max()) if n else 0
    with np.errstate(over="ignore"):
        for j in range(longest):
            live = np.flatnonzero(lens > j)
            c = signed[offsets[live] + j]
            h[live] = np.where(j == 0, c, (h[live] << np.uint32(5)) - h[live] + c)
    return h


def wang_hash(key: np.ndarray) -> np.ndarray:
    """khash's ``__ac_Wang_hash`` (uint32)."""
    k = key.astype(np.uint32)
    with np.errstate(over="ignore"):
        k = k + ~(k << np.uint32(15))
        k = k ^ (k >> np.uint32(10))
        k = k + (k << np.uint32(3))
        k = k ^ (k >> np.uint32(6))
        k = k + ~(k << np.uint32(11))
        k = k ^ (k >> np.uint32(16))
    return k


@attrs.frozen
class TagFilter:
    """``-d TAG[:VALUE]`` / ``-D TAG:FILE``: records with the tag (and one of the values)."""

    tag: str
    values: frozenset[str] | None = None


@attrs.frozen
class ReadFilter:
    """Which records to keep, as ``samtools view`` decides (see the module's docstring).

    ``require`` (-f), ``exclude`` (-F), ``any_of`` (--rf), ``not_all`` (-G), ``min_mapq`` (-q),
    ``min_qlen`` (-m), ``read_groups`` (-r/-R), ``tag`` (-d/-D), ``qnames`` (-N), ``library``
    (-l), ``subsample`` (fraction; ``seed`` as given to samtools) and ``expression`` (-e)."""

    require: int = 0
    exclude: int = 0
    any_of: int = 0
    not_all: int = 0
    min_mapq: int = 0
    min_qlen: int = 0
    read_groups: frozenset[str] | None = None
    tag: TagFilter | None = None
    qnames: frozenset[str] | None = None
    library: str | None = None
    subsample: float | None = None
    seed: int = 0
    expression: str | None = None

    @property
    def empty(self) -> bool:
        """True when every record passes without looking."""
        return self == ReadFilter()

    @property
    def _compiled(self):
        return None if self.expression is None else _compile(self.expression)

    @property
    def fields(self) -> frozenset[str]:
        """The :class:`~bams3.fields.Fields` the filter reads."""
        out: set[str] = set()
        if self.require or self.exclude or self.any_of or self.not_all:
            out.add("flag")
        if self.min_mapq > 0:
            out.add("mapq")
        if self.min_qlen > 0:
            out.add("cigar")
        if self.subsample is not None and self.subsample > 0 or self.qnames is not None:
            out.add("qname")
        if self.read_groups is not None or self.tag is not None or self.library is not None:
            out.add("aux")
        expr = self._compiled
        if expr is not None:
            out |= set(expr.fields)
        return frozenset(out)

    def check(self) -> ReadFilter:
        """The filter, its expression compiled once so a bad one fails before any work."""
        self._compiled  # noqa: B018 - raises UsageError on a bad expression
        return self

    def mask(self, f: Fields, header: Header, expression=None) -> np.ndarray:
        """True where a record is kept. ``expression``: the compiled expression, if at hand."""
        keep = np.ones(f.n, dtype=bool)
        if self.expression is not None:
            keep &= (expression or self._compiled).mask(f, header)
        if self.min_qlen > 0:
            keep &= _cigar_qlen(f) >= self.min_qlen
        if self.min_mapq > 0:
            keep &= f.mapq >= self.min_mapq
        if self.require or self.exclude or self.any_of or self.not_all:
            flag = f.flag
            keep &= (flag & self.require) == self.require
            keep &= (flag & self.exclude) == 0
            if self.not_all:
                keep &= (flag & self.not_all) != self.not_all
            if self.any_of:
                keep &= (flag & self.any_of) != 0
        if self.subsample is not None and self.subsample > 0 and keep.any():
            keep &= self._sampled(f)
        if self.read_groups is not None and keep.any():
            rg = f.tag("RG")
            keep &= ~rg.present | _cstring_in(rg, rg.present, self.read_groups)
        if self.tag is not None and keep.any():
            tv = f.tag(self.tag.tag)
            keep &= tv.present
            if self.tag.values is not None:
                keep &= _tag_in(tv, self.tag.values)
        if self.qnames is not None and keep.any():
            keep &= _in(np.array([n.decode("latin-1") for n in f.names()], dtype=object), self.qnames)
        if self.library is not None and keep.any():
            rg = f.tag("RG")  # samtools: the LB of the record's read group; none: rejected
            keep &= _cstring_in(rg, rg.type == ord("Z"), _library_groups(header, self.library))
        return keep

    def _sampled(self, f: Fields) -> np.ndarray:
        data, off = f.qname
        k = wang_hash(x31_hash(data, off) ^ np.uint32(subsample_seed(self.seed)))
        return (k & np.uint32(0xFFFFFF)).astype(np.float64) / 0x1000000 < self.subsample

    def describe(self) -> dict:
        """The options given, for --json output (sets as sorted lists)."""
        out = {}
        for a in attrs.fields(ReadFilter):
            v = getattr(self, a.name)
            if v != a.default:
                if isinstance(v, TagFilter):
                    v = {"tag": v.tag, "values": None if v.values is None else sorted(v.values)}
                out[a.name] = sorted(v) if isinstance(v, frozenset) else v
        return out

    def header(self, header: Header) -> Header:
        """The header samtools writes with these filters: with -r/-R, @RG lines of other read
        groups are dropped."""
        if self.read_groups is None:
            return header
        lines = []
        for line in header.text.splitlines(keepends=True):
            if line.startswith("@RG\t"):
                ids = [f[3:] for f in line.rstrip("\r\n").split("\t")[1:] if f.startswith("ID:")]
                if not ids or ids[0] not in self.read_groups:
                    continue
            lines.append(line)
        return Header("".join(lines), header.references)


@functools.lru_cache(maxsize=128)
def _compile(text: str):
    """A filter expression, compiled once per text."""
    from .filterexpr import compile_expression

    return compile_expression(text)


def _in(values: np.ndarray, allowed: frozenset[str]) -> np.ndarray:
    """Membership of an object array of str (None: never a member)."""
    if not len(values):
        return np.zeros(0, dtype=bool)
    return np.fromiter((v in allowed for v in values.tolist()), dtype=bool, count=len(values))


_FEW = 64  # values compared byte by byte over all records at once; more: a set, record by record


def _cstring_in(tv: TagValues, where: np.ndarray, allowed: frozenset[str]) -> np.ndarray:
    """Where the C string at each record's value (up to the next NUL, as samtools reads a Z
    value) is one of ``allowed``, for the records in ``where``."""
    out = np.zeros(len(tv.type), dtype=bool)
    sel = np.flatnonzero(where)
    if not len(sel):
        return out
    if len(allowed) > _FEW:
        text = _raw_text(tv)
        out[sel] = _in(text[sel], allowed)
        return out
    nul = np.flatnonzero(tv.data == 0)
    k = np.searchsorted(nul, tv.offset[sel])
    ok = k < len(nul)
    sel, k = sel[ok], k[ok]
    start = tv.offset[sel]
    length = nul[k] - start
    for value in allowed:
        v = np.frombuffer(value.encode("latin-1"), dtype=np.uint8)
        m = np.flatnonzero(length == len(v))
        if not len(m):
            continue
        if len(v):
            same = (tv.data[start[m, None] + np.arange(len(v))] == v).all(axis=1)
            m = m[same]
        out[sel[m]] = True
    return out


def _tag_in(tv: TagValues, allowed: frozenset[str]) -> np.ndarray:
    """``-d TAG:VALUE``'s test: integers compared as their decimal text, a character as itself,
    anything else as the C string at its value."""
    out = np.zeros(len(tv.type), dtype=bool)
    ints = tv.is_integer()
    if ints.any():
        wanted = [int(v) for v in allowed if v.lstrip("-").isdigit() and str(int(v)) == v]
        if wanted:
            out |= ints & np.isin(tv.numbers(), np.array(wanted, dtype=np.float64))
    chars = tv.type == ord("A")
    if chars.any():
        singles = [ord(v) for v in allowed if len(v) == 1 and ord(v) < 256]
        out |= chars & np.isin(tv.data[np.where(chars, tv.offset, 0)], singles)
    return out | _cstring_in(tv, tv.present & ~ints & ~chars, allowed)


def _string_values(tv: TagValues) -> np.ndarray:
    """What samtools looks up for a string tag: the bytes after the type up to the NUL."""
    return _raw_text(tv)


def _raw_text(tv: TagValues) -> np.ndarray:
    """For every record holding the tag, the C string at its value (the bytes up to the next NUL
    in the record's tags; None where there is none), as samtools reads a Z value."""
    out = np.full(len(tv.type), None, dtype=object)
    sel = np.flatnonzero(tv.present)
    if len(sel):
        nul = np.flatnonzero(tv.data == 0)
        k = np.searchsorted(nul, tv.offset[sel])
        raw = tv.data.tobytes()
        for i, o, j in zip(sel.tolist(), tv.offset[sel].tolist(), k.tolist()):
            if j < len(nul):
                out[i] = raw[o:nul[j]].decode("latin-1")
    return out


def _library_groups(header: Header, library: str) -> frozenset[str]:
    """The read groups whose library (LB of their first @RG line) is ``library``."""
    lb: dict[str, str | None] = {}
    for line in header.text.splitlines():
        if line.startswith("@RG\t"):
            fields = dict(x.split(":", 1) for x in line.split("\t")[1:] if ":" in x)
            if "ID" in fields and fields["ID"] not in lb:
                lb[fields["ID"]] = fields.get("LB")
    return frozenset(rg for rg, name in lb.items() if name == library)


_QUERY = np.zeros(16, dtype=np.int64)
_QUERY[[0, 1, 4, 5, 7, 8]] = 1  # M I S H = X: what samtools -m counts


def _cigar_qlen(f: Fields) -> np.ndarray:
    ops, off = f.cigar
    contrib = (ops >> 4).astype(np.int64) * _QUERY[ops & 0xF]
    cs = np.zeros(len(contrib) + 1, dtype=np.int64)
    np.cumsum(contrib, out=cs[1:])
    return cs[off[1:]] - cs[off[:-1]]


def from_options(*, require=(), exclude=(), any_of=(), not_all=(), min_mapq=0, min_qlen=0, read_group=(),
                 read_group_file=None, qname_file=None, tag=(), tag_file=None, library=None, subsample=None,
                 subsample_seed=None, subsample_combined=None, expression=None) -> ReadFilter:
    """A filter from ``samtools view``'s options as the command line gives them (flag options
    repeatable and OR-ed, as samtools ORs them)."""
    flags = parse_flag_options
    rgs: set[str] | None = None
    if read_group or read_group_file:
        rgs = set(read_group)
        if read_group_file:
            rgs |= read_tokens(read_group_file, "read-group")
    tag_filter = _tag_filter(tag, tag_file)
    frac, seed = _subsample(subsample, subsample_seed, subsample_combined)
    return ReadFilter(
        require=flags(require), exclude=flags(exclude), any_of=flags(any_of), not_all=flags(not_all),
        min_mapq=int(min_mapq or 0), min_qlen=int(min_qlen or 0),
        read_groups=None if rgs is None else frozenset(rgs), tag=tag_filter,
        qnames=read_tokens(qname_file, "read-name") if qname_file else None,
        library=library, subsample=frac, seed=seed, expression=expression,
    ).check()


def _tag_filter(tags, tag_file) -> TagFilter | None:
    name, values = None, None
    for t in tags:
        if len(t) < 2 or (len(t) > 2 and t[2] != ":"):
            raise UsageError(f'invalid "tag:value" option {t!r} (as samtools: -d TAG or -d TAG:VALUE)')
        if name is not None and name != t[:2]:
            raise UsageError(f"a different tag {name!r} was given before {t!r}: one tag at a time, as samtools")
        name = t[:2]
        if len(t) > 3:
            values = (values or set()) | {t[3:]}
    if tag_file:
        if len(tag_file) < 4 or tag_file[2] not in ":;":
            raise UsageError(f'invalid "tag:file" option {tag_file!r} (as samtools: -D TAG:FILE)')
        if name is not None and name != tag_file[:2]:
            raise UsageError(f"a different tag {name!r} was given before {tag_file!r}: one tag at a time")
        name = tag_file[:2]
        values = (values or set()) | read_tokens(tag_file[3:], "tag value")
    if name is None:
        return None
    return TagFilter(name, None if values is None else frozenset(values))


def _subsample(frac, seed, combined) -> tuple[float | None, int]:
    """(fraction, seed) from --subsample/--subsample-seed or -s INT.FRAC, checked as samtools
    checks them."""
    out_frac, out_seed = None, 0
    if combined is not None:
        text = str(combined)
        whole, dot, rest = text.partition(".")
        try:
            out_seed = int(whole or "0", 10) if whole.lstrip("+-").isdigit() or not whole else None
            out_frac = float("." + rest) if dot and rest[:1] not in "+-" and rest.strip() == rest else None
        except ValueError:
            out_frac = None
        if out_seed is None or out_frac is None:
            raise UsageError(f'incorrect sampling argument "{text}" (as samtools: -s SEED.FRACTION, e.g. 42.25)')
    if frac is not None:
        try:
            out_frac = float(frac)
        except ValueError:
            out_frac = -1.0
        if not 0.0 <= out_frac <= 1.0:
            raise UsageError(f'incorrect sampling argument "{frac}": a fraction from 0 to 1')
        if seed is None:  # samtools 1.24 derives a default from the input's header; 1.16-1.23 used 0
            raise UsageError("--subsample needs --subsample-seed: samtools' default seed differs between "
                             "versions (0 before 1.24, then one derived from the header), so give it")
    if seed is not None:
        out_seed = int(seed)
    return out_frac, out_seed


if os.name != "posix":  # pragma: no cover - samtools' -s needs the C library's rand()
    def subsample_seed(seed: int) -> int:  # noqa: F811
        if seed & 0xFFFFFFFF:
            raise UsageError("a subsample seed needs the C library's rand(), as samtools uses it")
        return 0
