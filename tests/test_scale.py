"""Metadata at human-genome scale: 3,100 one-Mbp windows over 24 references (a
sparse synthetic BAM) keep `stats` to one small read and a count far below a BAI's cost."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pysam
import pytest

import bams3

# GRCh38 primary assembly lengths (chr1-22, X, Y): 3.09 Gbp, 3,100 1-Mbp windows
HUMAN = [248956422, 242193529, 198295559, 190214555, 181538259, 170805979, 159345973, 145138636, 138394717,
         133797422, 135086622, 133275309, 114364328, 107043718, 101991189, 90338345, 83257441, 80373285,
         58617616, 64444167, 46709983, 50818468, 156040895, 57227415]
NAMES = [f"chr{i}" for i in range(1, 23)] + ["chrX", "chrY"]


@pytest.fixture(scope="module")
def human_scale(tmp_path_factory):
    d = tmp_path_factory.mktemp("human")
    bam = str(d / "sparse.bam")
    rng = random.Random(7)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": n, "LN": l} for n, l in zip(NAMES, HUMAN)]}
    with pysam.AlignmentFile(bam, "wb", header=header) as out:
        for tid, length in enumerate(HUMAN):
            starts = sorted(rng.randrange(0, length - 200) for _ in range(length // 1_000_000 * 3 + 3))
            # at least one read in every 1 Mbp window, a few more at random
            starts = sorted(set(starts) | {w * 1_000_000 + rng.randrange(0, 1000) for w in range(length // 1_000_000 + 1)
                                           if w * 1_000_000 + 1000 < length - 200})
            for i, s in enumerate(starts):
                a = pysam.AlignedSegment(out.header)
                a.query_name = f"r{tid}_{i}"
                a.flag = 0
                a.reference_id = tid
                a.reference_start = s
                a.mapping_quality = 60
                a.cigartuples = [(0, 100)]
                a.query_sequence = "".join(rng.choice("ACGT") for _ in range(100))
                a.query_qualities = pysam.qualitystring_to_array("I" * 100)
                out.write(a)
    pysam.index(bam)
    ds = str(d / "sparse.bams3")
    bams3.convert(bam, ds, chunk_size=1_000_000)
    return bam, ds


def _io(*args):
    """Run the CLI in a child process with --trace --json; returns the parsed JSON."""
    p = subprocess.run([sys.executable, "-m", "bams3.cli", *args, "--trace", "--json"], capture_output=True,
                       check=True)
    return json.loads(p.stdout)


def test_it_is_human_scale(human_scale):
    _, ds = human_scale
    ds = bams3.open(ds)
    assert len(ds.references) == 24
    assert len(ds.chunks) >= 3_090  # one chunk per 1 Mbp window


def test_stats_is_one_get_under_64_kb(human_scale):
    _, ds = human_scale
    out = _io("stats", ds)
    assert out["io"]["requests"] == 1
    assert out["io"]["bytes_in"] < 64 * 1024


@pytest.mark.parametrize("region", ["chr1:100,000,000-101,000,000", "chr17:7,661,779-7,687,538", "chrX"])
def test_count_reads_under_200_kb_and_is_exact(human_scale, region):
    bam, ds = human_scale
    out = _io("query", ds, region, "-c")
    assert out["count"] == int(pysam.view("-c", bam, region))
    assert out["io"]["bytes_in"] < 200 * 1024


def test_a_large_chunk_table_is_an_object_of_its_own(human_scale, tmp_path, monkeypatch):
    """Past 32 KB the table moves out of _metadata.json, so `stats` stays one small read
    whatever the dataset's size; a count then reads the table once."""
    from bams3.format import metadata as fmt

    bam, _ = human_scale
    monkeypatch.setattr(fmt, "INLINE_TABLE_MAX", 1024)
    ds = str(tmp_path / "ext.bams3")
    bams3.convert(bam, ds, chunk_size=1_000_000)
    monkeypatch.undo()
    meta = json.loads((tmp_path / "ext.bams3" / "_metadata.json").read_bytes())
    assert "object" in meta["chunks"] and "data" not in meta["chunks"]
    out = _io("stats", ds)
    assert out["io"]["requests"] == 1 and out["io"]["bytes_in"] < 8 * 1024
    out = _io("query", ds, "chr1:100,000,000-101,000,000", "-c")
    assert out["count"] == int(pysam.view("-c", bam, "chr1:100,000,000-101,000,000"))
    assert out["io"]["requests"] <= 4
    table = tmp_path / "ext.bams3" / meta["chunks"]["object"]
    blob = bytearray(table.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    table.write_bytes(bytes(blob))
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "query", ds, "chr1", "-c"], capture_output=True, text=True)
    assert p.returncode != 0 and "chunk table" in p.stderr and "corrupt" in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1
    table.unlink()
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "query", ds, "chr1", "-c"], capture_output=True, text=True)
    assert p.returncode != 0 and "missing" in p.stderr
    assert subprocess.run([sys.executable, "-m", "bams3.cli", "stats", ds], capture_output=True).returncode == 0
