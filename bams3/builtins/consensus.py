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
import zstandard

from bams3.plugin_api import Codec, hookimpl

from . import _consensus
from .zstd import _compressor

_MAGIC = b"BS"
_VERSION = 1


def _arrays(records):
    return (np.ascontiguousarray(records.l_seq, dtype=np.int64), np.ascontiguousarray(records.pos, dtype=np.int64),
            np.ascontiguousarray(records.flag, dtype=np.uint16),
            np.ascontiguousarray(records.n_cigar_op, dtype=np.int64),
            np.ascontiguousarray(records.cigar, dtype=np.uint32))


def _z(data: bytes, level) -> bytes:
    c = _compressor(19 if level is None else int(level)).compress(data)
    return struct.pack("<I", len(c)) + c


def encode(data: bytes, level: int | None, *, records) -> bytes:
    """The five sections, computed in C (``_consensus.c``: one walk over the CIGARs per pass)."""
    cons, gaps, mism, unal, pads = _consensus.encode(data, *_arrays(records))
    gaps = np.frombuffer(gaps, np.uint8).reshape(-1, 4).T.tobytes()
    return (_MAGIC + struct.pack("<BB", _VERSION, 0)
            + b"".join(_z(s, level) for s in (cons, gaps, mism, unal, pads)))


def _sections(data: bytes, bounds: list[int]) -> list[bytes]:
    """The five sections, each at most its bound (the exact sizes are checked in C)."""
    out, o = [], 4
    d = zstandard.ZstdDecompressor()
    for bound in bounds:
        if o + 4 > len(data):
            raise ValueError("truncated consensus payload")
        (n,) = struct.unpack_from("<I", data, o)
        o += 4
        if o + n > len(data):
            raise ValueError("truncated consensus payload")
        raw = d.decompress(data[o : o + n], max_output_size=max(bound, 1)) if n else b""
        if len(raw) > bound:
            raise ValueError("a consensus payload section has the wrong size")
        out.append(raw)
        o += n
    return out


def decode(data: bytes, raw_size: int, *, records) -> bytes:
    if data[:2] != _MAGIC or len(data) < 4:
        raise ValueError("not a consensus-codec payload")
    if data[2] != _VERSION:
        raise ValueError(f"consensus codec payload version {data[2]} is not supported; upgrade bams3")
    arrays = _arrays(records)
    if int(((arrays[0] + 1) // 2).sum()) != raw_size:
        raise ValueError("record lengths do not match the sequence column")
    n_bases, n_aligned, n_cov, n_odd = _consensus.layout(*arrays)
    cons, gaps, mism, unal, pads = _sections(data, [(n_cov + 3) // 4, 4 * n_aligned, n_aligned,
                                                    n_bases - n_aligned, n_odd])
    if len(gaps) % 4 or len(mism) != len(gaps) // 4 or len(unal) != n_bases - n_aligned or len(pads) != n_odd:
        raise ValueError("a consensus payload section has the wrong size")
    gaps = np.frombuffer(gaps, np.uint8).reshape(4, -1).T.tobytes()
    out = bytearray(raw_size)
    _consensus.decode(out, cons, gaps, mism, unal, pads, *arrays)
    return bytes(out)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="consensus", encode=encode, decode=decode, record_aware=True, column="seq", default_level=19,
                         description="sequences as differences from the chunk's own consensus (no reference)"))
