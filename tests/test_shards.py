"""A large indexed BAM converted by region shards (``bams3.shards``, ``convert --engine dask``):
the dataset is the one a conversion in one process writes — the same chunks byte for byte, the
same table, statistics and depth — whatever the shard size; it is exact against samtools, passes
verify --deep, and is made on a real dask.distributed LocalCluster from and to the S3 test
server. A stale index fails the conversion and publishes nothing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pysam
import pytest

import bams3
import bams3.shards
from bams3.dataset import Dataset
from bams3.errors import CorruptDatasetError, InputError
from bams3.format import encode_metadata
from bams3.verify import verify

from .oracle import view
from .synth import write_bam


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    return write_bam(str(tmp_path_factory.mktemp("shards") / "in.bam"), n=6000, seed=7)


def _same_dataset(one: str, sharded: str) -> None:
    """Everything a reader sees is the single conversion's: table (but the object numbers),
    every chunk's bytes, statistics, the depth object."""
    a, b = Dataset.open(one), Dataset.open(sharded)
    ta, tb = a.chunks, b.chunks
    assert len(ta) == len(tb) > 0
    for field, column in ta.columns.items():
        assert np.array_equal(column, tb.columns[field]), field
    assert b.meta.format_version == (3 if "object" in tb.columns else 2)
    for i in range(len(ta)):
        assert a.store.get(a.source.key(i)) == b.store.get(b.source.key(i)), i
    assert a.stats == b.stats
    assert a.store.get(a.meta.coverage["object"]) == b.store.get(b.meta.coverage["object"])
    assert (a.meta.header_text, a.meta.references, a.meta.chunk_size, a.meta.count_slot_bp, a.meta.codecs) == \
        (b.meta.header_text, b.meta.references, b.meta.chunk_size, b.meta.count_slot_bp, b.meta.codecs)


def _sam(url: str, *regions: str) -> str:
    buf = io.BytesIO()
    Dataset.open(url).write(buf, list(regions) or None)
    return buf.getvalue().decode()


@pytest.mark.parametrize("chunk_size, shard_bp, max_raw", [
    ("4K", "4K", 1 << 20),  # a shard per window
    ("4K", "12K", 20_000),  # windows split into several chunks, a split at a shard's edge
    ("16K", "64K", 1 << 20),
    ("64K", "1G", 1 << 20),  # one shard per reference
])
def test_shards_write_the_single_conversions_dataset(bam, tmp_path, chunk_size, shard_bp, max_raw):
    one, sharded = str(tmp_path / "one.bams3"), str(tmp_path / "sharded.bams3")
    bams3.convert(bam, one, chunk_size=chunk_size, max_chunk_raw=max_raw)
    meta = bams3.shards.convert(bam, sharded, engine="local", shard_bp=shard_bp, chunk_size=chunk_size,
                                max_chunk_raw=max_raw)
    _same_dataset(one, sharded)
    assert meta.stats["n_records"] == 6050 and meta.format_version == 3
    assert _sam(sharded) == view(bam)
    for region in ("chrA:1000-90000", "chrB", "chrC:150000-200000", "chrEmpty"):
        assert _sam(sharded, region) == view(bam, region), region
    rep = verify(sharded, deep=True)
    assert rep.ok and rep.stats_match


def test_shards_write_the_single_conversions_dataset_with_compression_high(bam, tmp_path):
    """--compression high's own chunk limit (32 MiB) and levels hold in shards as in one process."""
    one, sharded = str(tmp_path / "one.bams3"), str(tmp_path / "sharded.bams3")
    bams3.convert(bam, one, chunk_size="16K", compression="high")
    bams3.shards.convert(bam, sharded, engine="local", shard_bp="64K", chunk_size="16K", compression="high")
    _same_dataset(one, sharded)
    assert _sam(sharded) == view(bam)
    assert [(c.name, c.level) for c in Dataset.open(sharded).meta.codecs][:2] == [("zstd", 12), ("zstd", 16)]


def test_a_bam_of_unplaced_reads_alone(tmp_path):
    path = str(tmp_path / "unplaced.bam")
    with pysam.AlignmentFile(path, "wb", header={"HD": {"VN": "1.6", "SO": "coordinate"},
                                                  "SQ": [{"SN": "chr1", "LN": 1000}]}) as out:
        for i in range(300):
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.flag, r.reference_id, r.reference_start = f"u{i}", 4, -1, -1
            r.query_sequence, r.query_qualities = "ACGT" * 5, pysam.qualitystring_to_array("I" * 20)
            out.write(r)
    pysam.index(path)
    bams3.convert(path, str(tmp_path / "one.bams3"))
    bams3.shards.convert(path, str(tmp_path / "sharded.bams3"), engine="local")
    _same_dataset(str(tmp_path / "one.bams3"), str(tmp_path / "sharded.bams3"))


def test_a_stale_index_fails_and_publishes_nothing(bam, tmp_path):
    other = write_bam(str(tmp_path / "other.bam"), n=5000, seed=8)  # the same references, other records
    stale = tmp_path / "stale.bam"
    shutil.copy(bam, stale)
    shutil.copy(other + ".bai", str(stale) + ".bai")
    dst = tmp_path / "out.bams3"
    with pytest.raises(InputError, match="index (is|may be) stale"):
        bams3.shards.convert(str(stale), str(dst), engine="local", shard_bp="16K", chunk_size="16K")
    assert not dst.exists()  # the run's chunks removed, and the directory it made


