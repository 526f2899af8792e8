"""One large indexed BAM converted by region shards, in parallel (Dask workers, or threads here).

The BAI says where each shard's records begin: a shard is a run of whole windows of one
reference (or the unplaced records), read from the first record that can start there until
the first that starts past it. Each shard cuts, encodes and uploads its chunks exactly as a
single conversion would (the same windows, split at the same sizes: the chunks are the same
bytes), numbering its objects from ``shard << 24`` (format v3: the chunk table records each
chunk's object). The driver then merges the shards' tables, statistics and depth in file
order, checks every reference's record count against the index, and publishes
``_metadata.json`` last, as :func:`bams3.converter.convert` does.

    import bams3.shards
    bams3.shards.convert("s3://lab/NA12878.bam", "s3://lab/NA12878.bams3", client=client)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator

import attrs
import numpy as np

from . import __version__, bgzf, destination
from .converter import (
    ConvertOptions,
    _Pipeline,
    _Publish,
    _Windows,
    _check_header,
    _delete_prefix,
    _package,
    new_run,
    remove_replaced,
    removed_on_failure,
    window_keys,
)
from .coverage import DepthAccumulator
from .errors import InputError, UsageError
from .format import COVERAGE_OBJECT, ChunkTable, CodecSpec, Metadata, count_slot_bp
from .format.version import FORMAT_VERSION, SHARDED_VERSION
from .inputs import STDIN, open_input
from .plugins import get_registry
from .records import RecordBatch, record_batches
from .stats import StatsAccumulator
from .storage import local_path, open_store

DEFAULT_SHARD_BP = 64 << 20
OBJECT_STRIDE = 1 << 24  # a shard's chunks are objects shard * OBJECT_STRIDE + 0, 1, ...
_PSEUDO_BIN = 37450
_TILE = 14  # the BAI linear index: one offset per 16 Kbp


# ------------------------------------------------------------------ the index
@attrs.frozen
class RefIndex:
    """What a shard plan needs of one reference's BAI entry."""

    begin: int  # virtual offset of its first record (0: none)
    end: int  # virtual offset just past its last record
    mapped: int
    unmapped: int  # placed but unmapped
    linear: np.ndarray  # per 16 Kbp tile: the virtual offset of the first record overlapping it


@attrs.frozen
class BamIndex:
    refs: tuple[RefIndex, ...]
    no_coor: int


def read_bai(data: bytes, where: str) -> BamIndex:
    """Parse a BAI file; InputError when it is not one, or lacks htslib's per-reference record
    counts and extents (the pseudo-bin every htslib and Picard index holds)."""
    try:
        if data[:4] != b"BAI\x01":
            raise ValueError("not a BAI index")
        (n_ref,) = struct.unpack_from("<i", data, 4)
        o = 8
        refs = []
        for _ in range(n_ref):
            (n_bin,) = struct.unpack_from("<i", data, o)
            o += 4
            meta = None
            for _ in range(n_bin):
                b, n_chunk = struct.unpack_from("<Ii", data, o)
                o += 8
                if b == _PSEUDO_BIN and n_chunk == 2:
                    meta = struct.unpack_from("<QQQQ", data, o)
                o += 16 * n_chunk
            (n_intv,) = struct.unpack_from("<i", data, o)
            o += 4
            linear = np.frombuffer(data, dtype="<u8", count=n_intv, offset=o).astype(np.int64)
            o += 8 * n_intv
            if meta is None:
                if n_bin:
                    raise ValueError("the index lacks per-reference counts (no pseudo-bin)")
                meta = (0, 0, 0, 0)
            refs.append(RefIndex(int(meta[0]), int(meta[1]), int(meta[2]), int(meta[3]), linear))
        if len(data) < o + 8:
            raise ValueError("the index lacks the count of unplaced records")
        (no_coor,) = struct.unpack_from("<Q", data, o)
    except (struct.error, ValueError) as exc:
        reason = str(exc) if isinstance(exc, ValueError) and "index" in str(exc) else "truncated or corrupt"
        raise InputError(f"{where}: cannot use it to shard ({reason}); convert without shards, or index the "
                         "BAM again with `samtools index`", source=where) from None
    return BamIndex(tuple(refs), int(no_coor))


