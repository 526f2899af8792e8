"""Statistics computed in bulk while converting: samtools flagstat and idxstats numbers.

Counts follow samtools' bam_stat.c and htslib's index metadata exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .statstext import flagstat_text, idxstats_text  # noqa: F401 (where they were)

FPAIRED, FPROPER, FUNMAP, FMUNMAP = 0x1, 0x2, 0x4, 0x8
FREAD1, FREAD2, FSECONDARY, FQCFAIL, FDUP, FSUPP = 0x40, 0x80, 0x100, 0x200, 0x400, 0x800

FLAGSTAT_KEYS = (
    "total",
    "primary",
    "secondary",
    "supplementary",
    "duplicates",
    "primary_duplicates",
    "mapped",
    "primary_mapped",
    "paired",
    "read1",
    "read2",
    "properly_paired",
    "both_mapped",
    "singletons",
    "mate_diff_chr",
    "mate_diff_chr_mapq5",
)


_CODES = 1 << 12  # a record's flag bits that flagstat reads, with two of its own (see _code)


def _conditions(flag: np.ndarray, diff: np.ndarray, mapq5: np.ndarray) -> dict[str, np.ndarray]:
    """Which flagstat counts a record adds to (samtools' bam_stat.c), from its flag, whether its
    mate is on another reference, and whether its MAPQ is at least 5."""
    fail = (flag & FQCFAIL) != 0
    unmap = (flag & FUNMAP) != 0
    munmap = (flag & FMUNMAP) != 0
    secondary = (flag & FSECONDARY) != 0
    supp = ((flag & FSUPP) != 0) & ~secondary
    primary = ~secondary & ~supp
    paired = primary & ((flag & FPAIRED) != 0)
    dup = (flag & FDUP) != 0
    both = paired & ~unmap & ~munmap
    diff = both & diff
    return {
        "total": np.ones(len(flag), bool),
        "primary": primary,
        "secondary": secondary,
        "supplementary": supp,
        "duplicates": dup,
        "primary_duplicates": primary & dup,
        "mapped": ~unmap,
        "primary_mapped": primary & ~unmap,
        "paired": paired,
        "read1": paired & ((flag & FREAD1) != 0),
        "read2": paired & ((flag & FREAD2) != 0),
        "properly_paired": paired & ((flag & FPROPER) != 0) & ~unmap,
        "both_mapped": both,
        "singletons": paired & munmap & ~unmap,
        "mate_diff_chr": diff,
        "mate_diff_chr_mapq5": diff & mapq5,
        "_fail": fail,
    }


def _flagstat_table() -> np.ndarray:
    """[key, qc-pass/qc-fail, code]: 1 where a record of that code adds to that count."""
    code = np.arange(_CODES, dtype=np.int64)
    conds = _conditions(code & 0xFCF, (code & 0x10) != 0, (code & 0x20) != 0)
    fail = conds.pop("_fail")
    table = np.zeros((len(FLAGSTAT_KEYS), 2, _CODES), dtype=np.int64)
    for i, key in enumerate(FLAGSTAT_KEYS):
        table[i, 0] = conds[key] & ~fail
        table[i, 1] = conds[key] & fail
    return table


_TABLE = _flagstat_table()


class StatsAccumulator:
    """Adds up the statistics of record batches (core fields only). Each record is reduced to a
    12-bit code (:func:`_code`), counted; the flagstat numbers are the counts' sums under
    samtools' conditions, evaluated once per code rather than once per record."""

    def __init__(self, n_refs: int):
        self.codes = np.zeros(_CODES, dtype=np.int64)
        self.mapped = np.zeros(n_refs, dtype=np.int64)
        self.unmapped = np.zeros(n_refs, dtype=np.int64)
        self.no_coor = 0
        self.n_records = 0
        self.total_bases = 0
        self.mapped_bases = 0
        self.raw_bytes = 0

    @staticmethod
    def _code(core: np.ndarray) -> np.ndarray:
        """The flag bits flagstat reads (all but 0x10 and 0x20, and none above 0x800), with bit
        0x10 set when the mate is on another reference and 0x20 when MAPQ >= 5."""
        flag = core["flag"].astype(np.int64)
        return (flag & 0xFCF) | ((core["next_refid"] != core["refid"]) << 4) | ((core["mapq"] >= 5) << 5)

    @property
    def flagstat(self) -> np.ndarray:
        """[key, qc-pass/qc-fail] counts."""
        return _TABLE @ self.codes

    def add(self, core: np.ndarray, raw_bytes: int) -> None:
        flag = core["flag"]
        refid = core["refid"]
        self.n_records += len(core)
        self.raw_bytes += raw_bytes
        self.codes += np.bincount(self._code(core), minlength=_CODES)
        unmap = (flag & FUNMAP) != 0
        placed = refid >= 0
        nref = len(self.mapped)
        self.mapped += np.bincount(refid[placed & ~unmap], minlength=nref)[:nref]
        self.unmapped += np.bincount(refid[placed & unmap], minlength=nref)[:nref]
        self.no_coor += int(np.count_nonzero(~placed))
        l_seq = core["l_seq"].astype(np.int64)
        self.total_bases += int(l_seq.sum())
        primary = (flag & (FSECONDARY | FSUPP)) == 0
        self.mapped_bases += int(l_seq[primary & ~unmap].sum())

    def merge(self, other: StatsAccumulator) -> None:
        """Add another accumulator's counts (of other records of the same references)."""
        self.codes += other.codes
        self.mapped += other.mapped
        self.unmapped += other.unmapped
        for name in ("no_coor", "n_records", "total_bases", "mapped_bases", "raw_bytes"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def result(self, references, stored_bytes: int, n_chunks: int) -> dict[str, Any]:
        genome = sum(length for _, length in references)
        return {
            "n_records": self.n_records,
            "total_bases": self.total_bases,
            "mapped_bases": self.mapped_bases,
            "genome_length": genome,
            "mean_coverage": round(self.mapped_bases / genome, 4) if genome else 0.0,
            "raw_bytes": self.raw_bytes,
            "stored_bytes": stored_bytes,
            "n_chunks": n_chunks,
            "flagstat": {k: [int(v[0]), int(v[1])] for k, v in zip(FLAGSTAT_KEYS, self.flagstat)},
            "idxstats": [
                [name, length, int(m), int(u)]
                for (name, length), m, u in zip(references, self.mapped, self.unmapped)
            ]
            + [["*", 0, 0, self.no_coor]],
        }