def test_an_index_that_misses_records_fails(bam, tmp_path):
    """An index of the BAM as it was before records were appended (here: its unplaced reads)
    points to the right places and counts right for what it knows; the shards still read to
    the end of the file, and the records it does not count fail the conversion."""
    short = str(tmp_path / "short.bam")
    with pysam.AlignmentFile(bam) as inp, pysam.AlignmentFile(short, "wb", template=inp) as out:
        for r in inp.fetch(until_eof=True):
            if r.reference_id >= 0:
                out.write(r)
    pysam.index(short)
    stale = tmp_path / "stale.bam"
    shutil.copy(bam, stale)
    shutil.copy(short + ".bai", str(stale) + ".bai")
    with pytest.raises(InputError, match="counts 0 unplaced records where the BAM holds 50"):
        bams3.shards.convert(str(stale), str(tmp_path / "out.bams3"), engine="local", shard_bp="16K",
                             chunk_size="16K")
    assert not (tmp_path / "out.bams3").exists()


def test_what_cannot_be_sharded_is_refused_in_one_line(bam, tmp_path):
    def run(*args):
        p = subprocess.run([sys.executable, "-m", "bams3.cli", "convert", *args], capture_output=True, text=True,
                           cwd=tmp_path)
        assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr
        return p.stderr

    unindexed = tmp_path / "unindexed.bam"
    shutil.copy(bam, unindexed)
    assert "no BAI index" in run(str(unindexed), "a.bams3", "--engine", "dask")
    sam = tmp_path / "in.sam"
    sam.write_text(pysam.view("-h", bam))
    assert "indexed BAM" in run(str(sam), "b.bams3", "--engine", "dask")
    assert "--sort" in run(bam, "c.bams3", "--engine", "dask", "--sort")
    assert "add --engine dask" in run(bam, "d.bams3", "--shard-size", "8M")
    assert "smaller than a chunk" in run(bam, "e.bams3", "--engine", "dask", "--shard-size", "64K")
    assert sorted(os.listdir(tmp_path)) == ["in.sam", "unindexed.bam"]


def test_a_v3_table_in_a_v2_dataset_is_refused(bam, tmp_path):
    """Object numbers mean format v3: a reader of v2 refuses the dataset (its version is newer),
    and a table with them in metadata that claims v2 is corrupt, never read in table order."""
    dst = tmp_path / "s.bams3"
    bams3.shards.convert(bam, str(dst), engine="local", shard_bp="64K", chunk_size="16K")
    meta = dst / "_metadata.json"
    obj = json.loads(meta.read_bytes())
    obj.pop("checksum")
    obj["format_version"] = 2
    meta.write_bytes(encode_metadata(obj))
    with pytest.raises(CorruptDatasetError, match="format version 3"):
        Dataset.open(str(dst)).chunks


def test_cp_keeps_the_object_numbers(bam, tmp_path):
    src, dst = str(tmp_path / "s.bams3"), str(tmp_path / "copy.bams3")
    bams3.shards.convert(bam, src, engine="local", shard_bp="16K", chunk_size="16K")
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "cp", src, dst], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert verify(dst, deep=True).ok and _sam(dst) == view(bam)


def test_on_a_local_cluster_from_and_to_s3(bam, s3_server, tmp_path):
    from distributed import Client, LocalCluster

    client, bucket = s3_server["client"], s3_server["bucket"]
    client.upload_file(bam, bucket, "big/in.bam")
    client.upload_file(bam + ".bai", bucket, "big/in.bam.bai")
    url = f"s3://{bucket}/big/in.bams3"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as dc:
        bams3.shards.convert(f"s3://{bucket}/big/in.bam", url, client=dc, shard_bp="32K", chunk_size="16K",
                             workers=1)
        assert len(dc.scheduler_info()["workers"]) == 2
    one = str(tmp_path / "one.bams3")
    bams3.convert(bam, one, chunk_size="16K")
    _same_dataset(one, url)
    assert verify(url, deep=True).ok


def test_a_failure_on_a_cluster_it_did_not_start_leaves_only_a_marked_run(bam, tmp_path):
    """Shards on a client's cluster may outlive a failed conversion: the run keeps its marker, so
    what they leave is a marked leftover, never a foreign object; the next conversion there
    publishes and removes it."""
    from distributed import Client, LocalCluster

    from bams3.destination import RUN_MARKER

    other = write_bam(str(tmp_path / "other.bam"), n=5000, seed=8)
    stale = tmp_path / "stale.bam"
    shutil.copy(bam, stale)
    shutil.copy(other + ".bai", str(stale) + ".bai")
    dst = tmp_path / "out.bams3"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as dc:
        with pytest.raises(InputError, match="stale"):
            bams3.shards.convert(str(stale), str(dst), client=dc, shard_bp="16K", chunk_size="16K", workers=1)
    # (the cluster is closed: whatever its tasks were going to write is written)
    left = sorted(p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file())
    assert len(left) >= 1 and all(k.startswith("data/") for k in left)
    assert any(k.endswith("/" + RUN_MARKER) for k in left) and not (dst / "_metadata.json").exists()
    bams3.shards.convert(bam, str(dst), engine="local", shard_bp="16K", chunk_size="16K")
    assert verify(str(dst), deep=True).ok  # no extra objects: the leftover run is gone
    assert _sam(str(dst)) == view(bam)


def test_the_benchmark_sample_on_a_local_cluster(sample_dir, sample_dataset, tmp_path):
    """The 1.07 M-read sample by the CLI, --engine dask on a LocalCluster of two processes."""
    dst = str(tmp_path / "sample.bams3")
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "convert", str(sample_dir / "sample.bam"), dst,
                        "--engine", "dask", "--dask-workers", "2", "--shard-size", "8M", "--json"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["records"] == Dataset.open(sample_dataset).stats["n_records"]
    _same_dataset(sample_dataset, dst)
    rep = verify(dst, deep=True)
    assert rep.ok and rep.stats_match
