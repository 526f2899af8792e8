"""The storage interface: a few byte operations on keys under a dataset prefix.

Designed for object stores: whole-object get, ranged get, atomic put, list by
prefix, delete. No seek, no rename, no append. Backends are plugins chosen by
URL scheme; a plain path is ``file``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import attrs

from .errors import StorageError, UsageError
from .plugins import get_registry

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_scheme(url: str) -> str:
    """The URL's scheme; ``file`` for a plain path."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else "file"


@runtime_checkable
class Store(Protocol):
    """Keys are ``/``-separated relative paths under the store's root. As on a file
    system, a key is never also a "directory" of other keys (bams3 never writes both
    ``a`` and ``a/b``); ``list`` matches any string prefix, as object stores do."""

    url: str

    def get(self, key: str) -> bytes:
        """The whole object; ``FileNotFoundError`` when it does not exist."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ``[start, end)`` ranges of one object, in order."""

    def stream(self, key: str) -> Iterator[bytes]:
        """The whole object as a stream of pieces (bounded memory, in order)."""

    def put(self, key: str, data: bytes) -> None:
        """Write the object atomically: readers see the old object or the new one."""

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object whose key starts with ``prefix``."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    def size(self, key: str) -> int | None:
        """The object's size, or ``None`` when it does not exist."""


@attrs.define
class IOCounter:
    """Requests and bytes moved through a store (for --trace and tests)."""

    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    log: list = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, method: str, key: str, nbytes_in: int = 0, nbytes_out: int = 0, rng=None, seconds=0.0):
        with self.lock:
            self.requests += 1
            self.bytes_in += nbytes_in
            self.bytes_out += nbytes_out
            self.log.append((method, key, rng, nbytes_in or nbytes_out, seconds))


class ObstoreStore:
    """A :class:`Store` over any obstore store (local, memory, S3, GCS, Azure, HTTP)."""

    def __init__(self, store, url: str):
        import obstore

        self._obs = obstore
        self._store = store
        self.url = url
        self.counter = IOCounter()

    def get(self, key: str) -> bytes:
        t = time.perf_counter()
        data = bytes(self._obs.get(self._store, key).bytes())
        self.counter.add("GET", key, nbytes_in=len(data), seconds=time.perf_counter() - t)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        t = time.perf_counter()
        data = bytes(self._obs.get_range(self._store, key, start=start, end=end))
        self.counter.add("GET", key, nbytes_in=len(data), rng=(start, end), seconds=time.perf_counter() - t)
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        if not ranges:
            return []
        t = time.perf_counter()
        out = self._obs.get_ranges(
            self._store, key, starts=[a for a, _ in ranges], ends=[b for _, b in ranges], coalesce=0
        )
        datas = [bytes(x) for x in out]
        self.counter.add(
            "GET", key, nbytes_in=sum(map(len, datas)), rng=tuple(ranges), seconds=time.perf_counter() - t
        )
        return datas

    def stream(self, key: str, piece: int = 8 << 20) -> Iterator[bytes]:
        t = time.perf_counter()
        n = 0
        try:
            for b in self._obs.get(self._store, key).stream(min_chunk_size=piece):
                b = bytes(b)
                n += len(b)
                yield b
        finally:
            self.counter.add("GET", key, nbytes_in=n, seconds=time.perf_counter() - t)

    def put(self, key: str, data: bytes) -> None:
        t = time.perf_counter()
        # one request at a time per put (multipart for large objects): --workers bounds uploads
        self._obs.put(self._store, key, data, max_concurrency=1)
        self.counter.add("PUT", key, nbytes_out=len(data), seconds=time.perf_counter() - t)

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        self.counter.add("LIST", prefix)
        # Object stores match any string prefix, a file system whole path segments: list the
        # segment that holds the prefix and filter, so both behave alike.
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        for batch in self._obs.list(self._store, base or None):
            for meta in batch:
                if meta["path"].startswith(prefix):
                    yield meta["path"], meta["size"]

    def list_dirs(self, prefix: str = "") -> list[str]:
        """The "directories" directly under ``prefix`` (one delimited LIST, not every key)."""
        self.counter.add("LIST", prefix)
        res = self._obs.list_with_delimiter(self._store, prefix or None)
        return [p.rstrip("/") + "/" for p in res["common_prefixes"]]

    def delete(self, key: str) -> None:
        self.counter.add("DELETE", key)
        try:
            self._obs.delete(self._store, key)
        except FileNotFoundError:
            pass

    def size(self, key: str) -> int | None:
        self.counter.add("HEAD", key)
        try:
            return self._obs.head(self._store, key)["size"]
        except FileNotFoundError:
            return None


_traced: list | None = None  # stores opened while tracing (--trace)


def start_trace() -> None:
    """Record every store opened from now on, to report its requests (``--trace``)."""
    global _traced
    _traced = []


def trace_totals() -> dict | None:
    """Requests and bytes of the traced stores, or None when not tracing."""
    if _traced is None:
        return None
    counters = [s.counter for s in _traced]
    return {"requests": sum(c.requests for c in counters), "bytes_in": sum(c.bytes_in for c in counters),
            "bytes_out": sum(c.bytes_out for c in counters)}


def trace_lines() -> list[str]:
    """One line per request (method, object, range, bytes, time) and a total."""
    lines = []
    for store in _traced or []:
        with store.counter.lock:
            log = list(store.counter.log)
        for method, key, rng, nbytes, seconds in log:
            where = f"{store.url.rstrip('/')}/{key}" if key else store.url
            if rng and isinstance(rng[0], tuple):
                span = " ranges=" + ",".join(f"{a}-{b - 1}" for a, b in rng)
            elif rng:
                span = f" range={rng[0]}-{rng[1] - 1}"
            else:
                span = ""
            lines.append(f"trace: {method} {where}{span} {nbytes:,} B {seconds * 1000:.1f} ms")
    t = trace_totals()
    if t is not None:
        lines.append(f"trace: total {t['requests']} requests, {t['bytes_in']:,} B in, {t['bytes_out']:,} B out")
    return lines


def refuse_query(url: str) -> None:
    """Object URLs name objects by path: a query string (a presigned URL's signature) is
    refused in one line rather than sent on as part of a key (which would be "not found")."""
    if url_scheme(url) in ("http", "https") and "?" in url:  # an s3:// key may hold a '?'; a URL's query is not a key
        raise UsageError(f"{redact_query(url)}: URLs with a query string (presigned URLs) are not supported; "
                         "use s3://bucket/key with credentials, or --no-sign-request for a public bucket")


def redact_query(url: str) -> str:
    return url.split("?", 1)[0] + "?…" if "?" in url else url


def open_store(url: str, *, create: bool = False) -> Store:
    """The store rooted at ``url``, from the plugin serving its scheme."""
    refuse_query(url)
    backend = get_registry().storage_for(url_scheme(url))
    try:
        store = backend.open(url, create=create)
        if _traced is not None and hasattr(store, "counter"):
            _traced.append(store)
        return store
    except (StorageError, FileNotFoundError):
        raise
    except OSError as exc:
        raise StorageError(f"cannot open {url}: {exc.strerror or exc}") from None
