"""The conformance kit run against one plugin: the correct one, or the mutant named by
BAMS3_MUTANT (``store:Name``, ``codec:name`` or ``format:name``). Run by tests/test_mutation.py as
``python -m pytest tests/mutants/kit_run.py``; not collected by the suite itself."""

from __future__ import annotations

import os
import uuid

import pytest

import bams3
from bams3.conformance import CodecTests, OutputFormatTests, RawView, StoreTests, store_state_machine
from bams3.plugins import register_plugin

from . import codecs, formats, stores
from .reference import DictStore, zlib_decode, zlib_encode

KIND, _, NAME = os.environ.get("BAMS3_MUTANT", "none:").partition(":")
STORE = next((m for m in stores.MUTANTS if m.__name__ == NAME), DictStore) if KIND == "store" else DictStore
ENCODE, DECODE = codecs.MUTANTS[NAME] if KIND == "codec" else (zlib_encode, zlib_decode)
_OBJECTS: dict[str, dict] = {}


class _Plugin:
    @bams3.hookimpl
    def bams3_register_storage(self, register):
        register(bams3.StorageBackend(name="mutant", schemes=("mutant",), description="a store under test",
                                      open=lambda url, create=False: STORE(url, _OBJECTS.setdefault(url, {}))))

    @bams3.hookimpl
    def bams3_register_output_formats(self, register):
        register(bams3.OutputFormat(name="tsv", extensions=(".tsv",), description="a format under test",
                                    open=formats.open_tsv(NAME if KIND == "format" else "")))
        register(bams3.OutputFormat(name="fq", extensions=(".fq",), description="a lossy format under test",
                                    open=formats.open_fastq))

    @bams3.hookimpl
    def bams3_register_codecs(self, register):
        register(bams3.Codec(name="mutantz", encode=ENCODE, decode=DECODE, default_level=6,
                             description="a codec under test"))


register_plugin(_Plugin(), name="bams3-mutants")


class DictRaw(RawView):
    """The dict behind a store, read without it."""

    def __init__(self, objects: dict):
        self.objects = objects

    def get(self, key):
        return self.objects[key][0] if key in self.objects else None

    def put(self, key, data):
        self.objects[key] = (bytes(data), "raw")

    def keys(self):
        return set(self.objects)


class TestStore(StoreTests):
    @pytest.fixture
    def store_url(self):
        return f"mutant://{uuid.uuid4().hex}"

    @pytest.fixture
    def raw(self, store_url):
        return DictRaw(_OBJECTS.setdefault(store_url, {}))


TestStoreStateful = store_state_machine(lambda: f"mutant://{uuid.uuid4().hex}").TestCase


class TestCodec(CodecTests):
    codec_name = "mutantz"


class TestFormat(OutputFormatTests):
    format_name = "tsv"

    def read_back(self, path):
        return formats.read_back(path)


class TestFormatLossy(OutputFormatTests):
    """How a lossy format declares what it holds: FASTQ keeps names, sequences and qualities of
    primary records, as they were sequenced."""

    format_name = "fq"
    fields = ("name", "seq", "qual")

    def expected(self, row):
        if row["flag"] & 0x900:
            return None
        if row["flag"] & 16:
            return {**row, "seq": formats._comp(row["seq"]), "qual": row["qual"][::-1]}
        return row

    def read_back(self, path):
        return formats.read_fastq(path)
