"""Regions as samtools writes them (parsed in :mod:`bams3.regiontext`), and BED files.
"""

from __future__ import annotations

import attrs

from .errors import RegionError, UnknownReferenceError
from .regiontext import POS_MAX, parse_position, resolve_region

__all__ = ["POS_MAX", "Region", "bed_intervals", "parse_position", "read_bed"]


@attrs.frozen
class Region:
    """A resolved region: reference index (``-1`` = unplaced reads), 0-based half-open."""

    tid: int
    beg: int
    end: int
    text: str

    @property
    def unplaced(self) -> bool:
        return self.tid < 0

    @classmethod
    def parse(cls, text: str, references, names: dict[str, int] | None = None) -> Region:
        """Resolve ``text`` against ``references`` (a sequence of (name, length)); ``names``: their
        name -> index map, when the caller has one (parsing thousands of regions)."""
        if names is None:
            names = {name: i for i, (name, _) in enumerate(references)}
        return cls(*resolve_region(text, names), text)


def bed_intervals(path: str) -> list[tuple[int, str, int, int]]:
    """``(line number, chrom, start, end)`` of each interval of a BED file (0-based half-open),
    skipping headers and comments. Plain or gzipped (as samtools reads them), from a file, a FIFO
    or ``<(process substitution)``, read once; names are bytes as in the header (any encoding)."""
    import gzip
    import zlib

    out = []
    try:
        with open(path, "rb") as raw:
            f = gzip.GzipFile(fileobj=raw) if raw.peek(2)[:2] == b"\x1f\x8b" else raw
            for lineno, line in enumerate(f, 1):
                line = line.decode("utf-8", "surrogateescape")
                if not line.strip() or line.startswith(("#", "track", "browser")):
                    continue
                fields = line.rstrip("\r\n").split("\t")
                if len(fields) < 3:
                    fields = line.split()
                try:
                    name, beg, end = fields[0], int(fields[1]), int(fields[2])
                except (IndexError, ValueError):
                    raise RegionError(f"{path}:{lineno}: not a BED line (need chrom, start, end)") from None
                if beg < 0 or end <= beg or end > POS_MAX:
                    raise RegionError(f"{path}:{lineno}: bad interval {beg}-{end}")
                out.append((lineno, name, beg, end))
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise RegionError(f"cannot read BED file {path}: corrupt or truncated gzip ({exc})") from None
    except OSError as exc:
        raise RegionError(f"cannot read BED file {path}: {exc.strerror or exc}") from None
    return out


def read_bed(path: str, references, names: dict[str, int] | None = None) -> list[Region]:
    """Regions from a BED file on these references."""
    if names is None:
        names = {name: i for i, (name, _) in enumerate(references)}
    out = []
    for lineno, name, beg, end in bed_intervals(path):
        tid = names.get(name)
        if tid is None:
            raise UnknownReferenceError(f"{path}:{lineno}: unknown reference {name!r}")
        out.append(Region(tid, beg, end, f"{name}:{beg + 1}-{end}"))
    return out
