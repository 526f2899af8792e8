"""Copy a dataset between any two stores (``bams3 cp``), published as a conversion is.

Every object the source's metadata names is fetched, checked against the checksums the
dataset records (each chunk's size, header, columns and count slots; the chunk table's and
the binned depth's size and CRC32), and written under a fresh run prefix at the
destination, several at once. ``_metadata.json`` is written last, with the same conditional
write as a conversion: a copy that fails or is interrupted publishes nothing and removes
only its own run, and the destination rules are a conversion's (``bams3.destination``):
a destination holding anything of the user's and no dataset is refused, ``--force``
replaces only a bams3 dataset. ``aws s3 sync`` gives none of this: it may publish the
metadata before the chunks, and copies whatever bytes it finds.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable

import attrs

from . import destination
from ._threads import ordered_map
from .converter import _delete_prefix, _Publish, new_run, remove_replaced, removed_on_failure
from .errors import CorruptDatasetError, DatasetError
from .format import CHUNKS_OBJECT, COVERAGE_OBJECT, METADATA_KEY, Metadata, chunk_key, encode_metadata
from .storage import open_store, redact_userinfo


@attrs.frozen
class CopyResult:
    source: str
    dest: str
    objects: int
    bytes: int
    records: int


def copy(src: str, dst: str, *, force: bool = False, workers: int = 8,
         progress: Callable[[int, int], None] | None = None) -> CopyResult:
    """Copy the dataset at ``src`` to ``dst`` (any two stores), checked object by object and
    published atomically; see the module docstring."""
    from .dataset import Dataset

    ds = Dataset.open(src, workers=workers)
    with removed_on_failure(dst):
        return _copy(ds, src, dst, force, workers, progress)


def _copy(ds, src, dst, force, workers, progress) -> CopyResult:
    m = ds.meta
    table = ds.chunks  # fetched and validated (when an object of its own) before anything is written
    ds.codecs  # every codec it needs is installed, before anything is written
    store = open_store(dst, create=True)
    found = destination.inspect(store, dst, force)
    prefix = new_run(store, redact_userinfo(src))
    publish = _Publish()
    try:
        n = len(table)
        moved = 0

        def one(i: int) -> int:
            key = chunk_key(m.data_prefix, table.object_of(i))
            try:
                blob = ds.store.get_range(key, 0, int(table.nbytes[i]) + 1)  # the recorded size, capped
            except FileNotFoundError:
                raise CorruptDatasetError(src, f"chunk {key} is missing; the dataset is corrupt (`bams3 verify`)") from None
            try:
                ds.source.check(blob, i)
            except CorruptDatasetError as exc:
                raise CorruptDatasetError(f"{src}/{key}", f"{exc.reason}; nothing was published (`bams3 verify` "
                                          "lists what is damaged)") from None
            store.put(chunk_key(prefix, table.object_of(i)), blob)
            return len(blob)

        for done, size in enumerate(ordered_map(one, range(n), workers, writes=True), 1):
            moved += size
            if progress:
                progress(done, n)
        extra = 0
        for ref in (m.coverage, m.chunks_ref if "object" in (m.chunks_ref or {}) else None, *(m.count_index or ())):
            if ref is None:
                continue
            key = ref["object"]
            try:
                blob = ds.store.get_range(key, 0, int(ref["nbytes"]) + 1)
            except FileNotFoundError:
                raise CorruptDatasetError(src, f"{key} is missing; the dataset is corrupt (`bams3 verify`)") from None
            if len(blob) != ref["nbytes"] or zlib.crc32(blob) != ref["crc32"]:
                raise CorruptDatasetError(f"{src}/{key}", "size or checksum mismatch; nothing was published")
            store.put(prefix + key[len(m.data_prefix):], blob)
            moved += len(blob)
            extra += 1
        body = _new_metadata(ds, prefix)
        publish(store, dst, body, found.version)
    except BaseException:
        if publish.may_remove_chunks:
            _delete_prefix(store, prefix)
        raise
    remove_replaced(store, dst, found, prefix)
    return CopyResult(src, dst, n + extra + 1, moved + len(body), int(m.stats.get("n_records", 0)))


def _new_metadata(ds, prefix: str) -> bytes:
    """The source's _metadata.json with the data prefix (and the objects named under it) moved to
    ``prefix``; every other member as it was. Read again and checked against the metadata the copy
    was made from: a source replaced meanwhile is refused."""
    from .dataset import _read_metadata

    m = ds.meta
    raw = _read_metadata(ds.store, ds.url)
    Metadata.verify_checksum(raw, ds.url)
    obj = json.loads(raw)
    if obj.get("data_prefix") != m.data_prefix:
        raise DatasetError(f"{ds.url} was replaced while it was being copied; nothing was published (copy it again)")
    obj.pop("checksum", None)
    obj["data_prefix"] = prefix
    if isinstance(obj.get("coverage"), dict):
        obj["coverage"]["object"] = prefix + COVERAGE_OBJECT
    if "object" in obj["chunks"]:
        obj["chunks"]["object"] = prefix + CHUNKS_OBJECT
    for part in (obj.get("count_index") or {}).get("parts", ()):
        part["object"] = prefix + part["object"][len(m.data_prefix):]
    body = encode_metadata(obj)
    Metadata.from_json(body, METADATA_KEY)  # what readers will check, checked before it is published
    return body
