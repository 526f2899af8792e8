"""The public surface for plugins: everything a storage backend, codec or output format
needs from bams3, in one module. Our own plugins (``bams3.builtins.*``) import only this,
as a third party's should; the rest of the package may change between releases.

    from bams3.plugin_api import Codec, hookimpl

    @hookimpl
    def bams3_register_codecs(register):
        register(Codec(name="xz", encode=..., decode=...))

- registration: :func:`hookimpl`, :class:`StorageBackend`, :class:`Codec` (and the
  :class:`RecordFields` a record-aware codec receives), :class:`OutputFormat`;
- stores: the :class:`Store` protocol (its docstring is the contract), :class:`IOCounter` for
  ``--trace``, :class:`ObstoreStore` (an adapter for any obstore store),
  :func:`check_interrupted`/:func:`interrupted` (stop promptly on Ctrl-C), :func:`redact` (the one redactor: every message a plugin raises should pass through it);
- errors to raise: :class:`StorageError` (with ``kind`` from :data:`STORAGE_KINDS` and ``key``),
  :class:`ConflictError`, :class:`TransportError` (a response that cannot be right: retried), :class:`NotADatasetError`, :class:`DatasetError`, :class:`UsageError`,
  :class:`Bams3Error`;
- records for output formats: :class:`RecordBatch` (raw BAM records back to back),
  :func:`segment_lengths` and :func:`split_columns` (the variable-length fields as columns),
  :class:`HtslibWriter` (records formatted by htslib), :func:`sam_formatter` (SAM lines by
  htslib's sam_format1 in this process), :class:`BgzfWriter`, :class:`Child`
  (a Python child process with a private temporary directory), :func:`samtools_message`
  (what samtools said when pysam raised).

The record and output helpers are imported on first use (they bring numpy and pysam), so a
storage plugin that imports only what stores need loads neither.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    STORAGE_KINDS,
    Bams3Error,
    ConflictError,
    DatasetError,
    NotADatasetError,
    StorageError,
    UsageError,
    samtools_message,
)
from .plugins import Codec, OutputFormat, RecordFields, StorageBackend, hookimpl
from .redact import redact, redact_userinfo
from .storage import IOCounter, ObstoreStore, Store, TransportError, check_interrupted, interrupted

if TYPE_CHECKING:
    from ._child import Child
    from ._pysam import HtslibWriter, SamFormatter, sam_formatter
    from .bgzf import BgzfWriter
    from .records import Header, RecordBatch, segment_lengths, split_columns

# What records and output formats need is imported on first use (``from bams3.plugin_api import
# RecordBatch`` works as ever): it brings numpy and pysam, which a store never needs, and the
# quick path opens a cloud store through this module without them.
_LATER = {"Child": "._child", "HtslibWriter": "._pysam", "SamFormatter": "._pysam", "sam_formatter": "._pysam",
          "BgzfWriter": ".bgzf", "Header": ".records", "RecordBatch": ".records", "segment_lengths": ".records",
          "split_columns": ".records"}


def __getattr__(name: str):
    module = _LATER.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module, __package__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LATER))


__all__ = [
    "STORAGE_KINDS", "Bams3Error", "BgzfWriter", "Child", "Codec", "ConflictError", "DatasetError", "Header",
    "HtslibWriter", "IOCounter", "NotADatasetError", "ObstoreStore", "OutputFormat", "RecordBatch", "RecordFields",
    "SamFormatter", "Store", "StorageBackend", "StorageError", "TransportError", "UsageError", "check_interrupted", "hookimpl", "interrupted",
    "redact", "redact_userinfo", "sam_formatter", "samtools_message", "segment_lengths", "split_columns",
]
