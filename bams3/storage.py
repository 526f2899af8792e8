"""The storage interface: a few byte operations on keys under a dataset prefix.

Designed for object stores: whole-object get, ranged get, atomic put, list by
prefix, delete. No seek, no rename, no append. Backends are plugins chosen by
URL scheme; a plain path is ``file``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

import attrs

from .errors import ConflictError, StorageError, UsageError
from .plugins import get_registry, plugin_code
from .redact import redact, redact_userinfo  # noqa: F401 (the redactor, where stores have always found it)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def url_scheme(url: str) -> str:
    """The URL's scheme; ``file`` for a plain path."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else "file"


def local_path(url: str) -> str | None:
    """The filesystem path a plain path or ``file://`` URL names (as the local store reads it);
    None for any other scheme."""
    if url_scheme(url) != "file":
        return None
    m = _SCHEME.match(url)
    return url[m.end():] if m else url


@runtime_checkable
class Store(Protocol):
    """Keys are ``/``-separated relative paths under the store's root. As on a file
    system, a key is never also a "directory" of other keys (bams3 never writes both
    ``a`` and ``a/b``); ``list`` matches any string prefix, as object stores do.
    ``conditional_put`` says whether ``put_if`` is offered.

    Optional, asked for with ``getattr``: ``read_only`` (True: every write fails with
    ``StorageError(kind="read-only")``), ``list_dirs(prefix)`` (the names directly under a
    prefix, for ``bams3 ls`` and cohorts over a prefix) and ``counter`` (an
    :class:`IOCounter` of the store's own requests, retries included, for ``--trace``; a
    store without one is counted call by call).

    Errors: ``FileNotFoundError`` for a missing object (``get``, ``get_range``, ``stream``),
    :class:`bams3.errors.StorageError` with a ``kind`` for anything the user must act on; a
    store never puts credentials in a message."""

    url: str
    conditional_put: bool

    def get(self, key: str) -> bytes:
        """The whole object; ``FileNotFoundError`` when it does not exist."""

    def get_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the object; a range that runs past the end gives the bytes
        that are there (bams3 reads objects up to their recorded size plus one byte)."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Several ``[start, end)`` ranges of one object, in the order asked (overlapping and
        empty ranges included: an empty range is ``b""``); past the end as ``get_range``."""

    def stream(self, key: str) -> Iterator[bytes]:
        """The whole object as a stream of pieces (bounded memory, in order)."""

    def put(self, key: str, data: bytes) -> None:
        """Write the object atomically: readers see the old object or the new one."""

    def put_if(self, key: str, data: bytes, *, expect: str | None) -> str:
        """Optional (stores that set ``conditional_put = True``): write only if the object does
        not exist (``expect=None``) or its version is still ``expect``; return the new version.
        :class:`bams3.errors.ConflictError` otherwise. bams3 publishes ``_metadata.json`` this
        way, so that of two conversions to one destination exactly one publishes."""

    def head(self, key: str) -> dict | None:
        """``{"size": int, "version": str | None}`` of the object, or ``None`` when it does not exist."""

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """``(key, size)`` of every object whose key starts with ``prefix``."""

    def delete(self, key: str) -> None:
        """Remove the object; a missing key is not an error."""

    def size(self, key: str) -> int | None:
        """The object's size, or ``None`` when it does not exist."""


@attrs.define
class IOCounter:
    """Requests and bytes moved through a store (for --trace and tests). Failed requests
    are counted and logged too, with what went wrong."""

    requests: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    failed: int = 0
    log: list = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def add(self, method: str, key: str, nbytes_in: int = 0, nbytes_out: int = 0, rng=None, seconds=0.0,
            error: str | None = None):
        with self.lock:
            self.requests += 1
            self.bytes_in += nbytes_in
            self.bytes_out += nbytes_out
            self.failed += error is not None
            self.log.append((method, key, rng, nbytes_in or nbytes_out, seconds, error))

    @contextlib.contextmanager
    def request(self, method: str, key: str, rng=None):
        """Count one request made in the block; the block sets ``moved["in"]``/``moved["out"]``
        to the bytes moved. A request that raises is logged as failed, with why."""
        moved = {"in": 0, "out": 0}
        t = time.perf_counter()
        try:
            yield moved
        except BaseException as exc:
            if isinstance(exc, (GeneratorExit, FileNotFoundError)):  # a reader stopping early; a missing key
                error = None
            elif isinstance(exc, (KeyboardInterrupt, SystemExit)):
                error = "interrupted"
            else:
                error = error_summary(exc)
            self.add(method, key, moved["in"], moved["out"], rng, time.perf_counter() - t, error=error)
            raise
        self.add(method, key, moved["in"], moved["out"], rng, time.perf_counter() - t)


