"""The conformance kit: tests a bams3 plugin package runs against its own plugins.

Installed as ``bams3.conformance`` with ``pip install 'bams3[conformance]'`` (pytest, hypothesis,
and moto's server for S3 tests on loopback):

- ``StoreTests`` (override ``store_url``; optionally ``raw`` to check the store from behind it)
  and ``store_state_machine(make_url)``, a hypothesis rule-based test of
  put/get/range/list/size/delete against a model;
- ``CodecTests`` (set ``codec_name``);
- ``OutputFormatTests`` (set ``format_name``, implement ``read_back`` returning dicts of the SAM
  fields the format holds; a lossy format sets ``fields`` and overrides ``expected``);
- ``strategies``: hypothesis strategies for records, regions and record batches;
- ``proxy.CountingProxy`` and ``motoserver.MotoServer`` for S3 tests on loopback.

Subclass a test class, provide its fixture, and pytest runs the checks::

    from bams3.conformance import StoreTests

    class TestMyStore(StoreTests):
        @pytest.fixture
        def store_url(self, tmp_path):
            return "myscheme://test-bucket/" + tmp_path.name

Names are imported on first use, so the pytest plugin (``bams3.conformance.pytest_plugin``, loaded
in every pytest session where bams3 is installed) needs neither hypothesis nor moto.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "StoreTests": "store", "store_state_machine": "store", "RawView": "store", "SecondStore": "store",
    "CodecTests": "codec",
    "OutputFormatTests": "formats", "strategies": None,
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    if module is None:
        return importlib.import_module(f"{__name__}.{name}")
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"the bams3 conformance kit needs {exc.name}: pip install 'bams3[conformance]'",
                                  name=exc.name) from exc
