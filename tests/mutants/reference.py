"""A correct, tiny store (a dict behind a lock) and codec (zlib): what the mutants start from."""

from __future__ import annotations

import threading
import zlib

from bams3.plugin_api import ConflictError


class DictStore:
    conditional_put = True

    def __init__(self, url: str, objects: dict):
        self.url = url
        self._objects = objects  # key -> (bytes, version)
        self._lock = threading.Lock()
        self._n = 0

    def _obj(self, key):
        with self._lock:
            if key not in self._objects:
                raise FileNotFoundError(key)
            return self._objects[key][0]

    def get(self, key):
        return self._obj(key)

    def get_range(self, key, start, end):
        return self._obj(key)[start:end]

    def get_ranges(self, key, ranges):
        data = self._obj(key)
        return [data[a:b] for a, b in ranges]

    def stream(self, key, piece=8 << 20):
        data = self._obj(key)
        for i in range(0, len(data), piece):
            yield data[i : i + piece]

    def _version(self):
        self._n += 1
        return str(self._n)

    def put(self, key, data):
        with self._lock:
            self._objects[key] = (bytes(data), self._version())

    def put_if(self, key, data, *, expect):
        with self._lock:
            now = self._objects.get(key)
            if (now is None) != (expect is None) or (now is not None and now[1] != expect):
                raise ConflictError(f"{key} changed")
            version = self._version()
            self._objects[key] = (bytes(data), version)
            return version

    def head(self, key):
        with self._lock:
            now = self._objects.get(key)
            return None if now is None else {"size": len(now[0]), "version": now[1]}

    def list(self, prefix=""):
        with self._lock:
            items = [(k, len(v[0])) for k, v in self._objects.items() if k.startswith(prefix)]
        yield from items

    def delete(self, key):
        with self._lock:
            self._objects.pop(key, None)

    def size(self, key):
        head = self.head(key)
        return None if head is None else head["size"]


def zlib_encode(data, level=None, **_):
    return zlib.compress(bytes(data), 6 if level is None else level)


def zlib_decode(data, raw_size, **_):
    return zlib.decompressobj().decompress(bytes(data), raw_size)
