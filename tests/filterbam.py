"""A coordinate-sorted BAM with every kind of read a filter tells apart: pairs and singletons,
duplicates, QC failures, secondary and supplementary alignments, placed unmapped mates, unplaced
reads, two read groups (of two libraries) and reads with none, MAPQ 0..60 and 255, tags of every
type (NM, AS, XS as integers of several widths, a Z, an A, a float, a B array), soft and hard
clips, insertions, deletions and skips, names that share prefixes."""

from __future__ import annotations

import random

import pysam

REFS = [("chr1", 60_000), ("chr2", 30_000), ("chrM", 2_000)]
READ_GROUPS = [("grpA", "libX"), ("grpB", "libY")]


def _cigar(rng: random.Random, qlen: int) -> list[tuple[int, int]]:
    k = rng.random()
    if k < 0.1:
        a = rng.randint(1, qlen - 1)
        return [(0, a), (2, rng.randint(1, 40)), (0, qlen - a)]
    if k < 0.15:
        a = rng.randint(1, qlen - 1)
        return [(0, a), (3, rng.randint(100, 3_000)), (0, qlen - a)]
    if k < 0.3:
        s, i = rng.randint(1, 15), rng.randint(1, 4)
        return [(4, s), (0, 30), (1, i), (0, qlen - s - 30 - i)]
    if k < 0.35:
        return [(5, rng.randint(1, 30)), (0, qlen)]
    if k < 0.4:
        return [(0, 20), (7, 10), (8, 1), (7, qlen - 31)]
    return [(0, qlen)]


def dataset(directory, name: str = "f") -> tuple[str, str]:
    """(BAM, dataset) of this module's BAM written in ``directory``, converted in small chunks
    (16 Kbp) so that regions cut chunks."""
    import bams3

    bam = write(f"{directory}/{name}.bam")
    dest = f"{directory}/{name}.bams3"
    bams3.convert(bam, dest, chunk_size=16 << 10)
    return bam, dest


