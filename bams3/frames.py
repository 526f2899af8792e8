"""Reads as Arrow record batches: a typed schema, built over whole batches of records with numpy
(no Python object per read), from only the columns a projection asks for.

Schema (docs/frames.md): ``name`` (string), ``flag`` (uint16), ``rname`` (dictionary of the
reference names; ``*`` for none), ``pos`` (int64, 1-based as SAM; 0 for none), ``end`` (int64,
1-based inclusive end: htslib's ``bam_endpos``; 0 for none), ``mapq`` (uint8), ``cigar``
(string, SAM text; ``*`` for none), ``rnext`` (dictionary: the mate's reference name, never
``=``; ``*`` for none), ``pnext`` (int64, 1-based; 0 for none), ``tlen`` (int32), ``seq``
(string, SAM text; ``*`` for none), ``qual`` (string, SAM text: Phred+33; ``*`` for none),
``tags`` (string: the SAM text of every tag, tab-separated; or with ``with_tags``, a struct of
the named tags, typed: integers int64, ``f`` float64, ``Z``/``H``/``A`` string, ``B`` a list;
null where a record lacks one), ``tid`` (int32, -1 for none) and ``start0`` (int64, 0-based
position, -1 for none) for 0-based users.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import UsageError
from .fields import NEEDS, Fields

COLUMNS = ("name", "flag", "rname", "pos", "end", "mapq", "cigar", "rnext", "pnext", "tlen", "seq", "qual",
           "tags", "tid", "start0")
# the Fields each frame column is made from
FROM_FIELDS: dict[str, tuple[str, ...]] = {
    "name": ("qname",), "flag": ("flag",), "rname": ("tid",), "pos": ("pos",), "end": ("end",),
    "mapq": ("mapq",), "cigar": ("cigar",), "rnext": ("mtid",), "pnext": ("mpos",), "tlen": ("tlen",),
    "seq": ("seq",), "qual": ("qual",), "tags": ("aux",), "tid": ("tid",), "start0": ("pos",),
}


def pa():
    try:
        import pyarrow
    except ImportError:  # pragma: no cover - pyarrow is a dependency of the frames
        raise UsageError("frames need pyarrow: pip install 'bams3[all]'") from None
    return pyarrow


def check_columns(columns: Iterable[str] | None) -> tuple[str, ...]:
    """The frame's columns, in the order given (None: the SAM fields but ``tags``, which is
    formatted record by record: ask for it, or give ``with_tags``)."""
    if columns is None:
        return COLUMNS[:12]
    cols = tuple(columns)
    unknown = [c for c in cols if c not in FROM_FIELDS]
    if unknown:
        raise UsageError(f"no frame column {', '.join(map(repr, unknown))}; the columns are {', '.join(COLUMNS)}")
    if len(set(cols)) != len(cols):
        raise UsageError("a frame column is named twice")
    return cols


def chunk_columns(columns: Iterable[str]) -> frozenset[str]:
    """The chunk columns a frame of ``columns`` reads."""
    out: set[str] = set()
    for c in columns:
        for f in FROM_FIELDS[c]:
            out |= NEEDS[f]
    return frozenset(out)


def tag_types(with_tags) -> dict[str, str] | None:
    """``with_tags``: names (types found in the data: integers, floats, strings) or {name: type}
    with a type among int, float, str, list (``B`` arrays)."""
    if with_tags is None:
        return None
    if isinstance(with_tags, dict):
        out = {}
        for k, v in with_tags.items():
            name = getattr(v, "__name__", v)
            if name not in ("int", "float", "str", "list"):
                raise UsageError(f"tag {k}: type {v!r}; use int, float, str or list")
            out[str(k)] = name
        items = out
    else:
        items = {str(k): None for k in with_tags}
    for k in items:
        if len(k) != 2 or not k.isascii():
            raise UsageError(f"{k!r} is not a tag name (two characters, as NM or RG)")
    return items


def schema(columns: tuple[str, ...], references, with_tags: dict[str, str] | None):
    """The Arrow schema of a frame."""
    p = pa()
    ref = p.dictionary(p.int32(), p.string())
    types = {"name": p.string(), "flag": p.uint16(), "rname": ref, "pos": p.int64(), "end": p.int64(),
             "mapq": p.uint8(), "cigar": p.string(), "rnext": ref, "pnext": p.int64(), "tlen": p.int32(),
             "seq": p.string(), "qual": p.string(), "tid": p.int32(), "start0": p.int64()}
    if with_tags is None:
        types["tags"] = p.string()
    else:
        arrow = {"int": p.int64(), "float": p.float64(), "str": p.string(), "list": p.list_(p.float64()), None: None}
        types["tags"] = p.struct([(k, arrow[t] or p.string()) for k, t in with_tags.items()])
    return p.schema([(c, types[c]) for c in columns])


def record_batch(f: Fields, references, columns: tuple[str, ...], with_tags: dict[str, str] | None,
                 rows: np.ndarray | None = None):
    """One Arrow record batch of the records in ``f`` (``rows``: a mask of those to keep)."""
    p = pa()
    sch = schema(columns, references, with_tags)
    names = np.array([n for n, _ in references] + ["*"], dtype=object)
    # the kept rows are selected in numpy, column by column (an Arrow filter would import
    # pyarrow.compute, a tenth of a second, on the first call)
    sel = None if rows is None or rows.all() else np.flatnonzero(rows)
    arrays = [_column(p, c, f, names, with_tags, sch.field(c).type, sel) for c in columns]
    return p.RecordBatch.from_arrays(arrays, schema=sch)


def _column(p, c: str, f: Fields, names, with_tags, typ, sel: np.ndarray | None = None):
    """Column ``c`` of the records of ``f`` (``sel``: the indices of those to keep)."""
    def prim(values, dtype):
        return _prim(p, values if sel is None else values[sel], dtype)

    def strings(data, off):
        if sel is not None:
            data, off = take_strings(data, off, sel)
        return _strings(p, data, off)

    if c == "name":
        data, off = f.qname
        return strings(np.delete(data, off[1:] - 1) if len(data) else data, off - np.arange(len(off)))
    if c == "flag":
        return prim(f.flag, np.uint16)
    if c in ("rname", "rnext"):
        tid = f.tid if c == "rname" else f.mtid
        idx = np.where((tid >= 0) & (tid < len(names) - 1), tid, len(names) - 1).astype(np.int32)
        return p.DictionaryArray.from_arrays(prim(idx, np.int32), _names(p, names))
    if c == "pos":
        return prim(f.pos + 1, np.int64)
    if c == "start0":
        return prim(f.pos, np.int64)
    if c == "tid":
        return prim(f.tid, np.int32)
    if c == "end":
        return prim(np.where(f.pos >= 0, f.end, 0), np.int64)
    if c == "mapq":
        return prim(f.mapq, np.uint8)
    if c == "pnext":
        return prim(f.mpos + 1, np.int64)
    if c == "tlen":
        return prim(f.tlen, np.int32)
    if c == "cigar":
        return strings(*cigar_text(*f.cigar))
    if c == "seq":
        return strings(*seq_text(*f.seq, f.qlen))
    if c == "qual":
        return strings(*qual_text(*f.qual))
    if c == "tags":
        return tags_column(p, f, with_tags, typ, sel)
    raise AssertionError(c)


def take_strings(data: np.ndarray, off: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The strings ``sel`` (ascending indices) of concatenated bytes and offsets."""
    lengths = np.diff(off)
    keep = np.zeros(len(lengths), dtype=bool)
    keep[sel] = True
    new_off = np.zeros(len(sel) + 1, dtype=np.int64)
    np.cumsum(lengths[sel], out=new_off[1:])
    return data[np.repeat(keep, lengths)], new_off


