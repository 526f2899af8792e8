"""BAM/SAM/CRAM -> bams3 dataset, streaming: records are read, split into
windows, encoded and uploaded on worker threads while the input is still being
read. ``_metadata.json`` is written last, so an interrupted run never leaves
something that opens as a dataset.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import attrs
import numpy as np

from . import __version__
from ._child import Child
from ._threads import ending, prefetch
from .coverage import DepthAccumulator, chunk_depth
from . import destination
from .errors import ConflictError, DatasetExistsError, InputError, StorageError, UsageError
from .format import (
    COUNT_INDEX_OBJECT,
    COVERAGE_OBJECT,
    MAX_METADATA_BYTES,
    METADATA_KEY,
    QUAL_COLUMN,
    SEQ_COLUMN,
    ChunkTable,
    CodecSpec,
    Metadata,
    chunk_key,
    count_slot_bp,
    encode_chunk,
)
from .format.columns import BY_NAME, FIXED
from .inputs import STDIN, open_input, unknown_reference
from .plugins import get_registry, outside_origins
from .records import RecordBatch
from .stats import StatsAccumulator
from .storage import local_path, open_store

AUX_COLUMN = BY_NAME["aux"].id
DEFAULT_CHUNK_SIZE = 1 << 20
MAX_CHUNK_RAW = 4 << 20  # a window holding more raw record bytes is stored as several chunks
HIGH_CHUNK_RAW = 32 << 20  # the same with --compression high (PROFILES)
_UNPLACED = np.int64((1 << 31) - 1)  # sorts after every reference index

_BINARY_SUFFIX = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def _real_cigars(batch: RecordBatch, cigar: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The records' CIGARs as samtools depth sees them: a CIGAR of over 65535 operations kept in a
    CG tag put back (then with each record's operation count; None when there is none)."""
    core = batch.core
    n = core["n_cigar_op"]
    if not (n == 2).any():
        return cigar, None
    ops = cigar.view("<u4")
    off = np.zeros(len(core) + 1, dtype=np.int64)
    np.cumsum(n, out=off[1:])
    two = np.flatnonzero(n == 2)
    # htslib's placeholder, as Fields._long_cigars finds it: <l_seq>S<span>N (a soft clip and a
    # match, common, is not one: the records' fields are parsed only for a placeholder)
    if not ((ops[off[two]] == ((core["l_seq"][two].astype(np.int64) << 4) | 4))
            & ((ops[off[two] + 1] & 0xF) == 3)).any():
        return cigar, None
    from .fields import Fields

    real, real_off = Fields.of_batch(batch).cigar
    if len(real) == len(ops):
        return cigar, None
    return real, np.diff(real_off)


def _binary_number(text: str, units: tuple[str, ...]) -> int | None:
    """``256K``, ``4M``, ``1G`` (binary multiples) or a plain number, after any of ``units``
    (``bp``, ``b``); None when it is not one."""
    t = text.strip().lower()
    for unit in units:
        t = t.removesuffix(unit)
    suffix = t[-1:] if t[-1:] in ("k", "m", "g") else ""
    digits = t[: len(t) - len(suffix)].replace(",", "").replace("_", "")
    return int(digits) * _BINARY_SUFFIX[suffix] if digits.isdigit() else None


def parse_chunk_size(text: str | int) -> int:
    """``256K``, ``1M``, ``2M`` (binary multiples: 1M = 1,048,576 bp) or a plain number."""
    value = text if isinstance(text, int) else _binary_number(text, ("bp", "b"))
    if value is None:
        raise UsageError(f"bad chunk size {text!r} (use e.g. 256K, 1M, 2M or a number of bp)")
    if not 1024 <= value <= 1 << 30:
        raise UsageError(f"chunk size {value} bp is out of range (1K to 1G)")
    return value


def parse_raw_size(text: str | int) -> int:
    """``--max-chunk-raw``: ``512K``, ``4M``, ``32M`` (binary multiples) or a plain number of bytes."""
    value = text if isinstance(text, int) else _binary_number(text, ("ib", "b"))
    if value is None:
        raise UsageError(f"bad size {text!r} for --max-chunk-raw (use e.g. 512K, 4M, 32M or a number of bytes)")
    return value


