"""docs/plugins.md cannot drift from the hook specifications: its reference section is
generated from them (python -m bams3.plugindoc --write) and compared here."""

from __future__ import annotations

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


def test_the_worked_example_runs(tmp_path):
    """The codec of the worked example, pasted from the docs, registered and used."""
    import re

    import bams3
    from bams3.plugins import Registry

    text = plugindoc.DOC.read_text()
    code = re.search(r"```python\n# my_codec/__init__.py\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "my_codec", "exec"), ns)
    got = []
    ns["bams3_register_codecs"](register=got.append)
    (codec,) = got
    assert isinstance(codec, bams3.Codec) and codec.name == "zlib"
    data = bytes(range(256)) * 100
    assert codec.decode(codec.encode(data, None), len(data)) == data
    assert Registry  # the host class that calls register
