"""Bridges to htslib through pysam: raw record batches go into a pipe as an
uncompressed BAM stream; htslib parses them and formats SAM (exactly as
samtools does) or yields pysam records. pysam records are made without the pipe
where pysam allows it (:func:`segments`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator

from .layout import bam_header_bytes

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing, ~3 ms of the quick path)
if TYPE_CHECKING:  # (records imports numpy: the quick path formats SAM without it)
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
    import numpy as np
    import pysam

    try:
        from pysam import libcalignedsegment

        from . import _segments

        capsule = libcalignedsegment.__pyx_capi__["makeAlignedSegment"]
    except (ImportError, AttributeError, KeyError):
        return None
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": n, "LN": 10_000_000} for n in ("a", "b", "c")]})
    rec = _probe_record(b"XYC" + bytes([42]) + b"ZZZhello\0")
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
          and s.next_reference_start == 654_321 and s.template_length == -777 and s.query_sequence == "ACGTNACGTA"
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
    """SAM written in this process by htslib itself, as ``samtools view`` writes it: the header
    read by ``sam_hdr_read`` from the dataset's BAM header bytes and written by
    ``sam_hdr_write`` (:meth:`write_header`), and each record's line by ``sam_format1``, in one
    C loop per batch with the GIL released (``sam`` in ``bams3/_segments.c``) straight to a file
    descriptor. Records htslib's reader would change or refuse are left to the caller
    (:meth:`write` stops before the first). :func:`sam_formatter` makes one, or says None."""

    def __init__(self, lib, header_ptr: int, nref: int):
        self._lib, self._hdr, self._nref = lib, header_ptr, nref

    def write_header(self, fd: int) -> bool:
        """Writes the header to ``fd`` (through a duplicate that htslib closes); False when that
        failed."""
        return _write_header(self._lib, self._hdr, fd)

    def write(self, batch: RecordBatch, fd: int, start: int = 0) -> int:
        """Writes to ``fd`` the lines of records ``start``.. and returns the index of the first
        record not written (``len(batch)`` when all were). OSError when a write fails
        (BrokenPipeError: the reader has gone)."""
        return self.write_records(batch.data, batch.offsets, fd, start)

    def write_records(self, data, offsets, fd: int, start: int = 0) -> int:
        """:meth:`write` of records back to back in ``data``, record i at ``offsets[i]`` (N + 1
        int64 in any buffer)."""
        from . import _segments

        return _segments.sam(data, offsets, start, self._lib.format_address, self._hdr, self._nref, fd)

    def close(self) -> None:
        if self._hdr:
            self._lib.sam_hdr_destroy(self._hdr)
            self._hdr = 0


def sam_formatter(header: Header) -> SamFormatter | None:
    """A :class:`SamFormatter` for records under ``header``, or None where this process cannot
    write SAM as samtools does: no pysam htslib to call, an htslib older than 1.10 (another
    record layout), a probe that does not come out as samtools writes it, or a header htslib
    does not read back with the same references."""
    return formatter_for(header.to_bam_bytes(), len(header.references))


def formatter_for(bam_header: bytes, n_references: int) -> SamFormatter | None:
    """:func:`sam_formatter` of a header given as its BAM bytes and its number of references."""
    lib = _htslib()
    if lib is None:
        return None
    hdr = _read_header(lib, bam_header)
    if hdr is None:
        return None
    if lib.sam_hdr_nref(hdr) != n_references:
        lib.sam_hdr_destroy(hdr)
        return None
    return SamFormatter(lib, hdr, n_references)


def _read_header(lib, bam_header: bytes) -> int | None:
    """The header samtools view reads from these BAM header bytes (uncompressed BAM, as the
    stream our records made for a samtools child): htslib's sam_hdr_read over a file in memory
    (``hdopen``: a ``data:`` URL, where there is no memfd, would have htslib set up its URL
    schemes first, libcurl's among them: ~9 ms of a process)."""
    with _LOG_LEVEL:  # (htslib's log level is one per process)
        level = lib.hts_get_log_level()
        lib.hts_set_log_level(0)  # no BGZF EOF block here, and any header warning is samtools' to give
        try:
            fp = _open_bytes(lib, bam_header)
            if not fp:
                return None
            try:
                return lib.sam_hdr_read(fp) or None
            finally:
                lib.hts_close(fp)
        finally:
            lib.hts_set_log_level(level)


def _open_bytes(lib, data: bytes) -> int:
    """An htsFile reading ``data`` (0 where htslib cannot open it)."""
    if not hasattr(os, "memfd_create"):
        import base64

        return lib.hts_open(b"data:;base64," + base64.b64encode(data), b"r")
    fd = os.memfd_create("bams3-header", getattr(os, "MFD_CLOEXEC", 0))
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        return 0
    hf = lib.hdopen(fd, b"r")
    if not hf:
        os.close(fd)
        return 0
    fp = lib.hts_hopen(hf, b"-", b"r")
    if not fp:
        lib.hclose_abruptly(hf)  # closes fd
    return fp or 0


_LOG_LEVEL = threading.Lock()


def _write_header(lib, hdr: int, fd: int) -> bool:
    dup = os.dup(fd)
    hf = lib.hdopen(dup, b"w")
    if not hf:
        os.close(dup)
        return False
    out = lib.hts_hopen(hf, b"-", b"w")
    if not out:
        lib.hclose_abruptly(hf)  # closes dup
        return False
    ok = lib.sam_hdr_write(out, hdr) == 0
    return lib.hts_close(out) == 0 and ok  # (closes dup)


def _htslib():
    global _HTSLIB
    if _HTSLIB is None:
        try:
            _HTSLIB = _load_htslib() or False
        except (OSError, AttributeError, ValueError, ImportError):
            _HTSLIB = False
    return _HTSLIB or None


# The probe: every field a different value, a CIGAR with a clip and an insertion, a tag of each
# kind samtools prints differently (integer, float, text, array); a header whose text has no
# @SQ lines (htslib writes them from the references); and what samtools view -h writes.
_PROBE_HEADER = bam_header_bytes("@HD\tVN:1.6\n", (("a", 10_000_000), ("b", 10_000_000), ("c", 10_000_000)))
_PROBE_SAM = (b"@HD\tVN:1.6\n@SQ\tSN:a\tLN:10000000\n@SQ\tSN:b\tLN:10000000\n@SQ\tSN:c\tLN:10000000\n"
              b"probe:x1\t99\tb\t123457\t37\t3S4M1I2M\tc\t654322\t-777\tACGTNACGTA\t+,-./01234"
              b"\tXY:i:42\tXF:f:0.1\tZZ:Z:hello\tXB:B:s,-1,300\n")


def _probe_record(aux: bytes | None = None) -> bytes:
    """The probe record of both checks (a pysam record made in C, SAM written here): every field
    a different value, a CIGAR with a clip and an insertion; ``aux`` its tags (default: a tag of
    each kind samtools prints differently)."""
    import struct

    name, cigar, seq = b"probe:x1\0", [(4, 3), (0, 4), (1, 1), (0, 2)], "ACGTNACGTA"
    code = "=ACMGRSVTWYHKDBN"
    packed = bytes((code.index(seq[i]) << 4) | code.index(seq[i + 1]) for i in range(0, len(seq), 2))
    if aux is None:
        aux = (b"XYC" + bytes([42]) + b"XFf" + struct.pack("<f", 0.1) + b"ZZZhello\0"
               + b"XBBs" + struct.pack("<ihh", 2, -1, 300))
    var = name + b"".join(struct.pack("<I", n << 4 | op) for op, n in cigar) + packed + bytes(range(10, 20)) + aux
    core = struct.pack("<iiBBHHHiiii", 1, 123_456, len(name), 37, 4681, len(cigar), 99, len(seq), 2, 654_321, -777)
    return struct.pack("<i", len(core) + len(var)) + core + var


def _load_htslib():
    """pysam's bundled htslib (its libchtslib, loaded as a plain library: pysam itself is not
    imported) with the functions a SamFormatter calls, if it writes the probe as samtools
    does."""
    import array
    import ctypes
    import importlib.machinery
    import importlib.util

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
    if major != 1 or minor < 10:  # bam1_t as _segments.c lays it out: 64-bit positions, htslib 1.x
        return None
    ptr, cstr, cint = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
    for name, restype, argtypes in (
            ("hts_open", ptr, [cstr, cstr]), ("hts_hopen", ptr, [ptr, cstr, cstr]), ("hts_close", cint, [ptr]),
            ("hdopen", ptr, [cint, cstr]), ("hclose_abruptly", None, [ptr]),
            ("sam_hdr_read", ptr, [ptr]), ("sam_hdr_write", cint, [ptr, ptr]), ("sam_hdr_nref", cint, [ptr]),
            ("sam_hdr_destroy", None, [ptr]), ("hts_get_log_level", cint, []), ("hts_set_log_level", None, [cint])):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    lib.format_address = ctypes.cast(lib.sam_format1, ctypes.c_void_p).value
    hdr = _read_header(lib, _PROBE_HEADER)
    if hdr is None:
        return None
    rec = _probe_record()
    r, w = os.pipe()
    try:
        fmt = SamFormatter(lib, hdr, 3)
        ok = fmt.write_header(w)
        end = fmt.write_records(rec, array.array("q", [0, len(rec)]), w)
        os.close(w)
        w = -1
        text = b"".join(iter(lambda: os.read(r, 1 << 16), b""))
    finally:
        lib.sam_hdr_destroy(hdr)
        os.close(r)
        if w >= 0:
            os.close(w)
    return lib if (ok, end, text) == (True, 1, _PROBE_SAM) else None
