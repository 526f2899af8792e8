"""The bams3 format: bytes to objects and back, and nothing else (no store, no plugin
registry, no coverage computation). docs/format.md is the specification.

- :mod:`.columns`: the columns of a chunk by name, their types and the transforms applied before coding;
- :mod:`.chunk`: a chunk object: :func:`encode_chunk` and :class:`ChunkReader`;
- :mod:`.slots`: count slots and where a chunk's lie (:class:`SlotLayout`);
- :mod:`.table`: the chunk table, and region planning over it (``candidates``, ``covers``, ``plan``);
- :mod:`.metadata`: ``_metadata.json`` (:class:`Metadata`, frozen).
"""

from .chunk import (
    CHUNK_HEAD,
    CHUNK_MAGIC,
    DIR_ENTRY,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_RAW_BYTES,
    ChunkReader,
    EncodedChunk,
    chunk_key,
    directory_nbytes,
    encode_chunk,
    record_fields,
)
from .columns import (
    ALL,
    BY_ID,
    BY_NAME,
    COUNT_COLUMNS,
    FIXED,
    FIXED_COLUMNS,
    FLAG_PREDICTED,
    FLAG_SHUFFLED,
    QUAL_COLUMN,
    SEQ_COLUMN,
    TLEN_COLUMN,
    VAR_COLUMNS,
    VARIABLE,
    Column,
    tlen_prediction,
)
from .metadata import (
    CHUNKS_OBJECT,
    COUNT_INDEX_OBJECT,
    COVERAGE_OBJECT,
    INLINE_TABLE_MAX,
    MAX_METADATA_BYTES,
    METADATA_KEY,
    CodecSpec,
    Metadata,
    encode_metadata,
)
from .slots import SLOT_HEAD, SlotLayout, count_slot_bp, decode_slots, encode_slots, slot_range
from .table import (
    CHUNK_FIELDS,
    OPTIONAL_CHUNK_FIELDS,
    ChunkTable,
    Selection,
    intersect_intervals,
    merge_intervals,
)
from .version import FORMAT_NAME, FORMAT_VERSION

__all__ = [
    "ALL", "BY_ID", "BY_NAME", "CHUNKS_OBJECT", "CHUNK_FIELDS", "CHUNK_HEAD", "CHUNK_MAGIC", "COUNT_COLUMNS",
    "COUNT_INDEX_OBJECT", "COVERAGE_OBJECT", "DIR_ENTRY", "FIXED", "FIXED_COLUMNS", "FLAG_PREDICTED", "FLAG_SHUFFLED", "FORMAT_NAME",
    "FORMAT_VERSION", "INLINE_TABLE_MAX", "MAX_CHUNK_BYTES", "MAX_CHUNK_RAW_BYTES", "MAX_METADATA_BYTES",
    "METADATA_KEY", "OPTIONAL_CHUNK_FIELDS", "QUAL_COLUMN", "SEQ_COLUMN", "SLOT_HEAD", "TLEN_COLUMN", "VARIABLE",
    "VAR_COLUMNS", "ChunkReader", "ChunkTable", "CodecSpec", "Column", "EncodedChunk", "Metadata", "Selection",
    "SlotLayout", "chunk_key", "count_slot_bp", "decode_slots", "directory_nbytes", "encode_chunk", "encode_metadata", "encode_slots",
    "intersect_intervals", "merge_intervals", "record_fields", "slot_range", "tlen_prediction",
]
