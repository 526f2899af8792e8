"""Fuzzing datasets with mutated bytes: every mutated input gives the right answer or a
one-line bams3 error, never a different answer (a count, a record, a statistic or a depth
that differs from the unmutated dataset's). And the decoders, fed mutated bytes directly,
raise only bams3 errors."""

from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import re
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
from bams3.errors import Bams3Error
from bams3.format import ChunkReader, Metadata, encode_metadata

from .synth import write_bam

GOLDEN = pathlib.Path(__file__).parent / "golden" / "v1"
LEGACY = [GOLDEN / "qual_ctx.bams3", GOLDEN / "high.bams3", GOLDEN / "ce_5b_slots.bams3"]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REGIONS = ["chrA:1000-1100", "chrA:150000-170000", "chrB", "chrC:5-195000", "*"]


@st.composite
def mutated(draw, blob: bytes):
    """1-4 mutations: bit flips, bytes set, truncation, insertion, zeroed runs, and edits of one
    decimal digit (what a hand edit or a bad sector in JSON looks like)."""
    b = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "flip", "set", "truncate", "insert", "zero-run", "digit"]))
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        if kind == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            b[i] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del b[i:]
        elif kind == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "zero-run":
            b[i : i + 8] = bytes(min(8, len(b) - i))
        else:
            digits = [m.start() for m in re.finditer(rb"\d", bytes(b))]
            if digits:
                j = digits[draw(st.integers(0, len(digits) - 1))]
                b[j] = ord(str(draw(st.integers(0, 9))))
    return bytes(b)


def _answers(url: str) -> dict:
    """Every question a reader answers from a dataset: statistics, counts of regions (edge chunks,
    whole references, count slots), the records of regions and of everything, and the depth."""
    ds = bams3.open(url)
    out = {"stats": json.dumps(ds.stats, sort_keys=True), "references": ds.references}
    for r in REGIONS:
        out[f"count {r}"] = ds.count(r)
    for r in REGIONS[:3]:
        out[f"records {r}"] = hashlib.sha256(b"".join(b.tobytes() for b in ds.batches(r))).hexdigest()
    out["records"] = hashlib.sha256(b"".join(b.tobytes() for b in ds.batches())).hexdigest()
    out["coverage"] = ds.coverage(None, 65536)
    return out


