"""The decoders of bams3's own codecs (``zstd``, ``names``, ``mates``, ``tags``, ``consensus``,
``qual``), over the standard library, zstandard and the codecs' C kernels: numpy, attrs and
pluggy are not imported, so the quick path (:mod:`bams3._quick`) decodes a chunk before any of
them. The codec plugins (``bams3/builtins/*.py``) register these same functions; each payload
is described in its plugin's module.

A record-aware decoder takes ``records`` (a :class:`bams3.RecordFields`) whose fields are
numpy arrays (the full reader's) or :class:`array.array` of the types the C kernels read (the
quick path's): ``q`` (int64) for lengths, positions and CIGAR operation counts, ``H`` (uint16)
for flags and ``I`` (uint32) for the CIGAR operations."""

from __future__ import annotations

import array
import struct
import threading

from . import _consensus, _mates, _names, _qctx, _rans, _tags
from .._kernels import unshuffle
from .._zstd import zstandard

_local = threading.local()


# ---------------------------------------------------------------------------- zstd
def zstd(data: bytes, raw_size: int) -> bytes:
    """The ``zstd`` codec: one frame. A frame that declares more than ``raw_size`` is refused
    before anything is allocated (``max_output_size`` bounds only frames without a size)."""
    z = zstandard()
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = z.ZstdDecompressor()
    try:
        declared = z.frame_content_size(data)
    except z.ZstdError:
        declared = -1  # not a frame header: decompress says why
    if declared > raw_size:
        raise ValueError(f"a zstd frame of {declared:,} bytes where {raw_size:,} were expected")
    return d.decompress(data, max_output_size=raw_size)


def read_sections(data: bytes, o: int, limits, what: str, total: int | None = None) -> list[bytes]:
    """The sections of a ``what``-codec payload from offset ``o`` to its end (each a u32 length,
    then a zstd frame; length 0: empty): section k decompresses to at most ``limits[k]`` bytes,
    and all of them together to at most ``total``. ValueError for a truncated, oversized or
    damaged section, or bytes after the last."""
    z = zstandard()
    d = z.ZstdDecompressor()
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
                if z.frame_content_size(frame) > limit:  # (-1: not declared)
                    raise ValueError(f"a {what}-codec section is larger than its column")
                part = d.decompress(frame, max_output_size=max(limit, 1))
                if total is not None:
                    total -= len(part)
            out.append(part)
            o += n
    except z.ZstdError as e:
        raise ValueError(f"a {what}-codec section does not decompress: {e}") from None
    if o != len(data):
        raise ValueError(f"a {what}-codec payload has bytes after its sections")
    return out


def read_whole(frame: bytes, raw_size: int, what: str) -> bytes:
    """A ``what``-codec payload's column stored as it is: one zstd frame that declares its size."""
    z = zstandard()
    try:
        if z.frame_content_size(frame) != raw_size:  # (a frame's declared size is what it gives)
            raise ValueError(f"a {what}-codec frame of another size than its column")
        return z.ZstdDecompressor().decompress(frame, max_output_size=max(raw_size, 1))
    except z.ZstdError as e:
        raise ValueError(f"a {what}-codec frame does not decompress: {e}") from None


def _head(data: bytes, magic: bytes, version: int, what: str) -> int:
    """The payload's mode, after its magic and version are checked."""
    if data[:2] != magic or len(data) < 4:
        raise ValueError(f"not a {what}-codec payload")
    if data[2] != version:
        raise ValueError(f"{what} codec payload version {data[2]} is not supported; upgrade bams3")
    return data[3]


# ---------------------------------------------------------------------------- names
NAMES_MAGIC, NAMES_VERSION, NAMES_PLACES = b"RN", 1, 16
NAMES_PAIRED = 2  # the payload version of the paired form (names told from the mates too)


