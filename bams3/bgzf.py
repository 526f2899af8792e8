"""BGZF (blocked gzip) in bulk: block scanning, threaded (de)compression.

libdeflate (the ``deflate`` package) does the work and releases the GIL, so
blocks are compressed on several threads while Python assembles the next ones.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import deflate

from .errors import InputError, TruncatedInputError

# libdeflate's CRC-32 (5x zlib's here: a BAM's blocks are checked as they are read)
_crc32 = getattr(deflate, "crc32", zlib.crc32)

EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
MAX_INPUT = 0xFF00  # bytes of input per block, as htslib


def _block_extent(buf: bytes, o: int) -> int | None:
    """Total size of the BGZF block starting at ``o`` (None if the header is incomplete)."""
    if len(buf) - o < 18:
        return None
    if buf[o] != 0x1F or buf[o + 1] != 0x8B or buf[o + 2] != 8 or not (buf[o + 3] & 4):
        raise InputError("input is not BGZF-compressed at a block boundary (corrupt or not a BAM file)")
    xlen = buf[o + 10] | (buf[o + 11] << 8)
    if len(buf) - o < 12 + xlen:
        return None
    p, end = o + 12, o + 12 + xlen
    while p + 4 <= end:
        si1, si2, slen = buf[p], buf[p + 1], buf[p + 2] | (buf[p + 3] << 8)
        if si1 == 66 and si2 == 67 and slen == 2:
            return (buf[p + 4] | (buf[p + 5] << 8)) + 1
        p += 4 + slen
    raise InputError("input is gzip but not BGZF (no BC field); recompress it with `bgzip` or `samtools view -b`")


def _inflate(block: bytes | memoryview) -> bytes:
    xlen = block[10] | (block[11] << 8)
    crc, isize = struct.unpack_from("<II", block, len(block) - 8)
    if isize == 0:
        return b""
    try:
        out = deflate.deflate_decompress(block[12 + xlen : len(block) - 8], isize)
    except Exception:
        raise InputError("corrupt BGZF block in input (deflate stream is damaged)") from None
    if _crc32(out) != crc:
        raise InputError("corrupt BGZF block in input (CRC mismatch)")
    return out


def decompress_blocks(read, piece: int = 4 << 20) -> Iterator[list[bytes]]:
    """Decompressed data of a BGZF stream: for each read of compressed bytes, its blocks'
    contents (a list, no block empty), so that a reader joins them once, where it needs them.

    ``read(n)`` reads compressed bytes. Raises :class:`InputError` for a
    truncated stream (a partial block, or no EOF marker block at the end).
    """
    buf = b""
    last_block = None
    eof = False
    ask = min(piece, 64 << 10)  # small reads first, so that the first records come early
    while not eof:
        more = read(ask)
        ask = min(piece, 2 * ask)
        if not more:
            eof = True
        buf = buf + more if buf else more
        o = 0
        blocks = []
        view = memoryview(buf)  # the blocks are read where they are
        while True:
            size = _block_extent(buf, o)
            if size is None or len(buf) - o < size:
                break
            blocks.append(view[o : o + size])
            o += size
        buf = buf[o:]
        if blocks:
            last_block = bytes(blocks[-1])
            out = [b for b in map(_inflate, blocks) if b]
            if out:
                yield out
    if buf:
        raise TruncatedInputError("input is truncated (ends inside a BGZF block)")
    if last_block != EOF_BLOCK:
        raise TruncatedInputError("input is truncated (the BGZF end-of-file marker is missing)")


def decompress_stream(read, piece: int = 4 << 20) -> Iterator[bytes]:
    """Decompressed data of a BGZF stream, in pieces of several blocks (``decompress_blocks``
    joined)."""
    for blocks in decompress_blocks(read, piece):
        yield b"".join(blocks)


def _deflate_block(data: bytes, level: int) -> bytes:
    comp = deflate.deflate_compress(data, level)
    bsize = 18 + len(comp) + 8
    return b"".join(
        (
            b"\x1f\x8b\x08\x04\x00\x00\x00\x00\x00\xff\x06\x00BC\x02\x00",
            struct.pack("<H", bsize - 1),
            comp,
            struct.pack("<II", _crc32(data), len(data)),
        )
    )


def compress(data, level: int = 6) -> bytes:
    """``data`` as BGZF blocks of at most MAX_INPUT bytes each (no end-of-file block)."""
    mv = memoryview(data)
    return b"".join(_deflate_block(bytes(mv[i : i + MAX_INPUT]), level) for i in range(0, len(mv), MAX_INPUT))


class BgzfWriter:
    """Writes BGZF to a binary file object, compressing blocks on threads."""

    def __init__(self, out, level: int = 6, threads: int = 2):
        self._out = out
        self._level = level
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="bgzf")
        self._pending = bytearray()
        self._futures = []
        self._window = max(4, 4 * threads)

    def write(self, data) -> None:
        self._pending += data
        n = len(self._pending) // MAX_INPUT * MAX_INPUT
        if n:
            mv = bytes(self._pending[:n])
            del self._pending[:n]
            for i in range(0, n, MAX_INPUT * 16):
                self._submit(mv[i : i + MAX_INPUT * 16])

    def _submit(self, piece: bytes) -> None:
        self._futures.append(self._pool.submit(self._compress_many, piece))
        while len(self._futures) > self._window:
            self._out.write(self._futures.pop(0).result())

    def _compress_many(self, piece: bytes) -> bytes:
        return compress(piece, self._level)

    def close(self) -> None:
        if self._pending:
            self._submit(bytes(self._pending))
            self._pending.clear()
        for f in self._futures:
            self._out.write(f.result())
        self._futures.clear()
        self._out.write(EOF_BLOCK)
        self._pool.shutdown()

    def abort(self) -> None:
        for f in self._futures:
            f.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
