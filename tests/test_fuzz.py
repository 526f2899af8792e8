"""Fuzzing the chunk decoder and the metadata parser with mutated valid inputs: every
outcome is a clean result or a one-line bams3 error, never another exception."""

from __future__ import annotations

import json
import pathlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3
from bams3.errors import Bams3Error
from bams3.format import ChunkReader, Metadata

GOLDEN = pathlib.Path(__file__).parent / "golden" / "v1"
DATASETS = [GOLDEN / "qual_ctx.bams3", GOLDEN / "high.bams3", GOLDEN / "ce_5b_slots.bams3"]
CHUNKS = [(d, p.read_bytes()) for d in DATASETS for p in sorted((d / "data").glob("*/00000*"))[:2]]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw, blob: bytes):
    b = bytearray(blob)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "zero-run"]))
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
        else:
            b[i : i + 8] = bytes(min(8, len(b) - i))
    return bytes(b)


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
    d = data.draw(st.sampled_from(DATASETS))
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
    """Absurd values in _metadata.json: refused at open, or every question answered or refused cleanly."""
    import shutil

    src = data.draw(st.sampled_from(DATASETS))
    obj = json.loads((src / "_metadata.json").read_text())
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
    (dest / "_metadata.json").write_text(json.dumps(obj))
    try:
        ds = bams3.open(str(dest))
        ds.count()
        for name, _ in ds.references[:2]:
            ds.count(name)
            list(ds.batches(name))
        ds.coverage()
    except Bams3Error as exc:
        assert "\n" not in str(exc)
