"""``_metadata.json``: the dataset's header, chunk table, codecs and statistics, ending with
a SHA-256 of its content (docs/format.md, "_metadata.json")."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import zlib
from typing import Any

import attrs
import zstandard

from ..errors import CorruptDatasetError, DatasetError
from .table import ChunkTable
from .version import FORMAT_NAME, FORMAT_VERSION, MAX_VERSION

METADATA_KEY = "_metadata.json"
# Readers fetch at most this much of _metadata.json and refuse a larger one; writers refuse to
# write one (a header of about 5 million @SQ lines).
MAX_METADATA_BYTES = 256 << 20
_CHECKSUM_KEY = b',"checksum":"sha256:'
CHUNKS_OBJECT = "_chunks"  # the external chunk table, under the data prefix
COVERAGE_OBJECT = "_coverage"  # the binned depth, under the data prefix
INLINE_TABLE_MAX = 32 * 1024  # larger tables are stored as an object of their own, so stats stays one small read


def _external_ref(obj: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    if "object" not in obj:
        return None
    if obj["object"] != prefix + CHUNKS_OBJECT or not isinstance(obj.get("nbytes"), int) \
            or not isinstance(obj.get("crc32"), int) or not 0 < obj["nbytes"] <= 1 << 30:
        raise ValueError("bad external chunk table reference")
    int(obj["count"])
    return dict(obj)


def _coverage_ref(obj, prefix: str) -> dict[str, Any] | None:
    if obj is None:
        return None
    if not isinstance(obj, dict) or obj.get("object") != prefix + COVERAGE_OBJECT \
            or obj.get("encoding") != "i8-delta-shuffled+zstd":
        raise ValueError("bad coverage reference")
    for k in ("bin", "bins", "nbytes", "crc32"):
        if not isinstance(obj.get(k), int) or obj[k] < 0 or obj[k] > (1 << 30 if k == "nbytes" else 1 << 40):
            raise ValueError(f"bad coverage {k}")
    if obj["bin"] < 1:
        raise ValueError("bad coverage bin")
    return dict(obj)


def _package(name) -> str | None:
    """A distribution name (PEP 508), or None: the metadata cannot put anything else into
    the `pip install` hint a reader without the codec is shown."""
    if not name or name == "?":  # "?": a plugin registered at run time, not from a package
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?", name):
        raise ValueError("a codec's package is not a package name")
    return name


def encode_metadata(obj: dict[str, Any]) -> bytes:
    """``_metadata.json``'s bytes for the object: compact JSON that ends with the SHA-256 of
    everything before it (``"checksum":"sha256:<hex>"``, the last member)."""
    body = json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()
    if not body.startswith(b"{") or body == b"{}":
        raise ValueError("metadata must be a non-empty JSON object")
    content = body[:-1]  # up to the closing brace
    return content + _CHECKSUM_KEY + hashlib.sha256(content).hexdigest().encode() + b'"}\n'


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
            "stats": self.stats,
        }
        return encode_metadata(obj)

    @staticmethod
    def verify_checksum(data: bytes, where: str) -> bool:
        """Check the SHA-256 that v2 metadata ends with, before any field is used. True: it
        matches; False: there is none (v1 metadata, which has none; anything newer is refused
        once its version is read). A mismatch is an error."""
        i = data.rfind(_CHECKSUM_KEY)
        if i < 0:
            return False
        tail = data[i + len(_CHECKSUM_KEY):]
        m = re.fullmatch(rb'([0-9a-f]{64})"\}\n?', tail)
        if not m or hashlib.sha256(data[:i]).hexdigest().encode() != m.group(1):
            raise CorruptDatasetError(where, "_metadata.json does not match its checksum; it is corrupt "
                               "(or was edited by hand)")
        return True

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Metadata:
        if len(data) > MAX_METADATA_BYTES:
            raise DatasetError(f"{where}: _metadata.json is larger than {MAX_METADATA_BYTES >> 20} MiB; refusing it")
        checked = cls.verify_checksum(data, where)
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise CorruptDatasetError(where, "_metadata.json is not valid JSON (truncated or corrupt)") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
            raise DatasetError(f"{where}: _metadata.json is not bams3 metadata")
        version = obj.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise CorruptDatasetError(where, f"_metadata.json is malformed (format_version {version!r})")
        if version > MAX_VERSION:
            raise DatasetError(
                f"{where}: dataset format version {version} is newer than this bams3 reads "
                f"(up to {MAX_VERSION}); upgrade bams3"
            )
        if version >= 2 and not checked:
            raise CorruptDatasetError(where, "_metadata.json has lost its checksum; it is corrupt")
        try:
            prefix = obj["data_prefix"]
            if not isinstance(prefix, str) or not re.fullmatch(r"data/[A-Za-z0-9_-]{1,64}/", prefix):
                raise ValueError("data_prefix escapes the dataset")
            refs = tuple((str(n), int(l)) for n, l in obj["header"]["references"])
            if any(length < 0 or length >= 1 << 62 for _, length in refs):
                raise ValueError("absurd reference length")
            if len({n for n, _ in refs}) != len(refs):
                raise ValueError("a reference name appears twice")
            chunk_size = obj["chunk_size"]
            if not isinstance(chunk_size, int) or not 1 <= chunk_size <= 1 << 40:
                raise ValueError("chunk_size must be a positive integer")
            stats = obj["stats"]
            if not isinstance(stats, dict) or not isinstance(stats.get("n_records"), int) \
                    or not 0 <= stats["n_records"] < 1 << 48:
                raise ValueError("stats.n_records must be a non-negative integer")
            slot_bp = obj.get("count_slot_bp", 0)
            if not isinstance(slot_bp, int) or not 0 <= slot_bp <= chunk_size:
                raise ValueError("bad count_slot_bp")
            if version >= 2 and "head_crc" not in obj["chunks"]["fields"]:
                raise ValueError("the chunk table lacks the chunks' directory checksums")
            table = None if "object" in obj["chunks"] else ChunkTable.from_json(obj["chunks"])
            n_slots = -(-chunk_size // slot_bp) if slot_bp else 0
            if table is not None:
                table.validate(len(refs), chunk_size, n_slots, stats["n_records"], version)
            codecs = tuple(CodecSpec(str(c["name"]), c.get("level"), _package(c.get("package")))
                           for c in obj["codecs"])
            return cls(
                header_text=str(obj["header"]["text"]),
                references=refs,
                chunk_size=chunk_size,
                codecs=codecs,
                data_prefix=prefix,
                chunks=table,
                chunks_ref=_external_ref(obj["chunks"], prefix),
                coverage=_coverage_ref(obj.get("coverage"), prefix),
                stats=dict(stats),
                source=dict(obj.get("source", {})),
                created_by=str(obj.get("created_by", "?")),
                format_version=version,
                count_slot_bp=slot_bp,
            )
        except (KeyError, TypeError, ValueError, OverflowError, zstandard.ZstdError) as exc:
            raise CorruptDatasetError(where, f"_metadata.json is malformed ({exc})") from None
