"""pysam's read-side API on a dataset: :class:`AlignmentFileMixin` gives :class:`bams3.dataset.Dataset`
what code written for ``pysam.AlignmentFile(path)`` reads through, with pysam's (0.24) arguments,
coordinates, results and errors: ``fetch``, ``count``, ``count_coverage``, ``pileup``, ``head``,
``mate``, ``find_introns``, iteration, the header (:class:`AlignmentHeader`), the references and the
index statistics, ``close`` and the context-manager protocol.

Regions are read as pysam reads them (:meth:`AlignmentFileMixin.parse_region`): ``contig``,
``start``, ``stop`` (0-based, half-open; ``reference`` and ``end`` are their old names), a
``region`` string ``"chr1:1000-2000"`` (1-based, inclusive, parsed as pysam parses it), a ``tid``;
``"*"`` is the unplaced reads, ``"."`` every record from the start of the file. Where pysam raises
ValueError, KeyError or IndexError, so do we (bams3's own errors here are also ValueErrors).

``fetch`` and ``count`` also keep bams3's own selection (:meth:`bams3.dataset.Dataset.selection`):
a first argument that is not a reference name but a samtools region string (``"chr1:1,000-2,000"``,
which pysam refuses), a list of regions or a :class:`~bams3.format.Selection`, and the keywords
``regions``, ``bed``, ``multi`` (``union``) and ``filters`` (:class:`~bams3.filters.ReadFilter`).

Differences from pysam, each kept on purpose:

* ``count()`` with no region counts every record, unplaced ones too (``samtools view -c``, as bams3
  always counted); pysam's counts only the placed ones (what ``fetch()`` with no region gives here
  as in pysam). ``count(until_eof=True)`` counts every record in both.
* Every ``fetch``/``head``/iteration starts at the first record: a dataset has no file position, so
  ``until_eof=True`` reads from the start (as pysam does on a freshly opened file) and ``fetch``
  never moves what iterating the dataset itself (``next(ds)``) gives.
* ``ds.header.references`` stays bams3's ``(name, length)`` pairs (the rest of bams3 and its output
  plugins read them); pysam's tuple of names is ``ds.references`` and ``ds.header.names``.
* ``pileup`` writes the records the region needs into a temporary indexed BAM and runs pysam's own
  pileup over it, so its columns are pysam's exactly; it reads the whole region before the first
  column.
* ``count_coverage`` counts no base where a CIGAR places a pair past the end of the sequence (P
  operations move pysam's query position): pysam reads past the sequence there, unchecked, which
  matches no base unless the memory beyond happens to hold one.
* After ``close()`` the pysam methods raise ValueError as pysam's do, but ``ds.header`` stays
  (pysam's becomes None).
"""

from __future__ import annotations

import array
import collections
import contextlib
import operator
import os
import tempfile
import threading
from collections.abc import Iterable, Iterator

import attrs
import numpy as np

from .errors import RegionError, UnknownReferenceError
from .fields import Fields, columns_for
from .filters import ReadFilter
from .format import Selection
from .records import Header
from .region import POS_MAX, Region

MAX_POS = (1 << 31) - 1  # pysam's coordinates are 32-bit: start < MAX_POS, stop <= MAX_POS
HTS_IDX_NOCOOR = -2  # the tid of region "*"
HTS_IDX_START = -3  # the tid of region "."
FILTERED = 0x4 | 0x100 | 0x200 | 0x400  # read_callback "all" skips UNMAP, SECONDARY, QCFAIL, DUP

# CIGAR operations as pysam's get_aligned_pairs walks them: M = X pair a query and a reference
# base; I S P advance the query (P too, as pysam does); D N the reference; H B neither
_PAIRED_OPS = np.zeros(16, dtype=bool)
_PAIRED_OPS[[0, 7, 8]] = True
_QUERY_OPS = np.zeros(16, dtype=np.int64)
_QUERY_OPS[[0, 1, 4, 6, 7, 8]] = 1
_REF_OPS = np.zeros(16, dtype=np.int64)
_REF_OPS[[0, 2, 3, 7, 8]] = 1
_BASES = (1, 2, 4, 8)  # A C G T in BAM's 4-bit code


