"""bams3 codec plugin: Zstandard, one compressor per thread (GIL released while compressing)."""

import struct
import threading

import zstandard

from bams3.plugin_api import Codec, hookimpl

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


def read_sections(data: bytes, o: int, limits, what: str, total: int | None = None) -> list[bytes]:
    """The sections of a ``what``-codec payload from offset ``o`` to its end (see :func:`section`):
    section k decompresses to at most ``limits[k]`` bytes, and all of them together to at most
    ``total``. ValueError for a truncated, oversized or damaged section, or bytes after the last."""
    d = zstandard.ZstdDecompressor()
    out = []
    try:
        for limit in limits:
            limit = limit if total is None else min(limit, total)
            if o + 4 > len(data):
                raise ValueError(f"truncated {what}-codec payload")
            (n,) = struct.unpack_from("<I", data, o)
            o += 4
            if o + n > len(data):
                raise ValueError(f"truncated {what}-codec payload")
            part = b""
            if n:
                frame = data[o : o + n]
                if zstandard.frame_content_size(frame) > limit:  # (-1: not declared)
                    raise ValueError(f"a {what}-codec section is larger than its column")
                part = d.decompress(frame, max_output_size=max(limit, 1))
                if total is not None:
                    total -= len(part)
            out.append(part)
            o += n
    except zstandard.ZstdError as e:
        raise ValueError(f"a {what}-codec section does not decompress: {e}") from None
    if o != len(data):
        raise ValueError(f"a {what}-codec payload has bytes after its sections")
    return out


def read_whole(frame: bytes, raw_size: int, what: str) -> bytes:
    """A ``what``-codec payload's column stored as it is: one zstd frame that declares its size."""
    try:
        if zstandard.frame_content_size(frame) != raw_size:  # (a frame's declared size is what it gives)
            raise ValueError(f"a {what}-codec frame of another size than its column")
        return zstandard.ZstdDecompressor().decompress(frame, max_output_size=max(raw_size, 1))
    except zstandard.ZstdError as e:
        raise ValueError(f"a {what}-codec frame does not decompress: {e}") from None


def encode(data: bytes, level: int | None) -> bytes:
    return _compressor(3 if level is None else int(level)).compress(data)


def decode(data: bytes, raw_size: int) -> bytes:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    # max_output_size bounds only frames without a content size; ours declare theirs: a frame that
    # declares more than expected is refused before anything is allocated
    try:
        declared = zstandard.frame_content_size(data)
    except zstandard.ZstdError:
        declared = -1  # not a frame header: decompress says why
    if declared > raw_size:
        raise ValueError(f"a zstd frame of {declared:,} bytes where {raw_size:,} were expected")
    return d.decompress(data, max_output_size=raw_size)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="zstd", encode=encode, decode=decode, default_level=9,
                         description="Zstandard (levels 1-22)"))
