"""bams3 codec plugin ``names``: read names with pairs' repeats named and numbers as numbers.

Both reads of a pair carry one name, usually a few records apart in a chunk; and a name is
mostly the same text around a few numbers (an instrument, a run, a tile and coordinates; an
ART read's chromosome and number). This codec (``_names.c``) stores, per record, whether its
name is the name of a record up to 255 back (one byte: how far; 0: no), and each other name as
its text with its numbers taken out (a byte 0x01 each) plus the numbers, as u32 in one stream
per place in the name (first number, second, ..., the 16th and later together). A number is a
run of at most 9 digits that does not start with 0 (or is "0"), so it prints back as it was.
Given the records' positions and next_pos (the codec is record-aware, and bams3 decodes
next_pos before the names), the second read of a pair costs nothing more: the positions say
which record its mate is (``predict`` in ``_names.c``: the earliest of the 255 records before it,
not yet paired, whose position is its next_pos and whose next_pos is its position), and one
byte, nearly always 1, says that its name is that record's. The mates codec has already paid for
saying which record the mate is; before this form the names paid for it a second time.
Decoding is exact for any input: a column that is not names each ending in a NUL, or holds a
byte 0x01, is stored as one zstd frame as it is, as is a column under 64 KiB that comes out
smaller so.

Payload (little-endian)::

    b"RN", version u8 = 1, mode u8
    mode 0: a zstd frame: the column as it is
    mode 1: 18 sections, each u32 length then a zstd frame (length 0: empty):
            codes (u8 per record), shapes (each literal name's text, numbers as 0x01, then a
            NUL), then 16 streams of numbers (u32 each, shuffled by byte)
    b"RN", version u8 = 2 (the paired form), mode u8 = 1
            19 sections: codes (u8 per record without a mate, or whose name is not its
            mate's), oks (u8 per record with a mate: 1, the same name; 0, not), then shapes and
            numbers as in version 1
"""

from __future__ import annotations



from bams3.plugin_api import Codec, hookimpl

from . import _names
from ._decode import NAMES_MAGIC as _MAGIC
from ._decode import NAMES_PAIRED as _PAIRED
from ._decode import NAMES_PLACES as _PLACES  # noqa: F401
from ._decode import NAMES_VERSION as _VERSION
from ._decode import names as decode
from ._decode import typed
from .zstd import _compressor, section, section_planes

# zstd levels: the codes are a byte a record of a few dozen values, which zstd codes near
# their entropy from 12 on. The numbers' byte planes are mostly noise in their low bytes: at 1
# they are within 1% of 15's size either way (the benchmark sample's names 1.4% smaller,
# Illumina-like random tile coordinates 0.7% larger), at half the time (0.19 -> 0.12 s of CPU
# for the sample's names)
_LEVEL, _NUMBERS_LEVEL = 12, 1
_SMALL = 1 << 16  # a column of fewer bytes is stored as it is when that is smaller


def encode(data: bytes, level: int | None, *, records=None) -> bytes:
    paired = None
    if records is not None and records.pos is not None and records.next_pos is not None:
        paired = _names.split_paired(data, typed(records.pos, "q"), typed(records.next_pos, "q"))
    parts = _names.split(data) if paired is None else paired
    if parts is None:  # not names, each ending in a NUL (or a name holds 0x01)
        return _MAGIC + bytes([_VERSION, 0]) + _compressor(_LEVEL if level is None else int(level)).compress(data)
    text, nums = (_LEVEL, _NUMBERS_LEVEL) if level is None else (int(level), int(level))
    if paired is None:
        codes, shapes, numbers = parts
        head = _MAGIC + bytes([_VERSION, 1]) + section(codes, text)
    else:
        codes, oks, shapes, numbers = parts
        head = _MAGIC + bytes([_PAIRED, 1]) + section(codes, text) + section(oks, text)
    out = head + section(shapes, text) + b"".join(section_planes(x, nums, 4) for x in numbers)
    if len(data) < _SMALL:  # a few names: the sections' framing may cost more than they save
        plain = _MAGIC + bytes([_VERSION, 0]) + _compressor(text).compress(data)
        if len(plain) <= len(out):
            return plain
    return out


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="names", encode=encode, decode=decode, default_level=None, column="read_name",
                   record_aware=True,
                   description="read names: a pair's second name from its mate's position (or a distance), "
                               "numbers as numbers, then zstd"))