class InvalidRegionError(RegionError, ValueError):
    """A region pysam refuses with ValueError (a RegionError for bams3's own callers)."""


class InvalidContigError(UnknownReferenceError, ValueError):
    """An unknown reference, where pysam raises ValueError."""


class UnknownReferenceKeyError(UnknownReferenceError, KeyError):
    """An unknown reference, where pysam raises KeyError (``get_reference_length``)."""


@contextlib.contextmanager
def _as_value_errors():
    """bams3's region errors (bad region strings, unknown references, BED files) as ValueErrors."""
    try:
        yield
    except RegionError as exc:
        if isinstance(exc, ValueError):
            raise
        cls = InvalidContigError if isinstance(exc, UnknownReferenceError) else InvalidRegionError
        raise cls(str(exc)) from None


def _int32(value, what: str) -> int:
    """A coordinate as pysam's 32-bit C int takes it: a float truncated, a str refused (TypeError),
    beyond 32 bits "<what> out of range"."""
    if isinstance(value, float):
        value = int(value)
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError("an integer is required") from None
    if not -(1 << 31) <= value < 1 << 31:
        raise InvalidRegionError(f"{what} out of range ({value})")
    return value


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _htslib_header(header: Header):
    """The ``pysam.AlignmentHeader`` htslib reads from this header's BAM bytes (as pysam reads a
    BAM file's header: the binary reference list, the text as it is)."""
    import pysam

    data = header.to_bam_bytes()
    r, w = os.pipe()

    def feed():
        with contextlib.suppress(OSError), os.fdopen(w, "wb") as f:
            f.write(data)

    t = threading.Thread(target=feed, daemon=True, name="bams3-header")
    t.start()
    try:
        with os.fdopen(r, "rb") as rf, pysam.AlignmentFile(rf, "rb", check_sq=False) as af:
            return af.header
    finally:
        t.join()


class AlignmentHeader(Header):
    """A dataset's header: bams3's :class:`~bams3.records.Header` (``text``; ``references`` as
    ``(name, length)`` pairs) that also answers as ``pysam.AlignmentHeader`` does (``to_dict``,
    ``get_tid``, ``get_reference_name``, ``get_reference_length``, ``lengths``, ``nreferences``,
    ``str(header)``, ``header["SQ"]``, ...), each answer htslib's own for these header bytes.
    ``copy()`` is a real ``pysam.AlignmentHeader`` (to write with pysam: ``header=ds.header.copy()``)."""

    @property
    def pysam(self):
        """This header as htslib reads it (a ``pysam.AlignmentHeader``, made on first use)."""
        h = self.__dict__.get("_pysam")
        if h is None:
            h = _htslib_header(self)
            object.__setattr__(self, "_pysam", h)
        return h

    @property
    def nreferences(self) -> int:
        return len(self.references)

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(length for _, length in self.references)

    def to_dict(self) -> dict:
        """The header as pysam's nested dictionary (``{"HD": {...}, "SQ": [{...}, ...], ...}``)."""
        return self.pysam.to_dict()

    as_dict = to_dict

    def get_tid(self, reference) -> int:
        """The index of ``reference`` (by name, or alternative name as htslib knows them); -1 if none."""
        return self.pysam.get_tid(reference)

    def get_reference_name(self, tid):
        """The name of reference ``tid``; None for -1; ValueError out of range."""
        return self.pysam.get_reference_name(tid)

    def get_reference_length(self, reference) -> int:
        """The length of ``reference``; KeyError if there is none."""
        try:
            return self.pysam.get_reference_length(reference)
        except KeyError as exc:
            raise UnknownReferenceKeyError(*exc.args) from None

    def is_valid_tid(self, tid) -> bool:
        return self.pysam.is_valid_tid(tid)

    def copy(self):
        return self.pysam.copy()

    def __str__(self) -> str:
        return str(self.pysam)

    def __bool__(self) -> bool:
        return True

    def __len__(self) -> int:
        return len(self.to_dict())

    def __getitem__(self, key):
        return self.to_dict()[key]

    def __contains__(self, key) -> bool:
        return key in self.to_dict()

    def keys(self):
        return self.to_dict().keys()

    def values(self):
        return self.to_dict().values()

    def items(self):
        return self.to_dict().items()

    iteritems = items

    def get(self, key, default=None):
        return self.to_dict().get(key, default)


