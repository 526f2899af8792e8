"""Opening inputs: BAM is read directly (bulk BGZF + raw records); SAM and CRAM
are decoded by htslib (pysam) into an uncompressed BAM stream on a thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import attrs

from . import bgzf
from .errors import InputError
from .records import Header, RecordBatch, split_records


@attrs.define
class Input:
    header: Header
    batches: Iterator[RecordBatch]
    format: str
    size: int | None
    progress: callable = None  # bytes of input consumed so far

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close:
            close()


class _CountingReader:
    def __init__(self, f):
        self.f = f
        self.n = 0

    def read(self, k: int) -> bytes:
        b = self.f.read(k)
        self.n += len(b)
        return b


def _sniff(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a directory, not a BAM/SAM/CRAM file") from None
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if not head:
        raise InputError(f"{path} is empty, not a BAM/SAM/CRAM file")
    if head[:4] == b"CRAM":
        return "CRAM"
    if head[:4] == b"BAM\x01":
        return "BAM-raw"
    if head[:2] == b"\x1f\x8b":
        try:
            first = next(bgzf.decompress_stream(_OneShot(head).read), b"")
        except InputError as exc:
            if "truncated" not in str(exc):
                raise InputError(f"{path}: {exc}") from None
            first = b""
        except StopIteration:
            first = b""
        if first[:4] == b"BAM\x01" or not first:
            return "BAM"
        return "SAM"
    if head[:1] == b"@" or all(32 <= c < 127 or c in (9, 10, 13) for c in head[:4096]):
        return "SAM"
    raise InputError(f"{path} is not a BAM, SAM or CRAM file")


class _OneShot:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, k: int) -> bytes:
        d, self.data = self.data, b""
        return d


def open_input(path: str, reference: str | None = None, threads: int = 2) -> Input:
    """Open a BAM, SAM or CRAM file as a stream of raw record batches."""
    kind = _sniff(path)
    size = os.path.getsize(path)
    if kind in ("BAM", "BAM-raw"):
        f = open(path, "rb")
        reader = _CountingReader(f)
        if kind == "BAM":
            pieces = bgzf.decompress_stream(reader.read)
        else:
            pieces = iter(lambda: reader.read(4 << 20), b"")
        try:
            header, batches = split_records(pieces)
        except InputError as exc:
            f.close()
            raise InputError(f"{path}: {exc}") from None

        def gen():
            try:
                for b in batches:
                    yield b
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            finally:
                f.close()

        return Input(header, gen(), "BAM", size, lambda: reader.n)
    return _open_with_htslib(path, kind, reference, size, threads)


def _open_with_htslib(path: str, kind: str, reference: str | None, size: int, threads: int) -> Input:
    import pysam

    pysam.set_verbosity(0)
    try:
        inp = pysam.AlignmentFile(path, "rc" if kind == "CRAM" else "r", reference_filename=reference,
                                  threads=max(1, threads), check_sq=False)
    except (OSError, ValueError) as exc:
        hint = " (pass --reference ref.fa for CRAM)" if kind == "CRAM" and not reference else ""
        raise InputError(f"cannot read {path} as {kind}: {exc}{hint}") from None
    r, w = os.pipe()
    error: list[BaseException] = []
    consumed = [0]

    def produce():
        try:
            with os.fdopen(w, "wb") as wf, pysam.AlignmentFile(wf, "wbu", template=inp) as out:
                for rec in inp:
                    out.write(rec)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported by the consumer
            error.append(exc)
        finally:
            inp.close()

    t = threading.Thread(target=produce, name="bams3-htslib-reader", daemon=True)
    t.start()
    rf = os.fdopen(r, "rb")

    def pieces():
        while True:
            b = rf.read(4 << 20)
            if not b:
                break
            consumed[0] += len(b)
            yield b
        t.join()
        if error:
            exc = error[0]
            hint = " (pass --reference ref.fa)" if kind == "CRAM" and not reference else ""
            raise InputError(f"{path}: cannot decode {kind} ({exc}){hint}")

    try:
        header, batches = split_records(pieces())
    except InputError as exc:
        rf.close()
        raise InputError(f"{path}: {exc}") from None

    def gen():
        try:
            yield from batches
        finally:
            rf.close()
            t.join(timeout=5)

    # progress for htslib inputs is unknown in compressed bytes; report none
    return Input(header, gen(), kind, size, None)