def error_summary(exc: BaseException) -> str:
    """A short, one-line description of why a request failed (for --trace)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


class ObstoreStore:
    """A :class:`Store` over any obstore store (memory, S3, GCS, Azure, HTTP). ``prefix``: the
    dataset's key prefix within ``store`` (``a/b``), put before every key here, so that one
    store (and its client's connections) serves many datasets of one bucket."""

    conditional_put = True

    def __init__(self, store, url: str, prefix: str = ""):
        import obstore

        self._obs = obstore
        self._store = store
        self._prefix = f"{prefix}/" if prefix else ""
        self.url = url
        self.counter = IOCounter()

    def _path(self, key: str) -> str:
        """``key``'s path in the underlying store."""
        return self._prefix + key

    def get(self, key: str) -> bytes:
        with self.counter.request("GET", key) as moved:
            data = bytes(self._obs.get(self._store, self._path(key)).bytes())
            moved["in"] = len(data)
        return data

    def get_range(self, key: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        with self.counter.request("GET", key, rng=(start, end)) as moved:
            data = bytes(self._obs.get_range(self._store, self._path(key), start=start, end=end))
            moved["in"] = len(data)
            if len(data) > end - start:  # more than was asked: a transport fault (retried by stores that retry)
                raise TransportError(f"the server sent {len(data):,} bytes of {key} for a range of {end - start:,}")
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        asked = [(a, b) for a, b in ranges if b > a]  # an empty range is b"", without asking (servers refuse it)
        if not asked:
            return [b""] * len(ranges)
        with self.counter.request("GET", key, rng=tuple(asked)) as moved:
            out = self._obs.get_ranges(
                self._store, self._path(key), starts=[a for a, _ in asked], ends=[b for _, b in asked], coalesce=0
            )
            datas = [bytes(x) for x in out]
            moved["in"] = sum(map(len, datas))
            if any(len(d) > b - a for d, (a, b) in zip(datas, asked)):
                raise TransportError(f"the server sent more bytes of {key} than the ranges asked for")
        got = iter(datas)
        return [next(got) if b > a else b"" for a, b in ranges]

    def stream(self, key: str, piece: int = 8 << 20) -> Iterator[bytes]:
        with self.counter.request("GET", key) as moved:
            for b in self._obs.get(self._store, self._path(key)).stream(min_chunk_size=piece):
                b = bytes(b)
                moved["in"] += len(b)
                yield b

    def put(self, key: str, data: bytes) -> None:
        with self.counter.request("PUT", key) as moved:
            # one request at a time per put (multipart for large objects): --workers bounds uploads
            self._obs.put(self._store, self._path(key), data, max_concurrency=1)
            moved["out"] = len(data)

    def put_if(self, key: str, data: bytes, *, expect: str | None) -> str:
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        with self.counter.request("PUT", key) as moved:
            mode = "create" if expect is None else {"e_tag": expect}
            try:
                result = self._obs.put(self._store, self._path(key), data, mode=mode)
            except AlreadyExistsError:
                raise ConflictError(f"{key} exists already") from None
            except PreconditionError:
                raise ConflictError(f"{key} has changed") from None
            moved["out"] = len(data)
        return result["e_tag"]

    def head(self, key: str) -> dict | None:
        with self.counter.request("HEAD", key):
            try:
                meta = self._obs.head(self._store, self._path(key))
            except FileNotFoundError:
                return None
        return {"size": meta["size"], "version": meta["e_tag"]}

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        # Object stores match any string prefix, a file system whole path segments: list the
        # segment that holds the prefix and filter, so both behave alike.
        base = prefix.rsplit("/", 1)[0] + "/" if "/" in prefix else ""
        cut = len(self._prefix)
        with self.counter.request("LIST", prefix):
            found = [(meta["path"][cut:], meta["size"])
                     for batch in self._obs.list(self._store, self._path(base) or None)
                     for meta in batch if meta["path"].startswith(self._path(prefix))]
        yield from found

    def list_dirs(self, prefix: str = "") -> list[str]:
        """The "directories" directly under ``prefix`` (one delimited LIST, not every key)."""
        with self.counter.request("LIST", prefix):
            res = self._obs.list_with_delimiter(self._store, self._path(prefix) or None)
        return [p[len(self._prefix):].rstrip("/") + "/" for p in res["common_prefixes"]]

    def delete(self, key: str) -> None:
        with self.counter.request("DELETE", key):
            try:
                self._obs.delete(self._store, self._path(key))
            except FileNotFoundError:
                pass

    def size(self, key: str) -> int | None:
        meta = self.head(key)
        return None if meta is None else meta["size"]


class TransportError(StorageError):
    """A response that cannot be right (longer than what was asked): a transport fault, which
    stores that retry treat like a dropped connection."""


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
            "bytes_out": sum(c.bytes_out for c in counters), "failed": sum(c.failed for c in counters)}


def trace_lines() -> list[str]:
    """One line per request (method, object, range, bytes, time) and a total."""
    lines = []
    for store in _traced or []:
        with store.counter.lock:
            log = list(store.counter.log)
        for method, key, rng, nbytes, seconds, error in log:
            where = f"{store.url.rstrip('/')}/{key}" if key else store.url
            if rng and isinstance(rng[0], tuple):
                span = " ranges=" + ",".join(f"{a}-{b - 1}" for a, b in rng)
            elif rng:
                span = f" range={rng[0]}-{rng[1] - 1}"
            else:
                span = ""
            status = f" FAILED ({error})" if error else ""
            lines.append(f"trace: {method} {where}{span} {nbytes:,} B {seconds * 1000:.1f} ms{status}")
    t = trace_totals()
    if t is not None:
        failed = f", {t['failed']} failed" if t["failed"] else ""
        lines.append(f"trace: total {t['requests']} requests, {t['bytes_in']:,} B in, {t['bytes_out']:,} B out"
                     f"{failed}")
    return lines


def refuse_query(url: str) -> None:
    """Object URLs name objects by path: a query string (a presigned URL's signature) is
    refused in one line rather than sent on as part of a key (which would be "not found")."""
    if url_scheme(url) in ("http", "https") and "?" in url:  # an s3:// key may hold a '?'; a URL's query is not a key
        raise UsageError(f"{redact_query(url)}: URLs with a query string (presigned URLs) are not supported; "
                         "use s3://bucket/key with credentials, or --no-sign-request for a public bucket")


# Set when the run is interrupted (Ctrl-C, SIGTERM): a store stops retrying, and work running
# on other threads (cohort samples, uploads) stops at its next request or attempt.
interrupted = threading.Event()


class Interrupted(Exception):
    """Storage work stopped because the run was interrupted."""


def check_interrupted() -> None:
    if interrupted.is_set():
        raise Interrupted()


def redact_query(url: str) -> str:
    return url.split("?", 1)[0] + "?…" if "?" in url else url


class TracedStore:
    """A store that keeps no request counter of its own (a third party's), as ``--trace`` sees
    it: each call is one request, counted with the bytes it moved and any failure. Everything
    else (``conditional_put``, ``list_dirs``, ...) is the store's own."""

    def __init__(self, inner):
        self._inner = inner
        self.url = inner.url
        self.counter = IOCounter()

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def _call(self, method: str, key: str, fn, *args, rng=None, out: int = 0, **kwargs):
        with self.counter.request(method, key, rng=rng) as moved:
            result = fn(*args, **kwargs)
            moved["out"] = out
            if isinstance(result, (bytes, bytearray, memoryview)):
                moved["in"] = len(result)
            elif isinstance(result, list) and all(isinstance(r, (bytes, bytearray)) for r in result):
                moved["in"] = sum(map(len, result))
        return result

    def get(self, key):
        return self._call("GET", key, self._inner.get, key)

    def get_range(self, key, start, end):
        return self._call("GET", key, self._inner.get_range, key, start, end, rng=(start, end))

    def get_ranges(self, key, ranges):
        return self._call("GET", key, self._inner.get_ranges, key, ranges, rng=tuple(ranges))

    def stream(self, key, *args, **kwargs):
        with self.counter.request("GET", key) as moved:
            for piece in self._inner.stream(key, *args, **kwargs):
                moved["in"] += len(piece)
                yield piece

    def put(self, key, data):
        return self._call("PUT", key, self._inner.put, key, data, out=len(data))

    def put_if(self, key, data, *, expect):
        return self._call("PUT", key, self._inner.put_if, key, data, expect=expect, out=len(data))

    def head(self, key):
        return self._call("HEAD", key, self._inner.head, key)

    def size(self, key):
        return self._call("HEAD", key, self._inner.size, key)

    def list(self, prefix=""):
        return iter(self._call("LIST", prefix, lambda: list(self._inner.list(prefix))))

    def delete(self, key):
        return self._call("DELETE", key, self._inner.delete, key)


class GuardedStore:
    """An outside plugin's store, whose failures other than those the Store contract names
    (FileNotFoundError, bams3 errors) name the plugin and its package (:func:`plugin_code`)."""

    _METHODS = ("get", "get_range", "get_ranges", "put", "put_if", "head", "size", "delete", "list_dirs")

    def __init__(self, inner, provider):
        self._inner, self._provider = inner, provider
        self.url = inner.url

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if name not in self._METHODS or not callable(value):
            return value

        def call(*args, **kwargs):
            with plugin_code(self._provider, f"{name} {args[0] if args else ''}".strip()):
                return value(*args, **kwargs)

        return call

    def list(self, prefix=""):
        with plugin_code(self._provider, f"list {prefix}".strip()):
            return iter(list(self._inner.list(prefix)))

    def stream(self, key, *args, **kwargs):
        with plugin_code(self._provider, f"stream {key}"):
            yield from self._inner.stream(key, *args, **kwargs)


_STORE_OPTIONS: dict = {}


def set_store_options(**options) -> None:
    """Options every store opened from now on is given, when its backend takes them
    (:attr:`bams3.StorageBackend.options`): the command line's ``--endpoint-url``
    (``endpoint_url``) and ``--no-sign-request`` (``no_sign_request``). Nothing is written to
    the environment."""
    _STORE_OPTIONS.update({k: v for k, v in options.items() if v is not None})


def store_options() -> dict:
    """The options set with :func:`set_store_options`."""
    return dict(_STORE_OPTIONS)


class WithStoreOptions:
    """``fn`` with these store options set first, wherever it runs (a Dask worker process)."""

    def __init__(self, fn, options: dict):
        self.fn, self.options = fn, dict(options)

    def __call__(self, *args, **kwargs):
        set_store_options(**self.options)
        return self.fn(*args, **kwargs)


# Reads the quick path (bams3/_quick.py) made of a dataset before it stepped aside, by URL, then
# (key, start, end): the bytes, or None where the object was not there. The store open_store
# opens next for that URL answers each of them once from here, so the full command, which
# runs after it, never asks the server for the same bytes again.
_handed_over: dict[str, dict[tuple[str, int, int], bytes | None]] = {}


def hand_over(url: str, key: str, start: int, end: int, data: bytes | None) -> None:
    """Record a read of ``url``'s store (``data`` None: the object was not there) for the
    store :func:`open_store` opens next at ``url``."""
    _handed_over.setdefault(url, {})[(key, start, end)] = data


def drop_handed_over(url: str) -> None:
    """Forget the reads handed over for ``url`` (nothing will open it after them)."""
    _handed_over.pop(url, None)


class HandedOverStore:
    """A store that answers the reads handed over to it (:func:`hand_over`) once each, without
    a request, and passes everything else to the store it wraps."""

    def __init__(self, inner, reads: dict[tuple[str, int, int], bytes | None]):
        self._inner = inner
        self._reads = reads
        self.url = inner.url

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def get_range(self, key: str, start: int, end: int) -> bytes:
        got = self._reads.pop((key, start, end), _NOT_HANDED)
        if got is _NOT_HANDED:
            return self._inner.get_range(key, start, end)
        if got is None:
            raise FileNotFoundError(key)
        return got


_NOT_HANDED = object()


def open_store(url: str, *, create: bool = False) -> Store:
    """The store rooted at ``url``, from the plugin serving its scheme. Under ``--trace``, every
    store's requests are recorded: its own counter's, or a TracedStore's around it."""
    refuse_query(url)
    scheme = url_scheme(url)
    reg = get_registry(storage=scheme)
    backend = reg.storage_for(scheme)
    provider = reg.provider("storage", scheme)
    options = {k: v for k, v in _STORE_OPTIONS.items() if k in backend.options}
    try:
        with plugin_code(provider, f"opening {redact(url)}"):
            store = backend.open(url, create=create, **options)
        if provider.package != "bams3":
            store = GuardedStore(store, provider)
        if url in _handed_over:
            store = HandedOverStore(store, _handed_over.pop(url))
        if _traced is not None:
            if not isinstance(getattr(store, "counter", None), IOCounter):
                store = TracedStore(store)
            _traced.append(store)
        return store
    except (StorageError, FileNotFoundError):
        raise
    except OSError as exc:
        raise StorageError(f"cannot open {url}: {exc.strerror or exc}") from None