_ARROW = {np.uint8: "uint8", np.uint16: "uint16", np.int32: "int32", np.int64: "int64"}


def _prim(p, values: np.ndarray, dtype):
    """A numeric Arrow array over a numpy array's buffer (pa.array would import pandas first)."""
    a = np.ascontiguousarray(values, dtype=dtype)
    return p.Array.from_buffers(getattr(p, _ARROW[dtype])(), len(a), [None, p.py_buffer(a)])


def _names(p, names):
    """The reference names as an Arrow string array."""
    encoded = [n.encode() for n in names.tolist()]
    off = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in encoded], out=off[1:])
    return _strings(p, np.frombuffer(b"".join(encoded), dtype=np.uint8), off)


def _strings(p, data: np.ndarray, offsets: np.ndarray):
    """An Arrow string array over concatenated bytes and N+1 offsets (large offsets beyond 2 GiB)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    n = len(offsets) - 1
    if len(data) < 1 << 31:
        return p.StringArray.from_buffers(n, p.py_buffer(offsets.astype(np.int32)), p.py_buffer(data))
    arr = p.LargeStringArray.from_buffers(n, p.py_buffer(offsets.astype(np.int64)), p.py_buffer(data))
    return arr.cast(p.string())


def cigar_text(ops: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAM CIGAR text of every record (``*`` for none): (bytes, offsets), in C. An operation code
    above 9 prints as ``?``, as htslib prints it."""
    from . import _kernels

    out_off = np.empty(len(off), dtype=np.int64)
    text = _kernels.cigar_text(np.ascontiguousarray(ops, dtype="<u4"), np.ascontiguousarray(off, dtype=np.int64),
                               out_off)
    return np.frombuffer(text, dtype=np.uint8), out_off


