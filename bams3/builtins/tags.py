"""bams3 codec plugin ``tags``: the optional fields (the aux column) split by tag.

A record's optional fields are tag, type and value, one after another; the same dozen tags
recur in every record, and their values mean different things, so a general-purpose coder
sees them interleaved. This codec (``_tags.c``) splits the column into one stream per
kind of thing: the sequence of tags (a byte per field), and per tag its types, its numbers
(4 bytes each, grouped by byte) and its text and arrays. An integer is stored relative to
the latest value of another tag (or of itself) where that is smaller, as chosen per chunk:
``AS`` against ``ms``, say, is mostly 0. A float tag's numbers, when they take at most 256
values, are stored as a table and an index byte each. Each stream is then a zstd frame. Decoding is
exact for any input: a column that is not a well-formed field stream is stored as one zstd
frame as it is.

Payload (little-endian)::

    b"BA", version u8 = 1, mode u8
    mode 0: a zstd frame: the column as it is
    mode 1: T u8 (1-255), T tags (2 bytes each), T predictors (u8: 0, or 1 + a tag index),
            T forms (u8: how the tag's numbers are stored: 0 as ``_tags.c`` says; 1 as a table
            of at most 256 values: D - 1 u8, D u32 values, then a u8 index per number),
            then 1 + 3T sections, each u32 length then a zstd frame (length 0: empty):
            ids (u8 tag index per field), then per tag: types, numbers, bytes
            (as ``_tags.c`` says)
"""

from __future__ import annotations


import numpy as np

from bams3.plugin_api import Codec, hookimpl

from . import _tags
from .zstd import _compressor, read_sections, read_whole, section

_MAGIC = b"BA"
_VERSION = 1
_LEVEL = 3


def _as_table(numbers: bytes) -> bytes | None:
    """Numbers (4 bytes each, shuffled) of at most 256 distinct values as a table: D - 1 (u8),
    the D values (u32, ascending), then each number's index in it (u8). None: more values."""
    m = len(numbers) // 4
    v = np.frombuffer(numbers, np.uint8).reshape(4, m).T.copy().view("<u4").ravel()
    s = np.sort(v)  # (np.unique would import numpy.ma: 10 ms of a process's start)
    values = s[np.concatenate(([True], s[1:] != s[:-1]))]
    if len(values) > 256:
        return None
    index = np.searchsorted(values, v)
    return bytes([len(values) - 1]) + values.astype("<u4").tobytes() + index.astype(np.uint8).tobytes()


def _from_table(table: bytes, n_numbers: int) -> bytes:
    if not table or len(table) != 1 + 4 * (table[0] + 1) + n_numbers:
        raise ValueError("a tags-codec value table has the wrong size")
    d = table[0] + 1
    values = np.frombuffer(table, "<u4", count=d, offset=1)
    index = np.frombuffer(table, np.uint8, offset=1 + 4 * d)
    if n_numbers and int(index.max()) >= d:
        raise ValueError("a tags-codec value index is outside its table")
    return values[index].view(np.uint8).reshape(-1, 4).T.tobytes()


def encode(data: bytes, level: int | None) -> bytes:
    level = _LEVEL if level is None else int(level)
    parts = _tags.split(data)
    if parts is None or not parts[1]:  # not fields, or none
        return _MAGIC + bytes([_VERSION, 0]) + _compressor(level).compress(data)
    tags, preds, ids, streams = parts
    forms = bytearray(len(preds))
    for k in range(len(preds)):
        types, numbers = streams[3 * k], streams[3 * k + 1]
        # floats (minimap2's de, say) take few values, whose bytes zstd codes poorly one by one
        if numbers and types.count(b"f") == len(types):
            table = _as_table(numbers)
            if table is not None:
                streams[3 * k + 1], forms[k] = table, 1
    head = _MAGIC + bytes([_VERSION, 1, len(preds)]) + tags + preds + bytes(forms)
    return head + b"".join(section(s, level) for s in (ids, *streams))


def decode(data: bytes, raw_size: int) -> bytes:
    if data[:2] != _MAGIC or len(data) < 4:
        raise ValueError("not a tags-codec payload")
    if data[2] != _VERSION:
        raise ValueError(f"tags codec payload version {data[2]} is not supported; upgrade bams3")
    mode = data[3]
    if mode == 0:
        return read_whole(data[4:], raw_size, "tags")
    if mode != 1 or len(data) < 5:
        raise ValueError("a tags-codec payload of an unknown mode")
    nt = data[4]
    o = 5 + 4 * nt
    if not nt or o > len(data):
        raise ValueError("truncated tags-codec payload")
    tags, preds, forms = data[5 : 5 + 2 * nt], data[5 + 2 * nt : 5 + 3 * nt], data[5 + 3 * nt : o]
    # no stream is larger than the column, and together they hold the column less its tags (ids
    # one byte per field of 3+), plus numbers widened to 4 bytes and a float table's 1 + 1024
    # bytes per tag
    sections = read_sections(data, o, [raw_size] * (1 + 3 * nt), "tags", total=3 * raw_size + 1025 * nt + 1)
    streams = sections[1:]
    for k, form in enumerate(forms):
        if form == 1:
            types = streams[3 * k]
            streams[3 * k + 1] = _from_table(streams[3 * k + 1], len(types))
        elif form:
            raise ValueError("a tags-codec stream of an unknown form")
    return _tags.join(raw_size, tags, preds, sections[0], streams)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="tags", encode=encode, decode=decode, default_level=_LEVEL, column="aux",
                   description="optional fields split by tag, integers against a related tag, then zstd"))
