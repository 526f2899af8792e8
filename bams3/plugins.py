"""The plugin host: what can be registered, and the registry built from the plugins.

Nothing is loaded at import time. ``get_registry()`` builds (once, cached) a
pluggy manager, registers our own plugins (modules of the package,
``bams3.builtins.*``, as llm and datasette do) and every plugin advertised in
the ``bams3`` entry-point group by outside packages, and collects what each
registers through the ``register`` callbacks. Ours use only
:mod:`bams3.plugin_api`, as a third party's do.

``get_registry(storage=..., codecs=..., formats=...)`` names what the caller needs: when
bams3's own plugins serve all of it, the registry holds just those plugins, and the installed
packages' entry points are not scanned (a count on a local or S3 dataset starts ~20 ms
sooner). An outside plugin cannot take a scheme, codec or format name of ours (that is an
error, which ``bams3 plugins`` and every other verb report), so the answer is the same.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pluggy

from . import hookspecs
from .errors import Bams3Error, PluginError

ENTRY_POINT_GROUP = "bams3"
hookimpl = pluggy.HookimplMarker("bams3")


@attrs.frozen
class StorageBackend:
    """A storage backend: serves URLs of the given schemes.

    ``open(url, create)`` returns a :class:`bams3.storage.Store` rooted at the
    URL (a dataset prefix). ``create=True`` is passed when the caller will write.
    ``options`` names the store options the backend takes as keyword arguments of
    ``open`` when they are given (``endpoint_url``, ``no_sign_request``: the command
    line's ``--endpoint-url`` and ``--no-sign-request``).
    When a plugin cannot load, ``bams3 plugins`` names its package (what to install).
    """

    name: str
    schemes: tuple[str, ...] = attrs.field(converter=tuple)
    open: Callable[..., Any]
    description: str = ""
    options: tuple[str, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class Codec:
    """A byte codec applied to each column of a chunk.

    ``encode(data, level) -> bytes`` and ``decode(data, raw_size) -> bytes``
    must be thread-safe; ``decode`` must never return more than ``raw_size``
    bytes.

    A ``record_aware`` codec also receives, in both functions, ``records=`` a
    :class:`RecordFields` describing the chunk's records, so it can model per
    read and per cycle (qualities, sequences) or from the records' positions
    (mates). ``column`` names the one column a codec models (``"qual"``,
    ``"seq"``, ``"aux"``, ``"next_pos"`` or ``"read_name"``): bams3 refuses it
    for any other (``--qual-codec``, ``--seq-codec``, ``--aux-codec``,
    ``--mate-codec``, ``--name-codec``). A record-aware codec without a
    ``column`` is for bases or qualities; neither kind is ever the general
    codec (``--codec``).
    """

    name: str
    encode: Callable[..., bytes]
    decode: Callable[..., bytes]
    default_level: int | None = None
    description: str = ""
    record_aware: bool = False
    column: str | None = None


@attrs.frozen
class RecordFields:
    """What a record-aware codec learns about the chunk's records (numpy arrays, one entry per record).
    ``next_pos`` is given when encoding, and when decoding only to the codec of the read names
    (column 13), which bams3 decodes after next_pos."""

    l_seq: Any  # int64: bases (and qualities) per record
    flag: Any  # uint16: SAM FLAG (0x10 reverse strand: BAM stores its qualities reversed; 0x80 second read)
    pos: Any = None  # int64: 0-based leftmost position
    n_cigar_op: Any = None  # int64: CIGAR operations per record
    cigar: Any = None  # uint32: every record's CIGAR operations, concatenated (BAM encoding: len << 4 | op)
    next_pos: Any = None  # int64: each record's mate position (0-based, -1 for none: BAM's next_pos)


@attrs.frozen
class OutputFormat:
    """An output format for records: ``open(out, header, options) -> writer``.

    ``out`` is a binary file object; the writer's ``write(batch)`` takes a
    :class:`bams3.records.RecordBatch` and ``close()`` flushes it (without
    closing ``out``).
    """

    name: str
    extensions: tuple[str, ...] = attrs.field(converter=tuple)
    open: Callable[..., Any]
    description: str = ""


@attrs.frozen
class Provider:
    """Which installed package provided a registered thing."""

    plugin: str
    package: str
    version: str


@contextlib.contextmanager
def plugin_code(provider: Provider, what: str):
    """Run a plugin's own code: an exception other than those its contract names (any bams3
    error, ``FileNotFoundError`` for a missing object) is a :class:`PluginError` naming the
    plugin and its package, never a bams3 bug nor a corrupt dataset. Ours (package bams3) are
    left alone: their errors are bams3's."""
    if provider.package == "bams3":
        yield
        return
    try:
        yield
    except (Bams3Error, FileNotFoundError):
        raise
    except Exception as exc:
        raise PluginError(f"{what} failed in plugin {provider.plugin!r} from package {provider.package} "
                          f"({type(exc).__name__}: {' '.join(str(exc).split())}); report it to that package's "
                          "authors", plugin=provider.plugin, package=provider.package) from exc


