"""The ``bams3`` command line: a thin layer over the Python API.

Data goes to stdout, messages to stderr. Exit status: 0 ok, 1 error, 2 usage
error, 130 interrupted. Errors are one line, never a traceback (set
BAMS3_DEBUG=1 to see one).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile

import click

from . import __version__
from .errors import Bams3Error, UsageError, samtools_message
from .storage import trace_lines, trace_totals

CONTEXT = {"help_option_names": ["--help"], "max_content_width": 100}


def storage_options(f):
    """--endpoint-url and --no-sign-request (as the AWS CLI has them) and --trace, on every verb."""

    def apply(ctx, param, value):
        if value and param.name == "trace":
            from .storage import start_trace

            start_trace()
        elif value and param.name == "endpoint_url":
            os.environ["AWS_ENDPOINT_URL"] = value
        elif value and param.name == "no_sign_request":
            os.environ["AWS_SKIP_SIGNATURE"] = "true"
        return value

    f = click.option("--trace", is_flag=True, expose_value=False, callback=apply, is_eager=True,
                     help="Print every storage request (method, object, range, bytes, time) and a total to stderr.")(f)
    f = click.option("--no-sign-request", is_flag=True, expose_value=False, callback=apply, is_eager=True,
                     help="Anonymous access to public S3 buckets.")(f)
    f = click.option("--endpoint-url", metavar="URL", expose_value=False, callback=apply, is_eager=True,
                     help="S3-compatible endpoint (same as AWS_ENDPOINT_URL), e.g. http://127.0.0.1:9000.")(f)
    return f


_SECRET_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "GOOGLE_SERVICE_ACCOUNT_KEY",
                "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN")


def redact(text: str) -> str:
    """The text with any credential from the environment, and any request signature, masked:
    a last line of defence under every message bams3 prints."""
    import re

    from .storage import redact_userinfo

    for var in _SECRET_VARS:
        value = os.environ.get(var)
        if value and len(value) >= 4:
            text = text.replace(value, "***")
    text = redact_userinfo(text)
    return re.sub(r"(X-Amz-Signature=|Signature=|Credential=|sig=)[^&\s\"'<]+", r"\1***", text)


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


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _human_bp(n: int) -> str:
    if n % (1 << 20) == 0:
        return f"{n >> 20} Mbp"
    if n % (1 << 10) == 0:
        return f"{n >> 10} Kbp"
    return f"{n:,} bp"


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


# ---------------------------------------------------------------- convert
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("input_path", metavar="IN")
@click.argument("dest")
@click.option("--chunk-size", default="1M", show_default=True,
              help="Genomic window per chunk: 256K, 1M, 2M or a number of bp (K/M are binary: 1M = 1,048,576 bp).")
@click.option("-@", "--workers", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Threads for compression and upload.")
@click.option("--compression", type=click.Choice(["default", "high"]), default="default", show_default=True,
              help="default: zstd-9 columns, qualities by the 'qual' context model. high: also sequences "
                   "against the chunk's own consensus (no reference needed) and zstd-12; smaller than CRAM.")
@click.option("--codec", default=None, help="Codec for all other columns (default: zstd; see `bams3 plugins`).")
@click.option("--level", type=int, default=None, help="Level of that codec (zstd: 9, or 12 with --compression high).")
@click.option("--qual-codec", default=None, help="Codec for base qualities (default: qual; 'none' = the column codec).")
@click.option("--seq-codec", default=None, help="Codec for sequences (default: none, or consensus with high).")
@click.option("-T", "--reference", type=click.Path(dir_okay=False), default=None,
              help="Reference FASTA, for CRAM input.")
@click.option("--sort", "sort_input", is_flag=True, help="Sort the input by coordinate first (uses a temporary file).")
@click.option("--force", is_flag=True, help="Replace an existing dataset at DEST.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def convert(input_path, dest, chunk_size, workers, compression, codec, level, qual_codec, seq_codec, reference,
            sort_input, force, progress, as_json):
    """Convert a coordinate-sorted BAM, SAM or CRAM file into a dataset at DEST.

    \b
    IN is a path, an object URL, or - for standard input. DEST is a directory
    path, file:// or memory:// URL (or any scheme a storage plugin serves).
    _metadata.json is written last: an interrupted or failed conversion never
    looks like a dataset, and running it again cleans up after it.

    \b
    Examples:
      bams3 convert sample.bam sample.bams3
      bams3 convert sample.cram sample.bams3 -T ref.fa --chunk-size 256K -@ 4
      bams3 convert unsorted.bam out.bams3 --sort
      samtools view -u -q 20 in.bam | bams3 convert - q20.bams3
    """
    from .converter import convert as run

    with _progress("converting", progress) as report:
        meta = run(input_path, dest, chunk_size=chunk_size, workers=workers, compression=compression, codec=codec,
                   level=level, qual_codec=qual_codec, seq_codec=seq_codec,
                   force=force, reference=reference, sort=sort_input, progress=report)
    s = meta.stats
    if as_json:
        click.echo(json.dumps({"dataset": dest, "records": s["n_records"], "chunks": s["n_chunks"],
                               "stored_bytes": s["stored_bytes"], "raw_bytes": s["raw_bytes"]}))
    else:
        _err(f"wrote {dest}: {s['n_records']:,} records in {s['n_chunks']} chunks, "
             f"{_human_bytes(s['stored_bytes'])}")


# ---------------------------------------------------------------- cp
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("src")
@click.argument("dest")
@click.option("-@", "--workers", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Objects copied concurrently.")
@click.option("--force", is_flag=True, help="Replace an existing dataset at DEST.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def cp(src, dest, workers, force, progress, as_json):
    """Copy the dataset SRC to DEST, between any two stores (a path, s3://, gs://, az://,
    memory://). Every object is checked against the dataset's checksums on the way and
    _metadata.json is written last, conditionally: a copy that fails or is interrupted
    publishes nothing, and DEST is refused if it holds anything but a bams3 dataset
    (replaced only with --force), as for convert. Unlike `aws s3 sync`, a reader never sees
    metadata before its chunks.

    \b
    Examples:
      bams3 cp sample.bams3 s3://my-bucket/sample.bams3
      bams3 cp s3://lab/sample.bams3 gs://archive/sample.bams3 -@ 16
      bams3 cp s3://lab/sample.bams3 ./sample.bams3 --force
    """
    from .transfer import copy as run

    with _progress("copying", progress) as report:
        res = run(src, dest, force=force, workers=workers, progress=report)
    if as_json:
        click.echo(json.dumps({"source": src, "dataset": dest, "objects": res.objects, "bytes": res.bytes,
                               "records": res.records}))
    else:
        _err(f"copied {src} to {dest}: {res.objects} objects, {_human_bytes(res.bytes)}, {res.records:,} records")


# ---------------------------------------------------------------- query
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

    from .output import index_suffix

    suffix = index_suffix(spec)
    target = out.companion(suffix)
    try:
        if suffix == ".csi":
            pysam.index("-c", out.name, target)
        else:
            pysam.index(out.name, target)
    except pysam.SamtoolsError as exc:
        raise Bams3Error(f"indexing {out.path} failed: {samtools_message(exc)}") from None


@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.argument("regions", nargs=-1)
@click.option("-c", "--count", is_flag=True, help="Print the number of records (as samtools view -c).")
@click.option("--show", type=click.IntRange(0), default=None, metavar="N", help="Output only the first N records.")
@click.option("-o", "--output", default=None, metavar="FILE",
              help="Write to FILE instead of stdout (- is stdout). The format comes from -O/-b/-C/-u or the "
                   "extension: .sam, .sam.gz, .bam, .cram, .json, or a plugin's; any other is refused.")
@click.option("-O", "--output-fmt", "fmt", default=None, metavar="FORMAT[,OPT...]",
              help="sam, sam.gz, bam, cram, json or a plugin's format; options as samtools takes them "
                   "(bam,level=1; cram,version=3.1,archive).")
@click.option("--format", "fmt_alias", default=None, hidden=True)
@click.option("-b", "--bam", "as_bam", is_flag=True, help="BAM output (as samtools view -b).")
@click.option("-C", "--cram", "as_cram", is_flag=True, help="CRAM output (needs -T).")
@click.option("-u", "--uncompressed", is_flag=True, help="Uncompressed BAM output (for pipes into samtools).")
@click.option("-T", "--reference", default=None, metavar="FASTA", help="Reference for CRAM output.")
@click.option("-h", "--with-header", "--header", "with_header", is_flag=True,
              help="Include the header (as samtools view -h).")
@click.option("-H", "--header-only", is_flag=True, help="Output only the header (as samtools view -H).")
@click.option("-L", "--target-file", "--regions-file", "regions_file", type=click.Path(dir_okay=False), default=None,
              metavar="BED", help="Only records overlapping this BED file; with REGIONs, records in them that also "
                                  "overlap it (as samtools view -L).")
@click.option("-M", "--use-index", "multi", is_flag=True,
              help="Each record once, in file order, over the union of the REGIONs (intersected with -L), as "
                   "samtools view -M.")
@click.option("--write-index", is_flag=True, help="Also write an index: FILE.csi (BAM, sam.gz) or FILE.crai (CRAM).")
@click.option("--no-PG", "no_pg", is_flag=True, help="Do not add an @PG line to the header.")
@click.option("--json", "as_json", is_flag=True, help="With --count: print JSON.")
@click.option("-@", "--threads", "--workers", "workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent chunk fetches and decodes.")
def query(dest, regions, count, show, output, fmt, fmt_alias, as_bam, as_cram, uncompressed, reference, with_header,
          header_only, regions_file, multi, write_index, no_pg, as_json, workers):
    """Records of DEST overlapping REGION(s), exactly as samtools view returns them.

    \b
    REGION is samtools syntax, 1-based inclusive: chr1, chr1:1000,
    chr1:1,000,000-2,000,000, chr20:10M-11M (k/M/G = 10^3/10^6/10^9),
    {name:with:colons}:1-100, or * for unplaced reads. Several regions are
    output one after another, as samtools does (-M: each record once). No
    region: every record. An @PG line is added to output headers, as samtools
    adds its own (--no-PG: the header untouched).

    \b
    Examples:
      bams3 query sample.bams3 chr20:10M-11M --count
      bams3 query sample.bams3 chr1:1,000-2,000 --show 5
      bams3 query sample.bams3 chr1 -o chr1.bam --write-index
      bams3 query sample.bams3 chr1 -C -T ref.fa -o chr1.cram
      bams3 query sample.bams3 -L targets.bed -u | samtools flagstat -
    """
    from .dataset import Dataset
    from .output import Output, is_stdout, resolve, text_output

    if fmt and fmt_alias:
        raise UsageError("give the format once (-O)")
    fmt = fmt or fmt_alias
    _check_bed(regions_file)
    ds = Dataset.open(dest, workers=workers)
    sel = ds.selection(list(regions), bed=regions_file, multi=multi)
    if count:
        if fmt or as_bam or as_cram or uncompressed or write_index:
            raise UsageError("--count prints a number; it takes no output format or index")
        n = 0 if header_only else ds.count(sel)  # samtools view -H -c counts no records: 0
        if as_json:
            out = {"dataset": dest, "regions": [r.text for r in sel.regions], "count": n}
            if regions_file:
                out["regions_file"] = regions_file
            io = trace_totals()
            if io is not None:
                out["io"] = io
            line = json.dumps(out)
        else:
            line = str(n)
        with text_output(output) as f:
            f.write(line + "\n")
        return
    spec = resolve(output, fmt, bam=as_bam, cram=as_cram, uncompressed=uncompressed, reference=reference)
    if write_index:
        from .output import index_suffix, writes_in_place

        suffix = index_suffix(spec)  # a format that cannot be indexed fails before anything is written
        if is_stdout(output):
            raise UsageError("--write-index needs -o FILE")
        writes_in_place(output + suffix)  # and so does an index path that is a directory
    # an index needs the header in the file (samtools view --write-index writes it, -h or not)
    options = {**spec.options, "header": with_header or header_only or write_index, "threads": min(workers, 4)}
    out = Output(output)
    with out as f:
        if write_index and out.in_place:
            raise UsageError(f"--write-index needs a regular file, not {output}")
        ds.write(f, sel, format=spec.format, options=options, limit=0 if header_only else show,
                 pg=None if no_pg else _command_line())
        if write_index:
            f.flush()
            _write_index(out, spec)


# ---------------------------------------------------------------- stats
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.option("--json", "as_json", is_flag=True, help="Print the full statistics as JSON.")
@click.option("--flagstat", is_flag=True, help="Print what samtools flagstat prints.")
@click.option("--idxstats", is_flag=True, help="Print what samtools idxstats prints.")
def stats(dest, as_json, flagstat, idxstats):
    """Statistics of DEST, from _metadata.json alone (one small read).

    \b
    Examples:
      bams3 stats sample.bams3
      bams3 stats sample.bams3 --json | jq .stats.flagstat
      bams3 stats sample.bams3 --idxstats
    """
    from .dataset import Dataset
    from .stats import flagstat_text, idxstats_text

    ds = Dataset.open(dest)
    m, s = ds.meta, ds.stats
    if as_json:
        click.echo(json.dumps({
            "dataset": dest, "format": "bams3", "format_version": m.format_version, "source": m.source,
            "references": [list(r) for r in m.references], "chunk_size": m.chunk_size,
            "codecs": [{"name": c.name, "level": c.level} for c in m.codecs], "stats": s,
            **({"io": trace_totals()} if trace_totals() is not None else {}),
        }, indent=1))
        return
    if flagstat:
        click.echo(flagstat_text(s["flagstat"]), nl=False)
        return
    if idxstats:
        click.echo(idxstats_text(s["idxstats"]), nl=False)
        return
    click.echo(stats_block(dest, m, s), nl=False)


def stats_block(dest: str, m, s: dict) -> str:
    """The statistics as the original BAMS3 printed them (scripts grep these labels): a banner,
    Format and Source, then Statistics, Structure and Storage, every value exact."""
    total = s["n_records"]
    mapped = sum(s["flagstat"]["mapped"])
    src = m.source
    src_size = src.get("size")
    codecs = ", ".join(f"{c.name}" + (f" level {c.level}" if c.level is not None else "") for c in m.codecs)
    pct = (lambda n: f" ({100 * n / total:.2f}%)") if total else (lambda n: "")
    stored, raw = s["stored_bytes"], s["raw_bytes"]
    rule = "=" * 43
    lines = [
        rule, "BAMS3 Dataset Statistics", rule, "",
        f"Format: bams3 v{m.format_version}",
        f"Source: {src.get('name', '?')} ({src.get('format', '?')}"
        + (f", {src_size:,} bytes)" if src_size else ")"),
        f"Dataset: {dest}",
        "",
        "Statistics:",
        f"  Total reads: {total:,}",
        f"  Mapped reads: {mapped:,}{pct(mapped)}",
        f"  Unmapped reads: {total - mapped:,}{pct(total - mapped)}",
        f"  Total bases: {s['total_bases']:,}",
        f"  Mean coverage: {s['mean_coverage']:.2f}x",
        "",
        "Structure:",
        f"  References: {len(m.references):,} ({s['genome_length']:,} bp)",
        f"  Chunk size: {m.chunk_size} bp",
        f"  Total chunks: {s['n_chunks']:,}",
        f"  Compression: {codecs}",
        "",
        "Storage:",
        f"  Total size: {_human_bytes(stored)} ({stored:,} bytes)",
        f"  Compression ratio: {raw / stored:.2f}x" if stored else "  Compression ratio: n/a",
    ]
    if stored and src_size:
        lines.append(f"  Size vs source: {stored / src_size:.2f}x")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- coverage
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.option("-r", "--region", default=None, help="Only bins overlapping this region (samtools syntax).")
@click.option("--bin", "bin_size", default="16K", show_default=True,
              help="Bin size: a multiple of the stored 16K bins (16K, 64K, 1M, ...; K/M binary).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of BED-like TSV.")
def coverage(dest, region, bin_size, as_json):
    """Mean depth per bin of DEST, from its stored binned depth alone (no reads are read).

    \b
    Depth is counted as samtools depth counts it: bases of M/=/X operations of
    records without UNMAP, SECONDARY, QCFAIL or DUP flags; deletions do not
    count. Output: reference, start (0-based), end, mean depth, tab-separated.

    \b
    Examples:
      bams3 coverage sample.bams3 --bin 1M
      bams3 coverage s3://bucket/sample.bams3 -r chrX --bin 64K
    """
    from .converter import parse_chunk_size
    from .dataset import Dataset

    ds = Dataset.open(dest)
    try:
        bin_bp = parse_chunk_size(bin_size)
    except Bams3Error:
        raise UsageError(f"bad bin size {bin_size!r} (use e.g. 16K, 64K, 1M)") from None
    rows = ds.coverage(region, bin_bp)
    out = sys.stdout
    if as_json:
        for name, beg, end, depth in rows:
            out.write(json.dumps({"reference": name, "start": beg, "end": end, "mean_depth": round(depth, 4)}) + "\n")
    else:
        out.write("".join(f"{name}\t{beg}\t{end}\t{depth:.4f}\n" for name, beg, end, depth in rows))
    out.flush()


# ---------------------------------------------------------------- ls
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("prefix")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dataset.")
@click.option("-@", "--workers", default=16, show_default=True, type=click.IntRange(1, 256),
              help="Metadata reads in flight.")
def ls(prefix, as_json, workers):
    """The datasets directly under PREFIX, with reads, size, chunk size and format version.

    \b
    Examples:
      bams3 ls s3://cohort/samples/
      bams3 ls ./datasets --json | jq .reads
    """
    from . import cohort

    urls = cohort.find_datasets(prefix)
    rows = cohort.run(cohort.stats_sample, [(cohort.sample_name(u), u, 0) for u in urls], workers=workers)
    rows = cohort.drop_non_dataset_rows(rows, cohort.STATS_COLUMNS)
    if as_json:
        for r in rows:
            d = dict(zip(cohort.STATS_COLUMNS, r))
            click.echo(json.dumps({"dataset": d["url"], "name": d["sample"], "reads": d["records"],
                                   "size": d["size"], "chunk_size": d["chunk_size"], "chunks": d["chunks"],
                                   "format_version": d["format_version"], **({"error": d["error"]} if d["error"]
                                                                             else {})}))
        return
    if not rows:
        _err(f"no datasets under {prefix}")
        return
    click.echo(f"{'reads':>14}  {'size':>10}  {'chunk':>8}  {'v':>2}  dataset")
    for r in rows:
        d = dict(zip(cohort.STATS_COLUMNS, r))
        if d["error"]:
            click.echo(f"{'?':>14}  {'?':>10}  {'?':>8}  {'?':>2}  {d['url']}  ({d['error']})")
        else:
            click.echo(f"{d['records']:>14,}  {_human_bytes(d['size']):>10}  {_human_bp(d['chunk_size']):>8}  "
                       f"{d['format_version']:>2}  {d['url']}")


# ---------------------------------------------------------------- cohort
@cli.group(context_settings=CONTEXT)
def cohort():
    """The same question over many datasets: counts, statistics, coverage.

    \b
    Samples come from --from FILE (URL or NAME<TAB>URL per line) or --prefix
    (every dataset directly under it). Work runs concurrently in this process
    (--engine local) or on Dask (--engine dask: a LocalCluster of --workers
    processes, or the cluster at --scheduler tcp://host:8786). A failing sample
    is retried, then reported in its own row with the error; the others finish.
    """


def _cohort_options(f):
    f = click.option("--from", "from_file", type=click.Path(dir_okay=False), default=None,
                     help="File of samples: URL or NAME<TAB>URL per line.")(f)
    f = click.option("--prefix", default=None, help="Every dataset directly under this prefix.")(f)
    f = click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True)(f)
    f = click.option("--scheduler", default=None, help="Dask scheduler address (implies --engine dask).")(f)
    f = click.option("-@", "--workers", default=8, show_default=True, type=click.IntRange(1, 1024),
                     help="Samples in flight (threads), or Dask worker processes for a LocalCluster.")(f)
    f = click.option("-o", "--output", default=None,
                     help="Write .tsv, .csv or .parquet instead of TSV on stdout (- is stdout).")(f)
    f = click.option("--sample-name", "sample_names", type=click.Choice(["path", "rg"]), default="path",
                     show_default=True,
                     help="Name samples by their URL (or the NAME of --from), or by their header's @RG SM.")(f)
    f = click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")(f)
    return storage_options(f)


def _cohort_samples(from_file, prefix):
    from . import cohort as c

    if bool(from_file) == bool(prefix):
        raise UsageError("give the samples with exactly one of --from FILE or --prefix PREFIX")
    if from_file:
        return c.read_sample_list(from_file)
    urls = c.find_datasets(prefix)
    if not urls:
        raise UsageError(f"no datasets under {prefix}")
    return [(c.sample_name(u), u) for u in urls]


def _cohort_run(fn, jobs, engine, scheduler, workers, progress):
    from . import cohort as c

    with _progress("samples", progress) as report:
        return c.run(fn, jobs, engine="dask" if scheduler else engine, workers=workers, scheduler=scheduler,
                     progress=report)


def _cohort_write(rows, columns, output, prefix_mode=False):
    from . import cohort as c

    if prefix_mode:
        rows = c.drop_non_dataset_rows(rows, columns)
    c.write_rows(rows, columns, output, sys.stdout)
    e, n = list(columns).index("error"), list(columns).index("sample")
    failed = list(dict.fromkeys(r[n] for r in rows if r[e]))
    if failed:
        _err(f"{len(failed)} sample(s) failed (see the error column): {', '.join(map(str, failed[:5]))}"
             + (" ..." if len(failed) > 5 else ""))


@cohort.command("count", context_settings=CONTEXT)
@click.argument("regions", nargs=-1)
@click.option("-L", "--regions-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="BED file: one row per interval and sample.")
@_cohort_options
def cohort_count(regions, regions_file, from_file, prefix, engine, scheduler, workers, output, sample_names,
                 progress):
    """Reads overlapping each REGION in each sample (= samtools view -c): columns sample, region,
    count, note, error. A region on a reference a sample lacks counts 0 there, noted
    missing_reference; a sample that fails has its rows' error set, and the others complete.

    \b
    Examples:
      bams3 cohort count chr20:10M-11M --prefix s3://cohort/samples/ -o counts.parquet
      bams3 cohort count -L targets.bed --from samples.txt --engine dask --workers 8
      bams3 cohort count chr1 chr2 --from samples.txt --scheduler tcp://10.0.0.5:8786 --sample-name rg
    """
    from . import cohort as c

    specs = list(regions)
    if regions_file:
        specs += c.bed_regions(regions_file)
    if not specs:
        raise UsageError("give at least one REGION or -L regions.bed")
    c.table_format(output)  # an unknown table format fails before any sample runs
    samples = _cohort_samples(from_file, prefix)
    jobs = [(name, url, specs, c.RETRIES, sample_names) for name, url in samples]
    results = _cohort_run(c.count_sample, jobs, engine, scheduler, workers, progress)
    _cohort_write([row for rows in results for row in rows], c.COUNT_COLUMNS, output, bool(prefix))


@cohort.command("stats", context_settings=CONTEXT)
@_cohort_options
def cohort_stats(from_file, prefix, engine, scheduler, workers, output, sample_names, progress):
    """One row per sample, from its metadata alone (reads, mapped, duplicates, size, ...).

    \b
    Example:
      bams3 cohort stats --prefix s3://cohort/samples/ -o stats.csv
    """
    from . import cohort as c

    c.table_format(output)
    samples = _cohort_samples(from_file, prefix)
    rows = _cohort_run(c.stats_sample, [(n, u, c.RETRIES, sample_names) for n, u in samples], engine, scheduler,
                       workers, progress)
    _cohort_write(rows, c.STATS_COLUMNS, output, bool(prefix))


@cohort.command("coverage", context_settings=CONTEXT)
@click.option("--bin", "bin_size", default="1M", show_default=True, help="Bin size (a multiple of 16K).")
@click.option("--plot", default=None, help="Draw per-sample, per-reference coverage: out.html or out.png.")
@_cohort_options
def cohort_coverage(bin_size, plot, from_file, prefix, engine, scheduler, workers, output, sample_names, progress):
    """Mean depth per bin of every sample, from stored bins (no reads are read); --plot draws it
    normalised by each sample's median, like goleft indexcov (dosage and drop-outs show at a glance).

    \b
    Examples:
      bams3 cohort coverage --prefix s3://cohort/samples/ --plot cohort.html
      bams3 cohort coverage --from samples.txt --bin 64K -o bins.parquet
    """
    from . import cohort as c
    from .converter import parse_chunk_size

    bin_bp = parse_chunk_size(bin_size)
    if output or not plot:
        c.table_format(output)
    if plot:
        from .plot import check_plot_path

        check_plot_path(plot)
        c.require_pandas()  # the plot is drawn from a pandas table: say so before any sample runs
    samples = _cohort_samples(from_file, prefix)
    results = _cohort_run(c.coverage_sample, [(n, u, bin_bp, c.RETRIES, sample_names) for n, u in samples], engine,
                          scheduler, workers, progress)
    rows = c.coverage_rows(results)
    columns = c.COVERAGE_COLUMNS
    if prefix:
        rows = c.drop_non_dataset_rows(rows, columns)
    if plot:
        from .plot import coverage_plot

        coverage_plot(c._table(rows, columns), plot)
        _err(f"wrote {plot}")
    if output or not plot:
        _cohort_write(rows, columns, output)


# ---------------------------------------------------------------- verify
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.option("--deep", is_flag=True, help="Also decode every record and recompute the statistics.")
@click.option("-@", "--workers", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Objects checked concurrently.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
def verify(dest, deep, workers, as_json, progress):
    """Check every object of DEST: missing, extra and corrupt ones (sizes and checksums);
    exit status 1 when anything is wrong.

    \b
    Examples:
      bams3 verify s3://bucket/sample.bams3
      bams3 verify sample.bams3 --deep --json
    """
    from .verify import verify as run

    with _progress("verifying", progress) as report:
        rep = run(dest, deep=deep, workers=workers, progress=report)
    if as_json:
        click.echo(json.dumps(rep.to_json()))
    else:
        for k in rep.missing:
            click.echo(f"missing  {k}")
        for k in rep.extra:
            click.echo(f"extra    {k}")
        for k, why in rep.corrupt:
            click.echo(f"corrupt  {k}: {why}")
        if rep.stats_match is False:
            click.echo("stats    the records do not add up to the statistics in _metadata.json")
        verdict = "OK" if rep.ok else "FAILED"
        click.echo(f"{verdict}: {rep.objects} objects, {rep.records:,} records checked"
                   + (" and decoded, statistics recomputed" if deep and rep.stats_match else "")
                   + f"; {len(rep.missing)} missing, {len(rep.extra)} extra, {len(rep.corrupt)} corrupt")
    if not rep.ok:
        raise SystemExit(1)


# ---------------------------------------------------------------- plugins
@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per plugin.")
def plugins(as_json):
    """The installed plugins: what each provides (URL schemes, codecs, output formats),
    from which package and version. Plugins that failed to load are listed with the error.

    \b
    Example:
      bams3 plugins
    """
    from .plugins import get_registry

    reg = get_registry()
    by_plugin: dict = {}
    for kind, table in (("schemes", reg.storage), ("codecs", reg.codecs), ("formats", reg.formats)):
        for key, (_, prov) in sorted(table.items()):
            entry = by_plugin.setdefault(prov.plugin, {"plugin": prov.plugin, "package": prov.package,
                                                       "version": prov.version, "schemes": [], "codecs": [],
                                                       "formats": []})
            entry[kind].append(key)
    rows = sorted(by_plugin.values(), key=lambda e: e["plugin"])
    if as_json:
        for e in rows:
            click.echo(json.dumps(e))
        for f in reg.failures:
            click.echo(json.dumps({"error": f}))
        return
    for e in rows:
        provides = "; ".join(f"{k} {', '.join(e[k])}" for k in ("schemes", "codecs", "formats") if e[k])
        click.echo(f"{e['plugin']:<10} {e['package']} {e['version']:<8}  {provides}")
    for f in reg.failures:
        click.echo(f"(failed)   {f}")


# ---------------------------------------------------------------- to-bam
@cli.command("to-bam", context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.argument("out")
@click.option("-r", "--region", "regions", multiple=True, help="Only records overlapping this region (repeatable).")
@click.option("-L", "--target-file", "regions_file", type=click.Path(dir_okay=False), default=None, metavar="BED",
              help="Only records overlapping this BED file (with --region: in the regions and overlapping it).")
@click.option("-M", "--use-index", "multi", is_flag=True, help="Each record once over the union of the regions.")
@click.option("--index", is_flag=True, help="Also write OUT.bai (samtools index).")
@click.option("--no-PG", "no_pg", is_flag=True, help="Do not add an @PG line: the header exactly as converted.")
@click.option("-@", "--threads", "--workers", "workers", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Threads for decoding and BGZF compression.")
@click.option("-l", "--level", default=6, show_default=True, type=click.IntRange(0, 12), help="Deflate level.")
def to_bam(dest, out, regions, regions_file, multi, index, no_pg, workers, level):
    """Write DEST (or regions of it) back as a BAM file, record for record.

    
    OUT is a .bam path, or - for standard output. A regular file or a new path is
    written under a temporary name and renamed when complete; an existing link,
    FIFO or device (/dev/stdout) is written in place, never replaced. An @PG line
    is added to the header, as samtools adds its own (--no-PG: the header exactly
    as it was converted).

    
    Examples:
      bams3 to-bam sample.bams3 sample.bam --index
      bams3 to-bam sample.bams3 chr1.bam --region chr1
      bams3 to-bam s3://bucket/sample.bams3 - | samtools flagstat -
    """
    from .dataset import Dataset
    from .output import is_stdout, writes_in_place

    if not is_stdout(out) and not out.lower().endswith(".bam") and not writes_in_place(out):
        other = next((e for e in (".sam.gz", ".sam", ".cram", ".json") if out.lower().endswith(e)), None)
        raise UsageError("to-bam writes BAM: name the output .bam (or -)"
                         + (f", not {other[1:].upper()}; use `bams3 query DEST -o {out}` for that format"
                            if other else f", not {out!r}"))
    if index and (is_stdout(out) or writes_in_place(out)):
        raise UsageError("--index needs a regular .bam file")
    _check_bed(regions_file)
    ds = Dataset.open(dest, workers=workers)
    sel = ds.selection(list(regions), bed=regions_file, multi=multi)
    ds.to_bam(out, sel if (regions or regions_file) else None, index=index, threads=workers, level=level,
              pg=None if no_pg else _command_line())


# ---------------------------------------------------------------- demo
@cli.command(context_settings=CONTEXT)
@click.option("--keep", type=click.Path(file_okay=False), default=None,
              help="Write the demo dataset here (default: a temporary directory, removed afterwards).")
def demo(keep):
    """Convert the bundled example BAM, query it and print its statistics."""
    from importlib.resources import as_file, files

    from .converter import convert as run
    from .dataset import Dataset

    with as_file(files("bams3") / "data" / "example.bam") as bam, tempfile.TemporaryDirectory() as tmp:
        dest = keep or os.path.join(tmp, "example.bams3")
        click.echo(f"$ bams3 convert {os.path.basename(str(bam))} {dest} --chunk-size 256K --force")
        run(str(bam), dest, chunk_size="256K", force=True)
        ds = Dataset.open(dest)
        region = "chr1:20,000-30,000"
        click.echo(f"\n$ bams3 query {dest} {region} --count")
        click.echo(ds.count(region))
        click.echo(f"\n$ bams3 query {dest} {region} --show 3")
        sys.stdout.flush()
        ds.write(sys.stdout.buffer, region, limit=3)
        sys.stdout.buffer.flush()
        click.echo(f"\n$ bams3 stats {dest}")
        stats.callback(dest, False, False, False)


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, a batch scheduler): cleaned up like Ctrl-C, exit status 143."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status. Run as the program (``argv`` None), an interrupted
    run exits at once when its cleanup is done, without waiting for threads still blocked in a
    request (cohort samples), and a Ctrl-C after the work is done changes nothing."""
    debug = bool(os.environ.get("BAMS3_DEBUG"))
    import signal
    import threading

    def _terminated(signum, frame):
        raise Terminated

    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        signal.signal(signal.SIGTERM, _terminated)
    code = 1
    try:
        code = _main(argv, debug)
    finally:
        if main_thread and argv is None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the work is done, or has failed: a late Ctrl-C changes nothing
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for line in trace_lines():
            click.echo(redact(line), err=True)
    if argv is None and code in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
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


if __name__ == "__main__":
    sys.exit(main())
