"""The oracle: samtools and htslib as bundled by pysam, plus raw-record helpers."""

from __future__ import annotations

import json

import pysam

from bams3 import bgzf
from bams3.records import Header, split_records


def samtools(*args: str) -> str:
    """Run pysam's bundled samtools; returns stdout (raises on failure)."""
    return pysam.samtools.__getattribute__(args[0])(*args[1:], catch_stdout=True)


def view(path: str, *regions: str, flags: tuple[str, ...] = ()) -> str:
    """``samtools view --no-PG FLAGS PATH REGIONS...``"""
    return pysam.samtools.view("--no-PG", *flags, path, *regions, catch_stdout=True)


def view_count(path: str, *regions: str, flags: tuple[str, ...] = ()) -> int:
    """``samtools view -c FLAGS PATH REGIONS...``"""
    return int(pysam.samtools.view("-c", *flags, path, *regions, catch_stdout=True))


def flagstat_json(path: str) -> dict:
    return json.loads(pysam.samtools.flagstat("-O", "json", path, catch_stdout=True))


def idxstats(path: str) -> list[list]:
    out = pysam.samtools.idxstats(path, catch_stdout=True)
    return [[f[0], int(f[1]), int(f[2]), int(f[3])] for f in (line.split("\t") for line in out.splitlines())]


def raw_bam(path: str) -> tuple[Header, bytes]:
    """The header and the raw (uncompressed) record bytes of a BAM file."""
    with open(path, "rb") as f:
        header, batches = split_records(bgzf.decompress_stream(f.read))
        return header, b"".join(b.tobytes() for b in batches)


def records(path: str, region: str | None = None, until_eof: bool = True) -> list[tuple]:
    """Every field of every record, aux types included (pysam)."""
    with pysam.AlignmentFile(path, check_sq=False) as af:
        it = af.fetch(region=region) if region else af.fetch(until_eof=until_eof)
        return [record_fields(r) for r in it]


def record_fields(r) -> tuple:
    return (
        r.query_name, r.flag, r.reference_id, r.reference_start, r.mapping_quality, r.cigarstring,
        r.next_reference_id, r.next_reference_start, r.template_length, r.query_sequence,
        None if r.query_qualities is None else bytes(r.query_qualities), r.bin,
        tuple((t, repr(v), typ) for t, v, typ in r.get_tags(with_value_type=True)),
    )
