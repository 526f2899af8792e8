"""The plugin host: our own plugins are modules of the package, clashes are errors, a plugin's
own failures name it, and the storage interface behaves the same on every shipped backend."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid

import pytest

import bams3
from bams3.format import encode_metadata
from bams3.errors import DatasetError, PluginError
from bams3.plugins import get_registry, register_plugin, unregister_plugin
from bams3.conformance.store import RawView, StoreTests

from .test_cli import EXAMPLE


def test_shipped_plugins_are_modules_of_the_package():
    reg = get_registry()
    assert {p.plugin for p in reg.plugin_manager.get_plugins() if hasattr(p, "plugin")} == set()
    assert all(getattr(p, "__name__", "").startswith("bams3.builtins.") for p in reg.plugin_manager.get_plugins()
               if getattr(p, "__name__", "").startswith("bams3"))
    assert {"file", "memory"} <= set(reg.storage)
    assert "zstd" in reg.codecs
    assert {"sam", "bam", "json"} <= set(reg.formats)
    for table in (reg.storage, reg.codecs, reg.formats):
        for _thing, provider in table.values():
            assert provider.package == "bams3" and provider.version == bams3.__version__


def test_two_plugins_claiming_one_scheme_is_an_error():
    class Clash:
        @bams3.hookimpl
        def bams3_register_storage(self, register):
            register(bams3.StorageBackend(name="evil", schemes=("memory",), open=lambda url, create=False: None))

    register_plugin(Clash(), name="clash")
    try:
        with pytest.raises(PluginError, match="memory.*registered by both"):
            get_registry()
    finally:
        unregister_plugin("clash")
    assert "memory" in get_registry().storage


def test_unknown_codec_and_format():
    with pytest.raises(PluginError, match="zstd"):
        get_registry().codec("nope")
    with pytest.raises(PluginError, match="sam"):
        get_registry().output_format("nope")


class FilesRaw(RawView):
    """A directory's files, read and written with open(), not through bams3's store."""

    def __init__(self, root):
        self.root = pathlib.Path(root)

    def get(self, key):
        p = self.root / key
        return p.read_bytes() if p.is_file() else None

    def put(self, key, data):
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def keys(self):
        return {str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()} \
            if self.root.exists() else set()


class TestLocalStore(StoreTests):
    @pytest.fixture
    def store_url(self, tmp_path):
        return str(tmp_path / "store")

    @pytest.fixture
    def raw(self, tmp_path):
        return FilesRaw(tmp_path / "store")


class TestFileUrlStore(StoreTests):
    @pytest.fixture
    def store_url(self, tmp_path):
        return f"file://{tmp_path}/store"

    @pytest.fixture
    def raw(self, tmp_path):
        return FilesRaw(tmp_path / "store")


class TestMemoryStore(StoreTests):
    @pytest.fixture
    def store_url(self):
        return f"memory://{uuid.uuid4().hex}"

    @pytest.fixture
    def raw(self, store_url):
        """The obstore MemoryStore behind the URL, not bams3's adapter around it."""
        import obstore

        from bams3.builtins import memory

        backing = memory._stores.setdefault(store_url[len("memory://"):], obstore.store.MemoryStore())

        class MemoryRaw(RawView):
            def get(self, key):
                try:
                    return bytes(obstore.get(backing, key).bytes())
                except FileNotFoundError:
                    return None

            def put(self, key, data):
                obstore.put(backing, key, data)

            def keys(self):
                return {o["path"] for batch in obstore.list(backing) for o in batch}

        return MemoryRaw()


def test_memory_datasets(tmp_path):
    url = f"memory://{uuid.uuid4().hex}"
    bams3.convert(EXAMPLE, url, chunk_size="4K")
    ds = bams3.open(url)
    assert ds.count("chr1:1-5000") == bams3.open(url).count("chr1:1-5000") > 0
    out = tmp_path / "x.bam"
    ds.to_bam(str(out))
    from .oracle import raw_bam

    assert raw_bam(str(out)) == raw_bam(EXAMPLE)


