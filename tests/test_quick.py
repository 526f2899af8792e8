"""The quick count (bams3/_quick.py): ``bams3 query DATASET REGION... -c`` answered before numpy,
click or the plugin host is imported. It must print what samtools prints, and what the full
command prints, or step aside: for every dataset, region and damage it answers either the full
command's number or nothing (and the full command then answers, or reports the damage)."""

from __future__ import annotations

import json
import os
import pathlib
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
import bams3.shards
from bams3 import _quick
from bams3.dataset import Dataset
from bams3.format import ChunkTable
from bams3.format.metadata import encode_metadata
from bams3.statstext import flagstat_text

from .oracle import view_count
from .synth import REFS, random_regions, write_bam

BAMS3 = pathlib.Path(sys.executable).with_name("bams3")


@pytest.fixture(scope="module")
def bam(tmp_path_factory):
    return write_bam(str(tmp_path_factory.mktemp("quick") / "in.bam"), n=5000, seed=23)


@pytest.fixture(scope="module")
def datasets(bam, tmp_path_factory, request):
    """The layouts the quick count reads: an inline table (many small chunks, so regions cut
    many), an external table (an object of its own), a sharded (v3) conversion whose chunks are
    numbered apart from the table; and one it leaves to the full command (count slots)."""
    from bams3.format import metadata

    d = tmp_path_factory.mktemp("quick-ds")
    out = {"inline": str(d / "inline.bams3"), "external": str(d / "external.bams3"),
           "sharded": str(d / "sharded.bams3"), "slots": str(d / "slots.bams3")}
    bams3.convert(bam, out["inline"], chunk_size="4K")
    mp = pytest.MonkeyPatch()
    mp.setattr(metadata, "INLINE_TABLE_MAX", 256)
    try:
        bams3.convert(bam, out["external"], chunk_size="2K")
    finally:
        mp.undo()
    bams3.shards.convert(bam, out["sharded"], engine="local", shard_bp="12K", chunk_size="4K", max_chunk_raw=20_000)
    bams3.convert(bam, out["slots"], chunk_size="64K", slots=True)
    assert "object" in json.loads(pathlib.Path(out["external"], "_metadata.json").read_bytes())["chunks"]
    assert json.loads(pathlib.Path(out["sharded"], "_metadata.json").read_bytes())["format_version"] == 3
    return out


def _cli(*args: str, quick: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "BAMS3_QUICK": "1" if quick else "0"}
    return subprocess.run([str(BAMS3), *args], capture_output=True, text=True, env=env, timeout=120)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(0, 4))
def test_counts_equal_samtools_and_the_full_reader(bam, datasets, seed, k):
    regions = random_regions(random.Random(seed), k)
    want = view_count(bam, *regions)
    for name in ("inline", "external", "sharded"):
        assert _quick.count(datasets[name], regions) == want, (name, regions)
        assert Dataset.open(datasets[name])._count(regions) == want


_FILTERS = st.lists(st.sampled_from([
    ["-F", "0x904"], ["-F", "4"], ["-F4"], ["--excl-flags=UNMAP,DUP"], ["-f", "16"], ["-f", "PAIRED"], ["-G", "0x41"],
    ["--rf", "0x900"], ["--incl-flags", "REVERSE"], ["-q", "30"], ["-q1"], ["--min-MQ", "60"], ["-q", "0"],
    ["-F", "0"], ["-q", "255"]]), min_size=1, max_size=3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(0, 4), options=_FILTERS)
def test_filtered_counts_equal_samtools_and_the_full_reader(bam, datasets, seed, k, options):
    """samtools view's flag and MAPQ filters (-f -F --rf -G -q, any spelling `bams3 query`
    takes), with regions or without, on every layout (count slots too: a filtered count does
    not read them)."""
    from bams3.cli.common import FILTER_DESTS  # noqa: F401 (the CLI's options, which _FILTERS spells)

    regions = random_regions(random.Random(seed), k)
    opts = [a for o in options for a in o]
    split = _quick._filter_options([*regions, "-c", *opts])
    assert split is not None and split[0] == [*regions, "-c"]
    want = view_count(bam, *regions, flags=tuple(opts))
    for name in ("inline", "external", "sharded", "slots"):
        got = _outcome(lambda: _quick.count(datasets[name], regions, split[1]))  # noqa: B023
        if name == "slots" and _quick._read_filter(split[1]) is None:  # -q 0, -F 0: a plain count, left to the full command
            assert got is _quick._Refused
        else:
            assert got == want, (name, regions, opts)