def names(data: bytes, raw_size: int, *, records=None) -> bytes:
    if data[:2] == NAMES_MAGIC and len(data) >= 4 and data[2] == NAMES_PAIRED:
        if data[3] != 1:
            raise ValueError("a names-codec payload of an unknown mode")
        if records is None or records.pos is None or records.next_pos is None:
            raise ValueError("a paired names-codec payload needs the records' positions and next_pos")
        limits = [raw_size] * 3 + [4 * raw_size] * NAMES_PLACES
        sections = read_sections(data, 4, limits, "names", total=4 * raw_size + 1)
        return _names.join_paired(raw_size, typed(records.pos, "q"), typed(records.next_pos, "q"), sections[0],
                                  sections[1], sections[2], sections[3:])
    mode = _head(data, NAMES_MAGIC, NAMES_VERSION, "names")
    if mode == 0:
        return read_whole(data[4:], raw_size, "names")
    if mode != 1:
        raise ValueError("a names-codec payload of an unknown mode")
    # no section is larger than the column (a number takes a byte of it, and 4 bytes stored), nor
    # are they all together more than 4 bytes a byte of it
    limits = [raw_size, raw_size] + [4 * raw_size] * NAMES_PLACES
    sections = read_sections(data, 4, limits, "names", total=4 * raw_size + 1)
    return _names.join(raw_size, sections[0], sections[1], sections[2:])


# ---------------------------------------------------------------------------- mates
MATES_MAGIC, MATES_VERSION = b"MT", 1


def mates(data: bytes, raw_size: int, *, records) -> bytes:
    mode = _head(data, MATES_MAGIC, MATES_VERSION, "mates")
    if mode == 0:
        return read_whole(data[4:], raw_size, "mates")
    if mode != 1:
        raise ValueError("a mates-codec payload of an unknown mode")
    n = raw_size // 4  # codes, oks: a byte a record at most; values: 4 bytes
    sections = read_sections(data, 4, (n, n, 4 * n), "mates")
    return _mates.join(raw_size, typed(records.pos, "q"), *sections)


# ---------------------------------------------------------------------------- tags
TAGS_MAGIC, TAGS_VERSION = b"BA", 1
TAGS_IMPLIED = 2  # the payload version with forms 2 (integer types implied) and 4 (numbers range-coded)


def _from_table(table: bytes, n_numbers: int) -> bytes:
    """A tag's numbers stored as a table (D - 1 u8, D u32 values, a u8 index per number) back
    to their four byte planes: plane k is each number's byte k, looked up by its index."""
    if not table or len(table) != 1 + 4 * (table[0] + 1) + n_numbers:
        raise ValueError("a tags-codec value table has the wrong size")
    d = table[0] + 1
    values, index = table[1 : 1 + 4 * d], table[1 + 4 * d :]
    if d < 256 and index.translate(None, bytes(range(d))):  # (an index d or over is left: max() took 0.2 ms a chunk)
        raise ValueError("a tags-codec value index is outside its table")
    pad = bytes(256 - d)
    return b"".join(index.translate(values[k::4] + pad) for k in range(4))


def tags(data: bytes, raw_size: int) -> bytes:
    version = data[2] if data[:2] == TAGS_MAGIC and len(data) >= 4 and data[2] == TAGS_IMPLIED else TAGS_VERSION
    mode = _head(data, TAGS_MAGIC, version, "tags")
    if mode == 0:
        return read_whole(data[4:], raw_size, "tags")
    if mode != 1 or len(data) < 5:
        raise ValueError("a tags-codec payload of an unknown mode")
    nt = data[4]
    o = 5 + 4 * nt
    if not nt or o > len(data):
        raise ValueError("truncated tags-codec payload")
    tag_ids, preds, forms = data[5 : 5 + 2 * nt], data[5 + 2 * nt : 5 + 3 * nt], data[5 + 3 * nt : o]
    # no stream is larger than the column, and together they hold the column less its tags (ids
    # one byte per field of 3+), plus numbers widened to 4 bytes and a float table's 1 + 1024
    # bytes per tag
    sections = read_sections(data, o, [raw_size] * (1 + 3 * nt), "tags", total=3 * raw_size + 1025 * nt + 1)
    streams = sections[1:]
    implied, coded = bytearray(nt), bytearray(nt)
    for k, form in enumerate(forms):
        if form == 1:
            types = streams[3 * k]
            streams[3 * k + 1] = _from_table(streams[3 * k + 1], len(types))
        elif form in (2, 4, 6) and version == TAGS_IMPLIED:
            implied[k], coded[k] = form >> 1 & 1, form >> 2
        elif form:
            raise ValueError("a tags-codec stream of an unknown form")
    return _tags.join(raw_size, tag_ids, preds, sections[0], streams, bytes(implied), bytes(coded))


