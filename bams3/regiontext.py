"""Region texts as samtools writes them, resolved to (tid, beg, end): ``chr1``, ``chr1:1000``,
``chr1:1,000-2,000``, ``chr20:10M-11M`` (k/M/G are decimal multipliers, as in htslib),
``{chr:1}:5-10`` for names with colons, and ``*`` for unplaced reads. 1-based, inclusive in
the text; 0-based half-open out. Only the standard library: the quick count
(:mod:`bams3._quick`) parses regions with this too, before numpy or attrs is imported."""

from __future__ import annotations

import re

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


def resolve_region(text: str, names: dict[str, int]) -> tuple[int, int, int]:
    """``(tid, beg, end)`` of a region text on references named as ``names`` (name -> index);
    tid -1: the unplaced reads (``*``)."""
    s = text
    if not s.strip():
        raise RegionError("empty region")
    if s != s.strip():
        raise RegionError(f"malformed region {text!r} (blanks around it)")
    if s == "*":
        return -1, 0, POS_MAX
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
    return tid, beg, end