class AlignmentFileMixin:
    """pysam's ``AlignmentFile`` read API for :class:`bams3.dataset.Dataset` (see the module)."""

    _closed = False
    _stream = None  # what next(ds) reads: every record from the first

    # ------------------------------------------------------------------ file
    @property
    def filename(self) -> bytes:
        """The dataset's URL, as bytes (pysam's ``filename``)."""
        return os.fsencode(self.url)

    @property
    def is_remote(self) -> bool:
        """Whether the dataset is reached over a network (any URL scheme but file:// and memory://)."""
        return "://" in self.url and not self.url.startswith(("file://", "memory://"))

    is_bam = True  # random access and index statistics, as an indexed BAM
    is_sam = is_cram = is_stream = is_write = False
    is_read = True

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def is_open(self):
        """Whether the dataset is open: true or false, and callable (``ds.is_open()``) as pysam's."""
        from pysam.libchtslib import CallableValue

        return CallableValue(not self._closed)

    def close(self) -> None:
        """Close the dataset: its pysam methods then raise ValueError, as pysam's do."""
        self._closed = True
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()
        return False

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file")

    def _open_header(self) -> AlignmentHeader:
        if self._closed:
            raise ValueError("header not available in closed files")
        return self.header

    # ------------------------------------------------------------------ references
    @property
    def references(self) -> tuple[str, ...]:
        """The reference names, in order (pysam's ``references``)."""
        return tuple(name for name, _ in self._open_header().references)

    @property
    def lengths(self) -> tuple[int, ...]:
        return self._open_header().lengths

    @property
    def nreferences(self) -> int:
        return self._open_header().nreferences

    @property
    def text(self) -> str:
        """The header as SAM text (pysam's ``text``: ``str(header)``)."""
        return str(self._open_header())

    def get_tid(self, reference) -> int:
        return self._open_header().get_tid(reference)

    def get_reference_name(self, tid):
        return self._open_header().get_reference_name(tid)

    def get_reference_length(self, reference) -> int:
        return self._open_header().get_reference_length(reference)

    def is_valid_tid(self, tid) -> bool:
        return self._open_header().is_valid_tid(tid)

    def is_valid_reference_name(self, contig) -> bool:
        return self.get_tid(contig) != -1

    # ------------------------------------------------------------------ index statistics
    def has_index(self) -> bool:
        return True

    def check_index(self) -> bool:
        """True: a dataset always has its index and statistics; ValueError once closed."""
        self._check_open()
        return True

    def get_index_statistics(self) -> list:
        """Per reference, ``IndexStats(contig, mapped, unmapped, total)`` as the BAM index records
        them (``samtools idxstats``), from the statistics stored at conversion."""
        from pysam.libcalignmentfile import IndexStats

        self.check_index()
        rows = self.stats["idxstats"][: len(self.header.references)]
        return [IndexStats(name, int(m), int(u), int(m) + int(u)) for name, _, m, u in rows]

    @property
    def mapped(self) -> int:
        return sum(s.mapped for s in self.get_index_statistics())

    @property
    def nocoordinate(self) -> int:
        self.check_index()
        return int(self.stats["idxstats"][-1][3])

    @property
    def unmapped(self) -> int:
        """Unmapped records, those without coordinates included (as pysam counts them)."""
        return sum(s.unmapped for s in self.get_index_statistics()) + self.nocoordinate

    # ------------------------------------------------------------------ regions
    def parse_region(self, contig=None, start=None, stop=None, region=None, tid=None, reference=None, end=None):
        """pysam's ``parse_region``: ``(has_coord, tid, start, stop)``; has_coord 0 when no region is
        given. ``region`` is split as pysam splits it (``contig:start-stop``, 1-based inclusive);
        contig ``"*"`` gives tid -2 (unplaced reads), ``"."`` -3 (every record)."""
        if reference is not None:
            if contig is not None:
                raise ValueError("contig and reference should not both be specified")
            contig = reference
        if end is not None:
            if stop is not None:
                raise ValueError("stop and end should not both be specified")
            stop = end
        if contig is None and tid is None and region is None:
            return 0, 0, 0, MAX_POS
        rstart = 0 if start is None else _int32(start, "start")
        rstop = MAX_POS if stop is None else _int32(stop, "stop")
        if region:
            region = _text(region)
            if ":" in region:
                contig, coord = region.split(":")
                parts = coord.split("-")
                rstart = _int32(int(parts[0]) - 1, "start")
                rstop = _int32(int(parts[1]), "stop")
            else:
                contig = region
        if tid is not None:
            if not self.is_valid_tid(tid):
                raise IndexError("invalid tid")
            rtid = tid
        elif contig == "*":
            rtid = HTS_IDX_NOCOOR
        elif contig == ".":
            rtid = HTS_IDX_START
        else:
            rtid = self.get_tid(contig)
            if rtid < 0:
                raise InvalidContigError(f"invalid contig `{contig}`")
        if rstart > rstop:
            raise InvalidRegionError(f"invalid coordinates: start ({rstart}) > stop ({rstop})")
        if not 0 <= rstart < MAX_POS:
            raise InvalidRegionError(f"start out of range ({rstart})")
        if not 0 <= rstop <= MAX_POS:
            raise InvalidRegionError(f"stop out of range ({rstop})")
        return 1, rtid, rstart, rstop

    def _bams3_regions(self, contig, start, stop, region, tid, reference, end, regions):
        """bams3's own selection, when the call is one (else None): ``regions=``; a first argument
        that is a Selection, a Region or a list of regions; or a string that is no reference name
        (a samtools region string) with nothing else placing it."""
        if regions is not None:
            if contig is not None or region is not None or tid is not None or reference is not None:
                raise InvalidRegionError("give regions= or a pysam region (contig, region, tid), not both")
            return regions
        if isinstance(contig, (Selection, Region)):
            return contig
        if isinstance(contig, Iterable) and not isinstance(contig, (str, bytes)):
            return list(contig)
        pysam_args = (start, stop, region, tid, reference, end)
        if isinstance(contig, str) and all(a is None for a in pysam_args) and contig not in ("*", "."):
            if self.get_tid(contig) < 0:
                return contig
        return None

    def _selection(self, contig=None, start=None, stop=None, region=None, tid=None, reference=None, end=None, *,
                   until_eof=False, regions=None, bed=None, multi=False, union=None,
                   whole_file=False) -> Selection | None:
        """What a fetch/count call selects, or None for nothing (an empty interval). No region:
        every record with ``until_eof`` or ``whole_file``, else the placed records (pysam's fetch)."""
        self._check_open()
        multi = bool(multi or union)
        own = self._bams3_regions(contig, start, stop, region, tid, reference, end, regions)
        if own is not None:
            if isinstance(own, Selection):
                return own
            with _as_value_errors():
                return self.selection(own, bed=bed, multi=multi)
        has_coord, rtid, rstart, rstop = self.parse_region(contig, start, stop, region, tid, reference, end)
        if not has_coord or rtid == HTS_IDX_START:
            if bed is not None or until_eof or whole_file or rtid == HTS_IDX_START:
                with _as_value_errors():
                    return self.selection(None, bed=bed, multi=multi)
            refs = self.header.references
            return Selection(tuple(Region(t, 0, POS_MAX, name) for t, (name, _) in enumerate(refs)), None, False)
        if rtid == HTS_IDX_NOCOOR:
            reg = Region(-1, 0, POS_MAX, "*")
        elif rstart == rstop:
            return None
        else:
            name = self.header.references[rtid][0]
            reg = Region(rtid, rstart, POS_MAX if rstop == MAX_POS else rstop, f"{name}:{rstart + 1}-{rstop}")
        with _as_value_errors():
            return self.selection([reg], bed=bed, multi=multi)

    # ------------------------------------------------------------------ reads
    def fetch(self, contig=None, start=None, stop=None, region=None, tid=None, until_eof=False,
              multiple_iterators=False, reference=None, end=None, *, regions=None, bed=None, multi=False,
              union=None, filters: ReadFilter | None = None) -> Iterator:
        """``pysam.AlignedSegment`` objects of the records overlapping a region, in file order, as
        pysam's ``fetch`` gives them: ``fetch("chr1", 999_999, 2_000_000)``, ``fetch(region=
        "chr1:1000000-2000000")``, ``fetch("chr1")``; no region: the placed records (every record
        with ``until_eof=True``). Also bams3's selections (see the module): ``fetch("chr1:1,000-
        2,000")``, ``fetch(["chr1:1-100", "chr2"], multi=True, bed=path, filters=flt)``.
        ``multiple_iterators`` changes nothing (every fetch reads on its own)."""
        from ._pysam import segments

        sel = self._selection(contig, start, stop, region, tid, reference, end, until_eof=until_eof,
                              regions=regions, bed=bed, multi=multi, union=union)
        if sel is None:
            return iter(())
        return segments(self.header, self.batches(sel, filters=filters))

    def count(self, contig=None, start=None, stop=None, region=None, until_eof=False, read_callback="nofilter",
              reference=None, end=None, *, regions=None, bed=None, multi=False, union=None,
              filters: ReadFilter | None = None) -> int:
        """The records :meth:`fetch` gives, counted as pysam's ``count`` counts them:
        ``read_callback`` ``"nofilter"`` (every one), ``"all"`` (not UNMAP, SECONDARY, QCFAIL or
        DUP) or a function of each ``AlignedSegment`` (true: counted). The two named callbacks are
        counted from the flag column (and pos/span at a region's edges), making no read objects.
        No region at all: every record (``samtools view -c``; see the module). bams3's selections
        and ``filters`` as :meth:`fetch` (``count("chr1:1-5000")``, ``count(sel)``, ...)."""
        sel = self._selection(contig, start, stop, region, None, reference, end, until_eof=until_eof,
                              regions=regions, bed=bed, multi=multi, union=union, whole_file=True)
        if sel is None:
            return 0
        if isinstance(read_callback, str) and read_callback in ("all", "nofilter"):
            flt = filters
            if read_callback == "all":
                flt = attrs.evolve(filters or ReadFilter(), exclude=(filters.exclude if filters else 0) | FILTERED)
            return self._count(sel, filters=flt)
        from ._pysam import segments

        return sum(1 for read in segments(self.header, self.batches(sel, filters=filters))
                   if read_callback(read))

    def head(self, n: int, multiple_iterators: bool = True) -> Iterator:
        """The first ``n`` records of the file (unplaced ones too), as ``AlignedSegment`` objects."""
        from ._pysam import segments

        self._check_open()
        return segments(self.header, self._first_records(int(n)))

    def _first_records(self, n: int) -> Iterator:
        """Batches of the file's first ``n`` records, decoding only the chunks that hold them."""
        for index in range(len(self.chunks)):
            if n <= 0:
                return
            batch = self._reader(index).records()
            if len(batch) > n:
                batch = batch.slice(0, n)
            n -= len(batch)
            yield batch

    def __iter__(self):
        """The dataset iterates its records from the first (pysam iterates a file from where it is:
        the first record once opened); ``next`` goes on from the last one given."""
        self._check_open()
        return self

    def __next__(self):
        from ._pysam import segments

        self._check_open()
        if self._stream is None:
            self._stream = segments(self.header, self.batches())
        return next(self._stream)

    def mate(self, read):
        """The mate of ``read``, found as pysam finds it (its ``fetch(mpos, mpos + 1, tid=mtid)``):
        ValueError for an unpaired read, an unmapped mate or a mate not found."""
        flag = read.flag
        if flag & 0x1 == 0:
            raise ValueError(f"read {read.query_name}: is unpaired")
        if flag & 0x8 != 0:
            raise ValueError(f"mate {read.query_name}: is unmapped")
        want = (flag ^ 0xC0) & 0xC0
        mpos = read.next_reference_start
        for mate in self.fetch(mpos, mpos + 1, tid=read.next_reference_id, multiple_iterators=True):
            if mate.flag & want != 0 and mate.query_name == read.query_name:
                return mate
        raise ValueError("mate not found")

    @staticmethod
    def find_introns(read_iterator) -> collections.Counter:
        """``{(start, stop): reads}`` of the skipped regions (CIGAR N) of the reads, as pysam's."""
        res: collections.Counter = collections.Counter()
        for r in read_iterator:
            base = r.reference_start
            cigar = r.cigartuples
            if cigar is None:
                continue
            for op, nt in cigar:
                if op in (0, 2, 7, 8):
                    base += nt
                elif op == 3:
                    res[(base, base + nt)] += 1
                    base += nt
        return res

    # ------------------------------------------------------------------ coverage
    def count_coverage(self, contig, start=None, stop=None, region=None, quality_threshold=15, read_callback="all",
                       reference=None, end=None) -> tuple[array.array, array.array, array.array, array.array]:
        """Per position of ``contig`` in [start, stop) (clipped to its length), the A, C, G and T
        bases aligned there (CIGAR M = X) by the reads :meth:`fetch` gives for the same arguments,
        as four ``array.array('L')``, as pysam's ``count_coverage`` counts them: ``read_callback``
        as in :meth:`count`; reads without a sequence skipped; with ``quality_threshold`` (not 0)
        only bases of at least that quality, and none of a read without qualities. Computed from
        the flag, position, CIGAR, sequence and quality columns (qualities only with a
        threshold), vectorised; read objects only for a callable ``read_callback``."""
        length = self.get_reference_length(contig)
        beg = 0 if start is None else _int32(start, "start")
        stop_ = min(length if stop is None else _int32(stop, "stop"), length)
        if stop_ == beg:
            raise InvalidRegionError("interval of size 0")
        if stop_ < beg:
            raise InvalidRegionError("interval of size less than 0")
        threshold = int(quality_threshold or 0)
        sel = self._selection(contig, start, stop, region, None, reference, end)
        counts = np.zeros((4, stop_ - beg), dtype=np.int64)
        if sel is not None:
            for f, keep in self._coverage_fields(sel, read_callback, threshold != 0):
                _add_coverage(counts, f, keep, beg, stop_, threshold)
        return tuple(array.array("L", c.astype(np.uint64).tobytes()) for c in counts)

    def _coverage_fields(self, sel: Selection, read_callback, with_qual: bool) -> Iterator[tuple[Fields, np.ndarray]]:
        """(Fields, the records kept) per chunk of the selection: the columns coverage needs, or
        for a callable ``read_callback`` whole records and its verdict on each."""
        if not (isinstance(read_callback, str) and read_callback in ("all", "nofilter")):
            from ._pysam import segments

            for batch in self.batches(sel):
                reads = segments(self.header, [batch])
                yield Fields.of_batch(batch), np.fromiter((bool(read_callback(r)) for r in reads), bool, len(batch))
            return
        from ._threads import ordered_map
        from .dataset import _overlap_mask

        names = {"flag", "pos", "span", "cigar", "seq", "qlen"} | ({"qual"} if with_qual else set())
        cols = columns_for(names)
        t = self.chunks

        def load(item):
            index, ivs, filt = item
            f = self._fields(index, cols)
            keep = np.ones(f.n, dtype=bool)
            if ivs is not None and not t.whole(index, ivs, filt):
                keep = _overlap_mask(f.pos, f.span, ivs)
                if filt is not None:
                    keep &= _overlap_mask(f.pos, f.span, filt)
            if read_callback == "all":
                keep &= (f.flag & FILTERED) == 0
            return f, keep

        yield from ordered_map(load, self._placed_plan(sel), self.workers)

    # ------------------------------------------------------------------ pileup
    def pileup(self, contig=None, start=None, stop=None, region=None, reference=None, end=None, **kwargs):
        """pysam's ``pileup`` (every argument and keyword as pysam's: ``truncate``, ``stepper``,
        ``max_depth``, ``min_base_quality``, ``flag_filter``, ``fastafile``, ...), exactly: the
        records overlapping the region (every placed record without one) are written to a
        temporary indexed BAM, removed once the columns are exhausted, and pysam piles them up."""
        import pysam

        self._check_open()
        self.parse_region(contig, start, stop, region, None, reference, end)  # pysam's regions only
        sel = self._selection(contig, start, stop, region, None, reference, end)
        tmp = tempfile.TemporaryDirectory(prefix="bams3-pileup-")
        try:
            path = os.path.join(tmp.name, "region.bam")
            with open(path, "wb") as f:
                if sel is not None:
                    self.write(f, sel, format="bam", options={"level": 1, "threads": 1})
                else:
                    self.write(f, [], format="bam", limit=0)
            pysam.index(path)
            af = pysam.AlignmentFile(path, "rb")
            return _Pileup(tmp, af, af.pileup(contig, start, stop, region, reference=reference, end=end, **kwargs))
        except BaseException:
            tmp.cleanup()
            raise


