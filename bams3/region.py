"""Regions as samtools writes them: ``chr1``, ``chr1:1000``, ``chr1:1,000-2,000``,
``chr20:10M-11M`` (k/M/G are decimal multipliers, as in htslib), ``{chr:1}:5-10``
for names with colons, and ``*`` for unplaced reads. 1-based, inclusive.
"""

from __future__ import annotations

import re

import attrs

from .errors import RegionError, UnknownReferenceError

POS_MAX = (1 << 63) - 1  # htslib's HTS_POS_MAX: "to the end of the reference"
_NUM = re.compile(r"(\d[\d,]*(?:\.\d+)?)([kKmMgG]?)")
_MULT = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_position(text: str, what: str = "position") -> int:
    """A 1-based coordinate: digits with optional thousands commas and a k/M/G suffix."""
    m = _NUM.fullmatch(text.lstrip(" \t"))  # leading blanks are skipped, as strtol does; nothing may trail
    if not m:
        raise RegionError(f"malformed {what} {text!r} (expected digits, e.g. 1,000,000 or 10M)")
    digits = m.group(1).replace(",", "")
    if len(digits) > 40:  # far beyond any position: refused before converting it
        raise RegionError(f"{what} {text[:24]!r}... is out of range")
    mult = _MULT[m.group(2).lower()]
    if "." in digits:
        whole, frac = digits.split(".")
        if len(frac) > len(str(mult)) - 1:
            raise RegionError(f"malformed {what} {text!r} (too many decimals for the suffix)")
        value = int(whole) * mult + int(frac.ljust(len(str(mult)) - 1, "0") or 0)
    else:
        value = int(digits) * mult
    if value > POS_MAX:
        raise RegionError(f"{what} {text!r} is out of range")
    return value


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
        s = text
        if not s.strip():
            raise RegionError("empty region")
        if s != s.strip():
            raise RegionError(f"malformed region {text!r} (blanks around it)")
        if s == "*":
            return cls(-1, 0, POS_MAX, s)
        if s.startswith("{"):
            close = s.find("}")
            if close < 0:
                raise RegionError(f"malformed region {text!r} (unclosed '{{')")
            name, rest = s[1:close], s[close + 1 :]
            if rest and not rest.startswith(":"):
                raise RegionError(f"malformed region {text!r} (expected ':' after '}}')")
            rng = rest[1:] if rest else ""
        else:
            colon = s.rfind(":")
            if colon < 0:
                name, rng = s, ""
            else:
                head, tail = s[:colon], s[colon + 1 :]
                if head in names and s in names:
                    raise RegionError(
                        f"region {text!r} is ambiguous: {s!r} and {head!r} are both references; "
                        f"write {{{s}}} or {{{head}}}:{tail}"
                    )
                if head in names:
                    name, rng = head, tail
                elif s in names or not re.fullmatch(r"[\d,.kKmMgG-]*", tail):
                    name, rng = s, ""
                else:
                    name, rng = head, tail  # looks like name:range with an unknown name
        if name not in names:
            raise UnknownReferenceError(f"unknown reference {name!r} in region {text!r} (see `bams3 stats` for the "
                                        "references)")
        tid = names[name]
        beg, end = 0, POS_MAX
        if rng:
            if "-" in rng:
                a, b = rng.split("-", 1)
                beg = parse_position(a, "start") if a else 1
                end = parse_position(b, "end") if b else POS_MAX
            else:
                beg = parse_position(rng, "start")
            beg = max(beg - 1, 0)
            if end <= beg:
                raise RegionError(f"malformed region {text!r}: the end is before the start")
        return cls(tid, beg, end, text)


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
