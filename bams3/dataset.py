"""Reading a dataset: header, statistics, exact counts and region queries."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from concurrent.futures import Future

import attrs
import numpy as np

from . import __version__
from ._threads import ordered_map
from .errors import CorruptDatasetError, DatasetError, InputError, NotADatasetError
from .fields import Fields, columns_for
from .frames import FramesMixin
from .filters import ReadFilter
from .format import MAX_METADATA_BYTES, METADATA_KEY, ChunkReader, Metadata, Selection
from .format.columns import ALL as ALL_COLUMNS
from .plugins import get_registry, plugin_code
from .pysam_api import AlignmentFileMixin, AlignmentHeader
from .records import RecordBatch
from .region import POS_MAX, Region, read_bed
from .source import ChunkSource
from .storage import open_store

DEFAULT_WORKERS = 4


def open(url: str) -> Dataset:  # noqa: A001 - the API is bams3.open(url)
    """Open the dataset at ``url`` (a path, ``file://``, ``memory://``, ...)."""
    return Dataset.open(url)


class Dataset(AlignmentFileMixin, FramesMixin):
    """A bams3 dataset. Reads only what each question needs: the chunk table plans which
    chunks a selection touches (:mod:`bams3.format.table`), a :class:`ChunkSource` fetches
    their checked bytes, and the output formats write the records."""

    def __init__(self, store, meta: Metadata, url: str, workers: int = DEFAULT_WORKERS):
        self.source = ChunkSource(store, meta, url)
        self.store = store
        self.url = url
        self.workers = workers
        self.header = AlignmentHeader(meta.header_text, meta.references)
        self._depth = None  # binned depth, fetched on first use
        self._names = None  # reference name -> index

    @property
    def meta(self) -> Metadata:
        return self.source.meta

    @property
    def _decoders(self) -> int:
        """Threads that decode chunks for a stream of records: ``workers`` from a remote store (where
        requests overlap), at most one per CPU from a local one (decoding is all CPU: more threads
        only delay the first chunk, and the reader of the stream, behind the others)."""
        if self.is_remote:
            return self.workers
        try:
            cpus = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cpus = os.cpu_count() or 1
        return max(1, min(self.workers, cpus))

    @classmethod
    def open(cls, url: str, workers: int = DEFAULT_WORKERS) -> Dataset:
        store = open_store(url)
        try:
            data = _read_metadata(store, url)
        except FileNotFoundError:
            raise NotADatasetError(
                f"no bams3 dataset at {url} (no {METADATA_KEY}; create one with `bams3 convert in.bam {url}`)"
            ) from None
        except IsADirectoryError:
            raise NotADatasetError(f"no bams3 dataset at {url}") from None
        return cls(store, Metadata.from_json(data, url), url, workers)

    # ------------------------------------------------------------------ metadata
    @property
    def stats(self) -> dict:
        return self.meta.stats

    @property
    def chunks(self):
        """The chunk table (fetched on first use when it is stored as an object of its own)."""
        return self.source.table

    def depth_sums(self) -> np.ndarray:
        """Per reference, per stored bin: the sum of depth over the bin's positions (coverage.py)."""
        from .coverage import decode_depth

        if self._depth is None:
            ref = self.meta.coverage
            if ref is None:
                raise DatasetError(f"{self.url} has no binned coverage (written before bams3 stored it); "
                                   f"convert it again to get it")
            frame = self.source.object(ref["object"], int(ref["nbytes"]), "the coverage object")
            sums = decode_depth(frame, ref, self.url)
            expect = sum(max(1, -(-length // ref["bin"])) for _, length in self.meta.references)
            if len(sums) != expect:
                raise CorruptDatasetError(self.url, "the coverage object does not match the references; corrupt")
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
        return self.source.codecs

    @property
    def _name_index(self) -> dict[str, int]:
        if self._names is None:
            self._names = {name: i for i, (name, _) in enumerate(self.meta.references)}
        return self._names

    def region(self, text: str | Region) -> Region:
        return text if isinstance(text, Region) else Region.parse(text, self.meta.references, self._name_index)

    def bed(self, path: str) -> list[Region]:
        return read_bed(path, self.meta.references, self._name_index)

    # ------------------------------------------------------------------ chunks
    def _reader(self, index: int, prefix_only: bool = False) -> ChunkReader:
        return self.source.prefix(index) if prefix_only else self.source.chunk(index)

    def _plan(self, sel: Selection) -> list[tuple[int, tuple, tuple | None]]:
        return self.chunks.plan(sel)

    def _regions(self, regions) -> list[Region]:
        if regions is None:
            return []
        if isinstance(regions, (str, Region)):
            regions = [regions]
        return [self.region(r) for r in regions]

    def selection(self, regions=None, *, bed=None, multi: bool = False, union: bool | None = None) -> Selection:
        """What a query asks for, as ``samtools view`` reads it: REGIONs (texts or Regions), a BED
        file's intervals (``-L``: a path or Regions) and ``-M``. ``union`` is the old name of ``multi``."""
        if union is not None:
            multi = multi or union
        rs = self._regions(regions)
        if isinstance(bed, (str, os.PathLike)):
            bed = self.bed(os.fspath(bed))
        elif bed is not None:
            bed = [self.region(r) for r in bed]
        return Selection(tuple(rs), None if bed is None else tuple(bed), bool(multi))

    # ------------------------------------------------------------------ count
    def _count(self, regions: str | Region | Iterable[str | Region] | None = None, union: bool | None = None, *,
               bed=None, multi: bool = False, filters: ReadFilter | None = None) -> int:
        """Records as ``samtools view -c`` counts them.

        Several regions are counted one after another (a record in two regions counts twice),
        as samtools does; ``multi=True`` (``-M``) counts each record once. ``bed`` (``-L``) keeps
        only records that also overlap one of its intervals (with ``multi``: records overlapping
        the intersection of the regions and the BED). No region and no BED: every record.
        ``filters``: samtools view's read filters (:class:`bams3.filters.ReadFilter`); only the
        columns they need are read, by ranged reads.
        """
        sel = regions if isinstance(regions, Selection) else self.selection(regions, bed=bed, multi=multi,
                                                                             union=union)
        if filters is not None and not filters.empty:
            return self._count_filtered(sel, filters)
        t = self.chunks
        if not sel.regions and sel.bed is None:
            return int(self.meta.stats["n_records"])
        if not sel.regions:
            sel = attrs.evolve(sel, multi=True)
        total = 0
        edges = []
        for index, ivs, filt in self._plan(sel):
            if t.whole(index, ivs, filt):
                total += int(t.n_records[index])
            else:
                edges.append((index, ivs, filt))
        if self.meta.count_index:
            return total + self._count_from_index(edges)
        positions = _Shared(lambda index: self._reader(index, prefix_only=True).positions(),
                            [e[0] for e in edges], lambda v: v[0].nbytes * 2)

        def count_edge(item):
            k, (index, ivs, filt) = item
            if filt is None and len(ivs) == 1 and t.slot_nbytes[index] and self.meta.count_slot_bp:
                n = self._count_with_slots(index, *ivs[0])
                if n is not None:
                    return n
            return _overlapping(*positions.get(k, index), ivs, filt)

        total += sum(ordered_map(count_edge, enumerate(edges), self.workers))
        return total

    def _count_from_index(self, edges: list[tuple[int, tuple, tuple | None]]) -> int:
        """Records of the edge chunks overlapping their intervals, from the count index: the
        count prefixes of the chunks that lie close together in it in one ranged read (all of
        them, for a region or a BED of one part's reach), a group at a time."""
        wanted: dict[int, list[tuple]] = {}
        for index, ivs, filt in edges:
            wanted.setdefault(index, []).append((ivs, filt))

        def count_group(group) -> int:
            n = 0
            for index, reader in self.source.prefixes(group).items():
                pos, span = reader.positions()
                n += sum(_overlapping(pos, span, ivs, filt) for ivs, filt in wanted[index])
            return n

        return sum(ordered_map(count_group, self.source.prefix_groups(sorted(wanted)), self.workers))

    def _placed_plan(self, sel: Selection) -> list[tuple[int, tuple | None, tuple | None]]:
        """The plan of a selection; with no region and no BED, every chunk whole (intervals None)."""
        if not sel.regions and sel.bed is None:
            return [(i, None, None) for i in range(len(self.chunks))]
        return self._plan(sel if sel.regions else attrs.evolve(sel, multi=True))

    def _count_filtered(self, sel: Selection, flt: ReadFilter) -> int:
        """A filtered count: per chunk, the columns the filter needs (and pos/span where a region
        cuts the chunk), fetched by ranged reads, checked and decoded once however many regions
        share the chunk."""
        t = self.chunks
        plan = self._placed_plan(sel)
        expr = flt.check()._compiled
        cols = columns_for(flt.fields)
        cut = {index for index, ivs, filt in plan if ivs is not None and not t.whole(index, ivs, filt)}

        def load(index):
            f = self._fields(index, cols | ({"pos", "span"} if index in cut else set()))
            keep = flt.mask(f, self.header, expr)
            return keep, (f.pos, f.span) if index in cut else None

        shared = _Shared(load, [p[0] for p in plan], lambda v: v[0].nbytes * 17)

        def count_one(item):
            k, (index, ivs, filt) = item
            keep, placed = shared.get(k, index)
            if index not in cut:
                return int(np.count_nonzero(keep))
            pos, span = placed
            mask = keep & _overlap_mask(pos, span, ivs)
            if filt is not None:
                mask &= _overlap_mask(pos, span, filt)
            return int(np.count_nonzero(mask))

        return sum(ordered_map(count_one, enumerate(plan), self.workers))

    def _count_with_slots(self, index: int, beg: int, end: int) -> int | None:
        """Records of an edge chunk overlapping [beg, end), from the count slots at the
        region's edges (one ranged read). None when earlier reads may reach ``beg`` and
        every position is needed."""
        t = self.chunks
        n = int(t.n_records[index])
        layout = self.source.layout(index)
        lo, hi = int(t.min_pos[index]), int(t.max_pos[index])
        use_beg, use_end = beg > lo, end <= hi
        jb, je = layout.slot(beg), layout.slot(end)
        need = ([max(jb - 1, 0), jb] if use_beg else []) + ([je] if use_end else [])
        if not need:
            return n
        first = min(need)
        _, slots = self.source.slots(index, first, max(need), layout)

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

    # ------------------------------------------------------------------ depth at query time
    DEPTH_WINDOW = 1 << 20

    def depth(self, region: str | Region, options=None, *, window: int | None = None) -> Iterator[DepthWindow]:
        """Per-base depth over ``region`` exactly as ``samtools depth`` counts it with ``options``
        (:class:`bams3.depth.DepthOptions`; default: samtools depth's defaults), window by window
        (:class:`DepthWindow`). Only the columns depth needs are read (pos, CIGAR, flag, MAPQ;
        qualities only with a minimum base quality), each chunk fetched once however many
        windows it reaches. Reads may reach past the reference's end: so does the region of a
        whole reference (samtools depth prints those positions too)."""
        from .depth import DepthAccumulator, DepthOptions

        options = options or DepthOptions()
        reg = self.region(region)
        if reg.tid < 0:
            raise InputError("depth needs a region on a reference, not '*'")
        cols = columns_for(options.fields)
        t = self.chunks
        step = window or self.DEPTH_WINDOW
        lo, hi = t.ref_span(reg.tid)
        reach = int(t.max_end[lo:hi].max()) if hi > lo else 0
        end = min(reg.end, max(self.meta.references[reg.tid][1], reach))
        kept: dict[int, Fields] = {}
        furthest = 0
        for wb in range(reg.beg, end, step):
            we = min(end, wb + step)
            idx = [int(i) for i in t.candidates(reg.tid, wb, we)]
            fetched = ordered_map(lambda i: kept.get(i) or self._fields(i, cols), idx, self.workers)
            acc = DepthAccumulator(wb, we, reg.tid)
            covered = np.zeros(we - wb + 1, dtype=np.int64)
            later: dict[int, Fields] = {}
            for i, f in zip(idx, fetched):
                acc.add(f, options)
                keep = options.keep(f) & (f.tid == reg.tid) & (f.pos < we) & (f.end > wb)
                if keep.any():
                    a, b = np.maximum(f.pos[keep], wb) - wb, np.minimum(f.end[keep], we) - wb
                    np.add.at(covered, a, 1)
                    np.add.at(covered, b, -1)
                    furthest = max(furthest, int(f.end[keep].max()))
                if int(t.max_end[i]) > we:  # reaches the next window: keep it for that one
                    later[i] = f
            kept = later
            yield DepthWindow(reg.tid, wb, acc.depth, np.cumsum(covered[:-1]) > 0, furthest)

    def _fields(self, index: int, columns) -> Fields:
        """The fields of chunk ``index`` from the named columns (others fetched if one turns out
        to be needed: tags, where a CIGAR is kept in a CG tag)."""
        reader = self.source.columns(index, columns)
        return Fields.of_reader(reader, lambda names: self.source.fill(reader, index, names))

    def window_depths(self, windows, options=None) -> np.ndarray:
        """The sum of depth (as :meth:`depth` counts it) over each window ``(tid, beg, end)``,
        0-based half-open, in the order given: mean depth is the sum over the window's length.
        Windows on one reference are answered from one pass over the spans they cover."""
        windows = [(int(t), int(b), int(e)) for t, b, e in windows]
        sums = np.zeros(len(windows), dtype=np.int64)
        by_tid: dict[int, list[int]] = {}
        for k, (tid, b, e) in enumerate(windows):
            if tid < 0 or e <= b:
                raise InputError("depth needs windows on a reference, of at least one base")
            by_tid.setdefault(tid, []).append(k)
        for tid, ks in by_tid.items():
            beg = np.array([windows[k][1] for k in ks], dtype=np.int64)
            end = np.array([windows[k][2] for k in ks], dtype=np.int64)
            for a, b in _merge_spans(beg, end):
                name = self.meta.references[tid][0]
                for w in self.depth(Region(tid, a, b, f"{name}:{a + 1}-{b}"), options):
                    cs = np.zeros(len(w.depth) + 1, dtype=np.int64)
                    np.cumsum(w.depth, out=cs[1:])
                    lo = np.clip(beg - w.start, 0, len(w.depth))
                    hi = np.clip(end - w.start, 0, len(w.depth))
                    sums[ks] += np.where(hi > lo, cs[hi] - cs[lo], 0)
        return sums

    def exact_coverage(self, region: str | Region | None = None, bin_bp: int | None = None, *, bed=None,
                       options=None) -> list[tuple]:
        """(reference, start, end, mean depth) per window, computed from the reads' columns at
        query time (= the mean of ``samtools depth -a`` over each window; ``options``: its
        filters): the region's (or every reference's) windows of ``bin_bp`` (None: the region
        whole, or each reference whole), or the intervals of a BED file (``bed``: a path or
        Regions)."""
        refs = self.meta.references
        if bed is not None:
            regs = self.bed(os.fspath(bed)) if isinstance(bed, (str, os.PathLike)) else [self.region(r) for r in bed]
            windows = [(r.tid, r.beg, r.end) for r in regs if r.tid >= 0]
        else:
            if region is not None:
                reg = self.region(region)
                if reg.tid < 0:
                    raise InputError("coverage needs a region on a reference, not '*'")
                spans = [(reg.tid, reg.beg, min(reg.end, refs[reg.tid][1]) if reg.end >= POS_MAX else reg.end)]
            else:
                spans = [(tid, 0, length) for tid, (_, length) in enumerate(refs)]
            windows = [(tid, b, min(end, b + bin_bp) if bin_bp else end) for tid, beg, end in spans
                       for b in (range(beg, end, bin_bp) if bin_bp else [beg])]
        sums = self.window_depths(windows, options) if windows else []
        return [(refs[t][0], b, e, int(s) / (e - b)) for (t, b, e), s in zip(windows, sums)]

    # ------------------------------------------------------------------ records
    def batches(self, regions: str | Region | Iterable[str | Region] | None = None, union: bool | None = None, *,
                bed=None, multi: bool = False, filters: ReadFilter | None = None,
                skip: frozenset[str] = frozenset(), chunks: Iterable[int] | None = None) -> Iterator[RecordBatch]:
        """Raw record batches in samtools' order, selected (and filtered) as :meth:`count` counts them.
        ``skip``: variable columns not read from the store, filled as SAM's defaults (see
        :meth:`ChunkReader.records`); ``chunks``: only the records of these chunks."""
        sel = regions if isinstance(regions, Selection) else self.selection(regions, bed=bed, multi=multi,
                                                                             union=union)
        t = self.chunks
        if not sel.regions and sel.bed is None:
            plan = [(i, ((-1, POS_MAX),), None) for i in range(len(t))]
        else:
            plan = self._plan(sel if sel.regions else attrs.evolve(sel, multi=True))
        everything = not sel.regions and sel.bed is None
        if chunks is not None:
            only = set(chunks)
            plan = [p for p in plan if p[0] in only]
        skip = frozenset(skip)
        flt = filters if filters is not None and not filters.empty else None
        expr = flt.check()._compiled if flt is not None else None

        need = columns_for(flt.fields) | {"pos", "span"} if flt is not None else None

        def decode(index, wants=None):
            """Chunk ``index``'s records, positions and spans, and the filter's mask (None: no
            filter). ``wants``: the (intervals, filter intervals) of every selection that will be
            made of it; without a read filter, only the records one of them keeps are assembled
            (with their positions and spans)."""
            if flt is None and skip:  # the columns kept only, by ranged reads
                reader = self.source.columns(index, {c.name for c in ALL_COLUMNS} - skip)
                pos, span = reader.positions()
                return reader.records(skip), pos, span, None
            if flt is None:
                reader = self._reader(index)
                pos, span = reader.positions()
                masks = [wanted(index, ivs, filt, pos, span, None) for ivs, filt in wants or ()]
                if masks and all(m is not None for m in masks):
                    union = np.logical_or.reduce(masks)
                    if not union.all():
                        return reader.records(keep=union), pos[union], span[union], None
                return reader.records(), pos, span, None
            # the filter's columns first; the rest only when a record passes
            reader = self.source.columns(index, need)
            f = Fields.of_reader(reader, lambda names: self.source.fill(reader, index, names))
            keep = flt.mask(f, self.header, expr)
            if not keep.any():
                return None, f.pos, f.span, keep
            rest = None if not skip else {c.name for c in ALL_COLUMNS} - skip
            return self.source.fill(reader, index, rest).records(skip), f.pos, f.span, keep

        def wanted(index, ivs, filt, pos, span, keep):
            """The records of the chunk to give out: a mask, or None for all of them."""
            if everything or t.whole(index, ivs, filt):
                return keep
            mask = _overlap_mask(pos, span, ivs)
            if filt is not None:
                mask &= _overlap_mask(pos, span, filt)
            if keep is not None:
                mask &= keep
            return mask

        def select(index, ivs, filt, batch, pos, span, keep):
            if batch is None:
                return None
            mask = wanted(index, ivs, filt, pos, span, keep)
            if mask is None:
                return batch
            if not mask.any():
                return None
            return batch if mask.all() else batch.select(mask)

        def given(batch):
            """A selection as it is given out: None when empty."""
            return None if batch is None or not len(batch) else batch

        def load_one(item):
            """One chunk for one plan item: without a filter or skipped columns, the records to
            give out are known from the positions alone, and only those are assembled (none,
            when no record overlaps)."""
            index, ivs, filt = item
            if flt is not None or skip:
                return given(select(index, ivs, filt, *decode(index)))
            reader = self._reader(index)
            pos, span = reader.positions()
            mask = wanted(index, ivs, filt, pos, span, None)
            if mask is not None and not mask.any():
                return None
            return given(reader.records(keep=None if mask is None or mask.all() else mask))

        if len({p[0] for p in plan}) == len(plan):  # each chunk once: stream them
            results = ordered_map(load_one, plan, self._decoders)
        else:  # many regions share chunks: decode each once per window of the plan
            results = self._grouped(plan, decode, lambda *a: given(select(*a)))
        for item in results:
            if item is not None:
                yield item

    GROUP_BYTES = 256 << 20  # estimated output a window of the plan may hold at once

    def _windows(self, plan) -> Iterator[list]:
        """Consecutive runs of plan items whose estimated output (the chunk's records in
        proportion to the part of its span the intervals cover) stays within GROUP_BYTES."""
        t = self.chunks
        start, total = 0, 0.0
        for k, (index, ivs, _) in enumerate(plan):
            lo, hi = int(t.min_pos[index]), int(t.max_pos[index]) + 1
            covered = sum(max(0, min(e, hi) - max(b, lo)) for b, e in ivs) if t.ref_id[index] >= 0 else hi - lo
            total += int(t.raw_nbytes[index]) * min(1.0, covered / max(1, hi - lo))
            if total > self.GROUP_BYTES and k > start:
                yield plan[start:k]
                start, total = k, 0.0
        if start < len(plan):
            yield plan[start:]

    def _grouped(self, plan, decode, select) -> Iterator:
        """The plan's selections in plan order, each chunk fetched and decoded once per window of
        the plan (regions in any order: a BED of thousands of targets), decoding on ``workers``
        threads in the order the window first needs each chunk; a selection is held only until
        every earlier one has been given out."""
        for window in self._windows(plan):
            users: dict[int, list[int]] = {}
            for k, (index, _, _) in enumerate(window):
                users.setdefault(index, []).append(k)
            done: dict[int, object] = {}

            def work(index, window=window, users=users):
                decoded = decode(index, [window[k][1:] for k in users[index]])
                return {k: select(index, window[k][1], window[k][2], *decoded) for k in users[index]}

            emitted = 0
            for part in ordered_map(work, list(users), self.workers):
                done.update(part)
                while emitted < len(window) and emitted in done:
                    yield done.pop(emitted)
                    emitted += 1

    def write(self, out, regions=None, *, format: str = "sam", union: bool | None = None, bed=None,
              multi: bool = False, options: dict | None = None, limit: int | None = None, pg: str | None = None,
              filters: ReadFilter | None = None):
        """Write the records (selected as :meth:`count` counts them) to ``out`` (a binary file) in
        an output format.

        ``limit``: at most this many records. ``options`` go to the format (e.g. ``{"header": True}``).
        ``pg``: a command line to record in an @PG line added to the header, as samtools does
        (None: the header is written untouched).
        """
        reg = get_registry(formats=format)
        fmt = reg.output_format(format)
        provider = reg.provider("formats", format)
        sel = regions if isinstance(regions, Selection) else self.selection(regions, bed=bed, multi=multi,
                                                                             union=union)
        batches = self.batches(sel, filters=filters) if limit != 0 else iter(())
        if limit is not None:
            batches = _first(batches, limit)
        header = self.header if filters is None else filters.header(self.header)
        header = header if pg is None else header.with_pg("bams3", __version__, pg)
        with plugin_code(provider, f"opening a {format} writer"):
            writer = fmt.open(out, header, dict(options or {}))
        try:
            for batch in batches:
                with plugin_code(provider, f"writing {format}"):
                    writer.write(batch)
        except BaseException:
            abort = getattr(writer, "abort", None)
            if abort:
                abort()
            raise
        with plugin_code(provider, f"closing the {format} writer"):
            writer.close()

    def to_bam(self, path: str, region=None, *, index: bool = False, threads: int = 2, level: int = 6,
               pg: str | None = None, filters: ReadFilter | None = None) -> None:
        """Write the records (of a region) as a BAM file: ``-`` is standard output; an existing
        link, FIFO or device is written in place; a regular file or new path goes through a
        temporary name, renamed when complete (see :mod:`bams3.output`). ``index``: also
        ``path.bai``."""
        from .output import Output

        out = Output(path)
        with out as f:
            self.write(f, region, format="bam", options={"threads": threads, "level": level}, pg=pg, filters=filters)
            if index:
                import pysam

                f.flush()
                pysam.index(out.name, out.companion(".bai"))


@attrs.frozen(eq=False)
class DepthWindow:
    """Depth over [start, start + len(depth)) of reference ``tid``: ``depth`` per base, ``covered``
    where a counted record lies (from its position to its end: what samtools depth prints
    without -a) and ``furthest``, the furthest end of a counted record so far."""

    tid: int
    start: int
    depth: np.ndarray
    covered: np.ndarray
    furthest: int


_METADATA_FIRST_READ = 1 << 20


def _read_metadata(store, url: str) -> bytes:
    """_metadata.json in one read when it is under 1 MiB (nearly always); a larger one is sized
    first and refused beyond MAX_METADATA_BYTES without being read."""
    data = store.get_range(METADATA_KEY, 0, _METADATA_FIRST_READ)
    if len(data) < _METADATA_FIRST_READ:
        return data
    size = store.size(METADATA_KEY)
    if size is None:
        raise FileNotFoundError(METADATA_KEY)
    if size > MAX_METADATA_BYTES:
        raise DatasetError(f"{url}: _metadata.json is {size:,} bytes, more than bams3 reads "
                           f"({MAX_METADATA_BYTES >> 20} MiB); it is not a dataset's metadata")
    rest = store.get_range(METADATA_KEY, len(data), size + 1)
    if len(data) + len(rest) != size:
        raise CorruptDatasetError(url, "_metadata.json changed while it was read; try again")
    return data + rest


def _first(batches: Iterable[RecordBatch], n: int) -> Iterator[RecordBatch]:
    left = n
    for b in batches:
        if left <= 0:
            return
        if len(b) > left:
            b = b.slice(0, left)
        left -= len(b)
        yield b


def _overlapping(pos: np.ndarray, span: np.ndarray, ivs, filt) -> int:
    """How many records overlap one of ``ivs`` (and one of ``filt``, unless None)."""
    mask = _overlap_mask(pos, span, ivs)
    if filt is not None:
        mask &= _overlap_mask(pos, span, filt)
    return int(np.count_nonzero(mask))


class _Shared:
    """Decoded chunks shared by the plan items that need the same chunk (many regions in one
    chunk): each is fetched and decoded once while later items still need it, within a memory
    budget (beyond it, a chunk is decoded again when needed). Thread-safe; loads of one chunk
    at once wait for each other."""

    BUDGET = 256 << 20

    def __init__(self, load, plan_indexes: list[int], size):
        self._load = load
        self._size = size
        self._last = {}
        for k, index in enumerate(plan_indexes):
            self._last[index] = k
        self._repeats = len(self._last) < len(plan_indexes)
        self._lock = threading.Lock()
        self._cache: OrderedDict = OrderedDict()  # index -> Future
        self._bytes = 0
        self._sizes: dict[int, int] = {}

    def get(self, k: int, index: int):
        if not self._repeats:
            return self._load(index)
        with self._lock:
            fut = self._cache.get(index)
            owner = fut is None
            if owner:
                fut = self._cache[index] = Future()
            else:
                self._cache.move_to_end(index)
        if owner:
            try:
                value = self._load(index)
            except BaseException as exc:
                with self._lock:
                    self._cache.pop(index, None)
                fut.set_exception(exc)
                raise
            fut.set_result(value)
            with self._lock:
                if index in self._cache:
                    self._sizes[index] = self._size(value)
                    self._bytes += self._sizes[index]
                self._evict()
        value = fut.result()
        if k >= self._last[index]:
            with self._lock:
                self._drop(index)
        return value

    def _drop(self, index: int) -> None:
        if self._cache.pop(index, None) is not None:
            self._bytes -= self._sizes.pop(index, 0)

    def _evict(self) -> None:
        for index in list(self._cache):
            if self._bytes <= self.BUDGET:
                return
            if self._cache[index].done():
                self._drop(index)


def _merge_spans(beg: np.ndarray, end: np.ndarray) -> list[tuple[int, int]]:
    """The union of intervals [beg, end) as sorted, disjoint spans."""
    order = np.argsort(beg, kind="stable")
    spans: list[list[int]] = []
    for b, e in zip(beg[order].tolist(), end[order].tolist()):
        if spans and b <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], e)
        else:
            spans.append([b, e])
    return [(a, b) for a, b in spans]


def _overlap_mask(pos: np.ndarray, span: np.ndarray, ivs) -> np.ndarray:
    """Records [pos, pos + span) overlapping any interval [b, e) of ``ivs`` (in any order,
    overlapping or not). With the intervals sorted by start and ``reach`` the largest end among
    the first j, a record overlaps one iff, for the j intervals starting before its end,
    reach > pos: one binary search per record however many intervals (a BED of thousands)."""
    end = pos.astype(np.int64) + span
    if len(ivs) == 1:
        (b, e), = ivs
        return (pos < e) & (end > b)
    iv = np.asarray(ivs, dtype=np.int64).reshape(-1, 2)
    order = np.argsort(iv[:, 0], kind="stable")
    reach = np.empty(len(iv) + 1, dtype=np.int64)
    reach[0] = np.iinfo(np.int64).min  # no interval starts before the record's end
    np.maximum.accumulate(iv[order, 1], out=reach[1:])
    return reach[np.searchsorted(iv[order, 0], end, side="left")] > pos
