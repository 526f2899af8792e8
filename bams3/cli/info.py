"""Commands that describe datasets: ``stats``, ``coverage``, ``ls``, ``verify``, ``plugins``."""

from __future__ import annotations

import json
import sys

import click

from ..errors import Bams3Error, UsageError
from .common import CONTEXT, _check_bed, _err, _human_bp, _human_bytes, _progress, storage_options
from .app import cli


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
    from ..dataset import Dataset
    from ..statstext import flagstat_text, idxstats_text, stats_block, stats_json

    ds = Dataset.open(dest)
    m, s = ds.meta, ds.stats
    if as_json:
        click.echo(stats_json(dest, m, s, _trace_totals()), nl=False)
        return
    if flagstat:
        click.echo(flagstat_text(s["flagstat"]), nl=False)
        return
    if idxstats:
        click.echo(idxstats_text(s["idxstats"]), nl=False)
        return
    click.echo(stats_block(dest, m, s), nl=False)


# ---------------------------------------------------------------- coverage
@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.option("-r", "--region", default=None, help="Only bins overlapping this region (samtools syntax).")
@click.option("--bin", "bin_size", default=None,
              help="Bin size: a multiple of the stored 16K bins (16K, 64K, 1M, ...; K/M binary). [default: 16K]")
@click.option("--exact", is_flag=True,
              help="Compute from the reads' columns: the region (or each reference) whole, any window exactly.")
@click.option("--by", "by", default=None, metavar="BED|N",
              help="Exact mean depth per window: a BED file's intervals, or windows of N bp (implies --exact).")
@click.option("-Q", "--min-MQ", "min_mapq", default=0, type=click.IntRange(0), metavar="INT",
              help="With --exact: only reads with MAPQ >= INT (samtools depth -Q).")
@click.option("--min-BQ", "min_bq", default=0, type=click.IntRange(0), metavar="INT",
              help="With --exact: only bases with quality >= INT (samtools depth -q).")
@click.option("-G", "--excl-flags", "excl", multiple=True, metavar="FLAG",
              help="With --exact: also leave out reads with these flags (samtools depth -G).")
@click.option("-@", "--threads", "workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent chunk fetches (--exact).")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of BED-like TSV.")
def coverage(dest, region, bin_size, exact, by, min_mapq, min_bq, excl, workers, as_json):
    """Mean depth per bin of DEST, from its stored binned depth alone (no reads are read), or
    exactly for any window from the reads' columns (--exact, --by).

    \b
    Depth is counted as samtools depth counts it: bases of M/=/X operations of
    records without UNMAP, SECONDARY, QCFAIL or DUP flags; deletions do not
    count. Output: reference, start (0-based), end, mean depth, tab-separated.
    Stored bins are 16 Kbp with those filters: the fast path for whole-genome
    views. --exact and --by equal the mean of `samtools depth -a` over each
    window (= samtools coverage's meandepth, mosdepth --by's mean) and take
    samtools depth's filters; they read positions, CIGARs, flags and MAPQ.

    \b
    Examples:
      bams3 coverage sample.bams3 --bin 1M
      bams3 coverage s3://bucket/sample.bams3 -r chrX --bin 64K
      bams3 coverage sample.bams3 -r chr1:1000-2000 --exact
      bams3 coverage sample.bams3 --by targets.bed -Q 20
      bams3 coverage sample.bams3 -r chr20 --by 1000
    """
    from ..converter import parse_chunk_size
    from ..dataset import Dataset

    exact = exact or by is not None or bool(min_mapq or min_bq or excl)
    ds = Dataset.open(dest, workers=workers)
    if exact:
        if bin_size is not None:
            raise UsageError("--bin is for stored bins; with --exact give windows with --by N or --by BED")
        rows = _exact_rows(ds, region, by, min_mapq, min_bq, excl)
    else:
        try:
            bin_bp = parse_chunk_size(bin_size or "16K")
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


def _exact_rows(ds, region, by, min_mapq, min_bq, excl) -> list[tuple]:
    from ..depth import DepthOptions

    options = DepthOptions.of(min_mapq=min_mapq, min_bq=min_bq, excl=excl)
    if by is not None and not by.isdigit():
        if region is not None:
            raise UsageError("give -r or --by BED, not both")
        _check_bed(by)
        return ds.exact_coverage(bed=by, options=options)
    n = int(by) if by is not None else None
    if n == 0:
        raise UsageError("--by N needs N > 0")
    return ds.exact_coverage(region, n, options=options)


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
    from .. import cohort

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
    from ..verify import verify as run

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
    from ..plugins import get_registry

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


def _trace_totals():
    from ..storage import trace_totals

    return trace_totals()
