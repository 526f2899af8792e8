"""Per-record fields of many records at once, as numpy arrays, decoded on first use.

A :class:`Fields` is made from a chunk (a :class:`~bams3.format.ChunkReader`, whole or holding
only some columns) or from a :class:`~bams3.records.RecordBatch`, and answers the fields a read
filter, a depth or a frame asks for: ``flag``, ``mapq``, ``pos`` (0-based), ``end`` (htslib's
``bam_endpos``), ``tid``, ``mtid``, ``mpos``, ``tlen``, ``qlen`` (``l_seq``), ``ncigar``, the
CIGARs, read names, sequences, qualities and aux tags. What each field needs from a chunk is
:data:`NEEDS`: the columns a question fetches before it asks (``ChunkSource.columns``).
Nothing here makes a Python object per record, except string tag values asked for by name.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import CorruptDatasetError
from .format.columns import FLAG_PREDICTED, TLEN_COLUMN, tlen_prediction, wrap_i32
from .records import RecordBatch, reference_span, segment_lengths, split_columns

# the chunk columns each field is computed from
NEEDS: dict[str, frozenset[str]] = {
    "flag": frozenset({"flag"}),
    "mapq": frozenset({"mapq"}),
    "pos": frozenset({"pos"}),
    "end": frozenset({"pos", "span"}),
    "span": frozenset({"span"}),
    "tid": frozenset({"refid"}),
    "mtid": frozenset({"next_refid"}),
    "mpos": frozenset({"pos", "next_pos"}),
    "tlen": frozenset({"pos", "span", "refid", "next_refid", "next_pos", "tlen"}),
    "qlen": frozenset({"l_seq"}),
    "ncigar": frozenset({"n_cigar_op"}),
    "cigar": frozenset({"n_cigar_op", "cigar"}),
    "qname": frozenset({"l_read_name", "read_name"}),
    "seq": frozenset({"l_seq", "seq"}),
    "qual": frozenset({"l_seq", "qual"}),
    "aux": frozenset({"l_aux", "aux"}),
}


def columns_for(fields: Iterable[str]) -> frozenset[str]:
    """The chunk columns the named fields need."""
    out: set[str] = set()
    for f in fields:
        out |= NEEDS[f]
    return frozenset(out)


# aux value sizes by type byte (Z, H, B: variable)
_AUX_SIZE = np.zeros(256, dtype=np.int64)
for _t, _n in {"A": 1, "c": 1, "C": 1, "s": 2, "S": 2, "i": 4, "I": 4, "f": 4}.items():
    _AUX_SIZE[ord(_t)] = _n
_B_SIZE = np.zeros(256, dtype=np.int64)
for _t, _n in {"c": 1, "C": 1, "s": 2, "S": 2, "i": 4, "I": 4, "f": 4}.items():
    _B_SIZE[ord(_t)] = _n
INTEGER_TYPES = b"cCsSiI"


class TagValues:
    """One tag of every record: ``type`` (the aux type byte, 0 where the record lacks the tag) and
    ``offset`` (where the value starts in the aux column's bytes), with typed views."""

    def __init__(self, data: np.ndarray, type_: np.ndarray, offset: np.ndarray):
        self.data = data
        self.type = type_
        self.offset = offset

    @property
    def present(self) -> np.ndarray:
        return self.type != 0

    def take(self, sel: np.ndarray) -> TagValues:
        """The values of the records ``sel`` (indices)."""
        return TagValues(self.data, self.type[sel], self.offset[sel])

    def is_integer(self) -> np.ndarray:
        return np.isin(self.type, np.frombuffer(INTEGER_TYPES, np.uint8))

    def numbers(self) -> np.ndarray:
        """Numeric values (float64; integers exactly up to 2**53): NaN where the tag is absent or
        not a number (A, Z, H, B)."""
        out = np.full(len(self.type), np.nan)
        d = self.data
        for code, dtype in (("c", "i1"), ("C", "u1"), ("s", "<i2"), ("S", "<u2"), ("i", "<i4"), ("I", "<u4"),
                            ("f", "<f4")):
            sel = np.flatnonzero(self.type == ord(code))
            if len(sel):
                size = np.dtype(dtype).itemsize
                idx = self.offset[sel, None] + np.arange(size)
                out[sel] = d[idx].copy().view(dtype).reshape(-1).astype(np.float64)
        return out

    def strings(self) -> np.ndarray:
        """String values (an object array of ``str``): Z and H values, a one-character A; None
        elsewhere."""
        out = np.full(len(self.type), None, dtype=object)
        sel = np.flatnonzero((self.type == ord("Z")) | (self.type == ord("H")))
        if len(sel):
            nul = np.flatnonzero(self.data == 0)
            ends = nul[np.searchsorted(nul, self.offset[sel])]
            raw = self.data.tobytes()
            out[sel] = [raw[a:b].decode("latin-1") for a, b in zip(self.offset[sel].tolist(), ends.tolist())]
        sel = np.flatnonzero(self.type == ord("A"))
        if len(sel):
            out[sel] = [chr(c) for c in self.data[self.offset[sel]].tolist()]
        return out


class Fields:
    """Fields of ``n`` records, computed from fixed columns (``fixed(name)``: values as BAM holds
    them) and variable ones (``var(name)``: concatenated bytes), each decoded once."""

    def __init__(self, n: int, fixed, var, where: str = "records", available=lambda name: True):
        """``available(column)``: whether ``var``/``fixed`` can give that column."""
        self.n = n
        self._available = available
        self._fixed = fixed
        self._var = var
        self.where = where
        self._cache: dict = {}
        self._tags: dict[bytes, TagValues] = {}
        self._hidden: set[int] = set()  # records whose CG tag became their CIGAR

    # ------------------------------------------------------------------ makers
    @classmethod
    def of_reader(cls, reader, more=None) -> Fields:
        """The fields of a chunk's records, from whichever of its columns ``reader`` holds;
        ``more(names)``, if given, fetches other columns when a field turns out to need them (a
        reader of them, checked as any): tags, for CIGARs kept in a CG tag."""
        memo: dict = {}

        def ensure(name):
            if not reader.has(name) and more is not None:
                reader.pieces.update(more([name]).pieces)

        def fixed(name):
            ensure(name)
            if name not in memo:
                if name == "pos":
                    memo[name] = reader.pos()
                elif name == "next_pos":
                    memo[name] = wrap_i32(reader.array("next_pos").astype(np.int64) + fixed("pos")).astype(np.int64)
                elif name == "tlen":
                    t = reader.array("tlen")
                    if reader.columns.get(TLEN_COLUMN, (0,) * 6)[5] & FLAG_PREDICTED:
                        t = wrap_i32(t.astype(np.int64) + tlen_prediction(
                            fixed("pos"), fixed("next_pos"), fixed("span"), fixed("refid"), fixed("next_refid")))
                    memo[name] = t.astype(np.int64)
                else:
                    memo[name] = reader.array(name)
            return memo[name]

        def var(name):
            ensure(name)
            return np.frombuffer(reader.raw(name), dtype=np.uint8)

        return cls(reader.n_records, fixed, var, reader.where,
                   lambda name: more is not None or reader.has(name))

    @classmethod
    def of_batch(cls, batch: RecordBatch) -> Fields:
        """The fields of whole BAM records."""
        core = batch.core
        cols = {}

        def fixed(name):
            if name == "span":
                return reference_span(core, var("cigar"))
            if name == "l_aux":
                return segment_lengths(core)[:, 5]
            return core[name]

        def var(name):
            if not cols:
                names, cigar, seq, qual, aux = split_columns(batch, segment_lengths(core))
                cols.update(read_name=names, cigar=cigar, seq=seq, qual=qual, aux=aux)
            return cols[name]

        return cls(len(batch), fixed, var)

    # ------------------------------------------------------------------ fixed fields
    def _get(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    @property
    def flag(self) -> np.ndarray:
        return self._get("flag", lambda: self._fixed("flag").astype(np.int64))

    @property
    def mapq(self) -> np.ndarray:
        return self._get("mapq", lambda: self._fixed("mapq").astype(np.int64))

    @property
    def pos(self) -> np.ndarray:
        """0-based leftmost position (-1: none)."""
        return self._get("pos", lambda: self._fixed("pos").astype(np.int64))

    @property
    def span(self) -> np.ndarray:
        """``bam_endpos - pos`` (1 for unmapped records and CIGARs that consume no reference)."""
        return self._get("span", lambda: self._fixed("span").astype(np.int64))

    @property
    def end(self) -> np.ndarray:
        """htslib's ``bam_endpos``: 0-based exclusive end (pos + 1 when unmapped)."""
        return self._get("end", lambda: self.pos + self.span)

    @property
    def tid(self) -> np.ndarray:
        return self._get("tid", lambda: self._fixed("refid").astype(np.int64))

    @property
    def mtid(self) -> np.ndarray:
        return self._get("mtid", lambda: self._fixed("next_refid").astype(np.int64))

    @property
    def mpos(self) -> np.ndarray:
        return self._get("mpos", lambda: self._fixed("next_pos").astype(np.int64))

    @property
    def tlen(self) -> np.ndarray:
        return self._get("tlen", lambda: self._fixed("tlen").astype(np.int64))

    @property
    def qlen(self) -> np.ndarray:
        """``l_seq``: the length of SEQ (0 when it is ``*``)."""
        return self._get("qlen", lambda: self._fixed("l_seq").astype(np.int64))

    @property
    def ncigar(self) -> np.ndarray:
        """CIGAR operations per record; with the CIGARs at hand, after :attr:`cigar` has put back
        those kept in CG tags."""
        if "cigar" in self._cache or self._available("cigar"):
            return np.diff(self.cigar[1])
        return self._get("ncigar", lambda: self._fixed("n_cigar_op").astype(np.int64))

    # ------------------------------------------------------------------ variable fields
    def _offsets(self, lengths: np.ndarray, total: int, what: str) -> np.ndarray:
        off = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=off[1:])
        if off[-1] != total:
            raise CorruptDatasetError(self.where, f"columns disagree on {what} sizes; the dataset is corrupt")
        return off

    @property
    def cigar(self) -> tuple[np.ndarray, np.ndarray]:
        """(operations as uint32, offsets: record i's are ``ops[off[i]:off[i+1]]``). A CIGAR of
        over 65535 operations, which BAM keeps in a CG tag behind the placeholder
        ``<l_seq>S<span>N``, is put back as htslib puts it back when it reads (and its CG tag is
        then no longer seen, as htslib drops it)."""
        def make():
            raw = self._var("cigar")
            if len(raw) % 4:
                raise CorruptDatasetError(self.where, "a partial CIGAR; the dataset is corrupt")
            ops = raw.view("<u4")
            off = self._offsets(self._fixed("n_cigar_op").astype(np.int64), len(ops), "CIGAR")
            return self._long_cigars(ops, off)
        return self._get("cigar", make)

    def _long_cigars(self, ops: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """htslib's ``bam_tag2cigar``: placeholders with a CG:B:I tag get the tag's CIGAR."""
        n = np.diff(off)
        two = np.flatnonzero(n == 2)
        if not len(two):
            return ops, off
        first, second = ops[off[two]], ops[off[two] + 1]
        cand = two[(first == ((self._fixed("l_seq")[two].astype(np.int64) << 4) | 4)) & ((second & 0xF) == 3)]
        if not len(cand):
            return ops, off
        tv = self._tag_raw(b"CG")
        data = tv.data
        cand = cand[(tv.type[cand] == ord("B")) & (data[np.minimum(tv.offset[cand], len(data) - 1)] == ord("I"))]
        if not len(cand):
            return ops, off
        pieces, lengths = [], n.copy()
        prev = 0
        for i in cand.tolist():
            o = int(tv.offset[i])
            count = int(data[o + 1:o + 5].copy().view("<u4")[0])
            pieces += [ops[off[prev]:off[i]], data[o + 5:o + 5 + 4 * count].copy().view("<u4")]
            lengths[i] = count
            prev = i + 1
            self._hidden.add(i)
        pieces.append(ops[off[prev]:])
        new_off = np.zeros(self.n + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_off[1:])
        self._tags.pop(b"CG", None)
        return np.concatenate(pieces).astype("<u4"), new_off

    @property
    def qname(self) -> tuple[np.ndarray, np.ndarray]:
        """(read-name bytes, offsets), each name with its closing NUL."""
        def make():
            data = self._var("read_name")
            return data, self._offsets(self._fixed("l_read_name").astype(np.int64), len(data), "read name")
        return self._get("qname", make)

    @property
    def seq(self) -> tuple[np.ndarray, np.ndarray]:
        """(4-bit packed bases, offsets)."""
        def make():
            data = self._var("seq")
            return data, self._offsets((self.qlen + 1) // 2, len(data), "sequence")
        return self._get("seq", make)

    @property
    def qual(self) -> tuple[np.ndarray, np.ndarray]:
        """(base qualities, offsets); 0xFF throughout where the record has none."""
        def make():
            data = self._var("qual")
            return data, self._offsets(self.qlen, len(data), "quality")
        return self._get("qual", make)

    @property
    def aux(self) -> tuple[np.ndarray, np.ndarray]:
        def make():
            data = self._var("aux")
            return data, self._offsets(self._fixed("l_aux").astype(np.int64), len(data), "tag")
        return self._get("aux", make)

    def names(self) -> np.ndarray:
        """Read names as an object array of ``bytes`` (without the NUL)."""
        def make():
            data, off = self.qname
            raw = data.tobytes()
            return np.array([raw[a:b - 1] for a, b in zip(off[:-1].tolist(), off[1:].tolist())], dtype=object)
        return self._get("names", make)

    def tag(self, name: str | bytes) -> TagValues:
        """Tag ``name`` of every record, found by walking every record's tags together (one step
        per tag position, vectorised over the records)."""
        key = name.encode() if isinstance(name, str) else bytes(name)
        if key in self._tags:
            return self._tags[key]
        if key == b"CG":
            self.cigar  # noqa: B018 - a CG tag holding a long CIGAR is moved into it first
        tv = self._tag_raw(key)
        if key == b"CG" and self._hidden:  # moved into the CIGAR, as htslib moves it
            t = tv.type.copy()
            t[list(self._hidden)] = 0
            tv = TagValues(tv.data, t, tv.offset)
        self._tags[key] = tv
        return tv

    def _tag_raw(self, key: bytes) -> TagValues:
        data, off = self.aux
        n = self.n
        type_ = np.zeros(n, dtype=np.uint8)
        value = np.zeros(n, dtype=np.int64)
        cur = off[:-1].copy()
        end = off[1:]
        active = np.flatnonzero(cur < end)
        nul = None
        bad = "a tag runs past its record's end; the data are corrupt"
        while len(active):
            p = cur[active]
            if (p + 3 > end[active]).any():
                raise CorruptDatasetError(self.where, bad)
            t = data[p + 2]
            size = _AUX_SIZE[t]
            var_z = (t == ord("Z")) | (t == ord("H"))
            var_b = t == ord("B")
            if var_z.any():
                if nul is None:
                    nul = np.flatnonzero(data == 0)
                k = np.searchsorted(nul, p[var_z] + 3)
                if (k >= len(nul)).any():
                    raise CorruptDatasetError(self.where, bad)
                size[var_z] = nul[k] - (p[var_z] + 3) + 1
            if var_b.any():
                q = p[var_b]
                if (q + 8 > end[active][var_b]).any():
                    raise CorruptDatasetError(self.where, bad)
                sub = _B_SIZE[data[q + 3]]
                count = data[(q + 4)[:, None] + np.arange(4)].copy().view("<u4").reshape(-1).astype(np.int64)
                size[var_b] = 5 + sub * count
            unknown = (size == 0) & ~var_z & ~var_b
            if unknown.any() or (var_b.any() and (_B_SIZE[data[p[var_b] + 3]] == 0).any()):
                raise CorruptDatasetError(self.where, "a tag of unknown type; the data are corrupt")
            hit = (data[p] == key[0]) & (data[p + 1] == key[1]) & (type_[active] == 0)
            type_[active[hit]] = t[hit]
            value[active[hit]] = p[hit] + 3
            cur[active] = p + 3 + size
            if (cur[active] > end[active]).any():
                raise CorruptDatasetError(self.where, bad)
            active = active[(cur[active] < end[active]) & (type_[active] == 0)]
        return TagValues(data, type_, value)