@attrs.frozen
class ConvertOptions:
    """How to convert: every option of :func:`convert` but the input and the destination,
    checked once (:meth:`of`)."""

    chunk_size: int = DEFAULT_CHUNK_SIZE
    workers: int = 2
    compression: str = "default"
    codec: str | None = None
    level: int | None = None
    qual_codec: str | None = None
    seq_codec: str | None = None
    aux_codec: str | None = None
    mate_codec: str | None = None
    name_codec: str | None = None
    force: bool = False
    reference: str | None = None
    sort: bool = False
    progress: Callable[[int, int | None], None] | None = attrs.field(default=None, eq=False)
    max_chunk_raw: int | None = None  # None: the compression setting's (MAX_CHUNK_RAW, HIGH_CHUNK_RAW)
    slots: bool | None = None  # count slots (docs/format.md §4.5); None: as the compression setting says
    count_index: bool = False  # the count index (docs/format.md, "The count index")

    @classmethod
    def of(cls, chunk_size: int | str = DEFAULT_CHUNK_SIZE, workers: int = 2, compression: str = "default",
           **kwargs) -> ConvertOptions:
        if compression not in PROFILES:
            raise UsageError(f"unknown compression setting {compression!r} (use {' or '.join(PROFILES)})")
        if kwargs.get("max_chunk_raw") is not None:
            kwargs["max_chunk_raw"] = parse_raw_size(kwargs["max_chunk_raw"])
        opts = cls(chunk_size=parse_chunk_size(chunk_size), workers=max(1, int(workers)), compression=compression,
                   **kwargs)
        if opts.max_chunk_raw is not None and not 1 <= opts.max_chunk_raw <= 1 << 28:  # readers refuse chunks over 1 GiB
            raise UsageError(f"a chunk limit (--max-chunk-raw) of {opts.max_chunk_raw:,} bytes is outside "
                             "1 byte to 256 MiB")
        return opts

    @property
    def chunk_raw(self) -> int:
        """The most raw record bytes a chunk holds: ``max_chunk_raw``, or the compression setting's."""
        if self.max_chunk_raw is not None:
            return self.max_chunk_raw
        return PROFILES[self.compression]["max_chunk_raw"]

    @property
    def count_slots(self) -> bool:
        return PROFILES[self.compression]["count_slots"] if self.slots is None else bool(self.slots)

    def codecs(self):
        """The (codec, level) list of the dataset and which columns use which (see :func:`codec_plan`)."""
        return codec_plan(self.compression, self.codec, self.level, self.qual_codec, self.seq_codec, self.aux_codec,
                          self.mate_codec, self.name_codec)


@attrs.frozen
class _Job:
    """One conversion, its paths resolved once: ``path`` is what is read (the input, or its
    sorted copy), ``source`` the name the user gave; ``store`` and ``found`` the destination."""

    path: str
    source: str
    dst: str
    store: object
    found: object
    opts: ConvertOptions
    codecs: list
    column_codecs: dict


def convert(src: str, dst: str, **options) -> Metadata:
    """Convert a coordinate-sorted BAM, SAM or CRAM file into a bams3 dataset at ``dst``.

    Options (:class:`ConvertOptions`): ``chunk_size`` (``"1M"``), ``workers``, ``compression``
    (``"default"`` or ``"high"``), ``codec``, ``level``, ``qual_codec``, ``seq_codec``, ``aux_codec``, ``mate_codec``, ``name_codec``, ``force``,
    ``reference`` (CRAM), ``sort``, ``progress(done, total)``, ``max_chunk_raw`` (raw record bytes
    a chunk holds at most; default 4 MiB, 32 MiB with ``"high"``), ``slots`` (count
    slots: True or False; default: none), ``count_index`` (the count index; default: none)."""
    opts = ConvertOptions.of(**options)
    codecs, column_codecs = opts.codecs()
    src_path = local_path(src)
    stdin = src in STDIN
    if src_path is not None and not stdin and not os.path.exists(src_path):
        raise InputError(f"{src}: no such file", source=src)
    if opts.sort and (src_path is None or stdin):
        raise UsageError("--sort needs a local input file; sort it with `samtools sort` first")
    with removed_on_failure(dst):
        store = open_store(dst, create=True)
        found = destination.inspect(store, dst, opts.force)
        job = _Job(src, src, dst, store, found, opts, codecs, column_codecs)
        if not opts.sort:
            return _convert(job)
        with tempfile.TemporaryDirectory(prefix="bams3-sort-") as tmp:
            sorted_path = os.path.join(tmp, "sorted.bam")
            _sort(src, sorted_path, opts.reference, opts.workers)
            return _convert(attrs.evolve(job, path=sorted_path))