def test_filtered_counts_on_the_cli(bam, datasets):
    """The quick count answers them (numpy, click, attrs and pluggy unimported), as the full
    command does; an option's value it does not take as given goes to the full command."""
    ds = datasets["inline"]
    for args in ([ds, "chrA:1,000-50,000", "-c", "-F", "0x904"], [ds, "-c", "-q", "30", "-f", "0x10"],
                 [ds, "*", "chrC", "chrB:10-20", "-c", "-G", "0x41", "--rf", "16"],
                 [ds, "-c", "-F", "NOPE"], [ds, "-c", "-q", "x"], [ds, "-c", "-q", "-1"], [ds, "-c", "-F"],
                 [ds, "-c", "-F", "-1"], [ds, "-c", "-F", "0x10000"], [ds, "-c", "-q", "\uff15"]):
        q, f = _cli("query", *args), _cli("query", *args, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr), args
    probe = ("import sys; sys.argv = ['bams3', 'query', sys.argv[1], 'chrA:1-90000', '-c', '-F', '0x10', '-q', '20']; "
             "from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'attrs', 'pluggy', 'zstandard') if m in sys.modules), "
             "code, file=sys.stderr)")
    for name in ("inline", "slots"):
        r = subprocess.run([sys.executable, "-c", probe, datasets[name]], capture_output=True, text=True, timeout=60)
        assert r.stdout == f"{view_count(bam, 'chrA:1-90000', flags=('-F', '0x10', '-q', '20'))}\n"
        assert r.stderr.strip() == "[] 0", r.stderr


