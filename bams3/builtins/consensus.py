"""bams3 codec plugin ``consensus``: sequences against the chunk's own consensus.

No reference is needed. The reads of a chunk overlap each other many times over,
so the chunk stores one consensus base per reference position its aligned bases
cover (2 bits each) and, for each aligned base, only whether it differs from
the consensus: the positions of the few that do (as gaps) and their codes.
Bases that are not aligned (soft clips, insertions, unmapped records, records
whose CIGAR does not match their length) are stored as they are. Everything is
derived from ``pos``, ``flag``, ``l_seq`` and the CIGARs, which the reader
decodes first (the codec is record-aware), so decoding is exact for any input:
the consensus only predicts.

Payload (little-endian)::

    b"BS", version u8 = 1, 0 u8
    five sections, each u32 length then a zstd frame:
      consensus   2-bit codes (A C G T = 0..3), 4 per byte, first in the high bits,
                  one per covered position, ascending
      gaps        u32 per mismatching aligned base: its index among aligned bases
                  minus the previous one's (shuffled by byte)
      mismatches  u8 code (0-15) per mismatching aligned base
      unaligned   u8 code per unaligned base, in order
      pads        u8 low nibble of the last byte of each odd-length record
"""

from __future__ import annotations

import struct

import numpy as np

from bams3.plugin_api import Codec, hookimpl

from . import _consensus
from ._decode import CONSENSUS_MAGIC as _MAGIC
from ._decode import CONSENSUS_VERSION as _VERSION
from ._decode import consensus as decode
from ._decode import consensus_arrays
from .zstd import _compressor



def _z(data: bytes, level) -> bytes:
    c = _compressor(19 if level is None else int(level)).compress(data)
    return struct.pack("<I", len(c)) + c


def encode(data: bytes, level: int | None, *, records) -> bytes:
    """The five sections, computed in C (``_consensus.c``: one walk over the CIGARs per pass)."""
    cons, gaps, mism, unal, pads = _consensus.encode(data, *consensus_arrays(records))
    gaps = np.frombuffer(gaps, np.uint8).reshape(-1, 4).T.tobytes()
    return (_MAGIC + struct.pack("<BB", _VERSION, 0)
            + b"".join(_z(s, level) for s in (cons, gaps, mism, unal, pads)))


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="consensus", encode=encode, decode=decode, record_aware=True, column="seq", default_level=19,
                         description="sequences as differences from the chunk's own consensus (no reference)"))
