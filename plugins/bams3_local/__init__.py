"""bams3 storage plugin: local disk, for plain paths and ``file://`` URLs (via obstore)."""

import os

from obstore.store import LocalStore

import bams3
from bams3.errors import DatasetError
from bams3.storage import ObstoreStore


def _path(url: str) -> str:
    if url.startswith("file://"):
        url = url[len("file://") :]
    return os.path.abspath(os.path.expanduser(url))


def open_local(url: str, create: bool = False):
    path = _path(url)
    if create:
        if os.path.exists(path) and not os.path.isdir(path):
            raise DatasetError(f"{url} exists and is not a directory")
        os.makedirs(path, exist_ok=True)
    elif not os.path.isdir(path):
        if os.path.exists(path):
            raise DatasetError(f"{url} is a file, not a bams3 dataset (convert it with `bams3 convert {url} DEST`)")
        raise DatasetError(f"no bams3 dataset at {url} (no such directory)")
    return ObstoreStore(LocalStore(path), url)


@bams3.hookimpl
def bams3_register_storage(register):
    register(bams3.StorageBackend(name="local", schemes=("file",), open=open_local,
                                  description="local disk: plain paths and file:// URLs"))