# ---------------------------------------------------------------------------- consensus
CONSENSUS_MAGIC, CONSENSUS_VERSION = b"BS", 1


def _consensus_sections(data: bytes, bounds: list[int]) -> list[bytes]:
    """The five sections, each at most its bound (the exact sizes are checked in C)."""
    out, o = [], 4
    d = zstandard().ZstdDecompressor()
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


def consensus_arrays(records) -> tuple:
    """The record fields the consensus kernels read, in their order and types."""
    return (typed(records.l_seq, "q"), typed(records.pos, "q"), typed(records.flag, "H"),
            typed(records.n_cigar_op, "q"), typed(records.cigar, "I"))


def consensus(data: bytes, raw_size: int, *, records, keep=None) -> bytes:
    """The sequence column. ``keep`` (a byte a record, as many as records): only the records it
    keeps are written, the others' bytes left 0 (a region's few records of a chunk: their
    bases are not copied out and packed); every section is read and checked all the same."""
    _head(data, CONSENSUS_MAGIC, CONSENSUS_VERSION, "consensus")
    arrays = consensus_arrays(records)
    if _packed_size(arrays[0]) != raw_size:
        raise ValueError("record lengths do not match the sequence column")
    n_bases, n_aligned, n_cov, n_odd = _consensus.layout(*arrays)
    cons, gaps, mism, unal, pads = _consensus_sections(data, [(n_cov + 3) // 4, 4 * n_aligned, n_aligned,
                                                              n_bases - n_aligned, n_odd])
    if len(gaps) % 4 or len(mism) != len(gaps) // 4 or len(unal) != n_bases - n_aligned or len(pads) != n_odd:
        raise ValueError("a consensus payload section has the wrong size")
    out = bytearray(raw_size)
    _consensus.decode(out, cons, unshuffle(gaps, 4), mism, unal, pads, *arrays, *(() if keep is None else (keep,)))
    return bytes(out)


consensus.keeps = True  # (ChunkReader.records asks it for a region's records only)


# ---------------------------------------------------------------------------- qual
QUAL_MAGIC, QUAL_VERSION, QUAL_SCHEMES = b"BQ", 1, (1, 2, 3)
QUAL_N_CTX3 = 64  # scheme 3: contexts per previous quality (32 cycle bins x read2)
QUAL_MAX_ROWS3 = 1024  # scheme 3: contexts a payload may use
QUAL_MAX_A3 = 64  # scheme 3: distinct qualities a payload may have
QUAL_MAX_CYCLE = 511
QUAL_N_CTX = (QUAL_MAX_CYCLE + 1) * 2


