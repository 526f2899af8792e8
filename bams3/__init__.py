"""bams3: aligned sequencing reads (BAM) as a cloud-native, chunked, columnar dataset."""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    Bams3Error,
    DatasetError,
    DatasetExistsError,
    InputError,
    PluginError,
    RegionError,
    StorageError,
    UsageError,
)

# The plugin host's names load on first use (PEP 562): `bams3 --version`, and every command that
# needs no plugin, start without pluggy, attrs and importlib.metadata.
_FROM_PLUGINS = ("Codec", "OutputFormat", "RecordFields", "StorageBackend", "get_plugin_manager", "get_registry",
                 "hookimpl")


def __getattr__(name: str):
    if name in _FROM_PLUGINS:
        from . import plugins

        return getattr(plugins, name)
    raise AttributeError(f"module 'bams3' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_FROM_PLUGINS))


def open(url: str):  # noqa: A001
    """Open the bams3 dataset at ``url``: see :class:`bams3.dataset.Dataset`."""
    from .dataset import Dataset

    return Dataset.open(url)


def AlignmentFile(filepath_or_object, mode: str | None = None, **kwargs):
    """``bams3.AlignmentFile(url, "rb")``: a dataset opened as ``pysam.AlignmentFile(path, "rb")``
    opens a BAM (read only); see :mod:`bams3.pysam_api`."""
    from .pysam_api import AlignmentFile as _open

    return _open(filepath_or_object, mode, **kwargs)


def convert(src: str, dst: str, **kwargs):
    """Convert a sorted BAM/SAM/CRAM into a dataset: see :func:`bams3.converter.convert`."""
    from .converter import convert as _convert

    return _convert(src, dst, **kwargs)


def copy(src: str, dst: str, **kwargs):
    """Copy a dataset between any two stores, checked and published atomically: see
    :func:`bams3.transfer.copy`."""
    from .transfer import copy as _copy

    return _copy(src, dst, **kwargs)


__all__ = [
    "AlignmentFile",
    "Bams3Error", "Codec", "DatasetError", "DatasetExistsError", "InputError", "OutputFormat", "PluginError",
    "RecordFields", "RegionError", "StorageBackend", "StorageError", "UsageError", "convert", "copy", "get_plugin_manager",
    "get_registry", "hookimpl", "open",
]
