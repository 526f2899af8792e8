"""``_metadata.json``: the dataset's header, chunk table, codecs and statistics, ending with
a SHA-256 of its content (docs/format.md, "_metadata.json")."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from typing import Any

import attrs
import zstandard

from ..errors import CorruptDatasetError
from ..metacheck import (  # noqa: F401 (the format's names, imported from here by the rest of bams3)
    CHECKSUM_KEY,
    CHUNKS_OBJECT,
    COVERAGE_OBJECT,
    MALFORMED,
    COUNT_INDEX_OBJECT,
    MAX_METADATA_BYTES,
    METADATA_KEY,
    count_index_covers,
    fields,
    parse,
    verify_checksum,
)
from .table import ChunkTable
from .version import FORMAT_NAME, FORMAT_VERSION

INLINE_TABLE_MAX = 32 * 1024  # larger tables are stored as an object of their own, so stats stays one small read


def encode_metadata(obj: dict[str, Any]) -> bytes:
    """``_metadata.json``'s bytes for the object: compact JSON that ends with the SHA-256 of
    everything before it (``"checksum":"sha256:<hex>"``, the last member)."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    if not body.startswith(b"{") or body == b"{}":
        raise ValueError("metadata must be a non-empty JSON object")
    content = body[:-1]  # up to the closing brace
    return content + CHECKSUM_KEY + hashlib.sha256(content).hexdigest().encode() + b'"}\n'


@attrs.frozen
class CodecSpec:
    name: str
    level: int | None = None
    package: str | None = None  # the distribution that provided the codec when the dataset was written


@attrs.frozen(eq=False)
class Metadata:
    """Everything in ``_metadata.json``."""

    header_text: str
    references: tuple[tuple[str, int], ...]
    chunk_size: int
    codecs: tuple[CodecSpec, ...]
    data_prefix: str
    chunks: ChunkTable | None  # None while an external table is not loaded (see with_chunks)
    stats: dict[str, Any]
    source: dict[str, Any]
    created_by: str
    format_version: int = FORMAT_VERSION
    count_slot_bp: int = 0  # 0: chunks have no count slots
    chunks_ref: dict[str, Any] | None = None  # the external table's description (key, size, crc32)
    coverage: dict[str, Any] | None = None  # the binned-depth object's description (coverage.py)
    # the count index's parts (docs/format.md, "The count index"); None: the dataset has none
    count_index: tuple[dict[str, Any], ...] | None = None

    @property
    def chunks_key(self) -> str:
        return self.data_prefix + CHUNKS_OBJECT

    def external_chunks(self) -> bytes | None:
        """The table as an object of its own when it is too large to inline (written before the metadata)."""
        if self.chunks is None:
            return None
        _, frame = self.chunks.encode()
        return frame if len(frame) > INLINE_TABLE_MAX else None

    def with_chunks(self, frame: bytes, where: str) -> Metadata:
        """This metadata with its external chunk table loaded from ``frame`` (the table object's
        bytes), checked against the recorded size and CRC32 and validated."""
        ref = self.chunks_ref or {}
        if len(frame) != ref.get("nbytes") or zlib.crc32(frame) != ref.get("crc32"):
            raise CorruptDatasetError(where, f"the chunk table {self.chunks_key} is corrupt (size or checksum mismatch)")
        try:
            table = ChunkTable.from_json(ref, frame)
            table.validate(len(self.references), self.chunk_size, self.n_slots, self.stats["n_records"],
                           self.format_version)
            count_index_covers(self.count_index, len(table), table.count_nbytes)
        except (KeyError, TypeError, ValueError, OverflowError, zstandard.ZstdError) as exc:
            raise CorruptDatasetError(where, f"the chunk table {self.chunks_key} is malformed ({exc})") from None
        return attrs.evolve(self, chunks=table)

    @property
    def n_slots(self) -> int:
        return -(-self.chunk_size // self.count_slot_bp) if self.count_slot_bp else 0

    def _chunks_json(self) -> dict[str, Any]:
        if self.chunks is None:
            return dict(self.chunks_ref)
        obj, frame = self.chunks.encode()
        if len(frame) > INLINE_TABLE_MAX:
            return {**obj, "object": self.chunks_key, "nbytes": len(frame), "crc32": zlib.crc32(frame)}
        return {**obj, "data": base64.b64encode(frame).decode()}

    def to_json(self) -> bytes:
        obj = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "created_by": self.created_by,
            "source": self.source,
            "header": {"text": self.header_text, "references": [list(r) for r in self.references]},
            "chunk_size": self.chunk_size,
            "count_slot_bp": self.count_slot_bp,
            "codecs": [{k: v for k, v in attrs.asdict(c).items() if v is not None or k == "level"}
                       for c in self.codecs],
            "data_prefix": self.data_prefix,
            "chunks": self._chunks_json(),
            **({"coverage": self.coverage} if self.coverage else {}),
            **({"count_index": {"parts": [dict(p) for p in self.count_index]}} if self.count_index else {}),
            "stats": self.stats,
        }
        return encode_metadata(obj)

    @staticmethod
    def verify_checksum(data: bytes, where: str) -> bool:
        return verify_checksum(data, where)

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Metadata:
        obj, version = parse(data, where)
        try:
            f = fields(obj, version)
            table = None if f["chunks_ref"] is not None else ChunkTable.from_json(f["chunks"])
            if table is not None:
                table.validate(len(f["references"]), f["chunk_size"], f["n_slots"], f["stats"]["n_records"],
                               version)
                count_index_covers(f["count_index"], len(table), table.count_nbytes)
            return cls(
                header_text=f["header_text"],
                references=f["references"],
                chunk_size=f["chunk_size"],
                codecs=tuple(CodecSpec(*c) for c in f["codecs"]),
                data_prefix=f["data_prefix"],
                chunks=table,
                chunks_ref=f["chunks_ref"],
                coverage=f["coverage"],
                count_index=None if f["count_index"] is None else tuple(f["count_index"]),
                stats=f["stats"],
                source=f["source"],
                created_by=f["created_by"],
                format_version=version,
                count_slot_bp=f["count_slot_bp"],
            )
        except (*MALFORMED, zstandard.ZstdError) as exc:
            raise CorruptDatasetError(where, f"_metadata.json is malformed ({exc})") from None
