"""Reading a dataset: header, statistics, exact counts and region queries."""

from __future__ import annotations

import builtins
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from ._threads import ordered_map
from .errors import DatasetError, InputError, PluginError
from .format import METADATA_KEY, ChunkReader, Metadata, chunk_key, decode_slots, slot_range
from .plugins import get_registry
from .records import Header, RecordBatch
from .region import POS_MAX, Region, read_bed
from .storage import open_store

DEFAULT_WORKERS = 4


def open(url: str) -> Dataset:  # noqa: A001 - the API is bams3.open(url)
    """Open the dataset at ``url`` (a path, ``file://``, ``memory://``, ...)."""
    return Dataset.open(url)


class Dataset:
    """A bams3 dataset. Reads only what each question needs."""

    def __init__(self, store, meta: Metadata, url: str, workers: int = DEFAULT_WORKERS):
        self.store = store
        self.meta = meta
        self.url = url
        self.workers = workers
        self.header = Header(meta.header_text, meta.references)
        self._codecs = None
        self._depth = None  # binned depth, fetched on first use

    @classmethod
    def open(cls, url: str, workers: int = DEFAULT_WORKERS) -> Dataset:
        store = open_store(url)
        try:
            data = store.get(METADATA_KEY)
        except FileNotFoundError:
            raise DatasetError(
                f"no bams3 dataset at {url} (no {METADATA_KEY}; create one with `bams3 convert in.bam {url}`)"
            ) from None
        except IsADirectoryError:
            raise DatasetError(f"no bams3 dataset at {url}") from None
        return cls(store, Metadata.from_json(data, url), url, workers)

    # ------------------------------------------------------------------ metadata
    @property
    def references(self) -> list[tuple[str, int]]:
        return list(self.meta.references)

    @property
    def stats(self) -> dict:
        return self.meta.stats

    @property
    def chunks(self):
        """The chunk table (fetched on first use when it is stored as an object of its own)."""
        if self.meta.chunks is None:
            key = self.meta.chunks_key
            try:
                frame = self.store.get_range(key, 0, int(self.meta.chunks_ref["nbytes"]) + 1)  # recorded size, capped
            except FileNotFoundError:
                raise DatasetError(f"{self.url}: the chunk table {key} is missing; the dataset is corrupt") from None
            self.meta.load_chunks(frame, self.url)  # validated there, references included
        return self.meta.chunks

    def depth_sums(self) -> np.ndarray:
        """Per reference, per stored bin: the sum of depth over the bin's positions (coverage.py)."""
        from .coverage import decode_depth

        if self._depth is None:
            ref = self.meta.coverage
            if ref is None:
                raise DatasetError(f"{self.url} has no binned coverage (written before bams3 stored it); "
                                   f"convert it again to get it")
            try:
                frame = self.store.get_range(ref["object"], 0, int(ref["nbytes"]) + 1)  # recorded size, capped
            except FileNotFoundError:
                raise DatasetError(f"{self.url}: the coverage object {ref['object']} is missing; "
                                   f"the dataset is corrupt") from None
            sums = decode_depth(frame, ref, self.url)
            expect = sum(max(1, -(-length // ref["bin"])) for _, length in self.meta.references)
            if len(sums) != expect:
                raise DatasetError(f"{self.url}: the coverage object does not match the references; corrupt")
            self._depth = sums
        return self._depth

    def coverage(self, region: str | Region | None = None, bin_bp: int | None = None) -> list[tuple]:
        """(reference, start, end, mean depth) per bin: 0-based half-open, as samtools depth counts depth
        (no UNMAP/SECONDARY/QCFAIL/DUP records, no deletions), from the stored bins alone."""
        from .coverage import bin_table

        sums = self.depth_sums()
        stored = self.meta.coverage["bin"]
        r = None
        if region is not None:
            reg = self.region(region) if not isinstance(region, Region) else region
            if reg.tid < 0:
                raise InputError("coverage needs a region on a reference, not '*'")
            r = (reg.tid, reg.beg, reg.end)
        try:
            return bin_table(sums, self.meta.references, bin_bp or stored, stored, r)
        except ValueError as exc:
            raise InputError(str(exc)) from None

    @property
    def codecs(self) -> list:
        if self._codecs is None:
            reg = get_registry()
            out = []
            for spec in self.meta.codecs:
                try:
                    out.append(reg.codec(spec.name))
                except PluginError:
                    if spec.package and spec.package != "?":
                        hint = f"install {spec.package!r}, the package that provided it (pip install {spec.package})"
                    else:
                        hint = f"install the package that provides the {spec.name!r} codec"
                    raise PluginError(f"{self.url} was written with codec {spec.name!r}, which no installed plugin "
                                      f"provides; {hint}") from None
            self._codecs = out
        return self._codecs

    def region(self, text: str | Region) -> Region:
        return text if isinstance(text, Region) else Region.parse(text, self.meta.references)

    def bed(self, path: str) -> list[Region]:
        return read_bed(path, self.meta.references)

    # ------------------------------------------------------------------ chunks
    def _reader(self, index: int, prefix_only: bool = False) -> ChunkReader:
        key = chunk_key(self.meta.data_prefix, index)
        t = self.chunks
        try:
            if prefix_only:
                blob = self.store.get_range(key, 0, int(t.count_nbytes[index]))
            else:  # one byte more than recorded: a larger object is noticed, and never read whole
                blob = self.store.get_range(key, 0, int(t.nbytes[index]) + 1)
        except FileNotFoundError:
            raise DatasetError(
                f"{self.url}: chunk {key} is missing; the dataset is incomplete or damaged"
            ) from None
        want = int(t.count_nbytes[index] if prefix_only else t.nbytes[index])
        if len(blob) != want:
            raise DatasetError(f"{self.url}: chunk {key} has the wrong size; the dataset is damaged")
        reader = ChunkReader(blob, self.codecs, f"{self.url}/{key}", max_raw=int(t.raw_nbytes[index]))
        if reader.n_records != t.n_records[index]:
            raise DatasetError(f"{self.url}: chunk {key} does not match the chunk table; the dataset is damaged")
        if not prefix_only:
            reader.verify_checksums(int(t.slot_nbytes[index]))
        return reader

    def _candidates(self, tid: int, beg: int, end: int) -> np.ndarray:
        t = self.chunks
        if tid < 0:
            return np.flatnonzero(t.ref_id == -1)
        return np.flatnonzero((t.ref_id == tid) & (t.min_pos < end) & (t.max_end > beg))

    def _inside(self, index: int, ivs) -> bool:
        """Every record of the chunk starts inside one interval (so all of them overlap it)."""
        t = self.chunks
        lo, hi = int(t.min_pos[index]), int(t.max_pos[index])
        return any(lo >= b and hi < e for b, e in ivs)

    @staticmethod
    def _merge(regions: Sequence[Region]) -> dict[int, list[tuple[int, int]]]:
        by_tid: dict[int, list[tuple[int, int]]] = {}
        for r in regions:
            by_tid.setdefault(r.tid, []).append((r.beg, r.end))
        for tid, ivs in by_tid.items():
            ivs.sort()
            merged = [list(ivs[0])]
            for b, e in ivs[1:]:
                if b <= merged[-1][1]:
                    merged[-1][1] = max(merged[-1][1], e)
                else:
                    merged.append([b, e])
            by_tid[tid] = [(b, e) for b, e in merged]
        return by_tid

    def _plan(self, regions: Sequence[Region], union: bool) -> list[tuple[int, tuple[tuple[int, int], ...]]]:
        """(chunk index, intervals to keep) in output order."""
        plan = []
        if union:
            merged = self._merge(regions)
            for tid in sorted(merged, key=lambda t: (t < 0, t)):
                ivs = merged[tid]
                idx = np.unique(np.concatenate([self._candidates(tid, b, e) for b, e in ivs]))
                plan += [(int(i), tuple(ivs)) for i in idx]
        else:
            for r in regions:
                plan += [(int(i), ((r.beg, r.end),)) for i in self._candidates(r.tid, r.beg, r.end)]
        return plan

    def _regions(self, regions) -> list[Region]:
        if regions is None:
            return []
        if isinstance(regions, (str, Region)):
            regions = [regions]
        return [self.region(r) for r in regions]

    # ------------------------------------------------------------------ count
    def count(self, regions: str | Region | Iterable[str | Region] | None = None, union: bool = False) -> int:
        """Records overlapping the region(s), as ``samtools view -c`` counts them.

        Several regions are counted one after another (a record in two regions
        counts twice), like samtools; ``union=True`` counts each record once
        (``samtools view -c -L regions.bed``). No region: every record.
        """
        rs = self._regions(regions)
        t = self.chunks
        if not rs:
            return int(self.meta.stats["n_records"])
        total = 0
        edges = []
        for index, ivs in self._plan(rs, union):
            if t.ref_id[index] < 0 or self._inside(index, ivs):
                total += int(t.n_records[index])
            else:
                edges.append((index, ivs))

        def count_edge(item):
            index, ivs = item
            if len(ivs) == 1 and t.slot_nbytes[index] and self.meta.count_slot_bp:
                n = self._count_with_slots(index, *ivs[0])
                if n is not None:
                    return n
            pos, span = self._reader(index, prefix_only=True).positions()
            return int(np.count_nonzero(_overlap_mask(pos, span, ivs)))

        total += sum(ordered_map(count_edge, edges, self.workers))
        return total

    def _count_with_slots(self, index: int, beg: int, end: int) -> int | None:
        """Records of an edge chunk overlapping [beg, end), from the count slots at the
        region's edges (one ranged read). None when earlier reads may reach ``beg`` and
        every position is needed."""
        t, m = self.chunks, self.meta
        slot_bp, size = m.count_slot_bp, int(t.slot_nbytes[index])
        w0 = int(t.window[index]) * m.chunk_size
        n = int(t.n_records[index])
        lo, hi = int(t.min_pos[index]), int(t.max_pos[index])
        use_beg, use_end = beg > lo, end <= hi
        j0, j1 = slot_range(lo, hi, w0, slot_bp, m.n_slots)
        n_slots = j1 - j0 + 1  # this chunk's slots: j0..j1, stored from 0

        def slot(x: int) -> int:
            return min(max((x - w0) // slot_bp, j0), j1) - j0

        jb, je = slot(beg), slot(end)
        need = ([max(jb - 1, 0), jb] if use_beg else []) + ([je] if use_end else [])
        if not need:
            return n
        first, last = min(need), max(need)
        key = chunk_key(m.data_prefix, index)
        base = int(t.nbytes[index]) - n_slots * size
        try:
            blob = self.store.get_range(key, base + first * size, base + (last + 1) * size)
        except FileNotFoundError:
            raise DatasetError(f"{self.url}: chunk {key} is missing; the dataset is incomplete or damaged") from None
        if base < 0 or len(blob) != (last - first + 1) * size:
            raise DatasetError(f"{self.url}: chunk {key} has the wrong size; the dataset is damaged")
        slots = decode_slots(blob, first, size, w0 + j0 * slot_bp, slot_bp, self.codecs[0], f"{self.url}/{key}", n)

        def below(x: int, j: int) -> int:  # records with pos < x
            n_before, _, pos, _ = slots[j - first]
            return n_before + int(np.count_nonzero(pos < x))

        total = (below(end, je) if use_end else n) - (below(beg, jb) if use_beg else 0)
        if use_beg:
            k0 = max(jb - 1, 0)
            if slots[k0 - first][1] > beg:  # a read before these slots reaches the region
                return None
            for k in range(k0, jb + 1):
                _, _, pos, span = slots[k - first]
                total += int(np.count_nonzero((pos < beg) & (pos + span > beg)))
        return total

    # ------------------------------------------------------------------ records
    def batches(
        self, regions: str | Region | Iterable[str | Region] | None = None, union: bool = False
    ) -> Iterator[RecordBatch]:
        """Raw record batches for the region(s) in samtools' order (all records when None)."""
        rs = self._regions(regions)
        t = self.chunks
        if rs:
            plan = self._plan(rs, union)
        else:
            plan = [(i, ((-1, POS_MAX),)) for i in range(len(t))]

        def load(item):
            index, ivs = item
            reader = self._reader(index)
            if not rs or t.ref_id[index] < 0 or self._inside(index, ivs):
                return reader.records()
            pos, span = reader.positions()
            mask = _overlap_mask(pos, span, ivs)
            if not mask.any():
                return None
            return reader.records().select(mask)

        for batch in ordered_map(load, plan, self.workers):
            if batch is not None and len(batch):
                yield batch

    def fetch(self, regions=None, union: bool = False):
        """pysam ``AlignedSegment`` objects for the region(s), like ``AlignmentFile.fetch``."""
        from ._pysam import records_via_htslib

        return records_via_htslib(self.header, self.batches(regions, union))

    def write(self, out, regions=None, *, format: str = "sam", union: bool = False, options: dict | None = None,
              limit: int | None = None):
        """Write the records of the region(s) to ``out`` (a binary file) in an output format.

        ``limit``: at most this many records. ``options`` go to the format (e.g. ``{"header": True}``).
        """
        fmt = get_registry().output_format(format)
        batches = self.batches(regions, union)
        if limit is not None:
            batches = _first(batches, limit)
        writer = fmt.open(out, self.header, dict(options or {}))
        try:
            for batch in batches:
                writer.write(batch)
        except BaseException:
            abort = getattr(writer, "abort", None)
            if abort:
                abort()
            raise
        writer.close()

    def to_bam(self, path: str, region=None, *, index: bool = False, threads: int = 2, level: int = 6) -> None:
        """Write the records (of a region) as a BAM file, through a temporary name."""
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise InputError(f"cannot write {path}: directory {directory} does not exist")
        tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
        try:
            with builtins.open(tmp, "wb") as f:
                self.write(f, region, format="bam", options={"threads": threads, "level": level})
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        if index:
            import pysam

            pysam.index(path)


def _first(batches: Iterable[RecordBatch], n: int) -> Iterator[RecordBatch]:
    left = n
    for b in batches:
        if left <= 0:
            return
        if len(b) > left:
            b = b.slice(0, left)
        left -= len(b)
        yield b


def _overlap_mask(pos: np.ndarray, span: np.ndarray, ivs) -> np.ndarray:
    end = pos + span
    mask = np.zeros(len(pos), dtype=bool)
    for b, e in ivs:
        mask |= (pos < e) & (end > b)
    return mask