def qual(data: bytes, raw_size: int, *, records, simd: bool = True, keep=None) -> bytes:
    """The quality column. ``keep`` (a byte a record): with reads of one length, only the records
    it keeps are placed, the others' bytes left 0 (every quality is decoded and checked all the
    same); otherwise every record."""
    if data[:2] != QUAL_MAGIC or len(data) < 6:
        raise ValueError("not a qual-codec payload")
    version, scheme, a = struct.unpack_from("<BBH", data, 2)
    if version != QUAL_VERSION or scheme not in QUAL_SCHEMES:
        raise ValueError(f"qual codec payload version {version}/{scheme} is not supported; upgrade bams3")
    if not 1 <= a <= 256:
        raise ValueError("bad alphabet size")
    z = zstandard()
    o = 6
    try:
        vals = data[o : o + a]
        if len(vals) != a:
            raise struct.error("the quality values are cut short")
        o += a
        (k,) = struct.unpack_from("<H", data, o)
        o += 2
        # every context holds a quality (and scheme 3 has its limits): checked before the table
        # is decompressed, so that its size follows from raw_size
        if k > raw_size or scheme == 3 and (k > QUAL_MAX_ROWS3 or a > QUAL_MAX_A3):
            raise ValueError("more contexts than the qualities can use")
        used_bytes = data[o : o + 2 * k]
        used = struct.unpack_from(f"<{k}H", data, o)
        o += 2 * k
        (tlen,) = struct.unpack_from("<I", data, o)
        o += 4
        if o + tlen > len(data):
            raise ValueError("truncated context table")
        want = k * a * 2
        freqs = z.ZstdDecompressor().decompress(data[o : o + tlen], max_output_size=max(want, 1))
    except (struct.error, z.ZstdError) as e:
        raise ValueError(f"a truncated or damaged qual-codec header ({e})") from None
    if len(freqs) != want:
        raise ValueError("context table has the wrong size")
    o += tlen
    if scheme == 3 and k and (used[-1] >= (a + 1) * QUAL_N_CTX3 or any(y <= x for x, y in zip(used, used[1:]))):
        raise ValueError("the stored contexts are not scheme 3's")
    l_seq, flag = typed(records.l_seq, "q"), typed(records.flag, "H")
    total, low, high = _stats(l_seq)
    if len(l_seq) != len(flag) or (len(l_seq) and low < 0) or total != raw_size:
        raise ValueError("record lengths do not match the quality column")
    if scheme == 3:
        rows = array.array("i", [-1]) * ((a + 1) * QUAL_N_CTX3)
        for j, u in enumerate(used):
            rows[u] = j
        return _qctx.decode(memoryview(data)[o:], l_seq, flag, freqs, vals, rows, a, raw_size)
    n = len(l_seq)
    if n and low == high and l_seq[0] <= QUAL_MAX_CYCLE + 1:  # fixed-length reads: C places cycle c of each
        length = int(l_seq[0])
        g0, g1 = _rans.fixed_groups(flag, length)
        n2 = len(g1) // 8
        sizes = [(n2 if c & 1 else n - n2) for c in range(2 * length)]
        if [c for c, s in enumerate(sizes) if s] != list(used):
            raise ValueError("the stored contexts do not match the records")
        bounds = [0]
        for c in used:
            bounds.append(bounds[-1] + sizes[c])
        return _rans.decode(memoryview(data)[o:], struct.pack(f"<{k + 1}q", *bounds), freqs, vals, used_bytes,
                            length, g0, g1, b"", raw_size, scheme, int(simd), *(() if keep is None else (keep,)))
    sizes_bytes, dst = _rans.variable_layout(l_seq, flag, raw_size)  # reads of many lengths
    sizes = memoryview(sizes_bytes).cast("q")
    if [c for c in range(QUAL_N_CTX) if sizes[c]] != list(used):
        raise ValueError("the stored contexts do not match the records")
    bounds = [0]
    for c in used:
        bounds.append(bounds[-1] + sizes[c])
    return _rans.decode(memoryview(data)[o:], struct.pack(f"<{k + 1}q", *bounds), freqs, vals, used_bytes, 0, b"",
                        b"", dst, raw_size, scheme, int(simd))


qual.keeps = True  # (ChunkReader.records asks it for a region's records only)


# each codec's decoder, and whether it reads the chunk's records (the plugins register it so)
DECODERS = {"zstd": (zstd, False), "names": (names, True), "tags": (tags, False), "mates": (mates, True),
            "consensus": (consensus, True), "qual": (qual, True)}


# ---------------------------------------------------------------------------- record fields
_NP_TYPES = {"q": "<i8", "H": "<u2", "I": "<u4"}


def typed(values, code: str):
    """``values`` as a contiguous buffer of ``code``'s type (an :class:`array.array` of it as it
    is; anything else through numpy, which the full reader has imported)."""
    if isinstance(values, array.array) and values.typecode == code:
        return values
    import numpy as np

    return np.ascontiguousarray(values, dtype=_NP_TYPES[code])


def _stats(values) -> tuple[int, int, int]:
    """(sum, min, max) of int64 values (0, 0, 0 when there are none)."""
    if not len(values):
        return 0, 0, 0
    if isinstance(values, array.array):
        return sum(values), min(values), max(values)
    return int(values.sum()), int(values.min()), int(values.max())


def _packed_size(l_seq) -> int:
    """The bytes of the records' packed sequences: the sum of (l_seq + 1) // 2."""
    if isinstance(l_seq, array.array):
        return (sum(l_seq) + sum(map((1).__and__, l_seq))) // 2
    return int(((l_seq + 1) // 2).sum())
