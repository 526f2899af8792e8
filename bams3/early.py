"""A local BAM's first BGZF blocks inflated on a thread while ``bams3 convert`` loads its modules.

The converter's modules (numpy, the codecs) take ~0.2 s to import, on one core, before the
input is opened. In that time the other core inflates the input's first blocks (libdeflate
releases the GIL): up to :data:`BUDGET` bytes of records, which the converter's reader then
takes instead of inflating them again (:func:`claim`, called by ``inputs.open_input``). Only the
program does this (``bams3/cli/convert.py``), for a regular local file that starts as BGZF; the
reader claims the blocks only if the file it opened is the same file (device, inode, size and
modification time), and reads on from where the thread stopped, so that the records, their
errors and the progress are those of a reading from the start. Anything else (another input
kind, another file, no claim) leaves the blocks unused.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator

from . import bgzf

STDIN = ("-", "/dev/stdin", "/dev/fd/0", "/proc/self/fd/0")  # input names meaning standard input
BUDGET = 96 << 20  # inflated bytes the thread holds at most (it reaches ~40 MB in the imports' time)
_SWITCH = 5e-5  # the GIL's switch interval meanwhile: the thread takes it back after each block


def _identity(st: os.stat_result) -> tuple:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


class EarlyRead:
    """The thread, its file and what it inflated (``pieces``: ``bgzf.decompress_blocks`` lists)."""

    def __init__(self, path: str, budget: int | None = None):
        self.f = open(path, "rb")
        self.identity = _identity(os.fstat(self.f.fileno()))
        self.pieces: list[list] = []
        self.error: BaseException | None = None
        self.consumed = 0
        self._budget = BUDGET if budget is None else budget
        self._read = self._read_early
        # reads of at most 1 MiB (~4 MB of records): the thread stops soon after it is told to
        self._gen = bgzf.decompress_blocks(lambda n: self._read(n), piece=1 << 20)
        self._stop = threading.Event()
        self._switch = sys.getswitchinterval()
        self._thread = threading.Thread(target=self._run, name="bams3-early-inflate", daemon=True)
        try:
            self._thread.start()
        except BaseException:
            self.f.close()
            raise

    def _read_early(self, n: int) -> bytes:
        b = self.f.read(n)
        self.consumed += len(b)
        return b

    def _run(self) -> None:
        held = 0
        sys.setswitchinterval(_SWITCH)  # (for the whole process: put back when the thread ends, however it ends)
        try:
            for piece in self._gen:
                self.pieces.append(piece)
                held += sum(map(len, piece))
                if held >= self._budget or self._stop.is_set():
                    break
        except BaseException as exc:  # raised again where the reader meets it
            self.error = exc
        finally:
            sys.setswitchinterval(self._switch)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.f.close()

    def take(self, read, skip) -> Iterator[list]:
        """The blocks inflated so far, then the rest of the stream read with ``read`` (the
        reader's own file, ``skip(n)`` first moving it past the n bytes the thread read)."""
        self.stop()
        skip(self.consumed)
        self._read = read
        pieces, self.pieces = self.pieces, []
        yield from pieces
        if self.error is not None:
            raise self.error
        yield from self._gen


_pending: EarlyRead | None = None


def start(name: str) -> None:
    """Inflate the first blocks of the input ``name`` (a path or ``file://`` URL) on a thread, if
    it is a regular local file that starts as BGZF (else nothing)."""
    global _pending
    path = name[len("file://"):] if name.startswith("file://") else name  # as inputs._Source opens it
    try:
        if path in STDIN or not os.path.isfile(path):
            return
        with open(path, "rb") as f:
            if f.read(4) != b"\x1f\x8b\x08\x04":
                return
        _pending = EarlyRead(path)
    except (OSError, RuntimeError):  # unreadable, or no thread to be had: the reader reads it all
        return


def claim(local_path: str | None, f) -> EarlyRead | None:
    """The early read of the file ``f`` (opened at ``local_path``) if there is one, else None;
    any other early read is stopped and dropped."""
    global _pending
    early, _pending = _pending, None
    if early is None:
        return None
    if local_path is None or f is None or _identity(os.fstat(f.fileno())) != early.identity:
        early.stop()
        return None
    return early


def drop() -> None:
    """Stop and drop an early read no reader claimed."""
    global _pending
    early, _pending = _pending, None
    if early is not None:
        early.stop()
