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


def encode(data: bytes, level: int | None) -> bytes:
    return _compressor(3 if level is None else int(level)).compress(data)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="zstd", encode=encode, decode=decode, default_level=9,
                         description="Zstandard (levels 1-22)"))