@functools.cache
def _datasets() -> dict[str, tuple[pathlib.Path, dict]]:
    """Current-format datasets (default, with count slots; high, without) and their true answers."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="bams3-fuzz-"))
    bam = write_bam(str(d / "synth.bam"), n=1500, seed=11)
    out = {}
    for name, compression in (("default", "default"), ("high", "high")):
        dest = d / f"{name}.bams3"
        bams3.convert(bam, str(dest), chunk_size=16384, compression=compression, slots=name == "default")
        out[name] = (dest, _answers(str(dest)))
    return out


def _objects(dest: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in dest.rglob("*") if p.is_file())


def _right_or_refused(dest: pathlib.Path, truth: dict, where: str) -> str:
    try:
        got = _answers(str(dest))
    except Bams3Error as exc:
        assert "\n" not in str(exc)
        return "refused"
    assert got == truth, f"a mutated {where} gave a different answer"
    return "right"


OUTCOMES: dict[str, int] = {}


@FUZZ
@given(data=st.data())
def test_mutated_objects_give_the_right_answer_or_a_one_line_error(data):
    """Any object of the dataset (_metadata.json, a chunk, the coverage object), mutated."""
    dest, truth = _datasets()[data.draw(st.sampled_from(["default", "high"]))]
    victim = data.draw(st.sampled_from(_objects(dest)))
    original = victim.read_bytes()
    bad = data.draw(mutated(original))
    victim.write_bytes(bad)
    try:
        outcome = _right_or_refused(dest, truth, victim.name)
    finally:
        victim.write_bytes(original)
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1


def _edit_table_value(original: bytes, data) -> bytes:
    """One bit of one value of the inline chunk table flipped, the table re-encoded validly."""
    from bams3.format import ChunkTable

    obj = json.loads(original)
    table = ChunkTable.from_json(obj["chunks"])
    field = data.draw(st.sampled_from(sorted(table.columns)))
    i = data.draw(st.integers(0, len(table) - 1))
    table.columns[field][i] ^= 1 << data.draw(st.integers(0, 20))
    return original.replace(obj["chunks"]["data"].encode(), table.to_json()["data"].encode())


def _edit_number(original: bytes, data) -> bytes:
    """One digit of chunk_size, count_slot_bp or a reference length changed."""
    spans = [m.span(1) for m in re.finditer(rb'"(?:chunk_size|count_slot_bp)":(\d+)', original)]
    spans += [m.span(1) for m in re.finditer(rb'\["[^"]+",(\d+)\]', original)]
    a, b = data.draw(st.sampled_from(spans))
    j = data.draw(st.integers(a, b - 1))
    return original[:j] + str(data.draw(st.integers(0, 9))).encode() + original[j + 1 :]


@FUZZ
@given(data=st.data())
def test_mutated_metadata_gives_the_right_answer_or_a_one_line_error(data):
    """_metadata.json alone, where a mutation of its inline chunk table, chunk size, count-slot
    size or reference lengths used to give wrong counts: its checksum is checked first."""
    dest, truth = _datasets()[data.draw(st.sampled_from(["default", "high"]))]
    victim = dest / "_metadata.json"
    original = victim.read_bytes()
    how = data.draw(st.sampled_from(["bytes", "table value", "number"]))
    if how == "bytes":
        bad = data.draw(mutated(original))
    elif how == "table value":
        bad = _edit_table_value(original, data)
    else:
        bad = _edit_number(original, data)
    victim.write_bytes(bad)
    try:
        _right_or_refused(dest, truth, "_metadata.json")
    finally:
        victim.write_bytes(original)


def test_the_fuzzed_datasets_have_what_the_mutations_should_hit():
    default, _ = _datasets()["default"]
    ds = bams3.open(str(default))
    assert ds.meta.count_slot_bp and (ds.chunks.slot_nbytes > 0).any() and len(ds.chunks) > 20
    assert ds.meta.chunks is not None and ds.meta.coverage is not None  # the table is inline
    assert b'"checksum":"sha256:' in (default / "_metadata.json").read_bytes()


# ------------------------------------------------------------------ decoders, directly

CHUNKS = [(d, p.read_bytes()) for d in LEGACY for p in sorted((d / "data").glob("*/00000*"))[:2]]


@FUZZ
@given(data=st.data())
def test_chunk_decoder(data):
    d, blob = data.draw(st.sampled_from(CHUNKS))
    bad = data.draw(mutated(blob))
    codecs = bams3.open(str(d)).codecs
    try:
        r = ChunkReader(bad, codecs, "fuzz")
        r.positions()
        r.records()
    except Bams3Error as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(data=st.data())
def test_metadata_parser_bytes(data):
    """Legacy (v1) metadata has no checksum; its parser still refuses cleanly."""
    d = data.draw(st.sampled_from(LEGACY))
    bad = data.draw(mutated((d / "_metadata.json").read_bytes()))
    try:
        Metadata.from_json(bad, "fuzz")
    except Bams3Error as exc:
        assert "\n" not in str(exc)


_ABSURD = st.one_of(st.integers(-2**63, 2**63 - 1), st.just(-1), st.just(0), st.just(2**40), st.text(max_size=5),
                    st.none(), st.lists(st.integers(), max_size=3), st.floats(allow_nan=True))


@FUZZ
@given(data=st.data())
def test_metadata_values_then_a_query(data, tmp_path_factory):
    """Absurd values in _metadata.json, signed as a hostile writer would sign them: refused at
    open, or every question answered or refused cleanly."""
    import shutil

    src = data.draw(st.sampled_from(LEGACY + [_datasets()["default"][0]]))
    obj = json.loads((src / "_metadata.json").read_text())
    obj.pop("checksum", None)
    path = data.draw(st.sampled_from([
        ("chunk_size",), ("count_slot_bp",), ("format_version",), ("chunks", "count"), ("header", "references"),
        ("stats", "n_records"), ("data_prefix",), ("coverage", "bins"), ("coverage", "nbytes"), ("codecs",),
        ("chunks", "data"), ("chunks", "encoding"),
    ]))
    target = obj
    for k in path[:-1]:
        target = target.setdefault(k, {}) if isinstance(target, dict) else target
    if isinstance(target, dict):
        target[path[-1]] = data.draw(_ABSURD)
    dest = tmp_path_factory.mktemp("fz") / "d"
    shutil.copytree(src, dest)
    (dest / "_metadata.json").write_bytes(encode_metadata(obj))
    try:
        ds = bams3.open(str(dest))
        ds.count()
        for name in ds.references[:2]:
            ds.count(name)
            list(ds.batches(name))
        ds.coverage()
    except Bams3Error as exc:
        assert "\n" not in str(exc)
