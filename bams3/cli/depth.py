"""``depth``: per-base depth at query time, as ``samtools depth`` prints it."""

from __future__ import annotations

import click

from ..errors import UsageError
from .app import cli
from .common import CONTEXT, _check_bed, storage_options


@cli.command(context_settings=CONTEXT)
@storage_options
@click.argument("dest")
@click.option("-r", "--region", default=None, metavar="REGION", help="Only this region (samtools syntax).")
@click.option("-b", "--bed", "bed", type=click.Path(dir_okay=False), default=None, metavar="FILE",
              help="Only positions in this BED file's intervals.")
@click.option("-a", "all_positions", count=True,
              help="Every position, with depth 0 where none (-a -a: also references without reads).")
@click.option("-Q", "--min-MQ", "min_mapq", default=0, type=click.IntRange(0), metavar="INT",
              help="Only reads with MAPQ >= INT.")
@click.option("-q", "--min-BQ", "min_bq", default=0, type=click.IntRange(0), metavar="INT",
              help="Only bases with quality >= INT (reads the quality column too).")
@click.option("-G", "--excl-flags", "excl", multiple=True, metavar="FLAG",
              help="Also leave out reads with any of these flags (default UNMAP,SECONDARY,QCFAIL,DUP).")
@click.option("-g", "incl_default", multiple=True, metavar="FLAG",
              help="Take these flags out of the default exclusions.")
@click.option("--incl-flags", "any_of", multiple=True, metavar="FLAG", help="Only reads with any of these flags.")
@click.option("--require-flags", "all_of", multiple=True, metavar="FLAG", help="Only reads with all of these flags.")
@click.option("-J", "deletions", is_flag=True, help="Count deletions as covering their positions.")
@click.option("-H", "header", is_flag=True, help="Print a header line (#CHROM, POS, the dataset).")
@click.option("-o", "--output", default="-", metavar="FILE", help="Write to FILE (- is stdout).")
@click.option("-@", "--threads", "workers", default=4, show_default=True, type=click.IntRange(1, 256),
              help="Concurrent chunk fetches.")
def depth(dest, region, bed, all_positions, min_mapq, min_bq, excl, incl_default, any_of, all_of, deletions, header,
          output, workers):
    """Depth at each position of DEST, exactly as samtools depth prints it with the same options:
    reference, position (1-based) and depth, tab-separated.

    \b
    Only the columns depth needs are read (positions, CIGARs, flags, MAPQ;
    qualities with -q), never the reads. `bams3 coverage` answers mean depths
    from stored bins without reading any record.

    \b
    Examples:
      bams3 depth sample.bams3 -r chr1:1,000,000-1,010,000 -a
      bams3 depth s3://bucket/sample.bams3 -r chr20 -Q 20 -q 13
      bams3 depth sample.bams3 -b targets.bed -a -o targets.depth
    """
    from ..dataset import Dataset
    from ..depth import DepthOptions
    from ..output import text_output

    _check_bed(bed)
    options = DepthOptions.of(min_mapq=min_mapq, min_bq=min_bq, excl=excl, incl_default=incl_default,
                              any_of=any_of, all_of=all_of, deletions=deletions)
    ds = Dataset.open(dest, workers=workers)
    with text_output(output) as out:
        if header:
            out.write(f"#CHROM\tPOS\t{dest}\n")
        for tid, intervals in _targets(ds, region, bed, all_positions):
            _print_reference(out, ds, tid, intervals, options, all_positions)


def _targets(ds, region, bed, all_positions):
    """(reference, intervals or None) in header order: the region's, the BED's (merged, within
    the region), or every reference (with -a -a even those without reads)."""
    from ..format.table import merge_intervals
    from ..region import POS_MAX

    refs = ds.meta.references
    if region is not None:
        reg = ds.region(region)
        if reg.tid < 0:
            raise UsageError("depth needs a region on a reference, not '*'")
        wanted = {reg.tid: [(reg.beg, reg.end)]}
    else:
        wanted = {tid: [(0, POS_MAX)] for tid in range(len(refs))}
    if bed is not None:
        merged = merge_intervals([(r.tid, r.beg, r.end) for r in ds.bed(bed) if r.tid >= 0])
        wanted = {tid: [(max(a, b0), min(b, e0)) for a, b in ivs for b0, e0 in merged.get(tid, ())
                        if max(a, b0) < min(b, e0)] for tid, ivs in wanted.items()}
    t = ds.chunks
    for tid in sorted(wanted):
        lo, hi = t.ref_span(tid)
        if wanted[tid] and (hi > lo or all_positions >= 2 or region is not None):
            yield tid, wanted[tid]


def _print_reference(out, ds, tid, intervals, options, all_positions) -> None:
    """One reference's lines. Without -a: positions a counted read lies on. With -a: every
    position of the intervals up to the reference's end or, past it, the furthest counted read."""
    from ..region import POS_MAX, Region

    name, length = ds.meta.references[tid]
    held = []  # windows past the reference's end: printed when the furthest read is known
    furthest = 0
    for beg, end in intervals:
        for w in ds.depth(Region(tid, beg, min(end, POS_MAX), f"{name}:{beg + 1}-{end}"), options):
            furthest = max(furthest, w.furthest)
            if not all_positions:
                _write(out, name, w.start, w.depth, w.covered)
                continue
            inside = min(len(w.depth), max(0, length - w.start))
            _write(out, name, w.start, w.depth[:inside], None)
            if inside < len(w.depth):
                held.append((w.start + inside, w.depth[inside:]))
    for start, d in held:
        _write(out, name, start, d[: max(0, furthest - start)], None)


def _write(out, name: str, start: int, depth, mask) -> None:
    import numpy as np

    pos = np.arange(start + 1, start + 1 + len(depth))
    d = depth
    if mask is not None:
        pos, d = pos[mask], d[mask]
    if len(pos):
        out.write("".join(f"{name}\t{p}\t{v}\n" for p, v in zip(pos.tolist(), d.tolist())))
