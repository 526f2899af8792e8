"""``bams3 cohort``: the same question over many datasets."""

from __future__ import annotations

import sys

import click

from ..errors import UsageError
from .common import CONTEXT, _err, _progress, filter_options, storage_options
from .app import cli


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
    from .. import cohort as c

    if bool(from_file) == bool(prefix):
        raise UsageError("give the samples with exactly one of --from FILE or --prefix PREFIX")
    if from_file:
        return c.read_sample_list(from_file)
    urls = c.find_datasets(prefix)
    if not urls:
        raise UsageError(f"no datasets under {prefix}")
    return [(c.sample_name(u), u) for u in urls]


def _cohort_run(fn, jobs, engine, scheduler, workers, progress):
    from .. import cohort as c

    with _progress("samples", progress) as report:
        return c.run(fn, jobs, engine="dask" if scheduler else engine, workers=workers, scheduler=scheduler,
                     progress=report)


def _cohort_write(rows, columns, output, prefix_mode=False):
    from .. import cohort as c

    if prefix_mode:
        rows = c.drop_non_dataset_rows(rows, columns)
    c.write_rows(rows, columns, output, sys.stdout)
    note = c.failure_note(rows, columns)
    if note:
        _err(note)


@cohort.command("count", context_settings=CONTEXT)
@click.argument("regions", nargs=-1)
@click.option("-L", "--regions-file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="BED file: one row per interval and sample.")
@_cohort_options
@filter_options()
def cohort_count(regions, regions_file, from_file, prefix, engine, scheduler, workers, output, sample_names,
                 progress, filters):
    """Reads overlapping each REGION in each sample (= samtools view -c): columns sample, region,
    count, note, error. A region on a reference a sample lacks counts 0 there, noted
    missing_reference; a sample that fails has its rows' error set, and the others complete.
    samtools view's read filters apply (= samtools view -c -F ... -q ...), reading only the
    columns they need.

    \b
    Examples:
      bams3 cohort count chr20:10M-11M --prefix s3://cohort/samples/ -o counts.parquet
      bams3 cohort count chr20:10M-11M --prefix s3://cohort/samples/ -F 0xF04 -q 20
      bams3 cohort count -L targets.bed --from samples.txt --engine dask --workers 8
      bams3 cohort count chr1 chr2 --from samples.txt --scheduler tcp://10.0.0.5:8786 --sample-name rg
    """
    from .. import cohort as c

    specs = list(regions)
    if regions_file:
        specs += c.bed_regions(regions_file)
    if not specs:
        raise UsageError("give at least one REGION or -L regions.bed")
    c.table_format(output)  # an unknown table format fails before any sample runs
    samples = _cohort_samples(from_file, prefix)
    jobs = [(name, url, specs, c.RETRIES, sample_names, filters) for name, url in samples]
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
    from .. import cohort as c

    c.table_format(output)
    samples = _cohort_samples(from_file, prefix)
    rows = _cohort_run(c.stats_sample, [(n, u, c.RETRIES, sample_names) for n, u in samples], engine, scheduler,
                       workers, progress)
    _cohort_write(rows, c.STATS_COLUMNS, output, bool(prefix))


@cohort.command("coverage", context_settings=CONTEXT)
@click.option("--bin", "bin_size", default="1M", show_default=True, help="Bin size (a multiple of 16K).")
@click.option("--plot", default=None, help="Draw per-sample, per-reference coverage: out.html or out.png.")
@click.option("-r", "--region", default=None, help="Only this region's bins.")
@click.option("--exact", is_flag=True, help="Compute from the reads' columns (any bin size, any region start).")
@click.option("-Q", "--min-MQ", "min_mapq", default=0, type=click.IntRange(0), metavar="INT",
              help="Only reads with MAPQ >= INT (samtools depth -Q; implies --exact).")
@click.option("--min-BQ", "min_bq", default=0, type=click.IntRange(0), metavar="INT",
              help="Only bases with quality >= INT (samtools depth -q; implies --exact).")
@click.option("-G", "--excl-flags", "excl", multiple=True, metavar="FLAG",
              help="Also leave out reads with these flags (samtools depth -G; implies --exact).")
@_cohort_options
def cohort_coverage(bin_size, plot, region, exact, min_mapq, min_bq, excl, from_file, prefix, engine, scheduler,
                    workers, output, sample_names, progress):
    """Mean depth per bin of every sample, from stored bins (no reads are read); --plot draws it
    normalised by each sample's median, like goleft indexcov (dosage and drop-outs show at a glance).
    With --exact or samtools depth's filters (-Q, --min-BQ, -G), depth is computed from each
    sample's position, CIGAR, flag and MAPQ columns, equal to samtools depth -a's mean per bin.

    \b
    Examples:
      bams3 cohort coverage --prefix s3://cohort/samples/ --plot cohort.html
      bams3 cohort coverage --from samples.txt --bin 64K -o bins.parquet
      bams3 cohort coverage --from samples.txt -r chr20:1M-2M --bin 10K -Q 20 -o bins.tsv
    """
    from .. import cohort as c
    from ..converter import parse_chunk_size

    options = None
    exact = exact or bool(min_mapq or min_bq or excl)
    bin_bp = int(bin_size) if exact and bin_size.isdigit() and int(bin_size) > 0 else parse_chunk_size(bin_size)
    if exact:
        from ..depth import DepthOptions

        options = DepthOptions.of(min_mapq=min_mapq, min_bq=min_bq, excl=excl)
    if output or not plot:
        c.table_format(output)
    if plot:
        from ..plot import check_plot_path

        check_plot_path(plot)
        c.require_pandas()  # the plot is drawn from a pandas table: say so before any sample runs
    samples = _cohort_samples(from_file, prefix)
    jobs = [(n, u, bin_bp, c.RETRIES, sample_names, region, options) for n, u in samples]
    results = _cohort_run(c.coverage_sample, jobs, engine, scheduler, workers, progress)
    rows = c.coverage_rows(results)
    columns = c.COVERAGE_COLUMNS
    if prefix:
        rows = c.drop_non_dataset_rows(rows, columns)
    if plot:
        from ..plot import coverage_plot

        coverage_plot(c._table(rows, columns), plot)
        _err(f"wrote {plot}")
    if output or not plot:
        _cohort_write(rows, columns, output)


@cohort.command("convert", context_settings=CONTEXT)
@click.argument("inputs", nargs=-1, metavar="[IN]...")
@click.option("--from", "from_file", type=click.Path(dir_okay=False), default=None,
              help="File of inputs: URL or NAME<TAB>URL per line (BAM, SAM or CRAM, on any store).")
@click.option("--to", "to", required=True, metavar="PREFIX",
              help="Where the datasets go: PREFIX/NAME.bams3 (a directory, s3://, gs://, az://, ...).")
@click.option("--chunk-size", default="1M", show_default=True, help="Genomic window per chunk (as for convert).")
@click.option("--compression", type=click.Choice(["default", "high"]), default="default", show_default=True)
@click.option("--max-chunk-raw", default=None, metavar="SIZE",
              help="Raw BAM record bytes a chunk holds at most (as for convert: 512K, 4M, 32M; default 4M, "
                   "32M with --compression high).")
@click.option("-T", "--reference", default=None, help="Reference FASTA, for CRAM inputs.")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(1, 256),
              help="Threads of each conversion.")
