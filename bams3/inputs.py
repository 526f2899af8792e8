"""Opening inputs: BAM is read directly (bulk BGZF + raw records); SAM and CRAM
are decoded by htslib in a child process (``bams3._htsdecode``) that streams an
uncompressed BAM back through a pipe.
"""

from __future__ import annotations

import os
import subprocess
import sys
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
    hint = " (pass --reference ref.fa)" if kind == "CRAM" and not reference else ""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bams3._htsdecode", path, reference or "", str(max(1, threads) if kind == "CRAM" else 1)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )

    def finish() -> None:
        try:
            proc.stdout.close()
        except OSError:
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def child_error() -> InputError | None:
        err = proc.stderr.read().decode(errors="replace").strip()
        if proc.wait() == 0:
            return None
        if "sam_write1" in err:
            err = "a record cannot be stored in BAM, e.g. a position beyond 2,147,483,647"
        return InputError(f"cannot read it as {kind} ({err or 'htslib failed'}){hint}")

    def pieces():
        try:
            yield from bgzf.decompress_stream(proc.stdout.read1)  # htslib writes level-0 BGZF
        except InputError:
            raise child_error() or InputError("the SAM/CRAM decoder stopped early") from None
        exc = child_error()
        if exc:
            raise exc

    try:
        header, batches = split_records(pieces())
    except InputError as exc:
        finish()
        raise InputError(f"{path}: {exc}") from None

    def gen():
        try:
            yield from batches
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        finally:
            finish()

    return Input(header, gen(), kind, size, None)