def write(path: str, n_pairs: int = 1500, seed: int = 7) -> str:
    rng = random.Random(seed)
    header = {
        "HD": {"VN": "1.6", "SO": "coordinate"},
        "SQ": [{"SN": s, "LN": length} for s, length in REFS],
        "RG": [{"ID": rg, "LB": lb, "SM": "s1"} for rg, lb in READ_GROUPS],
    }
    recs = []

    def make(name, tid, pos, flag, mapq, cigar, qlen, rg, mate=None, tlen=0):
        recs.append(dict(name=name, tid=tid, pos=pos, flag=flag, mapq=mapq, cigar=cigar, qlen=qlen, rg=rg,
                         mate=mate, tlen=tlen, seed=rng.random()))

    for i in range(n_pairs):
        tid = rng.choices(range(len(REFS)), weights=[6, 3, 1])[0]
        length = REFS[tid][1]
        qlen = rng.choice([50, 75, 100, 101])
        p1 = rng.randint(0, length - 400)
        p2 = p1 + rng.randint(-50, 300)
        p2 = max(0, min(length - 120, p2))
        name = f"r{i:05d}" if rng.random() < 0.8 else f"read:{i % 97}:{i}"
        rg = rng.choice([READ_GROUPS[0][0], READ_GROUPS[1][0], None])
        extra = 0
        r = rng.random()
        if r < 0.08:
            extra |= 0x400
        elif r < 0.11:
            extra |= 0x200
        mapq = rng.choice([0, 0, 1, 5, 13, 20, 20, 30, 37, 42, 60, 60, 60, 255])
        kind = rng.random()
        if kind < 0.12:  # a singleton, forward or reverse
            make(name, tid, p1, extra | rng.choice([0, 0x10]), mapq, _cigar(rng, qlen), qlen, rg)
            continue
        if kind < 0.18:  # one mate unmapped, placed at the other's position
            make(name, tid, p1, 0x1 | 0x8 | 0x40 | extra, mapq, _cigar(rng, qlen), qlen, rg, mate=(tid, p1))
            make(name, tid, p1, 0x1 | 0x4 | 0x80 | extra, 0, [], qlen, rg, mate=(tid, p1))
            continue
        rev = rng.random() < 0.5
        f1 = 0x1 | 0x2 * (rng.random() < 0.9) | 0x40 | (0x10 if rev else 0x20)
        f2 = 0x1 | (f1 & 0x2) | 0x80 | (0x20 if rev else 0x10)
        c1, c2 = _cigar(rng, qlen), _cigar(rng, qlen)
        tl = (max(p1, p2) + qlen) - min(p1, p2)
        make(name, tid, p1, f1 | extra, mapq, c1, qlen, rg, mate=(tid, p2), tlen=tl if p1 <= p2 else -tl)
        make(name, tid, p2, f2 | extra, rng.choice([mapq, 60, 3]), c2, qlen, rg, mate=(tid, p1),
             tlen=-tl if p1 <= p2 else tl)
        if rng.random() < 0.06:  # a secondary alignment elsewhere
            t2 = rng.randrange(len(REFS))
            make(name, t2, rng.randint(0, REFS[t2][1] - 200), 0x100 | (f1 & ~0x2) | extra, 0, [(0, qlen)], 0, rg,
                 mate=(tid, p2))
        if rng.random() < 0.05:  # a supplementary piece, hard clipped
            t2 = rng.randrange(len(REFS))
            make(name, t2, rng.randint(0, REFS[t2][1] - 200), 0x800 | f1 | extra, rng.choice([0, 17, 60]),
                 [(5, qlen // 2), (0, qlen - qlen // 2)], qlen - qlen // 2, rg, mate=(tid, p2))
    for i in range(40):  # unplaced, unmapped pairs at the end
        rg = READ_GROUPS[i % 2][0] if i % 3 else None
        recs.append(dict(name=f"u{i:03d}", tid=-1, pos=-1, flag=0x1 | 0x4 | 0x8 | (0x40 if i % 2 else 0x80)
                         | (0x200 if i % 7 == 0 else 0), mapq=0, cigar=[], qlen=60, rg=rg, mate=None, tlen=0,
                         seed=rng.random()))
    recs.sort(key=lambda r: (r["tid"] < 0, r["tid"], r["pos"], r["seed"]))
    bases = "ACGTN"
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for k, d in enumerate(recs):
            a = pysam.AlignedSegment(out.header)
            a.query_name = d["name"]
            a.flag = d["flag"]
            a.reference_id = d["tid"]
            a.reference_start = d["pos"]
            a.mapping_quality = d["mapq"]
            a.cigartuples = d["cigar"] or None
            if d["qlen"]:
                a.query_sequence = "".join(rng.choice(bases) for _ in range(d["qlen"]))
                if rng.random() < 0.95:
                    a.query_qualities = pysam.qualitystring_to_array(
                        "".join(chr(33 + rng.choice([2, 10, 20, 25, 30, 37, 40])) for _ in range(d["qlen"])))
            if d["mate"]:
                a.next_reference_id, a.next_reference_start = d["mate"]
            else:
                a.next_reference_id, a.next_reference_start = -1, -1
            a.template_length = d["tlen"]
            tags = []
            if d["rg"]:
                tags.append(("RG", d["rg"], "Z"))
            if rng.random() < 0.9:
                tags.append(("NM", rng.randint(0, 7), rng.choice("cCsSiI")))
            if rng.random() < 0.8:
                tags.append(("AS", rng.randint(0, 150), "C"))
            if rng.random() < 0.5:
                tags.append(("XS", rng.randint(-5, 140), "i"))
            if rng.random() < 0.3:
                tags.append(("XT", rng.choice("UMR"), "A"))
            if rng.random() < 0.3:
                tags.append(("ZF", rng.choice([0.5, 1.25, -3.0]), "f"))
            if rng.random() < 0.2:
                tags.append(("ZB", [rng.randint(0, 9) for _ in range(rng.randint(1, 4))], "B"))
            if rng.random() < 0.3:
                tags.append(("CB", rng.choice(["AAAC-1", "GGTT-1", "x"]), "Z"))
            rng.shuffle(tags)
            for tag, value, typ in tags:
                if typ == "B":
                    a.set_tag(tag, value)
                else:
                    a.set_tag(tag, value, value_type=typ)
            out.write(a)
    pysam.index(path)
    return path