def outside_origins(registry, kind: str, keys) -> dict[str, tuple[str, str]]:
    """(plugin, package) of the outside plugins (not bams3's own) that registered ``keys``."""
    out = {}
    for key in keys:
        p = registry.provider(kind, key)
        if p.package != "bams3":
            out[key] = (p.plugin, p.package)
    return out


class Registry:
    """Everything the installed plugins registered, by scheme or name."""

    def __init__(self, pm: pluggy.PluginManager, providers: dict[int, Provider], failures: list[str]):
        self.plugin_manager = pm
        self.failures = failures
        self.storage: dict[str, tuple[StorageBackend, Provider]] = {}
        self.codecs: dict[str, tuple[Codec, Provider]] = {}
        self.formats: dict[str, tuple[OutputFormat, Provider]] = {}
        for hook, kind, table in (
            (pm.hook.bams3_register_storage, StorageBackend, self.storage),
            (pm.hook.bams3_register_codecs, Codec, self.codecs),
            (pm.hook.bams3_register_output_formats, OutputFormat, self.formats),
        ):
            for impl in hook.get_hookimpls():
                provider = providers.get(id(impl.plugin)) or Provider(impl.plugin_name, "?", "?")

                def register(thing, _kind=kind, _table=table, _provider=provider):
                    if not isinstance(thing, _kind):
                        raise PluginError(
                            f"plugin {_provider.plugin!r} registered {thing!r}, expected a bams3.{_kind.__name__}"
                        )
                    keys = thing.schemes if _kind is StorageBackend else (thing.name,)
                    for key in keys:
                        if key in _table:
                            other = _table[key][1]
                            raise PluginError(
                                f"{_kind.__name__} {key!r} is registered by both {other.package} "
                                f"(plugin {other.plugin}) and {_provider.package} (plugin {_provider.plugin}); "
                                "uninstall one of them"
                            )
                        _table[key] = (thing, _provider)

                impl.function(register=register)

    def provider(self, kind: str, key: str) -> Provider:
        """Who registered the storage scheme, codec or output format ``key`` (``kind``: storage,
        codecs or formats)."""
        table = {"storage": self.storage, "codecs": self.codecs, "formats": self.formats}[kind]
        entry = table.get(key)
        return entry[1] if entry else Provider("?", "?", "?")

    def storage_for(self, scheme: str) -> StorageBackend:
        try:
            return self.storage[scheme][0]
        except KeyError:
            known = ", ".join(f"{s}://" for s in sorted(self.storage)) or "none"
            raise PluginError(
                f"no storage plugin serves {scheme}:// URLs (installed schemes: {known})"
            ) from None

    def codec(self, name: str) -> Codec:
        try:
            return self.codecs[name][0]
        except KeyError:
            known = ", ".join(sorted(self.codecs)) or "none"
            raise PluginError(
                f"codec {name!r} is not installed (installed codecs: {known}); "
                f"install the plugin package that provides it"
            ) from None

    def output_format(self, name: str) -> OutputFormat:
        try:
            return self.formats[name][0]
        except KeyError:
            known = ", ".join(sorted(self.formats)) or "none"
            raise PluginError(f"unknown output format {name!r} (installed formats: {known})") from None

    def format_for_path(self, path: str) -> str | None:
        """The format whose extension ends ``path``; the longest such extension wins
        (``x.raw.parquet`` is a plugin's ``.raw.parquet``, not ``.parquet``)."""
        lower = path.lower()
        best, best_len = None, 0
        for name, (fmt, _) in self.formats.items():
            for ext in fmt.extensions:
                if lower.endswith(ext) and len(ext) > best_len:
                    best, best_len = name, len(ext)
        return best