def test_dataset_needing_a_missing_codec_says_what_to_install(tmp_path):
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    meta = json.loads((dest / "_metadata.json").read_text())
    assert meta["codecs"][0] == {"name": "zstd", "level": 5, "package": "bams3"}  # what wrote it, and from where
    meta["codecs"][0].update(name="fancyq", package="bams3-fancyq")
    (dest / "_metadata.json").write_bytes(encode_metadata(meta))
    ds = bams3.open(str(dest))
    assert ds.stats["n_records"] > 0  # metadata alone still works
    with pytest.raises(PluginError, match="fancyq.*pip install bams3-fancyq"):
        ds.count("chr1:1-100")
    del meta["codecs"][0]["package"]  # datasets written before packages were recorded
    (dest / "_metadata.json").write_bytes(encode_metadata(meta))
    with pytest.raises(PluginError, match="install the package that provides the 'fancyq' codec"):
        bams3.open(str(dest)).count("chr1:1-100")


def test_newer_format_version_is_refused(tmp_path):
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    meta = json.loads((dest / "_metadata.json").read_text())
    meta["format_version"] = 99
    (dest / "_metadata.json").write_bytes(encode_metadata(meta))
    with pytest.raises(DatasetError, match="upgrade bams3"):
        bams3.open(str(dest))


