"""Shared by the commands: option groups, messages through the redactor, progress bars, formatting."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from ..redact import redact
from ..statstext import human_bytes as _human_bytes  # noqa: F401 (the commands' name for it)

from ..errors import Bams3Error, UsageError, samtools_message


CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}


def storage_options(f):
    """--endpoint-url and --no-sign-request (as the AWS CLI has them) and --trace, on every verb."""

    def apply(ctx, param, value):
        if value and param.name == "trace":
            from ..storage import start_trace

            start_trace()
        elif value and param.name in ("endpoint_url", "no_sign_request"):
            from ..storage import set_store_options

            set_store_options(**{param.name: value})  # given to the stores as options, not to the environment
        return value

    f = click.option("--trace", is_flag=True, expose_value=False, callback=apply, is_eager=True,
                     help="Print every storage request (method, object, range, bytes, time) and a total to stderr.")(f)
    f = click.option("--no-sign-request", is_flag=True, expose_value=False, callback=apply, is_eager=True,
                     help="Anonymous access to public S3 buckets.")(f)
    f = click.option("--endpoint-url", metavar="URL", expose_value=False, callback=apply, is_eager=True,
                     help="S3-compatible endpoint (same as AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000.")(f)
    return f


def _err(msg: str) -> None:
    click.echo(redact(f"bams3: {msg}"), err=True)


@contextlib.contextmanager
def _progress(label: str, progress: bool | None):
    """A ``report(done, total)`` callback drawing a progress bar on stderr (by default only on a
    terminal); the bar is closed when the block ends, however it ends."""
    show = sys.stderr.isatty() if progress is None else progress
    bar = None

    def report(done, total):
        nonlocal bar
        if not show or not total:
            return
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_eta=True)
            bar.__enter__()
        bar.update(done - bar.pos)

    try:
        yield report
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)


def _human_bp(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} Mbp"
    if n % (1 << 10) == 0:
        return f"{n >> 10} Kbp"
    return f"{n:,} bp"


def _command_line() -> str:
    """The command line, for the @PG line (as samtools records its own)."""
    return " ".join(["bams3", *sys.argv[1:]])


def _check_bed(path: str | None) -> None:
    """A BED file (-L) must exist; a FIFO or ``<(...)`` is as good as a file (read once)."""
    if path is not None and not os.path.exists(path):
        raise UsageError(f"cannot read BED file {path}: no such file")
    if path is not None and os.path.isdir(path):
        raise UsageError(f"cannot read BED file {path}: it is a directory")


def _write_index(out, spec) -> None:
    """The index samtools view --write-index makes, beside the output (.csi or .crai)."""
    import pysam

    from ..output import index_suffix

    suffix = index_suffix(spec)
    target = out.companion(suffix)
    try:
        if suffix == ".csi":
            pysam.index("-c", out.name, target)
        else:
            pysam.index(out.name, target)
    except pysam.SamtoolsError as exc:
        raise Bams3Error(f"indexing {out.path} failed: {samtools_message(exc)}") from None


# ---------------------------------------------------------------- samtools view's read filters
_FILTER_OPTIONS = (
    # (short, long names, dest, help, multiple, kind)
    ("-f", ("--require-flags",), "require", "Only records with all of FLAG's bits set.", True, "FLAG"),
    ("-F", ("--excl-flags", "--exclude-flags"), "exclude", "No records with any of FLAG's bits set.", True, "FLAG"),
    (None, ("--rf", "--incl-flags", "--include-flags"), "any_of", "Only records with any of FLAG's bits set.",
     True, "FLAG"),
    ("-G", (), "not_all", "No records with all of FLAG's bits set.", True, "FLAG"),
    ("-q", ("--min-MQ", "--min-mapq", "--min-mq"), "min_mapq", "Only records with MAPQ >= INT.", False, "INT"),
    ("-m", ("--min-qlen",), "min_qlen", "Only records whose CIGAR has >= INT query bases (M/I/S/=/X/H).", False,
     "INT"),
    ("-r", ("--read-group", "--readgroup"), "read_group",
     "Only records of read group STR (records without RG are kept, as samtools keeps them).", True, "STR"),
    ("-R", ("--read-group-file", "--readgroup-file"), "read_group_file", "Read groups listed in FILE.", False,
     "FILE"),
    ("-N", ("--qname-file", "--QNAME-file"), "qname_file", "Only records whose name is listed in FILE.", False,
     "FILE"),
    ("-d", ("--tag",), "tag", "Only records with tag TAG (and value VAL).", True, "TAG[:VAL]"),
    ("-D", ("--tag-file",), "tag_file", "Only records with tag TAG and a value listed in FILE.", False,
     "TAG:FILE"),
    ("-l", ("--library",), "library", "Only records of library STR (the LB of their read group).", False, "STR"),
    ("-s", (), "subsample_combined", "Keep a FRAC of templates, hashed with SEED as samtools does (-s 42.1).",
     False, "SEED.FRAC"),
    (None, ("--subsample",), "subsample", "Keep this fraction of templates (with --subsample-seed).", False, "FRAC"),
    (None, ("--subsample-seed",), "subsample_seed", "Seed for --subsample.", False, "INT"),
    ("-e", ("--expr", "--expression"), "expression", "Only records for which samtools' filter EXPR is true.",
     False, "EXPR"),
)
FILTER_DESTS = tuple(o[2] for o in _FILTER_OPTIONS)


def filter_options(without: tuple[str, ...] = ()):
    """samtools view's read-filter options, same spelling and meaning, collected into one
    ``filters`` argument (a :class:`bams3.filters.ReadFilter`, None when none is given).
    ``without``: short names a command uses for something else (their long forms stay)."""

    def decorate(f):
        f = _collect_filters(f)
        for short, longs, dest, help_, multiple, metavar in reversed(_FILTER_OPTIONS):
            names = ([short] if short and short not in without else []) + list(longs)
            if not longs and short in without:
                names = ["--" + dest.replace("_", "-")]
            kind = click.IntRange(0) if metavar == "INT" and dest != "subsample_seed" else (
                int if dest == "subsample_seed" else str)
            f = click.option(*names, dest, multiple=multiple, default=() if multiple else None, metavar=metavar,
                             type=kind, help=help_)(f)
        return f

    return decorate


def _collect_filters(f):
    import functools

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        given = {d: kwargs.pop(d) for d in FILTER_DESTS}
        if any(v not in (None, ()) for v in given.values()):
            from ..filters import from_options

            kwargs["filters"] = from_options(**given)
        else:
            kwargs["filters"] = None
        return f(*args, **kwargs)

    return wrapper