def _find_index(src: str) -> tuple[str, bytes]:
    """The BAI next to ``src`` (``in.bam.bai`` or ``in.bai``) and its bytes."""
    candidates = [src + ".bai"] + ([src[:-4] + ".bai"] if src.endswith(".bam") else [])
    for name in candidates:
        path = local_path(name)
        if path is not None:
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    return name, f.read()
            continue
        parent, _, key = name.rpartition("/")
        store = open_store(parent)
        if store.size(key) is not None:
            return name, store.get(key)
    raise InputError(f"{src} has no BAI index ({candidates[0]}); a sharded conversion reads each shard through "
                     "it: run `samtools index` first", source=src)


# ------------------------------------------------------------------ the plan
_UNPLACED_KEY = ((1 << 31) - 1) << 32  # the key of every unplaced record (window_keys)
_END = (1 << 63) - 1


@attrs.frozen
class Shard:
    """The records whose key (reference << 32 | window; the unplaced last) is in [lo, hi),
    read from the virtual offset ``start`` (-1: the first record). Consecutive shards meet, the
    first starts at the first record and the last ends at the end of the file, so that every
    record is some shard's: records an index does not know of (a stale index) are counted, and
    found out, rather than left out."""

    number: int
    lo: int
    hi: int
    start: int

    def label(self, references, chunk_size: int) -> str:
        ref = self.lo >> 32
        if self.lo >= _UNPLACED_KEY:
            return "the unplaced records"
        return f"{references[ref][0]}:{(self.lo & 0xFFFFFFFF) * chunk_size + 1:,}-"


