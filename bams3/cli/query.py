"""Commands that read records: ``query``, ``to-bam``."""

from __future__ import annotations

import json

import click

from ..errors import UsageError
from .common import CONTEXT, _check_bed, _command_line, _write_index, filter_options, storage_options
from .app import cli


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
@filter_options()
def query(dest, regions, count, show, output, fmt, fmt_alias, as_bam, as_cram, uncompressed, reference, with_header,
          header_only, regions_file, multi, write_index, no_pg, as_json, workers, filters):
    """Records of DEST overlapping REGION(s), exactly as samtools view returns them.

    \b
    REGION is samtools syntax, 1-based inclusive: chr1, chr1:1000,
    chr1:1,000,000-2,000,000, chr20:10M-11M (k/M/G = 10^3/10^6/10^9),
    {name:with:colons}:1-100, or * for unplaced reads. Several regions are
    output one after another, as samtools does (-M: each record once). No
    region: every record. An @PG line is added to output headers, as samtools
    adds its own (--no-PG: the header untouched).

    \b
    Read filters are samtools view's (-f -F --rf -G -q -m -r -R -N -d -D -l -s
    -e), with its semantics; a filtered count reads only the columns the
    filter needs (flag and MAPQ: two small columns, not the reads).

    \b
    Examples:
      bams3 query sample.bams3 chr20:10M-11M --count
      bams3 query sample.bams3 chr1:1,000-2,000 --show 5
      bams3 query sample.bams3 chr20:10M-11M -c -F UNMAP,SECONDARY,QCFAIL,DUP -q 20
      bams3 query sample.bams3 chr1 -e 'mapq >= 30 && [NM] <= 2' -o chr1.bam
      bams3 query sample.bams3 chr1 -o chr1.bam --write-index
      bams3 query sample.bams3 chr1 -C -T ref.fa -o chr1.cram
      bams3 query sample.bams3 -L targets.bed -u | samtools flagstat -
    """
    from ..dataset import Dataset
    from ..output import Output, is_stdout, resolve, text_output

    if fmt and fmt_alias:
        raise UsageError("give the format once (-O)")
    fmt = fmt or fmt_alias
    _check_bed(regions_file)
    ds = Dataset.open(dest, workers=workers)
    sel = ds.selection(list(regions), bed=regions_file, multi=multi)
    if count:
        if fmt or as_bam or as_cram or uncompressed or write_index:
            raise UsageError("--count prints a number; it takes no output format or index")
        n = 0 if header_only else ds.count(sel, filters=filters)  # samtools view -H -c counts no records: 0
        if as_json:
            out = {"dataset": dest, "regions": [r.text for r in sel.regions], "count": n}
            if regions_file:
                out["regions_file"] = regions_file
            if filters is not None:
                out["filters"] = filters.describe()
            from ..storage import trace_totals

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
        from ..output import index_suffix, writes_in_place

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
                 pg=None if no_pg else _command_line(), filters=filters)
        if write_index:
            f.flush()
            _write_index(out, spec)


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
@filter_options(without=("-r", "-l"))
def to_bam(dest, out, regions, regions_file, multi, index, no_pg, workers, level, filters):
    """Write DEST (or regions of it) back as a BAM file, record for record.

    
    OUT is a .bam path, or - for standard output. A regular file or a new path is
    written under a temporary name and renamed when complete; an existing link,
    FIFO or device (/dev/stdout) is written in place, never replaced. An @PG line
    is added to the header, as samtools adds its own (--no-PG: the header exactly
    as it was converted). samtools view's read filters apply (-r and -l are
    --region and --level here: give --read-group and --library in full).

    
    Examples:
      bams3 to-bam sample.bams3 sample.bam --index
      bams3 to-bam sample.bams3 chr1.bam --region chr1
      bams3 to-bam sample.bams3 clean.bam -F 0xF04 -q 20 --read-group grpA
      bams3 to-bam s3://bucket/sample.bams3 - | samtools flagstat -
    """
    from ..dataset import Dataset
    from ..output import is_stdout, writes_in_place

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
    ds.to_bam(out, sel if (regions or regions_file or filters) else None, index=index, threads=workers,
              level=level, pg=None if no_pg else _command_line(), filters=filters)
