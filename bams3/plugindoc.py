"""The plugin reference of docs/plugins.md, generated from the code it describes: the
hook specifications, the registration records and the Store protocol.

    python -m bams3.plugindoc            # print the reference
    python -m bams3.plugindoc --write    # replace it in docs/plugins.md

tests/test_plugin_docs.py fails when docs/plugins.md and this output differ.
"""

from __future__ import annotations

import inspect
import pathlib
import sys

import attrs

BEGIN = "<!-- BEGIN GENERATED REFERENCE (python -m bams3.plugindoc --write) -->"
END = "<!-- END GENERATED REFERENCE -->"
DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "plugins.md"


def reference() -> str:
    from . import hookspecs, plugins, storage

    out = ["## Reference", "", "### Hook specifications (`bams3.hookspecs`)", ""]
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if not name.startswith("bams3_"):
            continue
        out += [f"#### `{name}{inspect.signature(fn)}`", "", "```text", inspect.cleandoc(fn.__doc__), "```", ""]
    out += ["### What a plugin registers (`bams3.*`)", ""]
    for cls in (plugins.StorageBackend, plugins.Codec, plugins.RecordFields, plugins.OutputFormat):
        out += [f"#### `bams3.{cls.__name__}`", "", inspect.cleandoc(cls.__doc__), "", "| field | type | default |",
                "| --- | --- | --- |"]
        for f in attrs.fields(cls):
            default = "required" if f.default is attrs.NOTHING else repr(f.default)
            out.append(f"| `{f.name}` | `{_type(f.type)}` | {default} |")
        out.append("")
    out += ["### The store a storage backend returns (`bams3.storage.Store`)", "", inspect.cleandoc(storage.Store.__doc__),
            "", "| method | contract |", "| --- | --- |"]
    for name, fn in storage.Store.__dict__.items():
        if callable(fn) and not name.startswith("_"):
            doc = " ".join(inspect.cleandoc(fn.__doc__ or "").split())
            out.append(f"| `{name}{inspect.signature(fn)}` | {doc} |")
    return "\n".join(out) + "\n"


def _type(t) -> str:
    return t if isinstance(t, str) else getattr(t, "__name__", str(t))


def current() -> str:
    text = DOC.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[a:b].strip("\n") + "\n"


def write() -> None:
    text = DOC.read_text()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:a] + "\n" + reference() + text[b:])


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        write()
    else:
        sys.stdout.write(reference())
