"""bams3 codec plugin ``mates``: each read's next_pos from the position of its mate in the chunk.

A chunk holds both reads of most pairs, a few records apart. The next_pos column (stored as
next_pos - pos, 4 bytes a record, shuffled by byte) then repeats what the positions already
say: the first read's next_pos is the second's position, and the second's the first's. This
codec (``_mates.c``) stores, for a read that is not yet named, the distance in records to the
record whose position its next_pos is (one byte, 1-255; 0: none), and for a record named by an
earlier one, one byte saying that its next_pos is that record's position (1) or not (0). The
values neither predicts are stored as they are. Decoding needs only the positions (the codec is
record-aware) and is exact for any input: a column that is not 4 bytes a record of the chunk's
records is stored as one zstd frame as it is.

Payload (little-endian)::

    b"MT", version u8 = 1, mode u8
    mode 0: a zstd frame: the column as it is
    mode 1: three sections, each u32 length then a zstd frame (length 0: empty):
            codes (u8 per record not named by an earlier one), oks (u8 per record named),
            values (u32 per value stored as it is, shuffled by byte)
"""

from __future__ import annotations

from bams3.plugin_api import Codec, hookimpl

from . import _mates
from ._decode import MATES_MAGIC as _MAGIC
from ._decode import MATES_VERSION as _VERSION
from ._decode import mates as decode
from ._decode import typed
from .zstd import _compressor, section

_LEVEL = 6  # the codes are a byte a pair: zstd codes them within 1% of 19's size from 6 on, in a third of the time


def encode(data: bytes, level: int | None, *, records) -> bytes:
    level = _LEVEL if level is None else int(level)
    parts = _mates.split(data, typed(records.pos, "q"))
    if parts is None:  # not 4 bytes a record of these records
        return _MAGIC + bytes([_VERSION, 0]) + _compressor(level).compress(data)
    return _MAGIC + bytes([_VERSION, 1]) + b"".join(section(s, level) for s in parts)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="mates", encode=encode, decode=decode, default_level=_LEVEL, record_aware=True,
                   column="next_pos", description="mates' positions as the distance in records to the mate"))