def test_plugins_command_lists_what_each_provides():
    import json
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "bams3.cli", "plugins", "--json"], capture_output=True, text=True,
                       check=True)
    rows = {r["plugin"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert {"local", "memory", "cloud", "zstd", "qual", "consensus", "tags", "formats"} <= set(rows)
    assert rows["cloud"]["schemes"] == ["az", "gs", "http", "https", "s3"]
    assert rows["qual"]["codecs"] == ["qual"] and rows["consensus"]["codecs"] == ["consensus"]
    assert rows["tags"]["codecs"] == ["tags"]
    assert rows["formats"]["formats"] == ["arrow", "bam", "cram", "json", "parquet", "sam"]
    assert all(r["package"] == "bams3" and r["version"] == bams3.__version__ for r in rows.values())
    text = subprocess.run([sys.executable, "-m", "bams3.cli", "plugins"], capture_output=True, text=True,
                          check=True).stdout
    assert "codecs qual" in text and "schemes file" in text


def test_a_plugin_that_fails_to_import_warns_and_breaks_nothing_else(tmp_path):
    """A third-party plugin whose import fails: one warning naming its package; other verbs work."""
    import subprocess
    import sys

    site = tmp_path / "site"
    (site / "broken_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "broken_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\n"
                                                                   "Version: 1.0\n")
    (site / "broken_plugin-1.0.dist-info" / "entry_points.txt").write_text("[bams3]\nbroken = broken_mod\n")
    (site / "broken_mod.py").write_text("import not_a_module_anywhere\n")
    env = {**__import__("os").environ, "PYTHONPATH": str(site)}
    dest = tmp_path / "d"
    bams3.convert(EXAMPLE, str(dest))
    # a count needs only bams3's own plugins: it never reads the entry points, so it never meets the broken one
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "query", str(dest), "chr1", "-c"], capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0 and int(p.stdout) > 0 and p.stderr == ""
    # nor does a conversion with bams3's own codecs
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "convert", EXAMPLE, str(tmp_path / "e")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0 and "warning" not in p.stderr
    # a verb that loads every plugin warns once, and works
    p = subprocess.run([sys.executable, "-m", "bams3.cli", "plugins"], capture_output=True, text=True, env=env)
    assert p.returncode == 0
    warnings = [line for line in p.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "broken-plugin" in warnings[0]
    assert "(failed)" in p.stdout and "broken-plugin" in p.stdout and "codecs zstd" in p.stdout


def test_the_kit_is_importable_as_bams3_conformance_and_a_pytest_plugin(bams3_dataset):
    from bams3.conformance import CodecTests, OutputFormatTests, StoreTests, store_state_machine, strategies

    assert CodecTests and OutputFormatTests and StoreTests and store_state_machine and strategies.regions
    bam, ds = bams3_dataset  # a fixture of the kit's pytest plugin
    assert bams3.open(ds).count() == 1000


def test_failures_in_an_outside_plugins_code_name_the_plugin_not_bams3(tmp_path):
    """A store that raises what its contract does not name, a codec that cannot decode, a
    writer that fails: a PluginError naming the plugin, never "please report it" to bams3 nor
    (for a codec that is not ours) a plain "the dataset is corrupt"."""
    import io

    class Store:
        url = "flaky://x"

        def get_range(self, key, start, end):
            raise RuntimeError("the flaky driver fell over")

        def __getattr__(self, name):
            raise AttributeError(name)

    class Plugins:
        @bams3.hookimpl
        def bams3_register_storage(self, register):
            register(bams3.StorageBackend(name="flaky", schemes=("flaky",), open=lambda url, create=False: Store()))

        @bams3.hookimpl
        def bams3_register_codecs(self, register):
            def decode(data, raw_size):
                raise ValueError("the xz stream is bad")

            register(bams3.Codec(name="brokenxz", encode=lambda data, level: data, decode=decode))

        @bams3.hookimpl
        def bams3_register_output_formats(self, register):
            class Writer:
                def __init__(self, out, header, options):
                    pass

                def write(self, batch):
                    raise RuntimeError("out of imaginary quota")

                def close(self):
                    pass

            register(bams3.OutputFormat(name="brokenfmt", extensions=(".broken",), open=Writer))

    register_plugin(Plugins(), name="brokenkit")
    try:
        with pytest.raises(PluginError, match=r"plugin 'brokenkit' .*RuntimeError: the flaky driver fell over") as e:
            bams3.open("flaky://x/d.bams3")
        assert e.value.plugin == "brokenkit"
        dest = str(tmp_path / "d")
        bams3.convert(EXAMPLE, dest, codec="brokenxz", qual_codec="none")
        ds = bams3.open(dest)
        with pytest.raises(PluginError, match=r"codec 'brokenxz' \(plugin 'brokenkit'.*the xz stream is bad.*"
                                              r"may be damaged") as e:
            list(ds.batches("chr1"))
        assert e.value.plugin == "brokenkit"
        with pytest.raises(PluginError, match=r"codec 'brokenxz' \(plugin 'brokenkit'.*may be damaged"):
            ds.count("chr1:1000-1000")  # an edge chunk: its count slots or its pos/span prefix
        with pytest.raises(PluginError, match=r"writing brokenfmt failed in plugin 'brokenkit'.*out of imaginary"):
            good = str(tmp_path / "ok")
            bams3.convert(EXAMPLE, good)
            bams3.open(good).write(io.BytesIO(), "chr1", format="brokenfmt")
    finally:
        unregister_plugin("brokenkit")


def test_builtin_provides_is_what_our_plugins_register():
    """The map the hot verbs use to skip the entry-point scan names exactly what bams3's own
    plugins register, and which of them registers it."""
    from bams3.plugins import BUILTIN_PROVIDES, get_registry

    reg = get_registry()
    for kind, table in (("storage", reg.storage), ("codecs", reg.codecs), ("formats", reg.formats)):
        ours = {key: provider.plugin for key, (_, provider) in table.items() if provider.package == "bams3"}
        assert ours == BUILTIN_PROVIDES[kind], kind


def test_a_count_and_a_query_do_not_scan_the_installed_plugins(tmp_path):
    """A local dataset counted and queried to SAM in a fresh process: bams3's own plugins
    serve it all, so the entry points are never read (importlib.metadata never imported);
    a codec no builtin provides still finds the installed plugins (the full registry)."""
    dest = tmp_path / "d.bams3"
    bams3.convert(EXAMPLE, str(dest))
    code = (f"import io, sys, bams3; ds = bams3.open({str(dest)!r}); n = ds.count('chr1'); "
            "ds.write(io.BytesIO(), 'chr1:1-20000'); "
            "from bams3.plugins import get_registry; assert 'parquet' in get_registry(formats='parquet').formats; "
            "print(n, 'importlib.metadata' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    n, scanned = p.stdout.split()
    assert int(n) == bams3.open(str(dest)).count("chr1") > 0 and scanned == "False"
    code = ("import sys, bams3; from bams3.plugins import get_registry; get_registry(codecs=['zstd', 'x']); "
            "print('importlib.metadata' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "True"


def test_zstd_from_level_9_keeps_level_3s_frame_where_that_is_smaller():
    """A high zstd level is not always smaller: the positions' deltas of a chunk (shuffled by
    byte) come out smaller at level 3 than at 12, and the codec keeps that frame; where 12 is
    smaller it keeps 12's. Both read back."""
    import numpy as np
    import zstandard

    from bams3.builtins import zstd
    from bams3.format.columns import shuffle

    deltas = shuffle(np.random.default_rng(0).geometric(1 / 7.5, 12_700).astype("<i4").tobytes(), 4)
    qualities = np.random.default_rng(1).integers(30, 41, 200_000).astype(np.uint8).tobytes()  # 12 is smaller
    for data in (deltas, qualities):
        at = {lv: zstandard.ZstdCompressor(level=lv, write_content_size=True).compress(data) for lv in (3, 12)}
        assert zstd.encode(data, 12) == min(at[12], at[3], key=len)
        assert zstd.decode(zstd.encode(data, 12), len(data)) == data
    z3, z12 = zstandard.ZstdCompressor(level=3), zstandard.ZstdCompressor(level=12)
    assert len(z3.compress(deltas)) < len(z12.compress(deltas))
    assert len(z12.compress(qualities)) < len(z3.compress(qualities))
    assert zstd.encode(deltas, 6) == zstandard.ZstdCompressor(level=6, write_content_size=True).compress(deltas)


def test_zstd_byte_planes_in_blocks_of_their_own_from_level_9_where_smaller():
    """A shuffled column from level 9 up (--compression high's fixed columns): one frame with
    each byte plane in blocks of its own where that is smaller (flags: a low byte of few values,
    a high byte nearly always 0), else the frame encode() writes (numbers repeated in runs).
    Either is one zstd frame that a plain zstd decompressor reads; below level 9 nothing changes."""
    import numpy as np
    import zstandard

    from bams3.builtins import zstd
    from bams3.format.columns import shuffle

    rng = np.random.default_rng(2)
    flags = rng.choice(np.array([99, 147, 83, 163], np.uint16), 60_000)
    flags[rng.random(len(flags)) < 0.002] |= 0x400
    flags = shuffle(flags.astype("<u2").tobytes(), 2)
    runs = shuffle(np.repeat(rng.integers(0, 70_000, 3000), 20).astype("<u4").tobytes(), 4)
    for data, width, planes_smaller in ((flags, 2, True), (runs, 4, False)):
        planes, whole = zstd.section_planes(data, 16, width)[4:], zstd.encode(data, 16)
        assert (len(planes) < len(whole)) == planes_smaller
        out = zstd.encode_planes(data, 16, width)
        assert out == (planes if planes_smaller else whole)
        assert zstandard.ZstdDecompressor().decompress(out) == data == zstd.decode(out, len(data))
        assert zstd.encode_planes(data, 6, width) == zstd.encode(data, 6)
    assert zstd.encode_planes(flags[:1000], 16, 2) == zstd.encode(flags[:1000], 16)  # under 1,024 numbers a plane
