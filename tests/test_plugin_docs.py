"""docs/plugins.md cannot drift from the code: its reference section is generated from the hook
specifications (python -m bams3.plugindoc --write) and compared here, and its three worked
examples (a codec, a store, an output format), pasted from the page, pass the conformance kit."""

from __future__ import annotations

import re
import sys

import pytest


from .test_cli import EXAMPLE

import inspect

from bams3 import hookspecs, plugindoc


def test_reference_in_docs_is_generated_from_the_code():
    assert plugindoc.current() == plugindoc.reference(), "run: python -m bams3.plugindoc --write"


def test_every_hookspec_documents_its_contract():
    specs = [f for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("bams3_")]
    assert len(specs) == 3
    for fn in specs:
        doc = fn.__doc__
        for part in (":param register:", ":returns:", ":raises:", ":threads:"):
            assert part in doc, (fn.__name__, part)
        assert fn.__name__ in plugindoc.current()


def _example(name: str) -> dict:
    """A worked example of docs/plugins.md, pasted from the page and run as a module."""
    text = plugindoc.DOC.read_text()
    code = re.search(rf"```python\n# {re.escape(name)}\n(.*?)```", text, re.S).group(1)
    ns: dict = {"__name__": name.split("/")[0]}
    exec(compile(code, name, "exec"), ns)
    return ns


class _Examples:
    """The three examples' modules, registered as plugins."""

    def __init__(self):
        self.modules = {}
        for name in ("my_codec/__init__.py", "my_store/__init__.py", "my_format/__init__.py"):
            ns = _example(name)
            module = type(sys)(name.split("/")[0])
            module.__dict__.update(ns)
            self.modules[name.split("/")[0]] = module


@pytest.fixture(scope="module", autouse=True)
def examples():
    from bams3.plugins import register_plugin, unregister_plugin

    ex = _Examples()
    for name, module in ex.modules.items():
        register_plugin(module, name=name)
    yield ex
    for name in ex.modules:
        unregister_plugin(name)


def test_the_worked_examples_register_what_they_say():
    from bams3.plugins import get_registry

    reg = get_registry()
    assert "zlib" in reg.codecs and "sqlite" in reg.storage and "fastq" in reg.formats
    assert {reg.provider("codecs", "zlib").plugin, reg.provider("storage", "sqlite").plugin,
            reg.provider("formats", "fastq").plugin} == {"my_codec", "my_store", "my_format"}


def test_the_examples_import_only_the_plugin_api():
    text = plugindoc.DOC.read_text()
    for name in ("my_codec", "my_store", "my_format"):
        code = re.search(rf"```python\n# {name}/__init__.py\n(.*?)```", text, re.S).group(1)
        imported = set(re.findall(r"^(?:from|import) (bams3[\w.]*)", code, re.M))
        assert imported == {"bams3.plugin_api"}, (name, imported)


def test_a_dataset_in_the_example_store_with_the_example_codec_written_as_fastq(tmp_path):
    """The three together, as a user would: convert into sqlite://, count, and write FASTQ."""
    import io

    import bams3

    url = f"sqlite://{tmp_path}/lab.db/sample1"
    bams3.convert(EXAMPLE, url, codec="zlib", qual_codec="none")
    ds = bams3.open(url)
    assert ds.count("chr1") == bams3.open(EXAMPLE_DATASET(tmp_path)).count("chr1")
    out = io.BytesIO()
    ds.write(out, "chr1", format="fastq")
    assert out.getvalue().count(b"\n+\n") > 0


def EXAMPLE_DATASET(tmp_path) -> str:
    import bams3

    dest = str(tmp_path / "plain.bams3")
    bams3.convert(EXAMPLE, dest)
    return dest


# The examples' own tests, pasted from the page: collected here as they are.
for _name in ("tests/test_my_codec.py", "tests/test_my_store.py", "tests/test_my_format.py"):
    _ns = _example(_name)
    globals().update({k: v for k, v in _ns.items() if k.startswith("Test") or k.endswith("Raw")})
