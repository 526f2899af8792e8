"""The tags codec (``bams3/builtins/tags.py``, ``_tags.c``): any aux column comes back exactly,
well-formed (every SAM type, integers of every width against any predictor, float tables,
arrays, text, integer types their values imply and types they do not) or not (stored as it is); damaged payloads are refused with ValueError, never
read past; and the records of a real BAM, through a dataset, equal samtools'."""

from __future__ import annotations

import json
import random
import shutil
import struct
import subprocess

import pysam
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bams3.builtins import _tags, tags

_INT = {"c": ("<b", -128, 127), "C": ("<B", 0, 255), "s": ("<h", -32768, 32767), "S": ("<H", 0, 65535),
        "i": ("<i", -(1 << 31), (1 << 31) - 1), "I": ("<I", 0, (1 << 32) - 1)}


def implied(value: int) -> str:
    """The type htslib gives SAM's ``i`` of this value (as the tags codec's form 2 infers it)."""
    if value >= 0:
        return "C" if value <= 255 else "S" if value <= 65535 else "I" if value < 1 << 31 else "i"
    return "c" if value >= -128 else "s" if value >= -32768 else "i"


@st.composite
def field(draw, tag_names, natural=frozenset()):
    """A field; a tag in ``natural`` is an integer of the type its value implies, where the
    value fits it (one past int32 as I does not: that tag's types are stored)."""
    tag = draw(tag_names)
    kind = draw(st.sampled_from("cCsSiIcCsSiIfAZHB"))
    if tag in natural:
        value = draw(st.one_of(st.integers(-300, 70_000), st.integers(-(1 << 31), (1 << 32) - 1)))
        kind = implied(value) if value < 1 << 31 else "I"
        return tag + kind.encode() + struct.pack(_INT[kind][0], value)
    if kind in _INT:
        fmt, lo, hi = _INT[kind]
        value = draw(st.one_of(st.integers(max(lo, -3), min(hi, 300)), st.integers(lo, hi)))
        body = struct.pack(fmt, value)
    elif kind == "f":
        body = struct.pack("<f", draw(st.sampled_from([0.0, 0.0067, 0.013, -1.5, float("inf")])))
    elif kind == "A":
        body = bytes([draw(st.integers(33, 126))])
    elif kind in "ZH":
        body = draw(st.binary(max_size=12)).replace(b"\0", b"x") + b"\0"
    else:
        sub = draw(st.sampled_from("cCsSiIf"))
        width = 4 if sub == "f" else struct.calcsize(_INT[sub][0])
        n = draw(st.integers(0, 6))
        body = sub.encode() + struct.pack("<I", n) + draw(st.binary(min_size=n * width, max_size=n * width))
    return tag + kind.encode() + body


@st.composite
def columns(draw):
    """Records' optional fields, one after another: a few tags recurring (as aligners write
    them), sometimes with a changing type or many distinct tags."""
    names = draw(st.lists(st.binary(min_size=2, max_size=2), min_size=1, max_size=draw(st.sampled_from([4, 40]))))
    natural = frozenset(draw(st.lists(st.sampled_from(names))))
    records = draw(st.lists(st.lists(field(st.sampled_from(names), natural), max_size=8), min_size=1, max_size=60))
    return b"".join(b"".join(r) for r in records)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns(), st.sampled_from([1, 3, 9]))
def test_well_formed_fields_come_back_exactly(data, level):
    stored = tags.encode(data, level)
    assert stored[3] == (1 if data else 0)  # split by tag
    assert tags.decode(stored, len(data)) == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(columns(), st.binary(max_size=64)))
def test_the_split_finds_the_implied_types_in_its_own_walk(data):
    """split(data, True) is split(data) and implicit_types(data), from one walk over the fields
    (the encoder's); a column that is not a field stream is None either way."""
    both = _tags.split(data, True)
    if both is None:
        assert _tags.split(data) is None and _tags.implicit_types(data) is None
        return
    assert both[:4] == _tags.split(data)
    assert both[4] == _tags.implicit_types(data) and len(both[4]) == len(both[1])