def test_the_keep_mask_is_the_read_filters():
    """`_kernels.keep_mask` against bams3.filters.ReadFilter.mask, on random flags and MAPQs."""
    import numpy as np

    from bams3._kernels import keep_mask
    from bams3.fields import Fields  # noqa: F401 (the mask reads .flag and .mapq alone)
    from bams3.filters import ReadFilter

    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(0, 200))
        flag = rng.integers(0, 1 << 12, n).astype("<u2")
        mapq = rng.integers(0, 256, n).astype(np.uint8)
        v = [int(x) if rng.random() < 0.5 else 0 for x in rng.integers(0, 1 << 12, 4)] + [int(rng.integers(0, 300))]
        flt = ReadFilter(require=v[0], exclude=v[1], any_of=v[2], not_all=v[3], min_mapq=v[4])
        fields = type("F", (), {"n": n, "flag": flag, "mapq": mapq})()
        want = flt.mask(fields, None).astype(np.uint8).tobytes()
        got = keep_mask(n, flag.tobytes() if any(v[:4]) else None, mapq.tobytes() if v[4] else None, *v)
        assert got == want, v
    with pytest.raises(ValueError):
        keep_mask(3, b"\0" * 4, None, 1, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        keep_mask(3, None, b"\0" * 2, 0, 0, 0, 0, 1)


def test_every_chunk_edge(bam, datasets):
    """A region ending or starting at each chunk's first and last record, and one base either side."""
    ds = Dataset.open(datasets["inline"])
    t = ds.chunks
    regions = []
    for i in range(len(t)):
        if t.ref_id[i] < 0:
            continue
        name = REFS[int(t.ref_id[i])][0]
        for x in (int(t.min_pos[i]), int(t.max_pos[i]), int(t.max_end[i])):
            for d in (-1, 0, 1):
                p = max(1, x + d)
                regions += [f"{name}:1-{p}", f"{name}:{p}-{p + 2000}", f"{name}:{p}"]
    for i in range(0, len(regions), 40):
        part = regions[i : i + 40]
        assert _quick.count(datasets["inline"], part) == view_count(bam, *part)


def test_the_cli_takes_the_quick_path_and_prints_what_the_full_command_prints(bam, datasets):
    """The same stdout, stderr and status, quick or not; and the quick one imports none of
    numpy, click, attrs or pluggy."""
    ds = datasets["inline"]
    for args in ([ds, "chrA:1,000-50,000", "-c"], [ds, "--count"], [ds, "*", "chrC", "chrB:10-20", "-c"],
                 ["-c", ds, "chrA:100k-200k"]):
        q, f = _cli("query", *args), _cli("query", *args, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 0
        assert int(q.stdout) == view_count(bam, *[a for a in args[1:] if not a.startswith("-") and a != ds])
    probe = ("import sys; sys.argv = ['bams3', 'query', sys.argv[1], 'chrA:1-90000', '-c']; "
             "from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'attrs', 'pluggy', 'zstandard') if m in sys.modules), "
             "code, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, ds], capture_output=True, text=True, timeout=60)
    assert r.stdout == f"{view_count(bam, 'chrA:1-90000')}\n"
    assert r.stderr.strip() == "[] 0", r.stderr
    r = subprocess.run([sys.executable, "-c", probe, datasets["slots"]], capture_output=True, text=True,
                       timeout=60)  # count slots: the full command answers
    assert r.stdout == f"{view_count(bam, 'chrA:1-90000')}\n" and "'numpy'" in r.stderr


def test_stats_print_what_the_full_command_prints(datasets):
    """`stats`, `--flagstat`, `--idxstats` and `--json` from the metadata alone, byte for byte as the full
    command prints them, without numpy or click; any other option is the full command's."""
    for name in ("inline", "external", "sharded", "slots"):
        for extra in ([], ["--flagstat"], ["--idxstats"], ["--json"], ["--flagstat", "--idxstats"]):
            args = ["stats", datasets[name], *extra]
            q, f = _cli(*args), _cli(*args, quick=False)
            assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 0
            assert q.stdout.count("\n") > 2
    probe = ("import sys; sys.argv = ['bams3', 'stats', sys.argv[1]]; from bams3._main import main; code = main(); "
             "print(sorted(m for m in ('numpy', 'click', 'attrs', 'pluggy', 'zstandard') if m in sys.modules), "
             "code, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, datasets["inline"]], capture_output=True, text=True, timeout=60)
    assert "Total reads: 5,050" in r.stdout and r.stderr.strip() == "[] 0", r.stderr
    r = subprocess.run([sys.executable, "-c", probe.replace("sys.argv[1]]", "sys.argv[1], '--json']"),
                        datasets["external"]], capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout)["stats"]["n_records"] == 5050 and r.stderr.strip() == "[] 0", r.stderr
    for args in (["stats"], ["stats", "a", "b"], ["stats", "--nope", datasets["inline"]]):
        q, f = _cli(*args), _cli(*args, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 2


@pytest.mark.parametrize("args", [
    ["chrZ:1-10", "-c"],  # unknown reference
    ["chrA:20-10", "-c"],  # end before start
    ["chrA:1-10", "-c", "-m", "20"],  # an option the quick count leaves to the full command
    ["chrA:1-10", "-c", "--json"],
    ["chrA:1-10", "-c", "-@", "2"],
    ["chrA:1-10", "-c", "-o", "-"],
])
def test_errors_and_other_options_are_the_full_commands(datasets, args):
    ds = datasets["inline"]
    q, f = _cli("query", ds, *args), _cli("query", ds, *args, quick=False)
    assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr)


def test_damage_and_links_are_reported_as_the_full_command_reports_them(bam, datasets, tmp_path):
    import shutil

    src = pathlib.Path(datasets["inline"])
    region = ["chrA:1,000-2,000", "-c"]
    cases = {}
    ds = tmp_path / "gone"
    cases["no dataset"] = ds
    ds = tmp_path / "chunk"
    shutil.copytree(src, ds)
    chunk = _chunk_file(ds, 0)
    blob = bytearray(chunk.read_bytes())
    blob[200] ^= 1
    chunk.write_bytes(bytes(blob))
    cases["flipped chunk byte"] = ds
    ds = tmp_path / "link"
    shutil.copytree(src, ds)
    meta = ds / "_metadata.json"
    (tmp_path / "elsewhere.json").write_bytes(meta.read_bytes())
    meta.unlink()
    meta.symlink_to(tmp_path / "elsewhere.json")
    cases["metadata is a link"] = ds
    ds = tmp_path / "chunklink"
    shutil.copytree(src, ds)
    chunk = _chunk_file(ds, 0)
    (tmp_path / "elsewhere").write_bytes(chunk.read_bytes())
    chunk.unlink()
    chunk.symlink_to(tmp_path / "elsewhere")
    cases["chunk is a link"] = ds
    ext = pathlib.Path(datasets["external"])
    for what in ("missing", "flipped", "a link"):  # the external chunk table: read by every count
        ds = tmp_path / f"ext-{what}"
        shutil.copytree(ext, ds)
        (table,) = (ds / "data").rglob("_chunks")
        if what == "missing":
            table.unlink()
        elif what == "flipped":
            table.write_bytes(bytes([table.read_bytes()[0] ^ 1]) + table.read_bytes()[1:])
        else:
            (tmp_path / f"table-{what}").write_bytes(table.read_bytes())
            table.unlink()
            table.symlink_to(tmp_path / f"table-{what}")
        cases[f"external table {what}"] = ds
    for what, ds in cases.items():
        for args in (region, ["-c"]):
            q, f = _cli("query", str(ds), *args), _cli("query", str(ds), *args, quick=False)
            assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr), what
            if not (what in ("flipped chunk byte", "chunk is a link") and args == ["-c"]):  # no chunk is read
                assert q.returncode != 0 and q.stderr.count("\n") == 1 and not q.stdout, (what, q.stderr)


def test_what_the_full_command_prints_differently_is_left_to_it(tmp_path, datasets, monkeypatch):
    """Escapes click strips from text (in a path, a source name), a JSON true as the record count,
    a zstandard backend the user chose, and tables too large to decode without numpy."""
    import shutil

    import pysam

    ds = tmp_path / "esc\x1b[1mds"
    shutil.copytree(datasets["inline"], ds)
    for extra in ([], ["--idxstats"], ["--json"]):
        q, f = _cli("stats", str(ds), *extra), _cli("stats", str(ds), *extra, quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and q.returncode == 0
    out = _cli("stats", str(ds)).stdout
    assert "escds\n" in out and "\x1b" not in out
    one = tmp_path / "one.bam"
    with pysam.AlignmentFile(str(one), "wb", header={"SQ": [{"SN": "c", "LN": 100}]}) as out:
        r = pysam.AlignedSegment()
        r.query_name, r.query_sequence, r.flag, r.reference_id, r.reference_start = "r", "ACGT", 0, 0, 5
        r.cigartuples, r.query_qualities = [(0, 4)], pysam.qualitystring_to_array("IIII")
        out.write(r)
    bams3.convert(str(one), str(tmp_path / "one.bams3"))
    meta = tmp_path / "one.bams3" / "_metadata.json"
    obj = json.loads(meta.read_bytes())
    del obj["checksum"]
    obj["stats"]["n_records"] = True
    meta.write_bytes(encode_metadata(obj))
    for args in (["-c"], ["c", "-c"]):
        q, f = _cli("query", str(tmp_path / "one.bams3"), *args), _cli("query", str(tmp_path / "one.bams3"), *args,
                                                                        quick=False)
        assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) == (0, "1\n", "")
    q, f = _cli("stats", str(tmp_path / "one.bams3"), "--json"), _cli("stats", str(tmp_path / "one.bams3"), "--json",
                                                                       quick=False)
    assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr) and '"n_records": true' in q.stdout
    env = {**os.environ, "PYTHON_ZSTANDARD_IMPORT_POLICY": "rust"}
    q, f = (subprocess.run([str(BAMS3), "query", datasets["inline"], "chrA:1-50000", "-c"], capture_output=True,
                           text=True, env={**env, "BAMS3_QUICK": x}) for x in ("1", "0"))
    assert (q.returncode, q.stdout, q.stderr) == (f.returncode, f.stdout, f.stderr)
    monkeypatch.setattr(_quick, "MAX_ROWS", 3)
    for name in ("inline", "external"):
        with pytest.raises(_quick._Refused):
            _quick.count(datasets[name], ["chrA:1-10"])


@pytest.mark.parametrize("unbuffered", ["1", ""])
@pytest.mark.parametrize("sig, code, line", [("SIGINT", 130, "bams3: interrupted\n"),
                                              ("SIGTERM", 143, "bams3: terminated\n")])
def test_an_interrupted_quick_path_ends_as_the_full_command_does(datasets, sig, code, line, unbuffered):
    """Ctrl-C or SIGTERM while the answer waits on a full pipe: one line and 130 or 143, as the
    full command ends; and never waits on the pipe again (stdout buffered or not, PYTHONUNBUFFERED:
    the full command's last flush of a buffered stdout waited forever on a reader that stopped)."""
    import fcntl
    import signal
    import time

    for quick in ("1", "0"):
        r, w = os.pipe()
        flags = fcntl.fcntl(w, fcntl.F_GETFL)
        fcntl.fcntl(w, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            while True:
                os.write(w, b"x" * 512)
        except BlockingIOError:
            pass
        fcntl.fcntl(w, fcntl.F_SETFL, flags)
        p = subprocess.Popen([str(BAMS3), "stats", datasets["inline"]], stdout=w, stderr=subprocess.PIPE,
                             env={**os.environ, "BAMS3_QUICK": quick, "PYTHONUNBUFFERED": unbuffered})
        os.close(w)
        time.sleep(2)
        p.send_signal(getattr(signal, sig))
        try:
            assert p.wait(timeout=30) == code, quick
        finally:
            p.kill()
        assert p.stderr.read().decode() == line, quick
        os.close(r)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    path = write_bam(str(tmp_path_factory.mktemp("quick-small") / "s.bam"), n=600, seed=5)
    ds = str(tmp_path_factory.mktemp("quick-small") / "s.bams3")
    bams3.convert(path, ds, chunk_size="8K")
    return ds


def _chunk_file(ds: pathlib.Path, i: int) -> pathlib.Path:
    """Chunk ``i``'s object (by the dataset's own key: a run directory may begin with 0 too)."""
    return ds / Dataset.open(str(ds)).source.key(i)


def _flip(ds: pathlib.Path, i: int, at: int, xor: int) -> None:
    chunk = _chunk_file(ds, i)
    blob = bytearray(chunk.read_bytes())
    blob[at] ^= xor
    chunk.write_bytes(bytes(blob))


def _cutting(table, i: int) -> str:
    """A region that cuts chunk ``i`` (so a count reads its positions)."""
    name = REFS[int(table.ref_id[i])][0] if table.ref_id[i] >= 0 else "chrA"
    return f"{name}:{int(table.min_pos[i]) + 2}-{(int(table.min_pos[i]) + int(table.max_pos[i])) // 2 + 1}"


def _edge_chunk(small, tmp_path, i: int = 1):
    """A copy of ``small``, a region that cuts its chunk ``i``, that chunk's file and bytes."""
    import shutil

    ds = tmp_path / "d.bams3"
    shutil.copytree(small, ds)
    table = Dataset.open(str(ds)).chunks
    chunk = _chunk_file(ds, i)
    return ds, table, [_cutting(table, i)], chunk, chunk.read_bytes()


def test_every_byte_of_a_count_prefix_flipped(small, tmp_path):
    """Each byte of an edge chunk's count prefix flipped in turn: the quick count answers the
    full reader's number or steps aside; the full reader refuses every one of them."""
    i = 1
    ds, table, region, chunk, good = _edge_chunk(small, tmp_path, i)
    answered = 0
    for at in range(int(table.count_nbytes[i])):
        _flip(ds, i, at, 0x41)
        quick = _outcome(lambda: _quick.count(str(ds), region))
        full = _outcome(lambda: Dataset.open(str(ds))._count(region))
        chunk.write_bytes(good)
        assert not isinstance(full, int), at  # every byte of it is checked
        assert not isinstance(quick, int), (at, quick)
        answered += isinstance(quick, int)
    assert answered == 0 and _quick.count(str(ds), region) == Dataset.open(str(ds))._count(region) > 0


def test_every_byte_a_filtered_count_reads_flipped(small, tmp_path):
    """Each byte of an edge chunk up to the end of its MAPQ column (header, directory, pos,
    span, refid, flag, MAPQ) flipped in turn: the filtered quick count answers the full reader's
    number or steps aside, and steps aside wherever the full reader refuses."""
    from bams3.filters import ReadFilter

    i = 1
    ds, _table, region, chunk, good = _edge_chunk(small, tmp_path, i)
    end = Dataset.open(str(ds)).source.chunk(i).extent("mapq")[1]
    flt, given = ReadFilter(exclude=0x10, min_mapq=20), {"exclude": ["0x10"], "min_mapq": ["20"]}
    refused = 0
    for at in range(end):
        _flip(ds, i, at, 0x41)
        quick = _outcome(lambda: _quick.count(str(ds), region, given))
        full = _outcome(lambda: Dataset.open(str(ds))._count(region, filters=flt))
        chunk.write_bytes(good)
        assert quick == full if isinstance(quick, int) else quick is _quick._Refused, (at, quick, full)
        refused += not isinstance(full, int)
    assert refused > end // 2
    assert _quick.count(str(ds), region, given) == Dataset.open(str(ds))._count(region, filters=flt) > 0


def test_every_table_field_of_an_edge_chunk_changed(small, tmp_path):
    """Each field of an edge chunk's table row set to values no writer writes (the metadata
    signed again): the quick count answers the full reader's number or steps aside."""
    import shutil

    ds = tmp_path / "d.bams3"
    shutil.copytree(small, ds)
    good = (ds / "_metadata.json").read_bytes()
    table = Dataset.open(str(ds)).chunks
    i = 1
    region = [_cutting(table, i), "chrA:1-100000"]
    refused = 0
    for field in sorted(table.columns):
        v, n = int(table.columns[field][i]), int(table.n_records[i])
        for value in sorted({v - 2**40, v - 1, v + 1, v + 2**31, v // 2, v * 2, 0, -1, 36 * n + 1, 4 * n - 1}):
            obj = json.loads(good)
            del obj["checksum"]
            t = ChunkTable.from_json(obj["chunks"])
            t.columns[field][i] = value
            obj["chunks"] = t.to_json()
            (ds / "_metadata.json").write_bytes(encode_metadata(obj))
            quick = _outcome(lambda: _quick.count(str(ds), region))
            full = _outcome(lambda: Dataset.open(str(ds))._count(region))
            assert not isinstance(quick, int) or quick == full, (field, value, quick, full)
            refused += not isinstance(full, int)
    assert refused > 50


def _outcome(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - any failure is an outcome here
        return type(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_damage_never_gets_a_number_the_full_reader_would_not_give(small, tmp_path_factory, data):
    """Bytes flipped in a chunk's count prefix, or fields of _metadata.json (the chunk table
    included) changed and the checksum made again: the quick count (filtered too) answers the
    full reader's number or steps aside (it raises, and `run` returns None)."""
    import shutil

    from bams3.filters import ReadFilter

    ds = tmp_path_factory.mktemp("dmg") / "d.bams3"
    shutil.copytree(small, ds)
    meta = (ds / "_metadata.json").read_bytes()
    regions = random_regions(random.Random(data.draw(st.integers(0, 1000), label="regions")), 3)
    if data.draw(st.booleans(), label="damage a chunk"):
        table = Dataset.open(str(ds)).chunks
        i = data.draw(st.integers(0, len(table) - 1), label="chunk")
        _flip(ds, i, data.draw(st.integers(0, int(table.count_nbytes[i]) - 1), label="byte"),
              data.draw(st.integers(1, 255), label="xor"))
        regions.append(_cutting(table, i))
    else:
        obj = json.loads(meta)
        del obj["checksum"]
        table = obj["chunks"]
        if data.draw(st.booleans(), label="a table value"):
            t = ChunkTable.from_json(table)
            field = data.draw(st.sampled_from(sorted(t.columns)), label="field")
            row = data.draw(st.integers(0, len(t) - 1), label="row")
            v = int(t.columns[field][row])
            t.columns[field][row] = data.draw(st.sampled_from(
                [v - 2**40, v - 3, v - 1, v + 1, v + 7, v + 2**31, v + 2**40, v // 2, v * 2, 0, -1,
                 36 * int(t.n_records[row]) + 1]), label="value")
            obj["chunks"] = t.to_json()
        else:
            key = data.draw(st.sampled_from(["chunk_size", "count_slot_bp", "data_prefix", "format_version", "stats",
                                             "source", "codecs", "coverage", "header"]))
            obj[key] = data.draw(st.sampled_from([0, 1, 3, -1, 4096, 2**41, "data/x/", "../x/", None, True]))
        (ds / "_metadata.json").write_bytes(encode_metadata(obj))  # signed again, as a hostile writer would
    quick = _outcome(lambda: _quick.count(str(ds), regions))
    full = _outcome(lambda: Dataset.open(str(ds))._count(regions))
    if isinstance(quick, int):
        assert quick == full, (quick, full)
    quick = _outcome(lambda: _quick.count(str(ds), regions, {"exclude": ["0x904"]}))
    full = _outcome(lambda: Dataset.open(str(ds))._count(regions, filters=ReadFilter(exclude=0x904)))
    if isinstance(quick, int):
        assert quick == full, (quick, full)
    quick = _outcome(lambda: _quick.stats(str(ds), "--flagstat"))
    full = _outcome(lambda: flagstat_text(Dataset.open(str(ds)).stats["flagstat"]))
    if isinstance(quick, str):
        assert quick == full, (quick, full)


def test_the_kernel_against_its_definition():
    import numpy as np

    from bams3._kernels import count_overlaps

    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(0, 300))
        pos = np.sort(rng.integers(-5, 2**31 - 1, n) if rng.random() < 0.2 else rng.integers(0, 5000, n))
        span = rng.integers(0, 400, n).astype(np.int32)
        deltas = np.diff(pos.astype(np.int64), prepend=0).astype(np.int64).astype(np.uint32).view(np.int32)
        ivs = [(int(b), int(b + rng.integers(1, 3000))) for b in rng.integers(-10, 6000, int(rng.integers(0, 4)))]
        p = np.cumsum(deltas, dtype=np.int32).astype(np.int64)
        want = sum(int(np.count_nonzero((p < e) & (p + span > b))) for b, e in ivs)
        assert count_overlaps(deltas.tobytes(), span.tobytes(), ivs) == want
    with pytest.raises(ValueError):
        count_overlaps(b"\0" * 8, b"\0" * 4, [(0, 1)])
    with pytest.raises(TypeError):
        count_overlaps(b"\0" * 4, b"\0" * 4, [(0,)])


def test_table_decoding_and_validation_agree_with_the_full_reader(datasets):
    from bams3.format.metadata import Metadata

    for name in ("inline", "external", "sharded"):
        ds = Dataset.open(datasets[name])
        t = ds.chunks
        obj = json.loads(pathlib.Path(datasets[name], "_metadata.json").read_bytes())["chunks"]
        frame = pathlib.Path(datasets[name], obj["object"]).read_bytes() if "object" in obj else None
        mine = _quick.decode_table(obj, frame)
        assert {k: list(map(int, v)) for k, v in t.columns.items()} == mine
        m: Metadata = ds.meta
        _quick.validate_table(mine, len(m.references), m.chunk_size, m.n_slots, m.stats["n_records"],
                              m.format_version)
    rng = random.Random(9)
    ds = Dataset.open(datasets["inline"])
    m = ds.meta
    for _ in range(400):
        cols = {k: v.copy() for k, v in ds.chunks.columns.items()}
        field = rng.choice(sorted(cols))
        cols[field][rng.randrange(len(cols[field]))] += rng.choice([-2**33, -40, -1, 1, 36, 2**31, 2**33])
        t = ChunkTable(cols)
        args = (len(m.references), m.chunk_size, m.n_slots, m.stats["n_records"], m.format_version)
        full = _outcome(lambda: t.validate(*args))
        mine = _outcome(lambda: _quick.validate_table({k: list(map(int, v)) for k, v in cols.items()}, *args))
        assert (full is None) == (mine is None), (field, full, mine)
