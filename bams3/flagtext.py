"""samtools' flag text (htslib's ``bam_str2flag``): a number or flag names. Only the standard
library: the quick count (:mod:`bams3._quick`) reads -f/-F/-G/--rf before numpy is imported."""

from __future__ import annotations

from .errors import UsageError

FLAG_NAMES = {
    "PAIRED": 0x1, "PROPER_PAIR": 0x2, "UNMAP": 0x4, "MUNMAP": 0x8, "REVERSE": 0x10, "MREVERSE": 0x20,
    "READ1": 0x40, "READ2": 0x80, "SECONDARY": 0x100, "QCFAIL": 0x200, "DUP": 0x400, "SUPPLEMENTARY": 0x800,
}


def parse_flags(text: str) -> int:
    """A flag value as samtools takes it (htslib's ``bam_str2flag``): a number (decimal, 0x hex
    or 0 octal) or names separated by commas, in any case (``UNMAP,SECONDARY``)."""
    s = str(text).strip()
    number = _leading_int(s)
    if number is not None:
        return number
    flag = 0
    for name in s.split(","):
        value = FLAG_NAMES.get(name.upper())
        if value is None or not name:
            raise UsageError(f"unknown flag {name!r} in {text!r}: give a number or names from "
                             f"{','.join(FLAG_NAMES)}")
        flag |= value
    return flag


def parse_flag_options(values) -> int:
    """Repeated flag options, OR-ed as samtools ORs them (``-F 0x4 -F DUP``)."""
    out = 0
    for v in values:
        out |= parse_flags(v)
    return out


def _leading_int(s: str) -> int | None:
    """``strtol(s, &end, 0)``'s value when it read anything (None when it read nothing)."""
    i, sign = 0, 1
    if s[:1] in "+-" and s[:1]:
        sign, i = (-1 if s[0] == "-" else 1), 1
    body = s[i:]
    if body[:2].lower() == "0x" and body[2:3] and body[2].lower() in "0123456789abcdef":
        digits, base = _prefix(body[2:], "0123456789abcdef"), 16
    elif body[:1] == "0":
        digits, base = _prefix(body, "01234567"), 8
    else:
        digits, base = _prefix(body, "0123456789"), 10
    if not digits:
        return None
    return sign * int(digits, base)


def _prefix(s: str, allowed: str) -> str:
    n = 0
    while n < len(s) and s[n].lower() in allowed:
        n += 1
    return s[:n]
