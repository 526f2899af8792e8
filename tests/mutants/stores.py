"""Eighteen store bugs, each a subclass of the correct DictStore. The last three are consistent
with themselves: only the kit's checks from behind the store (its ``raw`` view) catch them."""

from __future__ import annotations

import re
import time

from .reference import DictStore


class RangePastEndRaises(DictStore):
    def get_range(self, key, start, end):
        data = self._obj(key)
        if end > len(data):
            raise ValueError("range past the end")
        return data[start:end]


class RangeLosesLastByte(DictStore):
    def get_range(self, key, start, end):
        data = self._obj(key)
        return data[start : min(end, len(data) - 1) if end >= len(data) else end]


class RangesSorted(DictStore):
    def get_ranges(self, key, ranges):
        data = self._obj(key)
        return [data[a:b] for a, b in sorted(ranges)]


class EmptyRangeRefused(DictStore):
    def get_ranges(self, key, ranges):
        if any(b <= a for a, b in ranges):
            raise ValueError("invalid range")
        return super().get_ranges(key, ranges)


class ListLikeSql(DictStore):
    def list(self, prefix=""):
        pattern = re.compile(re.escape(prefix).replace("_", ".").replace("%", ".*"))
        with self._lock:
            items = [(k, len(v[0])) for k, v in self._objects.items() if pattern.match(k)]
        yield from items


class ListSkipsKeyEqualToPrefix(DictStore):
    def list(self, prefix=""):
        return ((k, n) for k, n in super().list(prefix) if k != prefix)


class ListRepeatsKeys(DictStore):
    def list(self, prefix=""):
        items = list(super().list(prefix))
        yield from items + items[-1:]


class StreamDropsPartialPiece(DictStore):
    def stream(self, key, piece=8 << 20):
        data = self._obj(key)
        for i in range(0, len(data) - len(data) % piece, piece):
            yield data[i : i + piece]


class StreamOfEmptyFails(DictStore):
    def stream(self, key, piece=8 << 20):
        if not self._obj(key):
            raise EOFError("nothing to stream")
        yield from super().stream(key, piece)


class PutNotAtomic(DictStore):
    def put(self, key, data):
        with self._lock:
            self._objects[key] = (bytes(data[: len(data) // 2]), self._version())
        time.sleep(0.001)
        super().put(key, data)


class DeleteMissingRaises(DictStore):
    def delete(self, key):
        with self._lock:
            del self._objects[key]


class MissingGetIsEmpty(DictStore):
    def get(self, key):
        with self._lock:
            return self._objects.get(key, (b"", None))[0]


class PutIfIgnoresVersion(DictStore):
    def put_if(self, key, data, *, expect):
        with self._lock:
            if expect is None and key in self._objects:
                from bams3.plugin_api import ConflictError

                raise ConflictError(key)
            version = self._version()
            self._objects[key] = (bytes(data), version)
            return version


class SizeOfMissingIsZero(DictStore):
    def size(self, key):
        head = self.head(key)
        return 0 if head is None else head["size"]


class SharedReadBuffer(DictStore):
    """Not thread-safe: one buffer shared by every reader."""

    _buf = None

    def get_range(self, key, start, end):
        SharedReadBuffer._buf = self._obj(key)
        time.sleep(0)
        buf = SharedReadBuffer._buf
        return buf[start:end]


class WritesUnderAnotherKey(DictStore):
    """Writes every object under a changed key, and reads it back from there."""

    def _k(self, key):
        return "objects/" + key

    def _obj(self, key):
        return super()._obj(self._k(key))

    def put(self, key, data):
        super().put(self._k(key), data)

    def put_if(self, key, data, *, expect):
        return super().put_if(self._k(key), data, expect=expect)

    def head(self, key):
        return super().head(self._k(key))

    def delete(self, key):
        super().delete(self._k(key))

    def list(self, prefix=""):
        for k, n in super().list(self._k(prefix)):
            yield k[len("objects/"):], n


class KeepsWritesToItself(DictStore):
    """Puts land in the store object only (a write-back cache never flushed)."""

    def __init__(self, url, objects):
        super().__init__(url, {})


class DeleteOnlyHides(DictStore):
    """A delete hides the object from this store object; it stays in storage."""

    def __init__(self, url, objects):
        super().__init__(url, objects)
        self._gone = set()

    def _obj(self, key):
        if key in self._gone:
            raise FileNotFoundError(key)
        return super()._obj(key)

    def head(self, key):
        return None if key in self._gone else super().head(key)

    def list(self, prefix=""):
        return ((k, n) for k, n in super().list(prefix) if k not in self._gone)

    def put(self, key, data):
        self._gone.discard(key)
        super().put(key, data)

    def delete(self, key):
        self._gone.add(key)


MUTANTS = [RangePastEndRaises, RangeLosesLastByte, RangesSorted, EmptyRangeRefused, ListLikeSql,
           ListSkipsKeyEqualToPrefix, ListRepeatsKeys, StreamDropsPartialPiece, StreamOfEmptyFails, PutNotAtomic,
           DeleteMissingRaises, MissingGetIsEmpty, PutIfIgnoresVersion, SizeOfMissingIsZero, SharedReadBuffer,
           WritesUnderAnotherKey, KeepsWritesToItself, DeleteOnlyHides]
