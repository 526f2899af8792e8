"""``_metadata.json`` read and checked, with the standard library alone: its size, its SHA-256,
its version and every field a reader relies on (docs/format.md, "_metadata.json").
:meth:`bams3.format.Metadata.from_json` builds on this, and so does the quick count
(:mod:`bams3._quick`), which answers before numpy or attrs is imported."""

from __future__ import annotations

import json
import re

from .errors import CorruptDatasetError, DatasetError

try:  # CPython's own SHA-256: the same digest as hashlib's, without loading OpenSSL (~4 ms a process)
    from _sha2 import sha256  # Python >= 3.12
except ImportError:
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        from hashlib import sha256

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~5 ms) on the quick count's path
if TYPE_CHECKING:
    from typing import Any

FORMAT_NAME = "bams3"
MAX_VERSION = 3  # the newest this bams3 reads (format/version.py says what each version adds)
METADATA_KEY = "_metadata.json"
# Readers fetch at most this much of _metadata.json and refuse a larger one; writers refuse to
# write one (a header of about 5 million @SQ lines).
MAX_METADATA_BYTES = 256 << 20
CHECKSUM_KEY = b',"checksum":"sha256:'
CHUNKS_OBJECT = "_chunks"  # the external chunk table, under the data prefix
COVERAGE_OBJECT = "_coverage"  # the binned depth, under the data prefix
COUNT_INDEX_OBJECT = "_counts."  # a part of the count index, under the data prefix: "_counts.<number>"
MAX_COUNT_INDEX_PART = 1 << 30  # the largest part a reader accepts
COUNT_INDEX_SPAN = 1 << 20  # readers fetch count prefixes this close in a part of the count index as one
# (a read of up to 1 MiB, about 1.7 million records' positions of the benchmark sample: a count holds
# as many decoded at once as it has reads in flight)
# What a malformed field raises while it is read (wrapped as "_metadata.json is malformed").
MALFORMED = (KeyError, TypeError, ValueError, OverflowError)


def external_ref(obj: dict[str, Any], prefix: str) -> dict[str, Any] | None:
    if "object" not in obj:
        return None
    if obj["object"] != prefix + CHUNKS_OBJECT or not isinstance(obj.get("nbytes"), int) \
            or not isinstance(obj.get("crc32"), int) or not 0 < obj["nbytes"] <= 1 << 30:
        raise ValueError("bad external chunk table reference")
    int(obj["count"])
    return dict(obj)


def coverage_ref(obj, prefix: str) -> dict[str, Any] | None:
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


def count_index_ref(obj, prefix: str, version: int = 2) -> list[dict[str, int | str]] | None:
    """The count index's parts (docs/format.md, "The count index"), checked as far as the
    metadata alone allows: each names an object of its own under the data prefix, and they hold
    chunks 0, 1, ... in table order, each part the chunks after the part before it. That they
    hold every chunk of the table is checked once the table is read (:func:`count_index_covers`)."""
    if obj is None:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("parts"), list) or not obj["parts"]:
        raise ValueError("bad count index")
    if version < 2:  # its prefixes are checked against the table's head_crc, which v1 lacks
        raise ValueError("a count index needs format version 2 or later")
    parts, first, names = [], 0, set()
    for part in obj["parts"]:
        if not isinstance(part, dict) or not isinstance(part.get("object"), str) \
                or not re.fullmatch(re.escape(prefix + COUNT_INDEX_OBJECT) + r"[0-9]{1,20}", part["object"]) \
                or part["object"] in names:
            raise ValueError("bad count index part")
        names.add(part["object"])
        for k in ("first", "n", "nbytes", "crc32"):
            if not isinstance(part.get(k), int) or isinstance(part[k], bool) or part[k] < 0:
                raise ValueError(f"bad count index part {k}")
        if part["first"] != first or part["n"] < 1 or not 0 < part["nbytes"] <= MAX_COUNT_INDEX_PART \
                or part["crc32"] >= 1 << 32:
            raise ValueError("the count index's parts do not follow one another")
        first += part["n"]
        parts.append({k: part[k] for k in ("object", "first", "n", "nbytes", "crc32")})
    return parts


