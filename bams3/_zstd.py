"""zstandard without its package's import cost: the quick path and the codecs' decoders
(:mod:`bams3.builtins._decode`) decode zstd frames before ``typing`` and ``platform`` are
imported."""

from __future__ import annotations

import os
import sys

_zstd = None


def zstandard():
    """zstandard's package when it is imported already (or the user chose its backend), else
    its C backend loaded alone, as the package would load it: the package's ``__init__``
    imports ``platform`` and ``typing`` to choose a backend (~20 ms); the C one is ~1 ms."""
    global _zstd
    if _zstd is None:
        _zstd = _load_zstandard()
    return _zstd


def _load_zstandard():
    if "zstandard" in sys.modules or os.environ.get("PYTHON_ZSTANDARD_IMPORT_POLICY"):
        import zstandard  # (a backend chosen by the user: as the full command imports it)

        return zstandard
    try:
        from importlib.machinery import EXTENSION_SUFFIXES, ExtensionFileLoader, ModuleSpec
        from importlib.util import find_spec, module_from_spec

        pkg = find_spec("zstandard")  # finds the package without running it
        for d in pkg.submodule_search_locations or ():
            for suffix in EXTENSION_SUFFIXES:
                path = os.path.join(d, "backend_c" + suffix)
                if os.path.isfile(path):
                    spec = ModuleSpec("zstandard.backend_c", ExtensionFileLoader("zstandard.backend_c", path),
                                      origin=path)
                    mod = module_from_spec(spec)
                    spec.loader.exec_module(mod)
                    return mod
    except Exception:
        pass
    import zstandard

    return zstandard
