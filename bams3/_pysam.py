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


_HTSLIB: object = None  # pysam's htslib through ctypes once checked; False: not usable


class SamFormatter:
    """SAM lines for raw records, formatted in this process by htslib's own ``sam_format1`` (the
    one samtools view calls) and written to a file descriptor, in one C loop per batch with the
    GIL released (``sam`` in ``bams3/_segments.c``). Records htslib's reader would change or
    refuse are left to the caller (:meth:`write` stops before the first). :func:`sam_formatter`
    makes one, or says None."""

    def __init__(self, lib, header_ptr: int, nref: int):
        self._lib, self._hdr, self._nref = lib, header_ptr, nref

    def write(self, batch: RecordBatch, fd: int, start: int = 0) -> int:
        """Writes to ``fd`` the lines of records ``start``.. and returns the index of the first
        record not written (``len(batch)`` when all were). OSError when a write fails
        (BrokenPipeError: the reader has gone)."""
        from . import _segments

        return _segments.sam(batch.data, batch.offsets, start, self._lib.format_address, self._hdr, self._nref, fd)

    def close(self) -> None:
        if self._hdr:
            self._lib.sam_hdr_destroy(self._hdr)
            self._hdr = 0


def sam_formatter(header: Header) -> SamFormatter | None:
    """A :class:`SamFormatter` for records under ``header``, or None where this process cannot
    format them as samtools does: no pysam htslib to call, an htslib older than 1.10 (another
    record layout), a probe record that does not come out as samtools writes it, or reference
    names htslib's header parser does not give back unchanged."""
    lib = _htslib()
    if lib is None:
        return None
    hdr = _references_header(lib, header.references)
    return None if hdr is None else SamFormatter(lib, hdr, len(header.references))


def _references_header(lib, references) -> int | None:
    """An htslib header holding exactly these references (an @SQ line each), or None."""
    text = "".join(f"@SQ\tSN:{n}\tLN:{ln}\n" for n, ln in references).encode()
    level = lib.hts_get_log_level()
    lib.hts_set_log_level(0)  # a name htslib would warn about is refused below, silently
    try:
        hdr = lib.sam_hdr_parse(len(text), text) if references else lib.sam_hdr_init()
    finally:
        lib.hts_set_log_level(level)
    if not hdr:
        return None
    ok = lib.sam_hdr_nref(hdr) == len(references) and all(
        lib.sam_hdr_tid2name(hdr, i) == n.encode() for i, (n, _) in enumerate(references))
    if not ok:
        lib.sam_hdr_destroy(hdr)
        return None
    return hdr


def _htslib():
    global _HTSLIB
    if _HTSLIB is None:
        try:
            _HTSLIB = _load_htslib() or False
        except (OSError, AttributeError, ValueError, ImportError):
            _HTSLIB = False
    return _HTSLIB or None


# The probe: every field a different value, a CIGAR with a clip and an insertion, a tag of each
# kind samtools prints differently (integer, float, text, array); and the line samtools writes.
_PROBE_LINE = (b"probe:x1\t99\tb\t123457\t37\t3S4M1I2M\tc\t654322\t-777\tACGTNACGTA\t+,-./01234"
               b"\tXY:i:42\tXF:f:0.1\tZZ:Z:hello\tXB:B:s,-1,300")


def _probe_record() -> bytes:
    import struct

    name, cigar, seq = b"probe:x1\0", [(4, 3), (0, 4), (1, 1), (0, 2)], "ACGTNACGTA"
    code = "=ACMGRSVTWYHKDBN"
    packed = bytes((code.index(seq[i]) << 4) | code.index(seq[i + 1]) for i in range(0, len(seq), 2))
    aux = (b"XYC" + bytes([42]) + b"XFf" + struct.pack("<f", 0.1) + b"ZZZhello\0"
           + b"XBBs" + struct.pack("<ihh", 2, -1, 300))
    var = name + b"".join(struct.pack("<I", n << 4 | op) for op, n in cigar) + packed + bytes(range(10, 20)) + aux
    core = struct.pack("<iiBBHHHiiii", 1, 123_456, len(name), 37, 4681, len(cigar), 99, len(seq), 2, 654_321, -777)
    return struct.pack("<i", len(core) + len(var)) + core + var


def _load_htslib():
    """pysam's bundled htslib (its libchtslib, loaded as a plain library: pysam itself is not
    imported) with the functions a SamFormatter calls, if it formats the probe record as
    samtools does."""
    import ctypes
    import importlib.machinery
    import importlib.util

    import numpy as np

    from . import _segments

    spec = importlib.util.find_spec("pysam")
    if spec is None or not spec.submodule_search_locations:
        return None
    for where in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = os.path.join(where, "libchtslib" + suffix)
            if os.path.isfile(path):
                break
        else:
            continue
        break
    else:
        return None
    lib = ctypes.CDLL(path)
    lib.hts_version.restype = ctypes.c_char_p
    major, minor = (int(x) for x in lib.hts_version().decode().split("-")[0].split(".")[:2])
    if (major, minor) < (1, 10):  # bam1_t as _segments.c lays it out: 64-bit positions
        return None
    lib.sam_hdr_parse.restype = ctypes.c_void_p
    lib.sam_hdr_parse.argtypes = [ctypes.c_size_t, ctypes.c_char_p]
    lib.sam_hdr_init.restype = ctypes.c_void_p
    lib.sam_hdr_init.argtypes = []
    lib.sam_hdr_nref.argtypes = [ctypes.c_void_p]
    lib.sam_hdr_tid2name.restype = ctypes.c_char_p
    lib.sam_hdr_tid2name.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.sam_hdr_destroy.argtypes = [ctypes.c_void_p]
    lib.sam_hdr_destroy.restype = None
    lib.hts_get_log_level.restype = ctypes.c_int
    lib.hts_set_log_level.argtypes = [ctypes.c_int]
    lib.hts_set_log_level.restype = None
    lib.format_address = ctypes.cast(lib.sam_format1, ctypes.c_void_p).value
    hdr = _references_header(lib, [("a", 10_000_000), ("b", 10_000_000), ("c", 10_000_000)])
    if hdr is None:
        return None
    r, w = os.pipe()
    try:
        rec = _probe_record()
        end = _segments.sam(np.frombuffer(rec, np.uint8), np.array([0, len(rec)], np.int64), 0,
                            lib.format_address, hdr, 3, w)
        os.close(w)
        w = -1
        text = b"".join(iter(lambda: os.read(r, 1 << 16), b""))
    finally:
        lib.sam_hdr_destroy(hdr)
        os.close(r)
        if w >= 0:
            os.close(w)
    return lib if (text, end) == (_PROBE_LINE + b"\n", 1) else None
