"""Commands that write datasets: ``convert``, ``cp``, ``demo``."""

from __future__ import annotations

import json
import os
import sys
import tempfile

import click

from ..errors import UsageError
from .common import CONTEXT, _err, _human_bytes, _progress, storage_options
from .app import cli
from .info import stats


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
              help="default: qualities by the 'qual' context model, sequences against the chunk's own "
                   "consensus (no reference needed), optional fields split by tag, mates' positions from "
                   "their mates' records, read names tokenised, other columns zstd; smaller than CRAM 3.0. "
                   "high: up to 32 MiB of records a chunk (CRAM 3.1 archive's 100,000 reads a slice) instead "
                   "of 4 MiB, zstd-12 (the fixed-width columns at 16, the sequences' sections at 19, the "
                   "optional fields' at 15), the optional fields' numbers range-coded; smaller than CRAM 3.1 "
                   "archive, in about half the time of CRAM 3.1 small, for 2.4x the memory (~600 MB) and 8x "
                   "the bytes a small region's query reads.")
@click.option("--codec", default=None, help="Codec for all other columns (default: zstd; see `bams3 plugins`).")
@click.option("--level", type=int, default=None,
              help="Level of that codec for every column it codes (default: zstd 3 for the fixed-width columns "
                   "and the CIGARs, 5 for the rest; 16 and 12 with --compression high).")
@click.option("--qual-codec", default=None, help="Codec for base qualities (default: qual; 'none' = the column codec).")
@click.option("--seq-codec", default=None, help="Codec for sequences (default: consensus; 'none' = the column codec).")
@click.option("--aux-codec", default=None,
              help="Codec for the optional fields (default: tags; 'none' = the column codec).")
@click.option("--mate-codec", default=None,
              help="Codec for the mates' positions (next_pos; default: mates; 'none' = the column codec).")
@click.option("--name-codec", default=None,
              help="Codec for the read names (default: names; 'none' = the column codec).")
@click.option("-T", "--reference", type=click.Path(dir_okay=False), default=None,
              help="Reference FASTA, for CRAM input.")
@click.option("--max-chunk-raw", default=None, metavar="SIZE",
              help="Raw BAM record bytes a chunk holds at most (512K, 4M, 32M; binary): a window holding more "
                   "is stored as several chunks. Smaller: less read for a small region; larger: a smaller "
                   "dataset. Default 4M, 32M with --compression high.")
@click.option("--count-slots", "slots", is_flag=True, default=None,
              help="Also store each chunk's positions by 16K sub-window, so that a count reads less of its "
                   "edge chunks (larger dataset).")
@click.option("--count-index", is_flag=True,
              help="Also store the chunks' positions together in a count index, so that a count of any region "
                   "takes two reads: the metadata and one range of the index (about 2% larger dataset).")
@click.option("--sort", "sort_input", is_flag=True, help="Sort the input by coordinate first (uses a temporary file).")
@click.option("--force", is_flag=True, help="Replace an existing dataset at DEST.")
@click.option("--engine", type=click.Choice(["local", "dask"]), default="local", show_default=True,
              help="dask: convert an indexed BAM by region shards on Dask workers (a LocalCluster of "
                   "--dask-workers processes, or the cluster at --scheduler).")
@click.option("--scheduler", default=None, help="Dask scheduler address (implies --engine dask).")
@click.option("--dask-workers", default=2, show_default=True, type=click.IntRange(1, 1024),
              help="Processes of the LocalCluster --engine dask starts.")
@click.option("--shard-size", default=None,
              help="Genomic span of a shard with --engine dask (default 64M; whole chunks).")
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: only on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout.")
def convert(input_path, dest, chunk_size, workers, compression, codec, level, qual_codec, seq_codec, aux_codec,
            mate_codec, name_codec, reference, max_chunk_raw,
            slots, count_index, sort_input, force, engine, scheduler, dask_workers, shard_size, progress, as_json):
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
      bams3 convert sample.bam s3://lab/sample.bams3 --count-index
      bams3 convert sample.bam archive.bams3 --compression high --max-chunk-raw 4M
      samtools view -u -q 20 in.bam | bams3 convert - q20.bams3
      bams3 convert s3://lab/NA12878.bam s3://lab/NA12878.bams3 --engine dask --dask-workers 8
      bams3 convert big.bam s3://lab/big.bams3 --scheduler tcp://10.0.0.5:8786 --shard-size 32M

    
    With --engine dask (or --scheduler) an indexed BAM is converted by region
    shards: each shard reads its records through the BAI and writes its chunks,
    and the metadata is merged and published last. The dataset holds the same
    chunks, records and statistics as a conversion in one process.
    """
    options = dict(chunk_size=chunk_size, workers=workers, compression=compression, codec=codec, level=level,
                   qual_codec=qual_codec, seq_codec=seq_codec, aux_codec=aux_codec, mate_codec=mate_codec, name_codec=name_codec, force=force, slots=slots,
                   count_index=count_index, max_chunk_raw=max_chunk_raw)
    if engine == "dask" or scheduler:
        from ..shards import DEFAULT_SHARD_BP, convert as run_sharded

        if sort_input or reference:
            raise UsageError("--engine dask converts an indexed BAM by shards: --sort and --reference do not apply")
        with _progress("shards", progress) as report:
            meta = run_sharded(input_path, dest, shard_bp=shard_size or DEFAULT_SHARD_BP, engine="dask",
                               scheduler=scheduler, n_workers=dask_workers, progress=report, **options)
    else:
        if shard_size is not None:
            raise UsageError("--shard-size applies to a sharded conversion: add --engine dask")
        from .. import early

        if not sort_input:  # the first blocks inflate on the other core while the converter loads
            early.start(input_path)
        try:
            from ..converter import convert as run

            with _progress("converting", progress) as report:
                meta = run(input_path, dest, reference=reference, sort=sort_input, progress=report, **options)
        finally:
            early.drop()
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
    from ..transfer import copy as run

    with _progress("copying", progress) as report:
        res = run(src, dest, force=force, workers=workers, progress=report)
    if as_json:
        click.echo(json.dumps({"source": src, "dataset": dest, "objects": res.objects, "bytes": res.bytes,
                               "records": res.records}))
    else:
        _err(f"copied {src} to {dest}: {res.objects} objects, {_human_bytes(res.bytes)}, {res.records:,} records")


# ---------------------------------------------------------------- query


# ---------------------------------------------------------------- demo
@cli.command(context_settings=CONTEXT)
@click.option("--keep", type=click.Path(file_okay=False), default=None,
              help="Write the demo dataset here (default: a temporary directory, removed afterwards).")
def demo(keep):
    """Convert the bundled example BAM, query it and print its statistics."""
    from importlib.resources import as_file, files

    from ..converter import convert as run
    from ..dataset import Dataset

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