@click.option("--count-index", is_flag=True,
              help="Give each dataset a count index (as for convert): a count then reads two objects a sample.")
@click.option("--force", is_flag=True, help="Replace existing datasets.")
@click.option("--skip-existing", is_flag=True,
              help="Leave a dataset already converted from an input of the same name and size (resume a run).")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True)
@click.option("--scheduler", default=None, help="Dask scheduler address (implies --engine dask).")
@click.option("-@", "--workers", default=None, type=click.IntRange(1, 1024),
              help="Samples at once in this process (default: one per --threads CPUs), or Dask worker "
                   "processes for a LocalCluster (default 2).")
@click.option("-o", "--output", default=None,
              help="Write the table as .tsv, .csv or .parquet instead of TSV on stdout (- is stdout).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@storage_options
def cohort_convert(inputs, from_file, to, chunk_size, compression, max_chunk_raw, reference, threads, count_index,
                   force, skip_existing, engine, scheduler, workers, output, progress):
    """Convert many BAM, SAM or CRAM files, one task per sample, each into PREFIX/NAME.bams3
    (NAME: the file name without .bam/.cram/.sam, or the NAME of --from). Runs in this process
    (--engine local) or on Dask (--engine dask: a LocalCluster of --workers processes, or the
    cluster at --scheduler). A failure of the store that may pass is retried; a sample that
    still fails gets its row's error and the others finish. One row per sample on stdout
    (sample, input, dataset, records, chunks, size, seconds, note, error); the exit status is
    1 if any sample failed. With --skip-existing a second run converts only what the first did
    not finish.

    \b
    Examples:
      bams3 cohort convert bams/*.bam --to s3://lab/cohort/
      bams3 cohort convert --from samples.tsv --to s3://lab/cohort/ --engine dask --workers 8
      bams3 cohort convert bams/*.bam --to s3://lab/cohort/ --count-index
      bams3 cohort convert bams/*.bam --to s3://lab/archive/ --compression high --max-chunk-raw 4M
      bams3 cohort convert --from samples.tsv --to s3://lab/cohort/ --scheduler tcp://10.0.0.5:8786 \\
          --skip-existing -o runs.tsv
    """
    from .. import cohort as c

    if bool(inputs) == bool(from_file):
        raise UsageError("give the inputs as IN... or with --from FILE (one of them)")
    samples = (c.read_sample_list(from_file, c.input_name) if from_file
               else [(c.input_name(u), u) for u in inputs])
    c.table_format(output)
    options = {"chunk_size": chunk_size, "compression": compression, "reference": reference, "threads": threads,
               "force": force, "count_index": count_index, "max_chunk_raw": max_chunk_raw}
    jobs = c.convert_plan(samples, to, options, c.RETRIES, skip_existing)
    dask = engine == "dask" or bool(scheduler)
    n = workers or (2 if dask else c.default_convert_workers(threads))
    rows = _cohort_run(c.convert_sample, jobs, engine, scheduler, n, progress)
    _cohort_write(rows, c.CONVERT_COLUMNS, output)
    if any(r[-1] for r in rows):
        sys.exit(1)