def aligner_like(n: int) -> bytes:
    """minimap2's tags: AS equal to ms, de a float of few values, a Z and an A field."""
    out = []
    for i in range(n):
        nm, ms = i % 3, 300 - 10 * (i % 3)
        out.append(b"RGZS1\0" + b"NMC" + bytes([nm]) + b"msS" + struct.pack("<H", ms)
                   + b"ASS" + struct.pack("<H", ms) + b"tpAP" + b"def" + struct.pack("<f", nm / 150)
                   + b"s1I" + struct.pack("<I", 3_000_000_000 + i))  # beyond int32: unsigned
    return b"".join(out)


def test_integer_types_their_values_imply_are_not_stored():
    """minimap2's s1 is C below 256 and S above, as htslib types SAM's ``i``: form 2 stores no
    types for it (version 2); a tag of one stray type keeps its types (form 0)."""
    out = []
    for i in range(3000):
        s1 = 200 + i % 120  # crosses 255
        xs = -5 if i % 2 else 70_000
        out.append(b"s1" + implied(s1).encode() + struct.pack(_INT[implied(s1)][0], s1)
                   + b"XS" + implied(xs).encode() + struct.pack(_INT[implied(xs)][0], xs)
                   + (b"NMi" + struct.pack("<i", i % 3) if i != 1500 else b"NMC\x00") + b"tpAP")
    data = b"".join(out)
    assert _tags.implicit_types(data) == b"\1\1\0\0"
    stored = tags.encode(data, 3)
    forms = list(stored[5 + 2 * 4 + 4 : 5 + 2 * 4 + 8])
    assert stored[2] == 2 and [f & 2 for f in forms] == [2, 2, 0, 0]
    assert tags.decode(stored, len(data)) == data
    o = 5 + 4 * 4 + 4 + struct.unpack_from("<I", stored, 5 + 4 * 4)[0]  # past the ids: s1's types
    assert struct.unpack_from("<I", stored, o)[0] == 0
    plain = bytearray(stored)
    plain[2] = 1  # form 2 in a version 1 payload: unknown
    with pytest.raises(ValueError, match="unknown form"):
        tags.decode(bytes(plain), len(data))
    names, preds, ids, streams = _tags.split(data)
    streams[0] = b""
    assert _tags.join(len(data), names, preds, ids, streams, b"\1\0\0\0") == data
    with pytest.raises(ValueError, match="implied types are malformed"):
        _tags.join(len(data), names, preds, ids, _tags.split(data)[3], b"\1\0\0\0")  # types left in
    with pytest.raises(ValueError, match="implied types are malformed"):
        _tags.join(len(data), names, preds, ids, streams, b"\2\0\0\0")
    with pytest.raises(ValueError, match="do not match"):
        _tags.join(len(data), names, preds, ids, streams, b"\1\0\0")


