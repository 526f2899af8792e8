"""The ``bams3`` group and the entry point: every error one line, exit statuses as documented."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from .. import __version__
from ..errors import Bams3Error
from .common import CONTEXT, _err, redact


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, prog_name="bams3")
def cli():
    """bams3: aligned reads (BAM) as a cloud-native dataset.

    \b
    One compressed object per genomic window plus _metadata.json, so a region
    query, a read count or the statistics fetch only what they need.

    \b
    Examples:
      bams3 convert sample.bam sample.bams3
      bams3 query sample.bams3 chr20:10M-11M --count
      bams3 query sample.bams3 chr1:1,000,000-1,001,000 -h | samtools flagstat -
      bams3 stats sample.bams3
      bams3 to-bam sample.bams3 roundtrip.bam --index
      bams3 demo
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a batch scheduler): cleaned up like Ctrl-C, exit status 143."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Run as the program (``argv`` None), an interrupted
    run exits at once when its cleanup is done, without waiting for threads still blocked in a
    request (cohort samples), and a Ctrl-C after the work is done changes nothing. The program
    also sets OPENBLAS_NUM_THREADS=1 unless it is set: numpy's OpenBLAS otherwise starts a thread
    per CPU at import that spins ~0.1 s of CPU before it sleeps, in every process, and bams3
    never calls BLAS."""
    debug = bool(os.environ.get("BAMS3_DEBUG"))
    if argv is None:  # the program: numpy's OpenBLAS starts no thread pool (bams3 calls no BLAS)
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import signal
    import threading

    from .._threads import ending

    def _interrupted(signum, frame):  # the program's: it exits at once after its cleanup, its pools need not wait
        ending.set()
        raise KeyboardInterrupt

    def _terminated(signum, frame):
        if argv is None:
            ending.set()
        raise Terminated

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGTERM, _terminated)
        if argv is None and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _interrupted)
    code = 1
    try:
        code = _main(argv, debug)
    finally:
        if main_thread and argv is None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done, or has failed: a late Ctrl-C changes nothing
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        storage = sys.modules.get(f"{__package__.rpartition('.')[0]}.storage")
        for line in storage.trace_lines() if storage else ():  # no store opened: nothing traced
            click.echo(redact(line), err=True)
    if argv is None and code in (130, 143):
        # stderr's line is out; what stdout still holds is dropped, as samtools' is when it is
        # interrupted: flushing it could wait forever on a reader that stopped reading
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(code)
    if argv is None:
        code = _settle_stdout(code)
    return code


def _settle_stdout(code: int) -> int:
    """Flush stdout before the interpreter does. A stdout that cannot take what is left (a full
    disk, a file size limit) is reported once, status 1, and pointed at /dev/null, so the
    interpreter's own last flush adds neither a second message nor status 120; an error already
    reported keeps its one line and status. A reader that went away is quiet, as in _main."""
    if sys.stdout is None:  # started with stdout closed: nothing to flush (or to write to)
        return code
    try:
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        pass
    except (OSError, ValueError) as exc:
        if code == 0:
            _err(f"error: {getattr(exc, 'strerror', None) or exc}")
            code = 1
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return code


def _traceback() -> None:
    """BAMS3_DEBUG=1: the traceback, through the redactor like every other message."""
    import traceback

    click.echo(redact(traceback.format_exc().rstrip()), err=True)


def _usage_line(exc: click.UsageError) -> str:
    """A click usage error as one line: what is wrong, and where the help is."""
    msg = " ".join(exc.format_message().split())
    path = exc.ctx.command_path if exc.ctx is not None else "bams3"
    return f"error: {msg} (see `{path} --help`)"


def _main(argv: list[str] | None, debug: bool) -> int:
    try:
        # make_context + invoke rather than cli.main: click's main turns Ctrl-C into Abort after
        # printing an empty line, and an interruption is one line here
        args = list(sys.argv[1:] if argv is None else argv)
        with cli.make_context("bams3", args) as ctx:
            cli.invoke(ctx)
        return 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        _err("interrupted")
        return 130
    except click.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError" and exc.ctx is not None:  # `bams3` alone: the help
            click.echo(exc.ctx.get_help())
            return 0
        _err(_usage_line(exc))
        return 2
    except click.ClickException as exc:
        _err(f"error: {' '.join(exc.format_message().split())}")
        return exc.exit_code
    except KeyboardInterrupt as exc:
        _err("terminated" if isinstance(exc, Terminated) else "interrupted")
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        # The reader went away (bams3 query ... | head): stop quietly.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except Bams3Error as exc:
        if debug:
            _traceback()
        _err(f"error: {' '.join(str(exc).split())}")
        return exc.exit_code
    except OSError as exc:  # a file we were asked to read or write
        if debug:
            _traceback()
        where = f": {exc.filename}" if exc.filename else ""
        _err(f"error: {exc.strerror or exc}{where}")
        return 1
    except Exception as exc:  # never a traceback for users
        if debug:
            _traceback()
        _err(f"error: {type(exc).__name__}: {' '.join(str(exc).split())} (set BAMS3_DEBUG=1 for details, "
             "and please report it)")
        return 1