def plan(index: BamIndex, references, chunk_size: int, shard_bp: int) -> list[Shard]:
    """The shards, in file order: each reference with records cut into runs of whole windows
    of about ``shard_bp``, then the unplaced records."""
    if len(index.refs) != len(references):
        raise InputError(f"the index lists {len(index.refs)} references where the BAM's header has "
                         f"{len(references)}: it is not this BAM's index")
    per = max(1, shard_bp // chunk_size)
    starts: list[tuple[int, int]] = []  # (first key, virtual offset)
    last_end = 0
    for tid, ((_, length), ri) in enumerate(zip(references, index.refs)):
        if ri.mapped + ri.unmapped == 0:
            continue
        last_end = max(last_end, ri.end)
        n_windows = max(1, -(-int(length) // chunk_size))
        for lo in range(0, n_windows, per):
            tile = (lo * chunk_size) >> _TILE
            if lo and tile >= len(ri.linear):
                break  # no record overlaps (so none starts) this far along
            starts.append(((tid << 32) | lo, ri.begin if lo == 0 else max(int(ri.linear[tile]), ri.begin)))
    if index.no_coor or not starts:
        starts.append((_UNPLACED_KEY, last_end if starts else -1))
    starts[0] = (0, -1)
    ends = [key for key, _ in starts[1:]] + [_END]
    return [Shard(i, lo, hi, start) for i, ((lo, start), hi) in enumerate(zip(starts, ends))]


# ------------------------------------------------------------------ one shard (runs on a worker)
def _reader(src: str) -> tuple[Callable[[int, int], bytes], int]:
    """``read(offset, n)`` of the input's bytes, and its size."""
    path = local_path(src)
    if path is not None:
        size = os.path.getsize(path)

        def read_local(offset: int, n: int) -> bytes:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(n)

        return read_local, size
    parent, _, key = src.rpartition("/")
    store = open_store(parent)
    size = store.size(key)
    if size is None:
        raise InputError(f"{src}: no such object", source=src)
    return (lambda offset, n: store.get_range(key, offset, min(size, offset + n)) if offset < size else b""), size


def _records_from(src: str, voffset: int, piece: int = 4 << 20) -> Iterator[RecordBatch]:
    """The input's records from a virtual offset on, in batches."""
    read_at, _ = _reader(src)
    pos = voffset >> 16
    skip = voffset & 0xFFFF

    def read(n: int) -> bytes:
        nonlocal pos
        b = read_at(pos, n)
        pos += len(b)
        return b

    def pieces() -> Iterator[bytes]:
        first = True
        for p in bgzf.decompress_stream(read, piece):
            if first:
                p, first = p[skip:], False
            yield p

    return record_batches(pieces(), b"", 8 << 20)


def _after_header(src: str) -> Iterator[RecordBatch]:
    inp = open_input(src)
    try:
        yield from inp.batches
    finally:
        inp.close()


def convert_shard(src: str, dst: str, prefix: str, shard: Shard, references, opts: ConvertOptions
                  ) -> tuple[list[dict], StatsAccumulator, np.ndarray, list[dict]]:
    """One shard's chunks encoded and uploaded: (their table rows, the shard's statistics, its
    binned depth, its parts of the count index, numbered from its first chunk)."""
    codecs, column_codecs = opts.codecs()
    store = open_store(dst, create=True)
    depth = DepthAccumulator(references)
    pipe = _Pipeline(store, prefix, codecs, column_codecs, opts.workers, opts.chunk_size,
                     count_slots=opts.count_slots, depth=depth, ref_lengths=[int(n) for _, n in references],
                     first_object=shard.number * OBJECT_STRIDE, count_index=opts.count_index)
    stats = StatsAccumulator(len(references))
    windows = _Windows(len(references), opts.chunk_size, opts.chunk_raw, src)
    lo, hi = shard.lo, shard.hi
    # from the first record at or past the shard's start to the first past its end; records out
    # of order in between are refused by _Windows, and any record a shard missed because of
    # them is found missing by the driver's count against the index
    batches = _records_from(src, shard.start) if shard.start >= 0 else _after_header(src)
    try:
        for batch in batches:
            keys = window_keys(batch.core, opts.chunk_size)
            past = keys >= hi
            b = int(np.argmax(past)) if past.any() else len(keys)
            at = keys[:b] >= lo
            a = int(np.argmax(at)) if at.any() else b
            if b > a:
                part = batch.slice(a, b)
                stats.add(part.core, part.nbytes)
                for chunk, r, w in windows.feed(part):
                    pipe.submit(chunk, r, w)
            if b < len(keys):
                break
        for chunk, r, w in windows.finish():
            pipe.submit(chunk, r, w)
        rows = pipe.finish()
    except InputError as exc:
        pipe.abort()
        where = shard.label(references, opts.chunk_size)
        raise InputError(f"{src}: the records its index points to for {where} cannot be read ({exc}); the index "
                         "may be stale (run `samtools index` again)", source=src) from None
    except BaseException:
        pipe.abort()
        raise
    return rows, stats, depth.sums, pipe.parts


# ------------------------------------------------------------------ the driver
def convert(src: str, dst: str, *, client=None, shard_bp: int | str = DEFAULT_SHARD_BP, engine: str = "dask",
            scheduler: str | None = None, n_workers: int = 2, progress: Callable[[int, int], None] | None = None,
            **options) -> Metadata:
    """Convert the indexed BAM ``src`` into the dataset ``dst`` by region shards: tasks on
    ``client`` (a ``distributed.Client``), on the cluster at ``scheduler``, on a LocalCluster of
    ``n_workers`` processes (``engine="dask"``), or one after another here (``engine="local"``).
    ``options``: those of :func:`bams3.converter.convert` but ``sort`` and ``reference``
    (``workers``: threads of each shard). The dataset holds what a single conversion writes."""
    from .converter import parse_chunk_size
    from .cohort import run

    if options.get("sort") or options.get("reference"):
        raise UsageError("a sharded conversion reads an indexed BAM: --sort and --reference do not apply")
    if src in STDIN:
        raise UsageError("a sharded conversion reads an indexed BAM file, not standard input")
    opts = ConvertOptions.of(**options)
    shard_bp = parse_chunk_size(shard_bp)
    if shard_bp < opts.chunk_size:
        raise UsageError(f"the shard size ({shard_bp:,} bp) is smaller than a chunk ({opts.chunk_size:,} bp)")
    inp = open_input(src)
    try:
        header, fmt, size = inp.header, inp.format, inp.size
    finally:
        inp.close()
    if fmt != "BAM":
        raise UsageError(f"{src} is {fmt}; a sharded conversion reads an indexed BAM (convert it without shards)")
    _check_header(header, src)
    where, data = _find_index(src)
    index = read_bai(data, where)
    shards = plan(index, header.references, opts.chunk_size, shard_bp)
    with removed_on_failure(dst):
        store = open_store(dst, create=True)
        found = destination.inspect(store, dst, opts.force)
        prefix = new_run(store, os.path.basename(src))
        publish = _Publish()
        try:
            task_opts = attrs.evolve(opts, progress=None)
            jobs = [(src, dst, prefix, s, header.references, task_opts) for s in shards]
            results = run(convert_shard, jobs, engine=engine, workers=n_workers, scheduler=scheduler, client=client,
                          progress=progress) if engine == "dask" or client is not None else \
                [convert_shard(*job) for job in jobs]
            meta = _merge(src, header, fmt, size, opts, prefix, results)
            _check_counts(src, index, meta.stats)
            depth = DepthAccumulator(header.references)
            for _, _, sums, _ in results:
                depth.sums += sums
            frame = depth.encode()
            meta = attrs.evolve(meta, coverage=depth.describe(prefix + COVERAGE_OBJECT, frame))
            store.put(meta.coverage["object"], frame)
            table_frame = meta.external_chunks()
            if table_frame is not None:
                store.put(meta.chunks_key, table_frame)
            publish(store, dst, meta.to_json(), found.version)
        except BaseException:
            if publish.may_remove_chunks:
                if client is not None or scheduler:
                    # shards on a cluster this call did not start may still be running (cancelling a
                    # running task does not stop it): the run keeps its marker, so that whatever
                    # they write is a marked leftover, which the next conversion here removes
                    _delete_prefix(store, prefix, keep=destination.run_marker(prefix))
                else:
                    _delete_prefix(store, prefix)
            raise
        remove_replaced(store, dst, found, prefix)
    return meta


def _merge(src, header, fmt, size, opts, prefix, results) -> Metadata:
    rows = [row for shard_rows, _, _, _ in results for row in shard_rows]
    stats = StatsAccumulator(len(header.references))
    parts, before = [], 0
    for shard_rows, s, _, shard_parts in results:
        stats.merge(s)
        parts.extend({**p, "first": p["first"] + before} for p in shard_parts)
        before += len(shard_rows)
    table = ChunkTable.from_rows(rows)
    codecs, _ = opts.codecs()
    reg = get_registry(codecs=[c.name for c, _ in codecs])
    return Metadata(
        header_text=header.text,
        references=header.references,
        chunk_size=opts.chunk_size,
        count_slot_bp=count_slot_bp(opts.chunk_size) if opts.count_slots else 0,
        codecs=tuple(CodecSpec(c.name, lv, _package(reg, c.name)) for c, lv in codecs),
        data_prefix=prefix,
        chunks=table,
        stats=stats.result(header.references, int(table.nbytes.sum()) if len(table) else 0, len(table)),
        source={"name": os.path.basename(src), "format": fmt, "size": size},
        created_by=f"bams3 {__version__}",
        count_index=tuple(parts) or None,
        # numbered objects need v3 readers; a single shard's chunks are numbered in table order
        format_version=SHARDED_VERSION if "object" in table.columns else FORMAT_VERSION,
    )


def _check_counts(src: str, index: BamIndex, stats: dict) -> None:
    """Every reference's mapped and unmapped records, and the unplaced, as the index counts
    them: a stale index (or a shard that missed records) fails the conversion, never
    publishes a dataset short of records."""
    for (name, _, mapped, unmapped), ri in zip(stats["idxstats"], index.refs):
        if (mapped, unmapped) != (ri.mapped, ri.unmapped):
            raise InputError(f"{src}: the index counts {ri.mapped + ri.unmapped:,} records on {name} where the BAM "
                             f"holds {mapped + unmapped:,} there; the index is stale (run `samtools index` again)",
                             source=src)
    if stats["idxstats"][-1][3] != index.no_coor:
        raise InputError(f"{src}: the index counts {index.no_coor:,} unplaced records where the BAM holds "
                         f"{stats['idxstats'][-1][3]:,}; the index is stale (run `samtools index` again)", source=src)
