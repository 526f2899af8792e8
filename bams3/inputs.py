"""Opening inputs, local or on any store: BAM is read directly (bulk BGZF + raw
records); SAM and CRAM are decoded by htslib in a child process
(``bams3._htsdecode``) that streams an uncompressed BAM back through a pipe.
Remote inputs are streamed, never copied to local disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator

import attrs

from . import bgzf, early
from .early import STDIN  # input names meaning standard input (converter and shards import it from here)
from ._child import Child
from .errors import InputError, StorageError, TruncatedInputError
from .records import Header, RecordBatch, split_records
from .storage import open_store, refuse_query, url_scheme

_HEAD = 64 * 1024


@attrs.define
class Input:
    header: Header
    batches: Iterator[RecordBatch]
    format: str
    size: int | None
    progress: Callable[[], int] | None = None  # bytes of input consumed so far
    # after close(): the decoder's own explanation of a failure, if it gave one (e.g. a record
    # on an unknown reference, which otherwise shows only as a record out of order)
    diagnose: Callable[[], InputError | None] = lambda: None

    def close(self) -> None:
        close = getattr(self.batches, "close", None)
        if close:
            close()


class _Source:
    """The input's bytes: a local file, or an object streamed from a store."""

    def __init__(self, name: str):
        self.name = name
        self.consumed = 0
        self._it = None
        local = name[len("file://") :] if name.startswith("file://") else name
        if name in STDIN:  # a stream, like a pipe
            if sys.stdin is None:
                raise InputError("standard input is closed; pipe a BAM, SAM or CRAM file into `-`")
            try:
                self._f = os.fdopen(os.dup(0), "rb")
            except OSError:
                raise InputError("standard input is closed; pipe a BAM, SAM or CRAM file into `-`") from None
            self._stream_file()
        elif url_scheme(name) == "file":
            self.local_path = local
            try:
                self._f = open(local, "rb")
            except FileNotFoundError:
                raise InputError(f"{name}: no such file", source=name) from None
            except IsADirectoryError:
                raise InputError(f"{name} is a directory, not a BAM/SAM/CRAM file", source=name) from None
            except OSError as exc:
                raise InputError(f"cannot read {name}: {exc.strerror}", source=name) from None
            if not self._f.seekable():  # a named pipe or a device: read as a stream
                self._stream_file()
                return
            self.size = os.fstat(self._f.fileno()).st_size
            self.head = self._f.read(_HEAD)
            self._f.seek(0)
            self._read = self._f.read
        else:
            self.local_path = None
            self._f = None
            refuse_query(name)
            parent, _, key = name.rstrip("/").rpartition("/")
            store = open_store(parent)
            self.size = store.size(key)
            if self.size is None:
                raise InputError(f"{name}: no such object", source=name)
            self.head = store.get_range(key, 0, min(self.size, _HEAD))
            self._it = store.stream(key)
            self._buf = b""
            self._read = self._read_stream

    def _stream_file(self) -> None:
        """Read a file that cannot seek (a pipe): its head is kept and read again first."""
        self.local_path = None
        self.size = None
        head = b""
        while len(head) < _HEAD:
            b = self._f.read(_HEAD - len(head))
            if not b:
                break
            head += b
        self.head = head
        self._buf = head
        self._it = iter(lambda: self._f.read(1 << 20), b"")
        self._read = self._read_stream

    def _read_stream(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                self._buf += next(self._it)
            except StopIteration:
                break
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read(self, n: int) -> bytes:
        b = self._read(n)
        self.consumed += len(b)
        return b

    def skip(self, n: int) -> None:
        """Past the first ``n`` bytes of a local file (read already by bams3.early)."""
        self._f.seek(n)
        self.consumed = n

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
        if self._it is not None:
            close = getattr(self._it, "close", None)
            if close:
                close()


def _sniff(head: bytes, name: str) -> str:
    if not head:
        raise InputError(f"{name} is empty, not a BAM/SAM/CRAM file", source=name)
    if head[:4] == b"CRAM":
        return "CRAM"
    if head[:4] == b"BAM\x01":
        return "BAM-raw"
    if head[:2] == b"\x1f\x8b":
        if not _is_bgzf(head):  # plain gzip (gzip in.sam): htslib reads it, as samtools does
            try:
                first = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4096)
            except zlib.error:
                raise InputError(f"{name} is gzip-compressed but does not decompress (corrupt)",
                                 source=name) from None
            if first[:4] == b"BAM\x01":
                return "BAM-gzip"
            if first[:1] == b"@" or all(32 <= c < 127 or c in (9, 10, 13) for c in first[:4096]):
                return "SAM"
            raise InputError(f"{name} is gzip-compressed but holds neither SAM nor BAM", source=name)
        try:
            pieces = iter([head])
            first = next(bgzf.decompress_stream(lambda n: next(pieces, b"")), b"")
        except TruncatedInputError:
            first = b""  # only the first block was given: BAM, or SAM, decided below
        except InputError as exc:
            raise InputError(f"{name}: {exc}", source=name) from None
        return "BAM" if first[:4] == b"BAM\x01" or not first else "SAM"
    if head[:1] == b"@" or all(32 <= c < 127 or c in (9, 10, 13) for c in head[:4096]):
        return "SAM"
    raise InputError(f"{name} is not a BAM, SAM or CRAM file", source=name)


