"""bams3 storage plugin: ``memory://NAME`` stores that live as long as the process."""

import threading

from obstore.store import MemoryStore

from bams3.plugin_api import ObstoreStore, StorageBackend, hookimpl

_stores: dict[str, MemoryStore] = {}
_lock = threading.Lock()


def open_memory(url: str, create: bool = False):
    name = url[len("memory://") :].strip("/")
    with _lock:
        store = _stores.get(name)
        if store is None:
            store = _stores[name] = MemoryStore()
    return ObstoreStore(store, url)


@hookimpl
def bams3_register_storage(register):
    register(StorageBackend(name="memory", schemes=("memory",), open=open_memory,
                                  description="in-process memory (memory://NAME), for tests and notebooks"))