class _Pileup:
    """pysam's pileup iterator over the temporary BAM (its attributes too, e.g. ``seq_len``); the
    BAM is removed when the columns are exhausted (or the iterator is dropped)."""

    def __init__(self, tmp, af, it):
        self._tmp, self._af, self._it = tmp, af, it

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._it)
        except StopIteration:
            self._tmp.cleanup()
            raise

    def __getattr__(self, name):
        return getattr(self._it, name)


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(which range, the values) of the concatenated ranges [starts[i], starts[i] + lengths[i])."""
    total = int(lengths.sum())
    which = np.repeat(np.arange(len(lengths)), lengths)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return which, starts[which] + within


def _add_coverage(counts: np.ndarray, f: Fields, keep: np.ndarray, beg: int, end: int, threshold: int) -> None:
    """Add to ``counts`` (A C G T x [beg, end)) the bases of the kept records of ``f`` as pysam's
    count_coverage counts them: pairs of get_aligned_pairs(matches_only=True) at [beg, end), of
    reads with a sequence; with a threshold (not 0) only where the read has qualities and the
    base's is at least the threshold. A pair the CIGAR places past the end of the sequence (P
    advances pysam's query position) counts no base: pysam reads past the string there, unchecked."""
    rows = np.flatnonzero(keep & (f.qlen > 0) & (f.pos < end))
    if not len(rows):
        return
    ops, off = f.cigar
    n_ops = (off[rows + 1] - off[rows]).astype(np.int64)
    read, op_index = _ranges(off[rows], n_ops)
    op = ops[op_index]
    code, oplen = (op & 0xF).astype(np.int64), (op >> 4).astype(np.int64)
    first = np.repeat(np.cumsum(n_ops) - n_ops, n_ops)  # each op's read's first op
    qadv, radv = oplen * _QUERY_OPS[code], oplen * _REF_OPS[code]
    cq, cr = np.cumsum(qadv) - qadv, np.cumsum(radv) - radv
    q0, r0 = cq - cq[first], cr - cr[first] + f.pos[rows][read]
    a, b = np.maximum(r0, beg), np.minimum(r0 + oplen, end)
    m = _PAIRED_OPS[code] & (b > a)
    which, refpos = _ranges(a[m], (b - a)[m])
    qpos = (q0 + a - r0)[m][which] + (refpos - a[m][which])
    rec = rows[read[m][which]]
    inside = qpos < f.qlen[rec]
    refpos, qpos, rec = refpos[inside], qpos[inside], rec[inside]
    ok = np.ones(len(rec), dtype=bool)
    if threshold:
        qual, qoff = f.qual
        ok = (qual[qoff[rec]] != 0xFF) & (qual[qoff[rec] + qpos] >= threshold)
    seq, soff = f.seq
    byte = seq[soff[rec] + qpos // 2]
    base = np.where(qpos & 1, byte & 0xF, byte >> 4)
    for k, code4 in enumerate(_BASES):
        hit = ok & (base == code4)
        counts[k] += np.bincount(refpos[hit] - beg, minlength=counts.shape[1])


def AlignmentFile(filepath_or_object, mode: str | None = None, **kwargs):
    """``bams3.AlignmentFile(url, "rb")``: open a dataset as ``pysam.AlignmentFile(path, "rb")`` opens
    a BAM (a dataset is read only: mode ``r``, ``rb`` or none)."""
    from .dataset import Dataset
    from .errors import UsageError

    if mode not in (None, "r", "rb", "rc", "rU"):
        raise ValueError(f"bams3 datasets are read only: mode {mode!r} is not 'r' or 'rb'")
    if kwargs:
        raise UsageError(f"bams3.AlignmentFile does not take {', '.join(sorted(kwargs))}")
    return Dataset.open(os.fspath(filepath_or_object))
