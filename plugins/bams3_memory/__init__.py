"""bams3 storage plugin: ``memory://NAME`` stores that live as long as the process."""

import threading

from obstore.store import MemoryStore

import bams3
from bams3.storage import ObstoreStore

_stores: dict[str, MemoryStore] = {}
_lock = threading.Lock()


def open_memory(url: str, create: bool = False):
    name = url[len("memory://") :].strip("/")
    with _lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemoryStore()
    return ObstoreStore(store, url)


@bams3.hookimpl
def bams3_register_storage(register):
    register(bams3.StorageBackend(name="memory", schemes=("memory",), open=open_memory,
                                  description="in-process memory (memory://NAME), for tests and notebooks"))
