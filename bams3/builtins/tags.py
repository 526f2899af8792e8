"""bams3 codec plugin ``tags``: the optional fields (the aux column) split by tag.

A record's optional fields are tag, type and value, one after another; the same dozen tags
recur in every record, and their values mean different things, so a general-purpose coder
sees them interleaved. This codec (``_tags.c``) splits the column into one stream per
kind of thing: the sequence of tags (a byte per field), and per tag its types, its numbers
(4 bytes each, grouped by byte) and its text and arrays. An integer is stored relative to
the latest value of another tag (or of itself) where that is smaller, as chosen per chunk:
``AS`` against ``ms``, say, is mostly 0. A float tag's numbers, when they take at most 256
values, are stored as a table and an index byte each. An integer tag whose every type is the
one its value implies (as every aligner's BAM has it, htslib choosing the type of SAM's ``i``)
stores no types: minimap2's ``s1`` crosses 255 from read to read, and its C/S cost 0.1 MB of the
benchmark sample. From level 9 (``--compression high``), a numerous tag's numbers may be
range-coded with adaptive models in a context, the latest value of another tag (``_tags.c``):
given the record's ``NM``, minimap2's ``de`` is certain and ``ms`` nearly so, which zstd over
byte planes cannot see (0.6 MB of the sample's 1.95 MB of tags). Each stream is then a zstd
frame. Decoding is exact for any input: a column that is not a well-formed field stream is
stored as one zstd frame as it is.

Payload (little-endian)::

    b"BA", version u8 = 1 or 2, mode u8
    mode 0: a zstd frame: the column as it is
    mode 1: T u8 (1-255), T tags (2 bytes each), T predictors (u8: 0, or 1 + a tag index),
            T forms (u8: how the tag's numbers are stored: 0 as ``_tags.c`` says; 1 as a table
            of at most 256 values: D - 1 u8, D u32 values, then a u8 index per number; 2, in
            version 2 only: as 0, and each field an integer of the type its value implies, the
            smallest of C/S/I or c/s/i, as htslib types SAM's ``i``: the types section is empty;
            4, in version 2: the numbers section is ``_tags.c``'s range-coded form; 6: 2 and 4),
            then 1 + 3T sections, each u32 length then a zstd frame (length 0: empty):
            ids (u8 tag index per field), then per tag: types, numbers, bytes
            (as ``_tags.c`` says)
"""

from __future__ import annotations


import numpy as np

from bams3.plugin_api import Codec, hookimpl

from . import _tags
from ._decode import TAGS_MAGIC as _MAGIC
from ._decode import TAGS_IMPLIED as _IMPLIED
from ._decode import TAGS_VERSION as _VERSION
from ._decode import tags as decode
from .zstd import _compressor, section

_LEVEL = 3
_CODED_FROM = 4096  # a column of fewer bytes keeps its numbers in zstd frames
# form 4 from this level (--compression high's 15; not the default's 3): choosing each tag's
# context and range-coding cost ~0.4 s of CPU on the benchmark sample, which the default's
# conversion time (against CRAM 3.0's) cannot spare
_CODED_LEVEL = 9


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


def encode(data: bytes, level: int | None) -> bytes:
    level = _LEVEL if level is None else int(level)
    parts = _tags.split(data, True)
    if parts is None or not parts[1]:  # not fields, or none
        return _MAGIC + bytes([_VERSION, 0]) + _compressor(level).compress(data)
    tags, preds, ids, streams, implicit = parts
    forms = bytearray(len(preds))
    version = _VERSION
    for k, implied in enumerate(implicit):
        if implied:  # each field's type is the one its value implies: the types go unstored
            streams[3 * k], forms[k], version = b"", 2, _IMPLIED
    for k in range(len(preds)):
        types, numbers = streams[3 * k], streams[3 * k + 1]
        # floats (minimap2's de, say) take few values, whose bytes zstd codes poorly one by one
        if numbers and types and types.count(b"f") == len(types):
            table = _as_table(numbers)
            if table is not None:
                streams[3 * k + 1], forms[k] = table, 1
    sections = [section(s, level) for s in (ids, *streams)]
    coded = _tags.code_numbers(data, preds) if len(data) >= _CODED_FROM and level >= _CODED_LEVEL else None
    for k, payload in enumerate(coded or ()):
        if payload is not None:  # range-coded in a context (form 4), where that is smaller
            alt = section(payload, 1)
            if len(alt) < len(sections[2 + 3 * k]):
                sections[2 + 3 * k], forms[k], version = alt, (forms[k] & 2) | 4, _IMPLIED
    head = _MAGIC + bytes([version, 1, len(preds)]) + tags + preds + bytes(forms)
    return head + b"".join(sections)


@hookimpl
def bams3_register_codecs(register):
    register(Codec(name="tags", encode=encode, decode=decode, default_level=_LEVEL, column="aux",
                   description="optional fields split by tag, integers against a related tag, then zstd"))