def seq_text(packed: np.ndarray, off: np.ndarray, qlen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAM sequence text (``*`` for none) from 4-bit packed bases, in C."""
    from . import _kernels

    out_off = np.empty(len(qlen) + 1, dtype=np.int64)
    text = _kernels.seq_text(np.ascontiguousarray(packed, dtype=np.uint8), np.ascontiguousarray(off, dtype=np.int64),
                             np.ascontiguousarray(qlen, dtype=np.int64), out_off)
    return np.frombuffer(text, dtype=np.uint8), out_off


def qual_text(qual: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SAM quality text: Phred+33 (``*`` where there is none: no bases, or 0xFF)."""
    lengths = np.diff(off)
    missing = lengths == 0
    has = np.flatnonzero(~missing)
    missing[has[qual[off[:-1][has]] == 0xFF]] = True
    if not missing.any():
        return np.add(qual, 33, dtype=np.uint8), off
    keep = np.repeat(~missing, lengths)
    new_len = np.where(missing, 0, lengths)
    new_off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(new_len, out=new_off[1:])
    return _star_empty((qual[keep] + 33).astype(np.uint8), new_off, missing)


def _star_empty(data: np.ndarray, off: np.ndarray, star: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Text where the records in ``star`` (which hold no bytes) become ``*``."""
    if not star.any():
        return data, off
    lengths = np.diff(off) + star
    new_off = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=new_off[1:])
    out = np.full(int(new_off[-1]), ord("*"), dtype=np.uint8)
    keep = np.repeat(~star, lengths)
    out[keep] = data
    return out, new_off


def tags_column(p, f: Fields, with_tags: dict[str, str] | None, typ, sel: np.ndarray | None = None):
    """Every tag as SAM text, or the named tags as a typed struct (``sel``: the records kept)."""
    if with_tags is None:
        return _sam_tags(p, f, sel)
    fields = []
    for name, kind in with_tags.items():
        tv = f.tag(name)
        if sel is not None:
            tv = tv.take(sel)
        want = typ.field(name).type
        if p.types.is_integer(want) or p.types.is_floating(want) or kind in ("int", "float"):
            is_num = tv.is_integer() | (tv.type == ord("f"))
            bad = tv.present & ~is_num
            if bad.any():
                raise UsageError(f"tag {name} holds a {chr(int(tv.type[bad][0]))} value where a number was asked for")
            values = tv.numbers()
            arr = p.array(values, mask=~tv.present, from_pandas=False)
            fields.append(arr.cast(want) if not p.types.is_floating(want) else arr)
        elif p.types.is_list(want):
            fields.append(p.array(_b_arrays(tv), type=want))
        else:
            strings = tv.strings()
            other = tv.present & (strings == None)  # noqa: E711 - numbers asked for as text
            if other.any():
                nums = tv.numbers()
                strings = strings.copy()
                for i in np.flatnonzero(other).tolist():
                    v = nums[i]
                    strings[i] = str(int(v)) if tv.is_integer()[i] else f"{float(v):g}"
            fields.append(p.array(strings.tolist(), type=p.string()))
    return p.StructArray.from_arrays(fields, fields=list(typ))


def _b_arrays(tv) -> list:
    out = [None] * len(tv.type)
    sizes = {"c": "i1", "C": "u1", "s": "<i2", "S": "<u2", "i": "<i4", "I": "<u4", "f": "<f4"}
    for i in np.flatnonzero(tv.type == ord("B")).tolist():
        o = int(tv.offset[i])
        dt = np.dtype(sizes[chr(int(tv.data[o]))])
        n = int(tv.data[o + 1:o + 5].copy().view("<u4")[0])
        out[i] = tv.data[o + 5:o + 5 + n * dt.itemsize].copy().view(dt).astype(np.float64).tolist()
    return out


def _sam_tags(p, f: Fields, sel: np.ndarray | None = None):
    """Each record's tags as SAM prints them (TAG:TYPE:VALUE, tab-separated), formatted as
    htslib formats them (one string per record)."""
    data, off = f.aux
    if sel is not None:
        data, off = take_strings(data, off, sel)
    out = []
    raw = data.tobytes()
    for a, b in zip(off[:-1].tolist(), off[1:].tolist()):
        out.append(_format_tags(raw[a:b]))
    return p.array(out, type=p.string())


_INT = {"c": "<i1", "C": "<u1", "s": "<i2", "S": "<u2", "i": "<i4", "I": "<u4"}


def _format_tags(aux: bytes) -> str:
    parts, i = [], 0
    while i + 3 <= len(aux):
        tag, t = aux[i:i + 2].decode("latin-1"), chr(aux[i + 2])
        i += 3
        if t in _INT:
            dt = np.dtype(_INT[t])
            parts.append(f"{tag}:i:{int(np.frombuffer(aux, dt, 1, i)[0])}")
            i += dt.itemsize
        elif t == "f":
            parts.append(f"{tag}:f:{_g(float(np.frombuffer(aux, '<f4', 1, i)[0]))}")
            i += 4
        elif t == "A":
            parts.append(f"{tag}:A:{chr(aux[i])}")
            i += 1
        elif t in "ZH":
            j = aux.index(b"\0", i)
            parts.append(f"{tag}:{t}:{aux[i:j].decode('latin-1')}")
            i = j + 1
        elif t == "B":
            sub = chr(aux[i])
            n = int(np.frombuffer(aux, "<u4", 1, i + 1)[0])
            dt = np.dtype(_INT.get(sub, "<f4"))
            vals = np.frombuffer(aux, dt, n, i + 5)
            text = ",".join(_g(float(v)) if sub == "f" else str(int(v)) for v in vals)
            parts.append(f"{tag}:B:{sub}" + ("," + text if n else ""))
            i += 5 + n * dt.itemsize
        else:
            raise UsageError(f"tag {tag} has an unknown type {t!r}")
    return "\t".join(parts)


def _g(v: float) -> str:
    """A float as htslib prints it in SAM (``%g``)."""
    return f"{v:g}"


class FramesMixin:
    """Reads as data frames, for :class:`bams3.dataset.Dataset`: ``arrow`` streams Arrow record
    batches of a region's reads (selected, filtered and projected as asked), reading only the
    chunk columns the projection and the filters need, by ranged reads."""

    def arrow(self, region=None, columns: Iterable[str] | None = None, filters=None, with_tags=None, *,
              bed=None, multi: bool = False):
        """A ``pyarrow.RecordBatchReader`` over the reads of ``region`` (a region text, several, a
        Selection or None: every read), one batch per chunk, in samtools' order. ``columns``: a
        projection of the schema (module docstring); ``filters``: a
        :class:`bams3.filters.ReadFilter`; ``with_tags``: tag names (or {name: type}) for a
        typed ``tags`` struct."""
        from ._threads import ordered_map
        from .format.table import Selection

        p = pa()
        tags = tag_types(with_tags)
        cols = check_columns(columns)
        if columns is None and tags is not None:
            cols = cols + ("tags",)
        sch = schema(cols, self.meta.references, tags)
        sel = region if isinstance(region, Selection) else self.selection(region, bed=bed, multi=multi)
        flt = filters if filters is not None and not filters.empty else None
        expr = flt.check()._compiled if flt is not None else None
        need = set(chunk_columns(cols)) | (set(_filter_columns(flt)) if flt is not None else set())
        t = self.chunks
        plan = self._placed_plan(sel)

        def build(item):
            index, ivs, filt = item
            cut = ivs is not None and not t.whole(index, ivs, filt)
            f = self._fields(index, need | ({"pos", "span"} if cut else set()))
            keep = flt.mask(f, self.header, expr) if flt is not None else None
            if cut:
                from .dataset import _overlap_mask

                m = _overlap_mask(f.pos, f.span, ivs)
                if filt is not None:
                    m &= _overlap_mask(f.pos, f.span, filt)
                keep = m if keep is None else keep & m
            if keep is not None and not keep.any():
                return None
            return record_batch(f, self.meta.references, cols, tags, keep)

        # from a local dataset, fixed-width columns decode in a millisecond a chunk, holding the
        # GIL: threads would cost more than they save (the 5-field megabase: 19 ms on the calling
        # thread, 28 ms on four); from a remote store, the threads overlap the requests
        parallel = self.workers > 1 and (bool(need & _HEAVY) or self.is_remote)
        built = ordered_map(build, plan, self._decoders) if parallel else map(build, plan)

        def batches():
            for b in built:
                if b is not None and b.num_rows:
                    yield b

        return p.RecordBatchReader.from_batches(sch, batches())

    def to_arrow(self, region=None, columns=None, filters=None, with_tags=None, **kw):
        """The reads as one ``pyarrow.Table`` (see :meth:`arrow`)."""
        return self.arrow(region, columns, filters, with_tags, **kw).read_all()

    def to_pandas(self, region=None, columns=None, filters=None, with_tags=None, **kw):
        """The reads as a pandas DataFrame (see :meth:`arrow`)."""
        return self.to_arrow(region, columns, filters, with_tags, **kw).to_pandas()

    def to_polars(self, region=None, columns=None, filters=None, with_tags=None, *, lazy: bool = False, **kw):
        """The reads as a Polars DataFrame (``lazy``: a LazyFrame scanning the stream) (see :meth:`arrow`).
        The frame keeps one chunk per record batch, as Arrow gave them (no copy into one; polars
        works on chunks, and ``df.rechunk()`` makes one where a caller wants it)."""
        try:
            import polars as pl
        except ImportError:
            raise UsageError("to_polars needs polars: pip install polars") from None
        if lazy:
            reader = self.arrow(region, columns, filters, with_tags, **kw)
            return pl.from_arrow(reader.read_all(), rechunk=False).lazy()
        return pl.from_arrow(self.to_arrow(region, columns, filters, with_tags, **kw), rechunk=False)


# columns whose decoding is long and releases the GIL (C codecs, zstd of large blocks)
_HEAVY = frozenset({"qual", "seq", "aux", "read_name", "cigar"})


def _filter_columns(flt) -> frozenset[str]:
    from .fields import columns_for

    return columns_for(flt.fields)


class FrameWriter:
    """An output format writing the frame schema (all SAM fields; ``tags`` as SAM text) as
    Parquet or Arrow IPC: each batch of records becomes one Arrow record batch, built from the
    raw records in bulk. The caller's file is not closed."""

    def __init__(self, out, header, options, kind: str):
        p = pa()
        self.p = p
        self.kind = kind
        self.references = header.references
        self.columns = COLUMNS[:13]
        self.schema = schema(self.columns, self.references, None)
        sink = p.PythonFile(out, mode="w")
        self._sink = sink
        if kind == "parquet":
            import pyarrow.parquet as pq

            self._w = pq.ParquetWriter(sink, self.schema, compression=options.get("compression", "zstd"))
        else:
            self._w = p.ipc.new_file(sink, self.schema)

    def write(self, batch) -> None:
        self._w.write_batch(record_batch(Fields.of_batch(batch), self.references, self.columns, None))

    def close(self) -> None:
        self._w.close()
        self._sink.flush()

    def abort(self) -> None:
        try:
            self._w.close()
        except Exception:  # noqa: BLE001 - the output is being thrown away
            pass


def open_parquet(out, header, options):
    return FrameWriter(out, header, options, "parquet")


def open_arrow(out, header, options):
    return FrameWriter(out, header, options, "arrow")
