"""Synthetic coordinate-sorted BAMs with the hard cases for region queries."""

from __future__ import annotations

import random

import pysam

REFS = [("chrA", 300_000), ("chrB", 5_000), ("chrEmpty", 10_000), ("chrC", 200_000)]


def _cigar(rng: random.Random, qlen: int) -> list[tuple[int, int]]:
    kind = rng.random()
    if kind < 0.1:  # long deletion reaching into later windows
        a = rng.randint(1, qlen - 1)
        return [(0, a), (2, rng.randint(1_000, 20_000)), (0, qlen - a)]
    if kind < 0.2:  # spliced read with a long intron
        a = rng.randint(1, qlen - 1)
        return [(0, a), (3, rng.randint(10_000, 100_000)), (0, qlen - a)]
    if kind < 0.3:  # clipped, with an insertion
        s = rng.randint(1, 10)
        i = rng.randint(1, 5)
        return [(4, s), (0, 20), (1, i), (0, qlen - s - 20 - i)]
    return [(0, qlen)]


def write_bam(path: str, n: int = 4000, seed: int = 1) -> str:
    rng = random.Random(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": s, "LN": l} for s, l in REFS]}
    recs = []
    for i in range(n):
        tid = rng.choice([0, 0, 0, 1, 3, 3])
        length = REFS[tid][1]
        qlen = rng.randint(40, 120)
        r = pysam.AlignedSegment()
        r.query_name = f"r{i}"
        r.query_sequence = "".join(rng.choice("ACGT") for _ in range(qlen))
        r.query_qualities = pysam.qualitystring_to_array("".join(chr(33 + rng.randint(2, 40)) for _ in range(qlen)))
        r.reference_id = tid
        edge = rng.random()
        if edge < 0.05:
            r.reference_start = 0
        elif edge < 0.1:
            r.reference_start = max(0, length - rng.randint(1, 50))
        else:
            r.reference_start = rng.randrange(length)
        r.mapping_quality = rng.randint(0, 60)
        if rng.random() < 0.05:  # placed unmapped read (mate is mapped here)
            r.flag = 4 | 1 | 0x40
            r.cigartuples = None
        else:
            r.flag = rng.choice([0, 16, 99, 147, 83, 163, 256, 2048, 1024, 512])
            r.cigartuples = _cigar(rng, qlen)
        r.next_reference_id = tid
        r.next_reference_start = max(0, r.reference_start + rng.randint(-500, 500))
        r.template_length = rng.randint(-600, 600)
        r.set_tag("NM", rng.randint(0, 5))
        recs.append(r)
    for i in range(50):  # unplaced unmapped reads at the end
        r = pysam.AlignedSegment()
        r.query_name = f"u{i}"
        r.query_sequence = "ACGTACGTAC"
        r.query_qualities = pysam.qualitystring_to_array("IIIIIIIIII")
        r.flag = 4
        r.reference_id = -1
        r.reference_start = -1
        r.next_reference_id = -1
        r.next_reference_start = -1
        recs.append(r)
    recs.sort(key=lambda r: (r.reference_id < 0, r.reference_id, r.reference_start))
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for r in recs:
            out.write(r)
    pysam.index(path)
    return path


def random_regions(rng: random.Random, k: int) -> list[str]:
    out = []
    for _ in range(k):
        name, length = rng.choice(REFS)
        kind = rng.random()
        if kind < 0.05:
            out.append(name)
        elif kind < 0.1:
            out.append(f"{name}:{rng.randint(1, length + 100)}")
        elif kind < 0.15:
            out.append("*")
        else:
            beg = rng.randint(1, length + 100)
            span = rng.choice([1, 10, 100, 1_000, 10_000, 100_000])
            end = beg + rng.randint(0, span)
            out.append(f"{name}:{beg:,}-{end:,}" if rng.random() < 0.3 else f"{name}:{beg}-{end}")
    return out


def write_named_pairs(path: str, n_pairs: int = 1000, seed: int = 7) -> str:
    """A coordinate-sorted BAM of pairs with Illumina read names, each pair's reads 150-600 bp
    apart on one reference (some mates unmapped, placed at their mate): what the mates and
    names codecs model."""
    rng = random.Random(seed)
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "chrP", "LN": 400_000}]}
    recs = []
    for k in range(n_pairs):
        name = (f"A00123:45:HXXXXDSXX:{rng.randint(1, 4)}:{rng.randint(1101, 2678)}:{rng.randint(1000, 32000)}:"
                f"{rng.randint(1000, 37000)}")
        p1 = rng.randint(0, 399_000)
        p2 = min(p1 + rng.randint(150, 600), 399_950)
        unmapped = k % 41 == 0
        if unmapped:
            p2 = p1
        recs.append((p1, name, 0x1 | 0x2 * (not unmapped) | 0x40 | 0x20 | 0x8 * unmapped, p2))
        recs.append((p2, name, 0x1 | 0x2 * (not unmapped) | 0x80 | 0x10 | 0x4 * unmapped, p1))
    recs.sort(key=lambda r: r[0])
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for p, name, flag, mate in recs:
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.flag, r.reference_id, r.reference_start = name, flag, 0, p
            r.next_reference_id, r.next_reference_start = 0, mate
            r.mapping_quality = 0 if flag & 0x4 else 60
            r.cigarstring = None if flag & 0x4 else "20M"
            if not flag & 0xC:
                r.template_length = mate - p + (20 if mate >= p else -20)
            r.query_sequence = "".join(rng.choice("ACGT") for _ in range(20))
            r.query_qualities = pysam.qualitystring_to_array("".join(rng.choice("?5+I") for _ in range(20)))
            out.write(r)
    pysam.index(path)
    return path


def write_cg_bam(path: str, n: int = 40, at: int = 17) -> str:
    """An indexed BAM of ``n`` 10-base reads whose read ``at`` keeps its CIGAR (4M2I4M) in a CG
    tag behind a placeholder soft clip of the whole read: htslib moves it into place on reading."""
    import array

    header = pysam.AlignmentHeader.from_dict({"HD": {"VN": "1.6", "SO": "coordinate"},
                                              "SQ": [{"SN": "chr1", "LN": 10_000}]})
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for i in range(n):
            r = pysam.AlignedSegment(header)
            r.query_name, r.reference_id, r.reference_start, r.mapping_quality = f"r{i}", 0, 100 + 10 * i, 60
            r.query_sequence, r.query_qualities = "ACGTACGTAC", pysam.qualitystring_to_array("IIIIIIIIII")
            if i == at:
                r.cigarstring = "10S"
                r.set_tag("CG", array.array("I", [4 << 4 | 0, 2 << 4 | 1, 4 << 4 | 0]))
            else:
                r.cigarstring = "10M"
            out.write(r)
    pysam.index(path)
    return path