def minimap2_like(n: int, seed: int) -> bytes:
    """minimap2's tags as its BAMs hold them (types as htslib gives SAM's i): NM, then ms and AS
    told by NM and the read's gaps, cm and s1 loosely by NM, s2 mostly 0, de by NM."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        nm = min(int(rng.expovariate(1.0)), 20)
        gap = rng.random() < 0.05
        ms = 300 - 10 * nm - (7 if gap else 0)
        cm = max(0, 19 - 2 * nm - rng.randrange(3))
        s1 = max(0, 283 - 25 * nm - rng.randrange(40))
        s2 = 0 if rng.random() < 0.9 else rng.randrange(30, 300)
        fields = [(b"NM", nm), (b"ms", ms), (b"AS", ms), (b"nn", 0), (b"cm", cm), (b"s1", s1), (b"s2", s2)]
        rec = b"RGZS1\0" + b"".join(t + implied(v).encode() + struct.pack(_INT[implied(v)][0], v)
                                   for t, v in fields[:4])
        rec += b"tpAP" + b"".join(t + implied(v).encode() + struct.pack(_INT[implied(v)][0], v) for t, v in fields[4:])
        out.append(rec + b"def" + struct.pack("<f", nm / 150))
    return b"".join(out)


def _forms(stored: bytes) -> dict[bytes, int]:
    nt = stored[4]
    return {stored[5 + 2 * k : 7 + 2 * k]: stored[5 + 3 * nt + k] for k in range(nt)}


def test_numbers_are_range_coded_in_the_context_that_tells_most():
    """Form 4 (from level 9: --compression high): ms and de are all but free given NM (the
    record's NM before them), cm cheaper; the coded column is smaller than the zstd-framed one
    (the default's level 3 keeps the frames), and comes back exactly."""
    data = minimap2_like(20_000, 1)
    stored = tags.encode(data, 15)
    assert tags.decode(stored, len(data)) == data
    forms = _forms(stored)
    assert all(forms[t] & 4 for t in (b"NM", b"ms", b"cm", b"de")), forms
    assert forms[b"de"] == 4 and forms[b"ms"] == 6  # (de is a float: its types are stored)
    coded = _tags.code_numbers(data, _tags.split(data)[1])
    tag_names, preds = _tags.split(data)[:2]
    by_tag = {tag_names[2 * k : 2 * k + 2]: c for k, c in enumerate(coded)}
    nm = tag_names.index(b"NM") // 2
    # given NM, de is certain and ms has one bit of 5% (a gap): 0.29 bits a record, 716 bytes
    for t, bound in ((b"ms", 1000), (b"de", 200)):
        payload = by_tag[t]
        assert payload[1] == 1 + nm  # in NM's context
        assert len(payload) < bound, (t, len(payload))
    framed = tags.encode(data, 3)
    assert not any(f & 4 for f in _forms(framed).values())
    assert tags.decode(framed, len(data)) == data
    assert len(stored) < 0.75 * len(framed), (len(stored), len(framed))


@st.composite
def large_columns(draw):
    """Columns of a few thousand records (enough for form 4): a template of fields repeated with
    values drawn per record, some tags of many values, some of few, some floats."""
    names = draw(st.lists(st.binary(min_size=2, max_size=2), min_size=1, max_size=6, unique=True))
    natural = frozenset(draw(st.lists(st.sampled_from(names))))
    template = draw(st.lists(st.sampled_from(names), min_size=1, max_size=6))
    spread = {t: draw(st.sampled_from([1, 4, 300, 70_000, 1 << 31])) for t in names}
    kinds = {t: draw(st.sampled_from("cCsSiIf")) for t in names}
    rng = random.Random(draw(st.integers(0, 1 << 30)))
    out = []
    for _ in range(draw(st.integers(300, 3000))):
        for t in template:
            v = rng.randrange(spread[t])
            if t in natural:
                out.append(t + implied(v).encode() + struct.pack(_INT[implied(v)][0], v))
            elif kinds[t] == "f":
                out.append(t + b"f" + struct.pack("<f", v / 7))
            else:
                fmt, lo, hi = _INT[kinds[t]]
                out.append(t + kinds[t].encode() + struct.pack(fmt, min(max(v + lo // 2, lo), hi)))
    return b"".join(out)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(large_columns(), st.sampled_from([1, 3, 9]))
def test_large_columns_come_back_exactly(data, level):
    stored = tags.encode(data, level)
    assert tags.decode(stored, len(data)) == data
    coded = _tags.code_numbers(data, _tags.split(data)[1])
    names, preds, ids, streams = _tags.split(data)
    flags = bytes(c is not None for c in coded)
    assert sum(flags) <= 16
    for k, c in enumerate(coded):  # every coded payload decodes, chosen or not
        if c is not None:
            streams[3 * k + 1] = c
    assert _tags.join(len(data), names, preds, ids, streams, b"", flags) == data


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 50), st.data())
def test_damaged_coded_payloads_are_refused(seed, draw):
    data = minimap2_like(2000, seed)
    stored = bytearray(tags.encode(data, 15))
    assert any(f & 4 for f in _forms(bytes(stored)).values())
    at = draw.draw(st.integers(0, len(stored) - 1))
    stored[at] ^= draw.draw(st.integers(1, 255))
    try:
        out = tags.decode(bytes(stored), len(data))
    except ValueError:
        return
    assert len(out) == len(data)


def test_coded_streams_are_checked():
    data = minimap2_like(3000, 2)
    names, preds, ids, streams = _tags.split(data)
    coded = _tags.code_numbers(data, preds)
    flags = bytes(c is not None for c in coded)
    k = next(k for k, c in enumerate(coded) if c is not None)
    good = list(streams)
    for j, c in enumerate(coded):
        if c is not None:
            good[3 * j + 1] = c
    assert _tags.join(len(data), names, preds, ids, good, b"", flags) == data

    def with_payload(p):
        bad = list(good)
        bad[3 * k + 1] = p
        return bad

    c = coded[k]
    for payload, says in [(c + b"\0", "more than its fields"), (c[:-1], "more than its fields|damaged|run out"),
                          (c[:6], "malformed"), (bytes([4]) + c[1:], "malformed"), (c[:1] + bytes([255]) + c[2:],
                                                                                    "malformed"),
                          (c[:3] + (0xFFFFFF).to_bytes(4, "little") + c[7:], "malformed"),
                          (c[:3] + (5).to_bytes(4, "little") + c[7:], "more than its fields|run out")]:
        with pytest.raises(ValueError, match=says):
            _tags.join(len(data), names, preds, ids, with_payload(payload), b"", flags)
    with pytest.raises(ValueError, match="malformed"):
        _tags.join(len(data), names, preds, ids, good, b"", bytes(2 if f else 0 for f in flags))
    with pytest.raises(ValueError, match="do not match"):
        _tags.join(len(data), names, preds, ids, good, b"", flags[:-1])
    many = b"".join(bytes([65 + k, 65]) + b"C\1" for k in range(17))
    n17, p17, i17, s17 = _tags.split(many)
    with pytest.raises(ValueError, match="more tags"):
        _tags.join(len(many), n17, p17, i17, s17, b"", b"\1" * 17)


def test_integers_are_stored_against_the_tag_that_predicts_them():
    data = aligner_like(3000)
    names, preds, ids, streams = _tags.split(data)
    tag = [names[2 * k : 2 * k + 2] for k in range(len(preds))]
    assert tag == [b"RG", b"NM", b"ms", b"AS", b"tp", b"de", b"s1"]
    assert tag[preds[tag.index(b"AS")] - 1] == b"ms"  # AS - ms: all zeros
    assert set(streams[3 * tag.index(b"AS") + 1]) == {0}
    assert tag[preds[tag.index(b"s1")] - 1] == b"s1"  # s1 by its previous value
    stored = tags.encode(data, 3)
    assert stored[5 + 3 * len(preds) + tag.index(b"de")] == 1  # the floats as a table
    assert tags.decode(stored, len(data)) == data
    assert len(stored) < len(pytest.importorskip("zstandard").ZstdCompressor(level=19).compress(data))


@pytest.mark.parametrize("data", [
    b"NMi\x01\x00",  # a truncated integer
    b"XZZabc",  # text without its NUL
    b"XBB" + b"i" + struct.pack("<I", 1000) + b"\0" * 8,  # an array longer than the column
    b"XXq\x00",  # no such type
    b"".join(bytes([k // 250, k % 250 + 1]) + b"A!" for k in range(300)),  # 300 distinct tags
    b"N",
])
def test_what_is_not_a_field_stream_is_stored_as_it_is(data):
    stored = tags.encode(data, 3)
    assert stored[3] == 0
    assert tags.decode(stored, len(data)) == data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns(), st.data())
def test_damaged_payloads_are_refused(data, draw):
    stored = bytearray(tags.encode(data, 3))
    at = draw.draw(st.integers(0, len(stored) - 1))
    stored[at] ^= draw.draw(st.integers(1, 255))
    try:
        out = tags.decode(bytes(stored), len(data))
    except ValueError:  # zstd's own errors too, as the codec contract asks
        return
    assert len(out) == len(data)  # a changed value, never a read past the streams


def test_a_section_that_would_decompress_past_the_column_is_refused():
    import struct

    import zstandard

    data = aligner_like(20)
    stored = tags.encode(data, 3)
    nt = stored[4]
    o = 5 + 4 * nt
    (n,) = struct.unpack_from("<I", stored, o)
    huge = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * (4 * len(data)))
    bomb = stored[:o] + struct.pack("<I", len(huge)) + huge + stored[o + 4 + n :]
    with pytest.raises(ValueError):
        tags.decode(bomb, len(data))


def test_the_streams_are_checked_against_the_column():
    data = aligner_like(50)
    names, preds, ids, streams = _tags.split(data)
    assert _tags.join(len(data), names, preds, ids, streams) == data
    with pytest.raises(ValueError, match="do not fill"):
        _tags.join(len(data) + 1, names, preds, ids, streams)
    with pytest.raises(ValueError, match="run out"):
        _tags.join(len(data), names, preds, ids + b"\0", streams)
    with pytest.raises(ValueError, match="more than its fields"):
        _tags.join(len(data) - 6, names, preds, ids[:-1], streams)
    bad = list(streams)
    bad[1] = bad[1] + b"\0"  # a partial number
    with pytest.raises(ValueError, match="malformed"):
        _tags.join(len(data), names, preds, ids, bad)
    with pytest.raises(ValueError, match="lacks"):
        _tags.join(len(data), names, preds, bytes([len(preds)]) + ids[1:], streams)
    with pytest.raises(ValueError, match="do not match"):
        _tags.join(len(data), names, preds, ids, streams[:-1])
    with pytest.raises(ValueError, match="do not match"):
        _tags.join(-1, names, preds, ids, streams)


def test_a_dataset_of_every_kind_of_tag_reads_as_samtools_does(tmp_path):
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "c", "LN": 10_000}]}
    path = str(tmp_path / "t.bam")
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for i in range(500):
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.reference_id, r.reference_start, r.mapping_quality = f"r{i}", 0, 10 * i, 60
            r.cigarstring, r.query_sequence, r.query_qualities = "4M", "ACGT", pysam.qualitystring_to_array("IIII")
            r.set_tags([("NM", i % 4), ("AS", -i), ("XS", i * 70_000), ("de", i / 7, "f"), ("tp", "P", "A"),
                        ("ZZ", f"text{i % 5}"), ("BA", [i, -i, 3], "i"), ("BF", [0.5, i], "f")]
                       + ([("SA", "c,1,+,4M,60,0;")] if i % 9 == 0 else []))
            out.write(r)
    pysam.index(path)
    bams3 = shutil.which("bams3")
    subprocess.run([bams3, "convert", path, str(tmp_path / "t.bams3")], check=True)
    meta = json.loads((tmp_path / "t.bams3" / "_metadata.json").read_text())
    assert "tags" in [c["name"] for c in meta["codecs"]]
    ours = subprocess.run([bams3, "query", str(tmp_path / "t.bams3"), "c"], check=True, capture_output=True,
                          text=True).stdout
    assert ours == pysam.view(path, "c")
    assert ours.count("\tXS:i:") == 500 and ours.count("\tSA:Z:") == 56


@given(st.lists(st.integers(0, (1 << 32) - 1), min_size=1, max_size=40).flatmap(
    lambda values: st.lists(st.sampled_from(values), min_size=1, max_size=300)))
def test_a_value_table_comes_back_and_an_index_outside_it_is_refused(numbers):
    """Numbers of few distinct values stored as a table (``_as_table``) read back byte plane by
    byte plane (``_from_table``); an index past the table's last value is refused (ValueError)."""
    import numpy as np

    from bams3.builtins._decode import _from_table

    planes = np.array(numbers, dtype="<u4").view(np.uint8).reshape(-1, 4).T.tobytes()  # as the codec shuffles them
    table = tags._as_table(planes)
    assert _from_table(table, len(numbers)) == planes
    d = table[0] + 1
    if d < 256:
        bad = bytearray(table)
        bad[1 + 4 * d + len(numbers) // 2] = d
        with pytest.raises(ValueError, match="outside its table"):
            _from_table(bytes(bad), len(numbers))
