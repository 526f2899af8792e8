"""The ``bams3`` program's entry point. ``bams3 --version`` is answered here, before the
command line (click and every command's module) is loaded: scripts run it to check an
install, and it should cost no more than starting Python. A count or the statistics of a
dataset, local or remote, the records of a region of a local one, and a cohort's counts are
tried first by the quick path (:mod:`bams3._quick`, :mod:`bams3._quickcohort`: no numpy or
click), which answers exactly as the full command would or leaves it to the full command."""

from __future__ import annotations

import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def main() -> int:
    code = _answer()
    return _cli() if code is None else code


def program() -> int:
    """The installed ``bams3`` program: :func:`main`, except that a command answered before the
    command line loads (``--version``, the quick path) ends the process there, without the
    interpreter's teardown (every module unloaded, the storage client's runtime stopped): ~4 ms
    of a 25 ms count, 15-20 ms of a cohort count over S3, in which the server waits. What it had to
    say is out by then: the quick path writes stdout with os.write, and both streams are flushed
    first; should a flush fail, the process ends as it always did, by returning."""
    code = _answer()
    if code is None:
        return _cli()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001 - a closed pipe, no stream: the interpreter's own ending
        return code
    os._exit(code)


def _answer() -> int | None:
    """The exit status of a command answered before the command line loads, or None."""
    if sys.argv[1:] == ["--version"]:
        from . import __version__

        print(f"bams3, version {__version__}")  # as click's version option prints it
        return 0
    if sys.argv[1:2] in (["stats"], ["query"]) or sys.argv[1:3] == ["cohort", "count"]:
        return _quick(sys.argv[1:])
    return None


def _cli() -> int:
    _keep_freed_memory()
    _whole_writes()
    _one_blas_thread()
    from .cli import main as run

    return run()


class _Terminated(KeyboardInterrupt):
    """SIGTERM during the quick path: ended as the CLI ends it (bams3/cli/app.py)."""


def _quick(args: list[str]) -> int | None:
    """A count, the statistics or a region's records without numpy or click (bams3/_quick.py);
    None: the full command runs. Ctrl-C and SIGTERM end it as they end the full command: one
    line, status 130 or 143."""
    import signal

    from ._quick import run

    def terminated(signum, frame):
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, terminated)
    try:
        return run(args)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, _Terminated)
        sys.stderr.write(f"bams3: {'terminated' if term else 'interrupted'}\n")
        if args[0] == "cohort":  # samples' requests in flight on the pool's threads: not waited for
            from ._quickcohort import leave

            leave(143 if term else 130)
        return 143 if term else 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def _one_blas_thread() -> None:
    """No BLAS thread pool: bams3 does no linear algebra, but numpy's OpenBLAS starts a thread
    per core when numpy is imported, and each spins ~0.1 s of CPU before it sleeps (0.26 s of
    CPU to import numpy here, 0.16 s without them), which on 2 cores is taken from the work.
    A value the user set stays."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def _whole_writes() -> None:
    """Under ``python -u`` or PYTHONUNBUFFERED, stdout's binary layer is a raw file, whose write
    may write only part of what it is given (a full disk, a file size limit), and the text layer
    drops the rest without a word: ``bams3 stats >> file`` ended with status 0 and a cut text.
    In the bams3 process, stdout gets a buffered writer back, which writes everything or raises,
    flushed at every line as an unbuffered stdout is."""
    import io

    raw = getattr(sys.stdout, "buffer", None)
    if isinstance(raw, io.FileIO) and not raw.closed:
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(raw), encoding=sys.stdout.encoding, errors=sys.stdout.errors,
                                      line_buffering=True)


def _keep_freed_memory() -> None:
    """In the bams3 process (not where bams3 is imported as a library), glibc's malloc keeps the
    memory of freed blocks for the next chunk instead of handing every block over 128 KiB back to
    the kernel and faulting in fresh zeroed pages for the next: each chunk decoded allocates
    ~15 MB of such blocks, and their page faults were a third of a BED query's CPU (0.45 s of
    kernel time down to 0.1 s). Peak memory is the same (the chunks in flight are bounded);
    freed memory is kept, up to 512 MiB, until the process ends. A user's own MALLOC_* or
    GLIBC_TUNABLES settings are left alone; elsewhere than glibc nothing is done."""
    if not sys.platform.startswith("linux") or "GLIBC_TUNABLES" in os.environ or any(
            k.startswith("MALLOC_") for k in os.environ):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's largest: blocks under 32 MiB come from the heap
    mallopt(M_TRIM_THRESHOLD, 512 << 20)