def count_index_covers(parts, n_chunks: int, count_nbytes) -> None:
    """Raises ValueError unless the count index's parts hold exactly the table's ``n_chunks``
    chunks, each part the sum of its chunks' count prefixes (``count_nbytes``, per chunk)."""
    if parts is None:
        return
    last = parts[-1]
    if last["first"] + last["n"] != n_chunks:
        raise ValueError("the count index does not hold every chunk")
    for part in parts:
        a = part["first"]
        if sum(int(count_nbytes[i]) for i in range(a, a + part["n"])) != part["nbytes"]:
            raise ValueError("a count index part's size differs from its chunks' count prefixes")


def count_index_offsets(parts, count_nbytes) -> list[int]:
    """Where each chunk's count prefix starts in its part of the count index."""
    at, o = [0] * len(count_nbytes), 0
    starts = {p["first"] for p in parts}
    for i, n in enumerate(count_nbytes):
        if i in starts:
            o = 0
        at[i] = o
        o += int(n)
    return at


def count_index_groups(parts, at: list[int], count_nbytes, indices, span: int) -> list[tuple]:
    """Chunks ``indices`` (ascending) as one read of the count index fetches them: the chunks of
    one part whose count prefixes lie within ``span`` bytes, ``(part, [indices], start, end)``;
    ``at``: :func:`count_index_offsets`."""
    from bisect import bisect_right

    firsts = [p["first"] for p in parts]
    groups: list[tuple] = []
    for i in indices:
        part = parts[bisect_right(firsts, i) - 1]
        a = at[i]
        b = a + int(count_nbytes[i])
        if groups and groups[-1][0] is part and b - groups[-1][2] <= span:
            groups[-1][1].append(i)
            groups[-1] = (part, groups[-1][1], groups[-1][2], b)
        else:
            groups.append((part, [i], a, b))
    return groups


def package_name(name) -> str | None:
    """A distribution name (PEP 508), or None: the metadata cannot put anything else into
    the `pip install` hint a reader without the codec is shown."""
    if not name or name == "?":  # "?": a plugin registered at run time, not from a package
        return None
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?", name):
        raise ValueError("a codec's package is not a package name")
    return name


def verify_checksum(data: bytes, where: str) -> bool:
    """Check the SHA-256 that v2 metadata ends with, before any field is used. True: it
    matches; False: there is none (v1 metadata, which has none; anything newer is refused
    once its version is read). A mismatch is an error."""
    i = data.rfind(CHECKSUM_KEY)
    if i < 0:
        return False
    tail = data[i + len(CHECKSUM_KEY):]
    m = re.fullmatch(rb'([0-9a-f]{64})"\}\n?', tail)
    if not m or sha256(data[:i]).hexdigest().encode() != m.group(1):
        raise CorruptDatasetError(where, "_metadata.json does not match its checksum; it is corrupt "
                           "(or was edited by hand)")
    return True


def parse(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    """The metadata's JSON object and its format version, with its size, checksum, format and
    version checked (DatasetError, CorruptDatasetError)."""
    if len(data) > MAX_METADATA_BYTES:
        raise DatasetError(f"{where}: _metadata.json is larger than {MAX_METADATA_BYTES >> 20} MiB; refusing it")
    checked = verify_checksum(data, where)
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
    return obj, version


def fields(obj: dict[str, Any], version: int) -> dict[str, Any]:
    """Every field but the chunk table's rows, checked; raises one of MALFORMED when one is not
    what a writer writes. The chunk table is ``chunks`` (its description) and ``chunks_ref``
    (None: inline)."""
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
    chunks = obj["chunks"]
    if version >= 2 and "head_crc" not in chunks["fields"]:
        raise ValueError("the chunk table lacks the chunks' directory checksums")
    codecs = tuple((str(c["name"]), c.get("level"), package_name(c.get("package"))) for c in obj["codecs"])
    return {
        "header_text": str(obj["header"]["text"]),
        "references": refs,
        "chunk_size": chunk_size,
        "codecs": codecs,
        "data_prefix": prefix,
        "chunks": chunks,
        "chunks_ref": external_ref(chunks, prefix),
        "coverage": coverage_ref(obj.get("coverage"), prefix),
        "count_index": count_index_ref(obj.get("count_index"), prefix, version),
        "stats": dict(stats),
        "source": dict(obj.get("source", {})),
        "created_by": str(obj.get("created_by", "?")),
        "format_version": version,
        "count_slot_bp": slot_bp,
        "n_slots": -(-chunk_size // slot_bp) if slot_bp else 0,
    }
