"""Six codec bugs, each a pair of functions replacing the correct zlib codec's."""

from __future__ import annotations

import threading
import zlib

from .reference import zlib_decode, zlib_encode


def _drops_last_byte_above_64k(data, raw_size, **kw):
    out = zlib_decode(data, raw_size, **kw)
    return out[:-1] if raw_size > 65536 else out


def _truncates_at_1mib(data, raw_size, **kw):
    return zlib_decode(data, raw_size, **kw)[: 1 << 20]


_shared = {"buf": b""}


def _shared_state_encode(data, level=None, **kw):
    _shared["buf"] = bytes(data)  # a module-level buffer: two threads overwrite each other's input
    for _ in range(3):
        threading.Event().wait(0.0005)
    return zlib.compress(_shared["buf"])


def _unbounded_decode(data, raw_size, **kw):
    return zlib.decompress(bytes(data))  # no bound: damaged input may decode to more than raw_size


def _identity_encode(data, level=None, **kw):
    return bytes(data)


def _identity_decode(data, raw_size, **kw):
    return bytes(data)[:raw_size]


def _pads_odd_sizes(data, level=None, **kw):
    data = bytes(data)
    return zlib_encode(data + b"\0" * (len(data) % 2), level)


def _returns_padded(data, raw_size, **kw):
    d = zlib.decompressobj()
    out = d.decompress(bytes(data))
    return out if len(out) <= raw_size + 1 else out[:raw_size]


MUTANTS = {
    "drops-last-byte-above-64k": (zlib_encode, _drops_last_byte_above_64k),
    "truncates-at-1mib": (zlib_encode, _truncates_at_1mib),
    "shared-state-between-threads": (_shared_state_encode, zlib_decode),
    "unbounded-decode": (zlib_encode, _unbounded_decode),
    "no-compression": (_identity_encode, _identity_decode),
    "pads-odd-sizes": (_pads_odd_sizes, _returns_padded),
}
