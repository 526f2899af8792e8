"""bams3 codec plugin: Zstandard, one compressor per thread (GIL released while compressing)."""

import struct
import threading

import zstandard

from bams3.plugin_api import Codec, hookimpl

from ._decode import read_sections, read_whole  # noqa: F401 (the codecs' sections: bams3.builtins.zstd as before)
from ._decode import zstd as decode

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = getattr(_local, "c", None)
    if cache is None:
        cache = _local.c = {}
    c = cache.get(level)
    if c is None:
        c = cache[level] = zstandard.ZstdCompressor(level=level, write_content_size=True)
    return c


def section(data: bytes, level: int) -> bytes:
    """A section of a codec's payload: u32 length, then a zstd frame of ``data`` (length 0: empty)."""
    if not data:
        return b"\0\0\0\0"
    c = _compressor(level).compress(data)
    return struct.pack("<I", len(c)) + c


def section_planes(data: bytes, level: int, width: int) -> bytes:
    """As :func:`section`, for ``data`` shuffled by byte (``width`` planes): one zstd frame, each
    plane in blocks of its own. The planes of a number differ (a random low byte, a high byte of
    few values), and zstd's literals coded with one table for all of them lose to a table per
    plane: 7% of the read names' numbers. Any zstd reader reads the frame as ever."""
    c = _planes_frame(data, level, width)
    return section(data, level) if c is None else struct.pack("<I", len(c)) + c


def _planes_frame(data: bytes, level: int, width: int) -> bytes | None:
    """One zstd frame of ``data`` (``width`` byte planes) with each plane in blocks of its own;
    None for data that is not whole numbers or holds fewer than 1,024 of them."""
    m = len(data) // width
    if len(data) % width or m < 1024:
        return None
    co = _compressor(level).compressobj(size=len(data))
    flush = zstandard.COMPRESSOBJ_FLUSH_BLOCK
    return b"".join(co.compress(data[k * m : (k + 1) * m]) + co.flush(flush) for k in range(width)) + co.flush()


def encode(data: bytes, level: int | None) -> bytes:
    level = 3 if level is None else int(level)
    out = _compressor(level).compress(data)
    if level >= 9:  # a high level is not always smaller (positions' deltas: 627 KB at 12, 603 KB at 3)
        fast = _compressor(3).compress(data)
        if len(fast) < len(out):
            return fast
    return out


def encode_planes(data: bytes, level: int | None, width: int) -> bytes:
    """As :func:`encode`, for a column shuffled by byte (``width`` planes): from level 9 up, the
    frame of each plane in blocks of its own (:func:`section_planes`) where that is smaller. One
    frame either way, which any zstd reader reads. The flags are 302 KB in one frame at level
    19 and 269 KB so on the benchmark sample (their second byte is nearly always 0); the
    positions' deltas gain 0.02%, and other columns lose a little, so the smaller is kept."""
    out = encode(data, level)
    if level is not None and int(level) >= 9 and width > 1:
        planes = _planes_frame(data, int(level), width)
        if planes is not None and len(planes) < len(out):
            return planes
    return out


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="zstd", encode=encode, decode=decode, default_level=9,
                         description="Zstandard (levels 1-22)"))
