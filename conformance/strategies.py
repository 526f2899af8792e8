"""Hypothesis strategies for bams3 plugin tests: raw BAM records, small datasets, regions.

    from bams3.conformance.strategies import record_batches, regions, write_bam
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import strategies as st

REFERENCES = (("chr1", 50_000), ("chr2", 30_000))
_ACGT = "ACGTN"


@st.composite
def records(draw, references=REFERENCES):
    """One aligned-or-unmapped record as a pysam-free dict (name, flag, tid, pos, cigar, seq, qual, tags)."""
    tid = draw(st.integers(-1, len(references) - 1))
    unmapped = tid < 0 or draw(st.booleans())
    length = draw(st.integers(0, 200))
    pos = -1 if tid < 0 else draw(st.integers(0, references[tid][1] - 1))
    cigar = [] if unmapped or length == 0 else [(0, length)]
    return {
        "name": draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789_:", min_size=1, max_size=40)),
        "flag": (4 if unmapped else 0) | draw(st.sampled_from([0, 16, 1 | 64, 1 | 128 | 16, 1024, 256])),
        "tid": tid, "pos": pos, "mapq": draw(st.integers(0, 255)), "cigar": cigar,
        "seq": "".join(draw(st.lists(st.sampled_from(_ACGT), min_size=length, max_size=length))),
        "qual": draw(st.lists(st.integers(0, 93), min_size=length, max_size=length)) if length and draw(
            st.booleans()) else None,
        "tags": draw(st.dictionaries(st.sampled_from(["NM", "AS", "XS", "RG", "ZZ"]),
                                     st.one_of(st.integers(-2**31, 2**31 - 1), st.text("xyz", max_size=5)),
                                     max_size=3)),
    }


def write_records(path: str, recs: list[dict], references=REFERENCES) -> None:
    """Write records (as ``records()`` draws them) to a coordinate-sorted BAM."""
    import pysam

    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": n, "LN": l} for n, l in references]}
    key = lambda r: (r["tid"] if r["tid"] >= 0 else 1 << 30, r["pos"])  # noqa: E731
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for r in sorted(recs, key=key):
            a = pysam.AlignedSegment(out.header)
            a.query_name = r["name"]
            a.flag = r["flag"]
            a.reference_id = r["tid"]
            a.reference_start = r["pos"]
            a.mapping_quality = r["mapq"]
            a.cigartuples = r["cigar"] or None
            a.query_sequence = r["seq"] or None
            if r["qual"] is not None:
                a.query_qualities = r["qual"]
            for k, v in r["tags"].items():
                a.set_tag(k, v)
            out.write(a)


def write_bam(path: str, n: int = 1000, seed: int = 0, references=REFERENCES) -> None:
    """A reproducible sorted BAM of ``n`` 100 bp reads (no hypothesis needed)."""
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        tid = rng.randrange(len(references))
        recs.append({"name": f"r{i}", "flag": rng.choice([0, 16]), "tid": tid,
                     "pos": rng.randrange(references[tid][1] - 100), "mapq": 60, "cigar": [(0, 100)],
                     "seq": "".join(rng.choice("ACGT") for _ in range(100)),
                     "qual": [rng.randrange(2, 41) for _ in range(100)], "tags": {"NM": rng.randrange(3)}})
    write_records(path, recs, references)


@st.composite
def regions(draw, references=REFERENCES):
    """A samtools region string on ``references``: whole reference, from a position, or an interval."""
    name, length = draw(st.sampled_from(references))
    kind = draw(st.sampled_from(["whole", "from", "interval"]))
    if kind == "whole":
        return name
    a = draw(st.integers(1, length))
    if kind == "from":
        return f"{name}:{a}"
    b = draw(st.integers(a, length))
    return f"{name}:{a}-{b}"


@st.composite
def record_batches(draw, max_records=30):
    """A :class:`bams3.records.RecordBatch` of drawn records (through a BAM written by htslib)."""
    import os
    import tempfile

    from bams3 import bgzf
    from bams3.records import RecordBatch, split_records

    recs = draw(st.lists(records(), min_size=1, max_size=max_records))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.bam")
        write_records(path, recs)
        with open(path, "rb") as f:
            header, batches = split_records(bgzf.decompress_stream(f.read))
            out = list(batches)
    return header, RecordBatch.concat(out) if out else RecordBatch(np.zeros(0, np.uint8), np.zeros(1, np.int64))


@st.composite
def datasets(draw, directory: str, max_records: int = 40):
    """A bams3 dataset of drawn records, converted under ``directory`` (which the caller owns);
    returns (bam path, dataset path). Chunk sizes vary so that records cross chunk edges."""
    import os
    import uuid

    import bams3

    recs = draw(st.lists(records(), min_size=0, max_size=max_records))
    name = uuid.uuid4().hex
    bam = os.path.join(directory, f"{name}.bam")
    write_records(bam, recs)
    dest = os.path.join(directory, f"{name}.bams3")
    bams3.convert(bam, dest, chunk_size=draw(st.sampled_from([1024, 4096, 1 << 20])))
    return bam, dest
def write_rich_bam(path: str, n: int = 1000, seed: int = 3, references=REFERENCES) -> None:
    """A sorted BAM of ``n`` read pairs with what formats get wrong: both strands, mates on the
    same and on another reference, negative template lengths, unmapped mates placed beside
    theirs, clips, insertions and deletions, mapping qualities 0-60, integer, string, float and
    array tags."""
    import pysam

    rng = random.Random(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": n_, "LN": l_} for n_, l_ in references]}
    cigars = [[(0, 100)], [(4, 5), (0, 90), (1, 2), (0, 3)], [(0, 50), (2, 3), (0, 50)], [(5, 3), (0, 100)]]
    recs = []
    for i in range(n):
        tid = rng.randrange(len(references))
        pos = rng.randrange(references[tid][1] - 600)
        mate_tid = tid if rng.random() < 0.9 else (tid + 1) % len(references)
        mate_pos = pos + rng.randrange(0, 400) if mate_tid == tid else rng.randrange(references[mate_tid][1] - 200)
        unmapped_mate = rng.random() < 0.05
        if unmapped_mate:
            mate_tid, mate_pos = tid, pos
        tlen = (mate_pos + 100 - pos) if mate_tid == tid and not unmapped_mate else 0
        for first in (True, False):
            me_unmapped = unmapped_mate and not first
            flag = 1 | (64 if first else 128) | (0 if first else 16) | (32 if first else 0)
            flag |= (4 if me_unmapped else 0) | (8 if unmapped_mate and first else 0)
            flag |= 2 if not unmapped_mate and mate_tid == tid else 0
            recs.append({
                "name": f"p{i}", "flag": flag,
                "tid": tid if first else mate_tid, "pos": pos if first else mate_pos,
                "mate_tid": mate_tid if first else tid, "mate_pos": mate_pos if first else pos,
                "tlen": tlen if first else -tlen, "mapq": 0 if me_unmapped else rng.randrange(0, 61),
                "cigar": None if me_unmapped else rng.choice(cigars),
                "seq": "".join(rng.choice("ACGTN") for _ in range(100)),
                "qual": [rng.randrange(2, 42) for _ in range(100)],
                "tags": {"NM": rng.randrange(4), "MD": f"{rng.randrange(10, 90)}A{rng.randrange(1, 9)}",
                         "XF": round(rng.random() * 10, 2), "ZB": [rng.randrange(-5, 500) for _ in range(3)]},
            })
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for r in sorted(recs, key=lambda r: (r["tid"], r["pos"])):
            a = pysam.AlignedSegment(out.header)
            a.query_name, a.flag = r["name"], r["flag"]
            a.reference_id, a.reference_start = r["tid"], r["pos"]
            a.next_reference_id, a.next_reference_start = r["mate_tid"], r["mate_pos"]
            a.template_length, a.mapping_quality = r["tlen"], r["mapq"]
            a.cigartuples = r["cigar"]
            a.query_sequence = r["seq"]
            a.query_qualities = r["qual"]
            for k, v in r["tags"].items():
                a.set_tag(k, v)
            out.write(a)
