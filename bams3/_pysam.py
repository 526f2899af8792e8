"""Bridges to htslib through pysam: raw record batches go into a pipe as an
uncompressed BAM stream; htslib parses them and formats SAM (exactly as
samtools does) or yields pysam records. pysam records are made without the pipe
where pysam allows it (:func:`segments`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator

from .records import Header, RecordBatch


def _feed(w: int, header: Header, batches: Iterable[RecordBatch], error: list) -> None:
    try:
        with os.fdopen(w, "wb", buffering=1 << 20) as f:
            f.write(header.to_bam_bytes())
            for b in batches:
                f.write(memoryview(b.data)[b.offsets[0] : b.offsets[-1]])
    except (BrokenPipeError, OSError):
        pass
    except BaseException as exc:
        error.append(exc)


def _pipe() -> tuple[int, int]:
    """A pipe with a 1 MiB buffer where the system allows it (Linux; 64 KiB otherwise): a
    megabase of records (~44 MB) crosses it in ~700 wake-ups of the reader instead of ~11,000."""
    r, w = os.pipe()
    try:
        import fcntl

        fcntl.fcntl(w, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (ImportError, OSError):
        pass
    return r, w


def records_via_htslib(header: Header, batches: Iterable[RecordBatch]) -> Iterator:
    """pysam AlignedSegment objects for raw batches (batches are produced on a thread)."""
    import pysam

    r, w = _pipe()
    error: list = []
    t = threading.Thread(target=_feed, args=(w, header, batches, error), daemon=True, name="bams3-feed")
    t.start()
    rf = os.fdopen(r, "rb")
    try:
        with pysam.AlignmentFile(rf, "rb", check_sq=False) as af:
            yield from af
    finally:
        rf.close()
        t.join()
    if error:
        raise error[0]


_MAKER: object = None  # pysam's makeAlignedSegment capsule once checked; False: not usable


def segments(header: Header, batches: Iterable[RecordBatch]) -> Iterator:
    """pysam AlignedSegment objects for raw batches, exactly as htslib reads the records: made by
    pysam's own constructor from each batch in one C loop (``bams3/_segments.c``) where the records
    allow it, otherwise read by htslib through a pipe (:func:`records_via_htslib`). ``header``:
    the dataset's header, whose ``pysam`` the records carry. The records made in C are not tracked
    by the cycle collector (they cannot be part of a cycle; see ``_segments.c``)."""
    maker = _maker()
    ph = getattr(header, "pysam", None)
    if maker is None or ph is None:
        yield from records_via_htslib(header, batches)
        return
    from pysam import libcalignedsegment

    from . import _segments

    nref, cache = ph.nreferences, getattr(libcalignedsegment, "_AlignedSegment_Cache", None)
    for b in batches:
        made = _segments.make(b.data, b.offsets, maker, ph, nref, cache)
        yield from (made if made is not None else records_via_htslib(header, [b]))


def _maker():
    global _MAKER
    if _MAKER is None:
        _MAKER = _probe() or False
    return _MAKER or None


def _probe():
    """pysam's makeAlignedSegment, if this pysam exports it and a record made through it (every
    field a different value) reads back through pysam's accessors as written."""
    import struct

    import numpy as np
    import pysam

    try:
        from pysam import libcalignedsegment

        from . import _segments

        capsule = libcalignedsegment.__pyx_capi__["makeAlignedSegment"]
    except (ImportError, AttributeError, KeyError):
        return None
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": n, "LN": 10_000_000} for n in ("a", "b", "c")]})
    name, cigar, seq = b"probe:x1\0", [(4, 3), (0, 4), (1, 1), (0, 2)], "ACGTNACGTA"
    packed = bytes(("=ACMGRSVTWYHKDBN".index(seq[i]) << 4) | "=ACMGRSVTWYHKDBN".index(seq[i + 1])
                   for i in range(0, len(seq), 2))
    var = (name + b"".join(struct.pack("<I", n << 4 | op) for op, n in cigar) + packed + bytes(range(10, 20))
           + b"XYC" + bytes([42]) + b"ZZZhello\0")
    core = struct.pack("<iiBBHHHiiii", 1, 123_456, len(name), 37, 4681, len(cigar), 99, len(seq), 2, 654_321, -777)
    rec = struct.pack("<i", len(core) + len(var)) + core + var
    try:
        made = _segments.make(np.frombuffer(rec, np.uint8), np.array([0, len(rec)], np.int64), capsule, header, 3,
                              None)
    except (TypeError, ValueError):
        return None
    if not made:
        return None
    s = made[0]
    ok = (s.query_name == "probe:x1" and s.flag == 99 and s.reference_name == "b" and s.reference_start == 123_456
          and s.mapping_quality == 37 and s.cigarstring == "3S4M1I2M" and s.next_reference_name == "c"
          and s.next_reference_start == 654_321 and s.template_length == -777 and s.query_sequence == seq
          and list(s.query_qualities) == list(range(10, 20)) and s.get_tags() == [("XY", 42), ("ZZ", "hello")]
          and s.bin == 4681 + (123_456 >> 14) and s.header is header)  # htslib's bin for [123456, 123462)
    return capsule if ok else None


class HtslibWriter:
    """An output-format writer: records are parsed by htslib on a thread and handed
    to ``emit(alignment_file, out)`` which writes them in the target format."""

    def __init__(self, out, header: Header, emit: Callable):
        import pysam

        self._pysam = pysam
        self._out = out
        self._emit = emit
        self._error: list = []
        r, w = os.pipe()
        self._w = os.fdopen(w, "wb", buffering=1 << 20)
        self._r = r
        out.flush()
        self._thread = threading.Thread(target=self._consume, daemon=True, name="bams3-format")
        self._thread.start()
        self._write(header.to_bam_bytes())

    def _consume(self) -> None:
        try:
            with os.fdopen(self._r, "rb") as rf, self._pysam.AlignmentFile(rf, "rb", check_sq=False) as af:
                self._emit(af, self._out)
        except BaseException as exc:
            self._error.append(exc)

    def _write(self, data) -> None:
        try:
            self._w.write(data)
        except BrokenPipeError:
            self._raise()
            raise

    def write(self, batch: RecordBatch) -> None:
        self._write(memoryview(batch.data)[batch.offsets[0] : batch.offsets[-1]])

    def _raise(self) -> None:
        self._thread.join()
        if self._error:
            raise self._error[0]

    def close(self) -> None:
        try:
            self._w.close()
        except BrokenPipeError:
            pass
        self._raise()

    def abort(self) -> None:
        try:
            self._w.close()
        except OSError:
            pass
        self._thread.join(timeout=10)