def _is_bgzf(head: bytes) -> bool:
    """The gzip member at the start carries BGZF's BC extra field."""
    if len(head) < 18 or not head[3] & 4:
        return False
    xlen = head[10] | (head[11] << 8)
    p, end = 12, min(12 + xlen, len(head))
    while p + 4 <= end:
        if head[p] == 66 and head[p + 1] == 67:
            return True
        p += 4 + (head[p + 2] | (head[p + 3] << 8))
    return False


def _gunzip(read, piece: int = 4 << 20) -> Iterator[bytes]:
    """Plain gzip (any number of members), decompressed as it is read, in bounded pieces."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    pending = b""  # input not yet given to a decompressor
    started = False  # the current member has begun
    while True:
        data = d.unconsumed_tail or pending or read(1 << 20)
        pending = b""
        if not data:
            if started and not d.eof:
                raise InputError("truncated gzip stream")
            return
        started = True
        try:
            out = d.decompress(data, piece)
        except zlib.error as exc:
            raise InputError(f"corrupt gzip stream ({exc})") from None
        if out:
            yield out
        if d.eof:  # a member ended: another may follow
            pending = d.unused_data
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            started = False


def open_input(name: str, reference: str | None = None, threads: int = 2) -> Input:
    """Open a BAM, SAM or CRAM file (a path or a URL) as a stream of raw record batches."""
    src = _Source(name)
    try:
        kind = _sniff(src.head, name)
        # the first blocks, if the program inflated them (of anything but a BAM: stopped, unused)
        inflated = early.claim(src.local_path if kind == "BAM" else None, src._f)
        if kind not in ("BAM", "BAM-raw", "BAM-gzip"):
            return _open_with_htslib(src, kind, reference, threads)
        if kind == "BAM":
            pieces = inflated.take(src.read, src.skip) if inflated else bgzf.decompress_blocks(src.read)
        elif kind == "BAM-gzip":
            pieces = _gunzip(src.read)
        else:
            pieces = iter(lambda: src.read(4 << 20), b"")
        header, batches = split_records(pieces)
    except InputError as exc:
        src.close()
        raise exc.naming(name) from None
    except BaseException:
        src.close()
        raise

    def gen():
        try:
            yield from batches
        except InputError as exc:
            raise InputError(f"{name}: {exc}", source=name) from None
        finally:
            src.close()

    return Input(header, gen(), "BAM", src.size, lambda: src.consumed)


def unknown_reference(message: str) -> InputError | None:
    """The error for htslib's warning that a SAM record names a reference (or mate
    reference) the header lacks: htslib keeps such a record, unplaced, and its placement
    would be lost without a word."""
    if "nrecognized reference name" not in message and "nrecognized mate reference name" not in message:
        return None
    ref = message.split("reference name", 1)[1].split(";")[0].strip().strip('"')
    which = "mate reference" if "mate reference" in message else "reference"
    return InputError(f"a record names {which} {ref!r}, which the header lacks; "
                      "add it to the header (@SQ) or fix the record")


def _open_with_htslib(src: _Source, kind: str, reference: str | None, threads: int) -> Input:
    """SAM, CRAM and gzipped SAM, decoded by htslib in a child process (:class:`HtslibDecoder`)."""
    dec = HtslibDecoder(src, kind, reference, threads)
    name = src.name
    try:
        header, batches = split_records(dec.pieces())
    except InputError as exc:
        dec.finish()
        raise exc.naming(name) from None
    except StorageError as exc:
        dec.finish()
        raise type(exc)(f"{name}: {exc}") from None

    def gen():
        try:
            yield from batches
        except InputError as exc:
            raise exc.naming(name) from None
        finally:
            dec.finish()

    return Input(header, gen(), kind, src.size, lambda: src.consumed,
                 lambda: dec.unknown.naming(name) if dec.unknown else None)


class HtslibDecoder:
    """htslib (through pysam, in a child: ``bams3._htsdecode``) turning the input into level-0
    BGZF BAM on a pipe. Its messages are drained as they come (a full pipe would stall it) and
    kept bounded, but the first unknown-reference warning is always kept; an input that is not a
    local file is fed to it from a thread."""

    MAX_MESSAGES = 200

    def __init__(self, src: _Source, kind: str, reference: str | None, threads: int):
        self.src, self.kind = src, kind
        self.hint = " (pass --reference ref.fa)" if kind == "CRAM" and not reference else ""
        self.messages: list[str] = []
        self.unknown: InputError | None = None
        self.feed_error: BaseException | None = None
        self.proc = Child(
            ["-m", "bams3._htsdecode", src.local_path or "-", reference or "",
             str(max(1, threads) if kind == "CRAM" else 1)],
            stdin=subprocess.DEVNULL if src.local_path else subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.drainer = threading.Thread(target=self._drain, daemon=True, name="bams3-decoder-messages")
        self.drainer.start()
        self.feeder = None
        if src.local_path is None:  # stream the object into the decoder
            self.feeder = threading.Thread(target=self._feed, daemon=True, name="bams3-feed-decoder")
            self.feeder.start()

    def _drain(self) -> None:
        for line in self.proc.stderr:
            text = line.decode(errors="replace").strip()
            if not text:
                continue
            if self.unknown is None:
                self.unknown = unknown_reference(text)
            if len(self.messages) < self.MAX_MESSAGES:
                self.messages.append(text)
            else:
                self.messages[-1] = text

    def _feed(self) -> None:
        try:
            while True:
                b = self.src.read(1 << 20)
                if not b:
                    break
                self.proc.stdin.write(b)
        except BrokenPipeError:
            pass
        except BaseException as exc:
            self.feed_error = exc
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def pieces(self) -> Iterator[bytes]:
        """The decoded BAM stream, inflated; ends with the decoder's own error if it failed."""
        try:
            yield from bgzf.decompress_stream(self.proc.stdout.read1)  # htslib writes level-0 BGZF
        except InputError:
            raise self.error() or InputError("the SAM/CRAM decoder stopped early") from None
        exc = self.error()
        if exc:
            raise exc

    def error(self) -> InputError | None:
        """Why the decoder failed (once it has stopped), or None: the feeder's error, an unknown
        reference, a CRAM reference mismatch, or the last thing htslib said."""
        if self.feeder is not None:
            self.feeder.join()
        exc = self.feed_error
        if exc is not None:
            return exc if isinstance(exc, (InputError, StorageError)) else InputError(f"cannot read it ({exc})")
        code = self.proc.wait()
        self.drainer.join()
        if self.unknown is not None:
            return self.unknown
        if code == 0:
            return None
        # htslib reports only in words: these are its messages, read as it prints them
        err = self.messages[-1] if self.messages else ""
        mismatch = next((m for m in self.messages if "MD5 checksum reference mismatch" in m), None)
        if mismatch is not None:
            where = mismatch.rsplit(" at ", 1)[-1] if " at " in mismatch else "a slice"
            return InputError(f"the reference does not match the one the CRAM was made with (MD5 mismatch at "
                              f"{where}); pass that FASTA with -T/--reference")
        if "sam_write1" in err:
            err = "a record cannot be stored in BAM, e.g. a position beyond 2,147,483,647"
        return InputError(f"cannot read it as {self.kind} ({err or 'htslib failed'}){self.hint}")

    def finish(self) -> None:
        """Stop the decoder and its threads, and close the input."""
        proc = self.proc
        try:
            proc.stdout.close()
        except OSError:
            pass
        self.drainer.join(timeout=5)
        try:
            proc.stderr.close()
        except OSError:
            pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if self.feeder is not None:
            self.feeder.join()
        self.src.close()
