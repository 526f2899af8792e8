"""Bridges to htslib through pysam: raw record batches go into a pipe as an
uncompressed BAM stream; htslib parses them and formats SAM (exactly as
samtools does) or yields pysam records.
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