@contextlib.contextmanager
def removed_on_failure(dst: str):
    """A local destination directory that this run makes is removed again, with its empty
    data/, if the run fails (only empty directories: never anything in them)."""
    local = local_path(dst)
    fresh = local is not None and not os.path.exists(local)
    try:
        yield
    except BaseException:
        if fresh:
            for root, _, _ in sorted(os.walk(local), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(root)
        raise


# What --compression chooses; explicit --codec/--level/--qual-codec/--seq-codec/--aux-codec/--mate-codec/
# --name-codec override it.
# No count slots in either: a count reads the short pos/span prefix of its edge chunks (one
# ranged read each, as a slot would be), and slots took more room than the pos column itself.
# seq_level: the consensus codec's zstd level for its sections (None: the codec's own, 19); 3
# costs 2% of the sequences' size and saves a third of the codec's time. aux_level: the tags
# codec's zstd level for its sections (None: its own, 3); 15 saves 10% of the optional fields
# for ~1 s of CPU on the benchmark sample.
# fixed_level: zstd's level for the fixed-width columns and the CIGARs; 3 instead of 9 costs
# 0.2% of the dataset and a quarter of the time zstd took; high's 16 saves 82 KB against 12 on
# the benchmark sample (the flags 56 KB, with their byte planes in blocks of their own) for
# ~0.7 s of CPU (19 would save 4 KB more for ~2 s more). level: codec 0's, for what no other
# codec takes (the count slots; the read names with --name-codec none, which zstd codes nearly
# as small at 5 as at 9, 1% larger, in 40% of the time).
# max_chunk_raw: the raw record bytes a chunk holds at most;
# high's 32 MiB is ~100,000 reads of 150 bp, what a slice holds in CRAM 3.1's archive profile,
# and stores the sample's records in 17 chunks instead of 86: each chunk's table of quality
# frequencies and its sections' frames fewer, 0.43 MB in all.
PROFILES = {
    "default": {"codec": "zstd", "level": 5, "qual_codec": "qual", "seq_codec": "consensus", "seq_level": 3,
                "aux_codec": "tags", "mate_codec": "mates", "name_codec": "names", "fixed_level": 3,
                "count_slots": False, "max_chunk_raw": MAX_CHUNK_RAW},
    "high": {"codec": "zstd", "level": 12, "qual_codec": "qual", "seq_codec": "consensus", "seq_level": None,
             "aux_codec": "tags", "aux_level": 15, "mate_codec": "mates", "name_codec": "names", "fixed_level": 16,
             "count_slots": False, "max_chunk_raw": HIGH_CHUNK_RAW},
}


# the option that chooses the codec of each column a codec may model
CODEC_OPTIONS = {"qual": "--qual-codec", "seq": "--seq-codec", "aux": "--aux-codec", "next_pos": "--mate-codec",
                 "read_name": "--name-codec"}


def codec_plan(compression="default", codec=None, level=None, qual_codec=None, seq_codec=None, aux_codec=None,
               mate_codec=None, name_codec=None):
    """The (codec, level) list of a dataset and which columns use which (column id -> index)."""
    try:
        profile = PROFILES[compression]
    except KeyError:
        raise UsageError(f"unknown compression setting {compression!r} (use {' or '.join(PROFILES)})") from None
    columns = ((QUAL_COLUMN, "qual", qual_codec or profile["qual_codec"]),
               (SEQ_COLUMN, "seq", seq_codec or profile["seq_codec"]),
               (AUX_COLUMN, "aux", aux_codec or profile["aux_codec"]),
               (BY_NAME["next_pos"].id, "next_pos", mate_codec or profile["mate_codec"]),
               (BY_NAME["read_name"].id, "read_name", name_codec or profile["name_codec"]))
    # bams3's own codecs come without the scan of every installed package (plugins.get_registry)
    reg = get_registry(codecs=[codec or profile["codec"], *(name for _, _, name in columns if name and name != "none")])
    general = reg.codec(codec or profile["codec"])
    chosen = codec is None and level is None  # the profile's codecs and levels, not the user's
    if general.record_aware or general.column:
        raise UsageError(f"codec {general.name!r} models one column ({general.column or 'per base'}); "
                         f"give it with {CODEC_OPTIONS.get(general.column or 'qual', '--qual-codec')}, not --codec")
    if level is None:
        level = profile["level"] if codec is None and profile["level"] is not None else general.default_level
    codecs = [(general, level)]
    column_codecs = {}
    if chosen and profile.get("fixed_level") is not None:
        # the fixed-width columns (and the CIGARs): numbers zstd codes nearly as well at a low level
        codecs.append((general, profile["fixed_level"]))
        for col in (*FIXED, BY_NAME["cigar"]):
            column_codecs[col.id] = len(codecs) - 1
    for column, label, name in columns:
        if name and name not in ("none", general.name):
            obj = reg.codec(name)
            if obj.record_aware and obj.column is None and label not in ("qual", "seq"):
                raise UsageError(f"codec {name!r} models bases and qualities per read, not the {label} column")
            if obj.column not in (None, label):
                raise UsageError(f"codec {name!r} models the {obj.column} column, not {label}: "
                                 f"use it with {CODEC_OPTIONS.get(obj.column, '--qual-codec')}")
            given = {"qual": qual_codec, "seq": seq_codec, "aux": aux_codec, "next_pos": mate_codec,
                     "read_name": name_codec}[label]
            level = profile.get(f"{label}_level") if not given else None
            level = obj.default_level if level is None else level
            codecs.append((obj, level))
            column_codecs[column] = len(codecs) - 1
    return codecs, column_codecs


def _sort(src: str, out: str, reference: str | None, workers: int) -> None:
    """``samtools sort`` in a child process (pysam holds the GIL while it runs), its messages
    read as they come (through a pipe: a full temporary directory must not swallow them):
    htslib only warns when a SAM record names a reference the header lacks, and the sorted file
    would hold it unplaced."""
    args = ["-@", str(workers), "-o", out] + (["--reference", reference] if reference else []) + [src]
    p = Child(["-m", "bams3._htssort", *args], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
              stderr=subprocess.PIPE)
    last = ""
    try:
        for raw in p.stderr:
            line = raw.decode(errors="replace").strip()
            exc = unknown_reference(line)
            if exc is not None:
                raise InputError(f"{src}: {exc}", source=src)
            if line and not line.startswith("[E::bgzf_close]"):  # the consequence, not the cause
                last = line
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()
    if p.returncode:
        why = last or "samtools sort failed"
        tmp = os.path.dirname(out)
        try:
            free = shutil.disk_usage(tmp).free
            need = 2 * os.path.getsize(src)
        except OSError:
            free = need = 0
        if "No space left on device" in why or free < need:
            # (pysam keeps samtools' messages in a temporary file too: with the directory full, it
            # may have none to give)
            why = (f"the temporary directory {os.path.dirname(tmp)} is full ({free:,} bytes free, about "
                   f"{need:,} needed); point TMPDIR at a larger one")
        raise InputError(f"cannot sort {src}: {why}", source=src)


COUNT_INDEX_PART = 64 << 20  # a part of the count index is written once its count prefixes reach this


class _Pipeline:
    """Encodes and uploads chunks on worker threads; keeps at most a few in flight."""

    def __init__(self, store, prefix: str, codecs, column_codecs, workers: int, chunk_size: int,
                 count_slots: bool = True, depth: DepthAccumulator | None = None, ref_lengths: list[int] = (),
                 first_object: int | None = None, count_index: bool = False):
        self.store = store
        self.prefix = prefix
        self.codecs = codecs
        self.column_codecs = column_codecs
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="bams3-encode")
        self.inflight: deque = deque()
        self.limit = workers + 1
        self.rows: list[dict] = []
        self.depth = depth  # binned depth, accumulated as chunks are encoded
        self.ref_lengths = list(ref_lengths)
        self._depth_frame: bytes | None = None
        names = [c.name for c, _ in codecs]
        self.origins = outside_origins(get_registry(codecs=names), "codecs", names)
        # chunks are objects 0, 1, ... in table order; a shard's start at first_object (its rows say so)
        self.numbered = first_object is not None
        self.next_index = first_object or 0
        self.chunk_size = chunk_size
        self.slot_bp = count_slot_bp(chunk_size) if count_slots else 0
        self.n_slots = -(-chunk_size // self.slot_bp) if count_slots else 0
        # the count index (docs/format.md, "The count index"): the chunks' count prefixes, in
        # table order, written as parts of at most about COUNT_INDEX_PART bytes as they fill
        self.count_index = count_index
        self.parts: list[dict] = []
        self._prefixes: list[bytes] = []
        self._part_first = self._part_object = self._pending = 0

    def submit(self, batch: RecordBatch, ref_id: int, window: int) -> None:
        index = self.next_index
        self.next_index += 1
        self.inflight.append(self.pool.submit(self._work, index, batch, ref_id, window))
        while len(self.inflight) > self.limit:
            self._collect(self.inflight.popleft().result())

    def _collect(self, done: tuple[dict, tuple | None, tuple[int, bytes] | None]) -> None:
        row, depth, prefix = done
        if depth is not None and self.depth is not None:
            self.depth.add(row["ref_id"], *depth)
        self.rows.append(row)
        if prefix is not None:
            if not self._prefixes:
                self._part_first, self._part_object = len(self.rows) - 1, prefix[0]
            self._prefixes.append(prefix[1])
            self._pending += len(prefix[1])
            if self._pending >= COUNT_INDEX_PART:
                self._write_part()

    def _write_part(self) -> None:
        """The count prefixes collected so far, as one part of the count index (named by its
        first chunk's object number: unique among the shards of a conversion too)."""
        data = b"".join(self._prefixes)
        key = f"{self.prefix}{COUNT_INDEX_OBJECT}{self._part_object}"
        self.store.put(key, data)
        self.parts.append({"object": key, "first": self._part_first, "n": len(self._prefixes), "nbytes": len(data),
                           "crc32": zlib.crc32(data)})
        self._prefixes, self._pending = [], 0

    def _work(self, index: int, batch: RecordBatch, ref_id: int, window: int
              ) -> tuple[dict, tuple | None, tuple[int, bytes] | None]:
        if ref_id < 0:
            enc = encode_chunk(batch, self.codecs, column_codecs=self.column_codecs, origins=self.origins)
            depth = None
        else:
            enc = encode_chunk(batch, self.codecs, window * self.chunk_size, self.slot_bp, self.n_slots,
                               column_codecs=self.column_codecs, origins=self.origins)
            depth = chunk_depth(batch.core, *_real_cigars(batch, enc.cigar), ref_length=self.ref_lengths[ref_id])
        self.store.put(chunk_key(self.prefix, index), enc.blob)
        row = {"ref_id": ref_id, "window": window, **enc.info}
        if self.numbered:
            row["object"] = index
        return row, depth, (index, enc.blob[:enc.info["count_nbytes"]]) if self.count_index else None

    def finish(self) -> list[dict]:
        while self.inflight:
            self._collect(self.inflight.popleft().result())
        self.pool.shutdown()
        if self._prefixes:
            self._write_part()
        return self.rows

    def depth_frame(self) -> bytes:
        """The coverage object's bytes (once every chunk is in)."""
        if self._depth_frame is None:
            self._depth_frame = self.depth.encode()
        return self._depth_frame

    def abort(self) -> None:
        for f in self.inflight:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _convert(job: _Job) -> Metadata:
    """The write path, in named steps: read (the input and its header) -> window (records cut
    into chunks of one reference window) -> encode and upload (on worker threads, while reading
    goes on) -> publish (the chunk table, coverage and ``_metadata.json``, last)."""
    prefix = new_run(job.store, os.path.basename(job.source))  # the run marks its prefix before anything else
    try:
        inp = _read(job)
    except BaseException:
        _delete_prefix(job.store, prefix)
        raise
    header = inp.header
    opts = job.opts
    pipe = _Pipeline(job.store, prefix, job.codecs, job.column_codecs, opts.workers, opts.chunk_size,
                     count_slots=opts.count_slots, depth=DepthAccumulator(header.references),
                     ref_lengths=[int(length) for _, length in header.references], count_index=opts.count_index)
    stats = StatsAccumulator(len(header.references))
    windows = _Windows(len(header.references), opts.chunk_size, opts.chunk_raw, job.source)
    reader = prefetch(inp.batches, depth=2)
    publish = _Publish()
    try:
        for batch in reader:
            stats.add(batch.core, batch.nbytes)
            for chunk, ref, window in windows.feed(batch):
                pipe.submit(chunk, ref, window)
            if opts.progress is not None and inp.progress is not None:
                opts.progress(inp.progress(), inp.size)
        for chunk, ref, window in windows.finish():
            pipe.submit(chunk, ref, window)
        meta = _describe(job, inp, pipe, stats, prefix)
        _upload_tables(job.store, meta, pipe)
        publish(job.store, job.dst, meta.to_json(), job.found.version)
    except BaseException as exc:
        try:
            reader.close()
            pipe.abort()
            if not ending.is_set():  # ending: reader.close() did not wait for its thread, which may
                inp.close()  # still be inside the input (and the program exits when this is done)
        finally:
            if publish.may_remove_chunks:  # not published, nor perhaps: the run is ours to remove
                _delete_prefix(job.store, prefix)
        if not publish.may_remove_chunks:  # published, or perhaps: the dataset may need them
            raise
        raise _failure(exc, inp, job.source) from None
    inp.close()
    remove_replaced(job.store, job.dst, job.found, prefix)
    return meta


def _read(job: _Job):
    """Step 1: the input opened, its header checked."""
    inp = open_input(job.path, reference=job.opts.reference, threads=job.opts.workers)
    try:
        _check_header(inp.header, job.source)
    except BaseException:
        inp.close()
        raise
    return inp


class _Windows:
    """Step 2: records checked (references the header has, coordinate order) and cut into
    chunks: one reference window each (``chunk_size`` bp; the unplaced records last), at most
    ``max_chunk_raw`` bytes of records (a window holding more is stored as several chunks)."""

    def __init__(self, n_refs: int, chunk_size: int, max_chunk_raw: int, source: str):
        self.n_refs, self.chunk_size, self.max_chunk_raw, self.source = n_refs, chunk_size, max_chunk_raw, source
        self.pending: list[RecordBatch] = []
        self.pending_key = None
        self.pending_bytes = 0
        self.last_key = np.int64(-1)
        self.seen = 0

    def feed(self, batch: RecordBatch) -> Iterator[tuple[RecordBatch, int, int]]:
        """The chunks completed by this batch: (records, reference index, window index)."""
        group = self._check(batch)
        cuts = np.concatenate([[0], np.flatnonzero(group[1:] != group[:-1]) + 1, [len(group)]])
        for a, b in zip(cuts[:-1], cuts[1:]):
            a, b = int(a), int(b)
            if group[a] != self.pending_key:
                yield from self.finish()
                self.pending_key = group[a]
            while a < b:  # fill the pending chunk up to max_chunk_raw, then start another
                ends = batch.offsets[a + 1 : b + 1] - batch.offsets[a]
                take = int(np.searchsorted(ends, self.max_chunk_raw - self.pending_bytes)) + 1
                piece = batch.slice(a, min(a + take, b))
                self.pending.append(piece)
                self.pending_bytes += piece.nbytes
                a += len(piece)
                if self.pending_bytes >= self.max_chunk_raw:
                    yield from self.finish()
        self.seen += len(batch)

    def finish(self) -> Iterator[tuple[RecordBatch, int, int]]:
        """The pending chunk, if any."""
        if self.pending:
            key = int(self.pending_key)
            ref = -1 if key >> 32 == int(_UNPLACED) else key >> 32
            window = -1 if ref < 0 else key & 0xFFFFFFFF
            # one batch's records: a view of them (encoding reads them where they are), not a copy
            chunk = self.pending[0] if len(self.pending) == 1 else RecordBatch.concat(self.pending)
            self.pending, self.pending_bytes = [], 0
            yield chunk, ref, window

    def _check(self, batch: RecordBatch) -> np.ndarray:
        """Each record's (reference << 32 | window), after refusing references the header lacks
        and records out of coordinate order."""
        core, n_refs, seen, source = batch.core, self.n_refs, self.seen, self.source
        refid = core["refid"].astype(np.int64)
        pos = core["pos"].astype(np.int64)
        mate = core["next_refid"]
        bad = (refid < -1) | (refid >= n_refs) | (mate < -1) | (mate >= n_refs)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            which, ref = ("reference", int(refid[i])) if not -1 <= refid[i] < n_refs else \
                ("mate reference", int(mate[i]))
            raise InputError(f"{source}: record {seen + i + 1} refers to {which} #{ref}, "
                             f"but the header has {n_refs} references", source=source)
        ref_u = np.where(refid < 0, _UNPLACED, refid)
        sort_key = (ref_u << 32) | (pos + 1).clip(0, 0xFFFFFFFF)
        order_bad = np.flatnonzero(sort_key[1:] < sort_key[:-1])
        if len(sort_key) and sort_key[0] < self.last_key:
            order_bad = np.concatenate([[-1], order_bad])
        if len(order_bad):
            i = int(order_bad[0]) + 1
            raise InputError(f"{source} is not coordinate-sorted (record {seen + i + 1} is out of order); "
                             f"sort it first with `samtools sort -o sorted.bam {source}` or pass --sort",
                             source=source)
        if len(sort_key):
            self.last_key = sort_key[-1]
        return window_keys(core, self.chunk_size)


def window_keys(core: np.ndarray, chunk_size: int) -> np.ndarray:
    """Each record's (reference << 32 | window), in file order for sorted records: the unplaced
    last (reference 2^31 - 1, window 0), a negative position in window 0."""
    refid = core["refid"].astype(np.int64)
    window = np.where(refid < 0, 0, core["pos"].astype(np.int64).clip(0, None) // chunk_size)
    return (np.where(refid < 0, _UNPLACED, refid) << 32) | window


def _describe(job: _Job, inp, pipe: _Pipeline, stats: StatsAccumulator, prefix: str) -> Metadata:
    """Step 4 done (every chunk uploaded): the dataset's metadata."""
    rows = pipe.finish()
    table = ChunkTable.from_rows(rows)
    header = inp.header
    reg = get_registry(codecs=[c.name for c, _ in job.codecs])
    return Metadata(
        header_text=header.text,
        references=header.references,
        chunk_size=job.opts.chunk_size,
        count_slot_bp=pipe.slot_bp,
        codecs=tuple(CodecSpec(c.name, lv, _package(reg, c.name)) for c, lv in job.codecs),
        data_prefix=prefix,
        chunks=table,
        stats=stats.result(header.references, int(table.nbytes.sum()) if len(table) else 0, len(table)),
        source={"name": os.path.basename(job.source), "format": inp.format, "size": inp.size},
        created_by=f"bams3 {__version__}",
        coverage=pipe.depth.describe(prefix + COVERAGE_OBJECT, pipe.depth_frame()),
        count_index=tuple(pipe.parts) or None,
    )


def _package(reg, codec: str) -> str | None:
    """The distribution that provides a codec (None: a plugin registered at run time)."""
    package = reg.provider("codecs", codec).package
    return None if package == "?" else package


def _upload_tables(store, meta: Metadata, pipe: _Pipeline) -> None:
    """Step 5, before publishing: the coverage object, and the chunk table when it is too large
    to inline."""
    store.put(meta.coverage["object"], pipe.depth_frame())
    table_frame = meta.external_chunks()
    if table_frame is not None:
        store.put(meta.chunks_key, table_frame)


def _failure(exc: BaseException, inp, source: str) -> BaseException:
    """What a failed conversion reports (it published nothing): the decoder's own reason when
    it stopped with one, the input named once."""
    if isinstance(exc, StorageError) and not isinstance(exc, _Unconfirmed):
        return StorageError(f"{exc}; the conversion stopped and published nothing", kind=exc.kind, key=exc.key)
    if isinstance(exc, InputError):
        explained = inp.diagnose()  # the decoder has stopped: did it say why?
        return explained if explained is not None else exc.naming(source)
    return exc


def new_run(store, source: str) -> str:
    """A fresh data prefix, marked as this run's own before anything else is written there."""
    prefix = f"data/{secrets.token_hex(6)}/"
    store.put(destination.run_marker(prefix), json.dumps(
        {"bams3_run": prefix, "created_by": f"bams3 {__version__}", "source": source}).encode() + b"\n")
    return prefix


def remove_replaced(store, dst: str, found, prefix: str) -> None:
    """After publishing: remove the replaced dataset's run and the runs already there when this
    one started (interrupted, or started earlier: their conditional publish can no longer
    succeed). Nothing else."""
    for old in ([found.replaced_prefix] if found.replaced_prefix else []) + list(found.leftovers):
        if old != prefix:
            try:
                _delete_prefix(store, old, quiet=False)
            except Exception as exc:  # the dataset is published; what is left is only garbage
                print(f"bams3: warning: published {dst}, but could not remove the replaced objects under {old} "
                      f"({exc}); `bams3 verify` lists them", file=sys.stderr)


def _check_header(header, source_name: str) -> None:
    """Refuse what samtools refuses and what no reader could answer: a reference named twice
    (a region on it would mean one of them, silently), and a header too large for metadata."""
    seen: dict[str, int] = {}
    for i, (name, _) in enumerate(header.references):
        if name in seen:
            raise InputError(f"{source_name}: the header names reference {name!r} twice (@SQ {seen[name] + 1} and "
                             f"{i + 1}); samtools refuses such a file too", source=source_name)
        seen[name] = i
    size = len(header.text.encode("utf-8", "surrogateescape")) + sum(len(n) + 16 for n, _ in header.references)
    if size > MAX_METADATA_BYTES - (16 << 20):
        raise InputError(f"{source_name}: the header ({size:,} bytes) is too large for a dataset's _metadata.json "
                         f"(at most {MAX_METADATA_BYTES >> 20} MiB in all)", source=source_name)


class _Unconfirmed(StorageError):
    """Writing _metadata.json failed in a way that may still have written it."""


class _Publish:
    """Writes _metadata.json, the one write that makes the dataset visible, and knows
    afterwards whether the chunks may be removed. The write is conditional (stores that
    offer it): create-only when there was no dataset, else only over the version that
    was there when the conversion started, so that of two conversions to one destination
    exactly one publishes. A write that fails, or is interrupted (Ctrl-C, SIGTERM), may
    still have landed (the server stored it and the answer was lost; a retry of such a
    conditional write even fails its condition): the store is asked which, so that a
    published dataset never has its chunks removed from under it."""

    def __init__(self):
        self.started = False
        self.landed: bool | None = None  # None: unknown

    @property
    def may_remove_chunks(self) -> bool:
        return not self.started or self.landed is False

    def __call__(self, store, dst: str, body: bytes, expect: str | None) -> None:
        if len(body) > MAX_METADATA_BYTES:
            raise UsageError(f"the dataset's _metadata.json would be {len(body):,} bytes, more than readers accept "
                             f"({MAX_METADATA_BYTES:,}); the header is too large")
        self.started = True
        try:
            if getattr(store, "conditional_put", False):
                store.put_if(METADATA_KEY, body, expect=expect)
            else:
                store.put(METADATA_KEY, body)
            self.landed = True
            return
        except BaseException as exc:
            failure = exc
        try:
            self.landed = store.get(METADATA_KEY) == body
        except FileNotFoundError:
            self.landed = False
        except Exception:
            self.landed = None
        if isinstance(failure, (KeyboardInterrupt, SystemExit)):
            raise failure  # interrupted all the same; the chunks stay unless it did not land
        if self.landed:
            return  # the write landed; only its answer was lost
        if self.landed is None:
            raise _Unconfirmed(f"{failure}; writing its _metadata.json failed and whether it landed is unknown: "
                               f"check with `bams3 verify {dst}`, or convert again with --force") from None
        if isinstance(failure, ConflictError):
            raise DatasetExistsError(f"another conversion published a dataset at {dst} while this one ran; "
                                     "this one published nothing and removed what it wrote") from None
        raise failure


def _delete_prefix(store, prefix: str, quiet: bool = True, keep: str | None = None) -> None:
    """Delete every object under ``prefix`` (a run of ours) but ``keep``. ``quiet``: failures
    are ignored (cleaning up after a failure that is being reported)."""
    try:
        for key, _ in list(store.list(prefix)):
            if key != keep:
                store.delete(key)
    except Exception:
        if not quiet:
            raise