BUILTIN_PLUGINS = ("local", "memory", "cloud", "zstd", "qual", "consensus", "tags", "mates", "names", "formats")


def _load_builtins(pm: pluggy.PluginManager, providers: dict[int, Provider]) -> None:
    from . import __version__

    for name in BUILTIN_PLUGINS:
        plugin = importlib.import_module(f"{__package__}.builtins.{name}")
        pm.register(plugin, name=name)
        providers[id(plugin)] = Provider(name, "bams3", __version__)


def _load_entry_points(pm: pluggy.PluginManager) -> tuple[dict[int, Provider], list[str]]:
    providers: dict[int, Provider] = {}
    failures: list[str] = []
    _load_builtins(pm, providers)
    import importlib.metadata

    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        package = dist.name if dist else "?"
        version = dist.version if dist else "?"
        if ep.name in BUILTIN_PLUGINS:
            msg = f"plugin {ep.name!r} from package {package} was not loaded: bams3's own plugin has that name"
            failures.append(msg)
            print(f"bams3: warning: {msg}", file=sys.stderr)
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not break the verbs that don't need it
            msg = f"plugin {ep.name!r} from package {package} failed to load ({type(exc).__name__}: {exc})"
            failures.append(msg)
            print(f"bams3: warning: {msg}", file=sys.stderr)
            continue
        pm.register(plugin, name=ep.name)
        providers[id(plugin)] = Provider(ep.name, package, version)
    return providers, failures


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The plugin manager with every installed plugin registered (built once)."""
    pm = pluggy.PluginManager("bams3")
    pm.add_hookspecs(hookspecs)
    get_plugin_manager.providers, get_plugin_manager.failures = _load_entry_points(pm)
    pm.check_pending()
    return pm


# What bams3's own plugins register, and which of them registers it (tests/test_plugins.py
# checks this against what they do register).
BUILTIN_PROVIDES = {
    "storage": {"file": "local", "memory": "memory", "s3": "cloud", "gs": "cloud", "az": "cloud", "http": "cloud",
                "https": "cloud"},
    "codecs": {"zstd": "zstd", "qual": "qual", "consensus": "consensus", "tags": "tags", "mates": "mates",
               "names": "names"},
    "formats": {"sam": "formats", "bam": "formats", "cram": "formats", "json": "formats", "parquet": "formats",
                "arrow": "formats"},
}


def get_registry(**needs) -> Registry:
    """The registry of storage backends, codecs and output formats. ``needs`` (``storage``: a
    scheme; ``codecs``, ``formats``: names): when bams3's own plugins serve all of them, a
    registry of just those (see the module's docstring); else, and with no ``needs``, every
    installed plugin's (built once)."""
    if needs and _full_registry.cache_info().currsize == 0 and not _runtime_plugins:
        modules = set()
        for kind, keys in needs.items():
            for key in [keys] if isinstance(keys, str) else keys:
                module = BUILTIN_PROVIDES[kind].get(key)
                if module is None:
                    return _full_registry()
                modules.add(module)
        return _builtin_registry(frozenset(modules))
    return _full_registry()


@functools.cache
def _full_registry() -> Registry:
    pm = get_plugin_manager()
    return Registry(pm, get_plugin_manager.providers, get_plugin_manager.failures)


@functools.cache
def _builtin_registry(modules: frozenset[str]) -> Registry:
    from . import __version__

    pm = pluggy.PluginManager("bams3")
    pm.add_hookspecs(hookspecs)
    providers: dict[int, Provider] = {}
    for name in sorted(modules):
        plugin = importlib.import_module(f"{__package__}.builtins.{name}")
        pm.register(plugin, name=name)
        providers[id(plugin)] = Provider(name, "bams3", __version__)
    return Registry(pm, providers, [])


get_registry.cache_clear = _full_registry.cache_clear  # what register_plugin and the tests call
_runtime_plugins: set[str] = set()


def register_plugin(plugin: object, name: str | None = None) -> None:
    """Register a plugin object at run time (tests, notebooks); rebuilds the registry."""
    _runtime_plugins.add(name or str(id(plugin)))
    pm = get_plugin_manager()
    pm.register(plugin, name=name)
    pm.check_pending()
    get_registry.cache_clear()


def unregister_plugin(name: str) -> None:
    pm = get_plugin_manager()
    pm.unregister(name=name)
    get_registry.cache_clear()
