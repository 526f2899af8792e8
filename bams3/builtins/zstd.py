"""bams3 codec plugin: Zstandard, one compressor per thread (GIL released while compressing)."""

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
