"""The names codec (``bams3/builtins/names.py``, ``_names.c``): any read-name column comes back
exactly (repeats near and far, numbers with leading zeros, of 9 digits and of 10, "0", names
that are all digits or none, more than 16 numbers, empty names), and anything that is not
names ending in a NUL is stored as it is; damaged payloads are refused with ValueError, never
read past; and a dataset's names, and -N on them, equal samtools'. Given the records' positions
and next_pos (the paired form), any column over any positions comes back exactly, and the second
read of a pair whose positions name its mate costs no code."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess

import numpy as np
import pysam
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from bams3 import RecordFields
from bams3.builtins import _names, names

_PIECES = st.sampled_from([b"HS18_09653", b":", b"4", b"0", b"007", b"999999999", b"1000000000", b"4294967296",
                           b"chr1-", b"/1", b"_", b"SRR", b"x", b"12", b"65535", b"."])


@st.composite
def columns(draw):
    """Names as aligners write them (pieces of instrument names and numbers), some repeated a
    few names later (a pair's two reads) or far later, ending in a NUL each."""
    pool = draw(st.lists(st.lists(_PIECES | st.binary(max_size=4).map(lambda b: b.replace(b"\0", b"z")),
                                  max_size=40).map(b"".join), min_size=1, max_size=30))
    picks = draw(st.lists(st.integers(0, len(pool) - 1), min_size=1, max_size=400))
    return b"".join(pool[i] + b"\0" for i in picks)


def _round_trip(data: bytes, level=None) -> bytes:
    stored = names.encode(data, level)
    assert names.decode(stored, len(data)) == data
    return stored


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns(), st.sampled_from([None, 1, 9]))
def test_any_names_come_back_exactly(data, level):
    small, names._SMALL = names._SMALL, 0  # the streams whatever their size
    try:
        stored = _round_trip(data, level)
    finally:
        names._SMALL = small
    assert stored[3] == (0 if b"\1" in data else 1)
    _round_trip(data, level)  # and as it is written: the smaller of the two for a small column


def test_a_few_names_are_stored_as_they_are_when_that_is_smaller():
    data = b"r1\0r2\0r1\0"
    stored = _round_trip(data)
    assert stored[3] == 0 and len(stored) < 4 + 18 * 4
    assert _round_trip(_pairs(3000, 4))[3] == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_anything_else_comes_back_as_it_was(data):
    stored = names.encode(data, None)
    if not data or data[-1] != 0 or b"\1" in data:
        assert stored[3] == 0
    assert names.decode(stored, len(data)) == data


def test_numbers_print_back_as_they_were():
    cases = [b"0", b"00", b"01", b"10", b"999999999", b"1000000000", b"123456789012", b"a0b00c000", b"",
             b"1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16:17:18:19:20", b"4294967295", b"4294967296"]
    data = b"".join(c + b"\0" for c in cases)
    codes, shapes, numbers = _names.split(data)
    assert codes == bytes(len(cases))  # no repeats
    assert _names.join(len(data), codes, shapes, numbers) == data
    assert b"1000000000" in shapes and b"00" in shapes and b"01" in shapes  # kept as text
    assert np.frombuffer(numbers[15], np.uint8).reshape(4, -1).T.copy().view("<u4").ravel().tolist() == \
        [16, 17, 18, 19, 20]  # the 16th number of a name and later share the last stream


def _pairs(n: int, seed: int) -> bytes:
    """Illumina names of pairs, each name twice a few records apart, in coordinate order."""
    rng = np.random.default_rng(seed)
    out, pending = [], []
    for k in range(n):
        name = b"A00123:45:HXXXXDSXX:%d:%d:%d:%d" % (rng.integers(1, 5), rng.integers(1101, 2679),
                                                     rng.integers(1000, 32000), rng.integers(1000, 37000))
        out.append(name)
        pending.append((k + int(rng.integers(1, 40)), name))
        for due in [p for p in pending if p[0] <= k]:
            out.append(due[1])
            pending.remove(due)
    out += [p[1] for p in pending]
    return b"".join(x + b"\0" for x in out)


def test_pairs_cost_less_than_zstd_alone():
    data = _pairs(5000, 1)
    codes, _, _ = _names.split(data)
    assert sum(1 for c in codes if c) == 5000  # every second read named as a repeat
    stored = _round_trip(data)
    plain = zstandard.ZstdCompressor(level=19).compress(data)
    assert len(stored) < 0.8 * len(plain), (len(stored), len(plain))


def test_the_streams_are_checked_against_the_column():
    data = _pairs(50, 2)
    codes, shapes, numbers = _names.split(data)
    assert _names.join(len(data), codes, shapes, numbers) == data
    with pytest.raises(ValueError, match="do not fill"):
        _names.join(len(data) + 1, codes, shapes, numbers)
    with pytest.raises(ValueError, match="longer than"):
        _names.join(len(data) - 1, codes, shapes, numbers)
    with pytest.raises(ValueError, match="run out"):
        _names.join(len(data), codes, shapes[:-3], numbers)
    with pytest.raises(ValueError, match="hold more"):
        _names.join(len(data), codes, shapes + b"x\0", numbers)
    with pytest.raises(ValueError, match="hold more"):
        _names.join(len(data), codes, shapes, [numbers[0] + b"\0\0\0\0", *numbers[1:]])
    with pytest.raises(ValueError, match="before the chunk"):
        _names.join(len(data), b"\1" + codes[1:], shapes, numbers)
    with pytest.raises(ValueError, match="do not match"):
        _names.join(len(data), codes, shapes, numbers[:-1])
    with pytest.raises(ValueError, match="do not match"):
        _names.join(len(data), codes, shapes, [numbers[0] + b"\0", *numbers[1:]])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(columns(), st.data())
def test_damaged_payloads_are_refused(data, draw):
    stored = bytearray(names.encode(data, 3))
    at = draw.draw(st.integers(0, len(stored) - 1))
    stored[at] ^= draw.draw(st.integers(1, 255))
    try:
        out = names.decode(bytes(stored), len(data))
    except ValueError:
        return
    assert len(out) == len(data)  # a changed name, never a read past the streams


def _records(pos, next_pos) -> RecordFields:
    n = len(pos)
    return RecordFields(l_seq=np.full(n, 100, np.int64), flag=np.zeros(n, np.uint16), pos=np.asarray(pos, np.int64),
                        n_cigar_op=np.zeros(n, np.int64), cigar=np.zeros(0, np.uint32),
                        next_pos=np.asarray(next_pos, np.int64))


@st.composite
def paired_chunks(draw):
    """A names column with positions and next_pos, one per name: sorted or not, next_pos often
    another record's position (its mate's, or one whose own next_pos does not point back),
    positions repeated, values past int32, and names that differ from their mate's."""
    data = draw(columns())
    n = data.count(0)
    width = draw(st.sampled_from([4, 1000, 1 << 33]))
    pos = draw(st.lists(st.integers(-width, width), min_size=n, max_size=n))
    if draw(st.booleans()):
        pos.sort()
    next_pos = []
    for i in range(n):
        pick = draw(st.integers(0, 3))
        next_pos.append(pos[draw(st.integers(0, n - 1))] if pick else draw(st.integers(-width, width)))
    if draw(st.booleans()):  # mates: a few names point at each other, both ways
        for i in range(0, n - 1, 2):
            j = min(n - 1, i + draw(st.integers(1, 300)))
            next_pos[i], next_pos[j] = pos[j], pos[i]
    return data, pos, next_pos


def _paired_round_trip(data: bytes, pos, next_pos, level=None) -> bytes:
    records = _records(pos, next_pos)
    stored = names.encode(data, level, records=records)
    assert names.decode(stored, len(data), records=records) == data
    return stored


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paired_chunks(), st.sampled_from([None, 1, 9]))
def test_any_names_over_any_positions_come_back_exactly(chunk, level):
    data, pos, next_pos = chunk
    small, names._SMALL = names._SMALL, 0  # the streams whatever their size
    try:
        stored = _paired_round_trip(data, pos, next_pos, level)
    finally:
        names._SMALL = small
    assert stored[2:4] == (b"\x01\x00" if b"\1" in data else b"\x02\x01")
    _paired_round_trip(data, pos, next_pos, level)


def _pairs_at(n: int, seed: int):
    """_pairs' names with the positions and next_pos of their reads: each pair's second read at
    the first's position plus its distance in records (coordinate order), mates pointing at
    each other; every 20th record's next_pos 3 bp off (its mate elsewhere)."""
    column = _pairs(n, seed).split(b"\0")[:-1]
    pos = list(range(0, 10 * len(column), 10))
    first: dict[bytes, int] = {}
    next_pos = [0] * len(column)
    for i, name in enumerate(column):
        if name in first:
            j = first.pop(name)
            next_pos[i], next_pos[j] = pos[j], pos[i]
        else:
            first[name] = i
    for i in range(0, len(column), 20):
        next_pos[i] += 3
    return b"".join(x + b"\0" for x in column), pos, next_pos


def _predicted(pos, next_pos) -> list[int]:
    """docs/format.md §6.7's mates, as written there (a walk back, no bisection)."""
    n, taken, out = len(pos), set(), []
    for i in range(n):
        best = -1
        for j in range(max(0, i - 255), i):
            if j not in taken and (pos[j] - next_pos[i]) % (1 << 32) == 0 and (next_pos[j] - pos[i]) % (1 << 32) == 0:
                best = j
                break
        if best >= 0:
            taken |= {best, i}
        out.append(best)
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paired_chunks())
def test_the_mates_are_those_the_format_names(chunk):
    """The C kernel's mates (by bisection in a sorted chunk) are the specification's: the records
    with a mate take an ok each, in order, and a name equal to its mate's is an ok of 1."""
    data, pos, next_pos = chunk
    parts = _names.split_paired(data, np.array(pos, np.int64), np.array(next_pos, np.int64))
    if parts is None:
        return
    mates = _predicted(pos, next_pos)
    names = data.split(b"\0")[:-1]
    assert list(parts[1]) == [int(names[i] == names[m]) for i, m in enumerate(mates) if m >= 0]


def test_the_second_read_of_a_pair_costs_no_code():
    data, pos, next_pos = _pairs_at(5000, 1)
    codes, oks, shapes, numbers = _names.split_paired(data, np.array(pos, np.int64), np.array(next_pos, np.int64))
    plain_codes = _names.split(data)[0]
    # every second read whose mate the positions name is a 1 in oks; the codes are the rest
    assert len(codes) + sum(oks) == 10_000 and sum(oks) > 4000 and set(oks) == {1}
    assert len(codes) < len(plain_codes) and sum(1 for c in codes if c) < 1000
    paired = _paired_round_trip(data, pos, next_pos)
    assert len(paired) < len(_round_trip(data)) - 2000, (len(paired), len(_round_trip(data)))


def test_numbers_are_framed_a_byte_plane_at_a_time():
    """The numbers' sections (section_planes): one zstd frame that declares its size and reads
    back, each byte plane in blocks of its own, smaller than one frame of all the planes where
    they differ (a random low byte, a high byte of few values: an ART read's number)."""
    from bams3.builtins import zstd

    numbers = np.random.default_rng(2).integers(0, 666_661, 6000).astype("<u4")
    data = numbers.view(np.uint8).reshape(-1, 4).T.copy().tobytes()  # shuffled by byte
    framed, whole = zstd.section_planes(data, 15, 4), zstd.section(data, 15)
    frame = framed[4:]
    assert int.from_bytes(framed[:4], "little") == len(frame) and zstandard.frame_content_size(frame) == len(data)
    assert zstandard.ZstdDecompressor().decompress(frame) == data
    assert len(framed) < 0.97 * len(whole), (len(framed), len(whole))
    assert zstd.section_planes(data[:4000], 15, 4) == zstd.section(data[:4000], 15)  # under 1,024 numbers
    assert zstd.section_planes(b"", 15, 4) == zstd.section(b"", 15)


def test_the_paired_form_needs_the_records():
    data, pos, next_pos = _pairs_at(300, 4)
    stored = _paired_round_trip(data, pos, next_pos)
    assert stored[2] == 2
    with pytest.raises(ValueError, match="positions and next_pos"):
        names.decode(stored, len(data))
    with pytest.raises(ValueError, match="do not fill"):  # fewer records than names
        names.decode(stored, len(data), records=_records(pos[:-1], next_pos[:-1]))
    # positions that name other mates: another column, or an error, never a read past the streams
    try:
        out = names.decode(stored, len(data), records=_records(pos, next_pos[::-1]))
    except ValueError:
        pass
    else:
        assert len(out) == len(data) and out != data
    # the version 1 form reads as ever with the records given; names not one per record: version 1
    assert names.decode(names.encode(data, None), len(data), records=_records(pos, next_pos)) == data
    assert names.encode(data, None, records=_records(pos[:-1], next_pos[:-1]))[2] == 1


def test_the_paired_streams_are_checked_against_the_column():
    data, pos, next_pos = _pairs_at(50, 2)
    p, q = np.array(pos, np.int64), np.array(next_pos, np.int64)
    codes, oks, shapes, numbers = _names.split_paired(data, p, q)
    assert _names.join_paired(len(data), p, q, codes, oks, shapes, numbers) == data
    with pytest.raises(ValueError, match="run out"):
        _names.join_paired(len(data), p, q, codes, oks[:-1], shapes, numbers)
    with pytest.raises(ValueError, match="hold more"):
        _names.join_paired(len(data), p, q, codes, oks + b"\1", shapes, numbers)
    with pytest.raises(ValueError, match="run out"):
        _names.join_paired(len(data), p, q, codes[:-1], oks, shapes, numbers)
    with pytest.raises(ValueError, match="hold more"):
        _names.join_paired(len(data), p, q, codes + b"\0", oks, shapes, numbers)
    with pytest.raises(ValueError, match="neither 0 nor 1"):
        _names.join_paired(len(data), p, q, codes, b"\2" + oks[1:], shapes, numbers)
    with pytest.raises(ValueError, match="do not match"):
        _names.join_paired(len(data), p, q[:-1], codes, oks, shapes, numbers)
    with pytest.raises(ValueError, match="do not match"):
        _names.join_paired(len(data), p, q, codes + bytes(100), oks, shapes, numbers)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paired_chunks(), st.data())
def test_damaged_paired_payloads_are_refused(chunk, draw):
    data, pos, next_pos = chunk
    records = _records(pos, next_pos)
    stored = bytearray(names.encode(data, 3, records=records))
    at = draw.draw(st.integers(0, len(stored) - 1))
    stored[at] ^= draw.draw(st.integers(1, 255))
    try:
        out = names.decode(bytes(stored), len(data), records=records)
    except ValueError:
        return
    assert len(out) == len(data)


def test_a_section_larger_than_the_column_is_refused():
    big = zstandard.ZstdCompressor(write_content_size=False).compress(b"\1" * 10_000)
    payload = b"RN\x01\x01" + len(big).to_bytes(4, "little") + big + b"\0" * 4 * 17
    with pytest.raises(ValueError):
        names.decode(payload, 100)


def test_a_dataset_reads_names_as_samtools_does(tmp_path):
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "c", "LN": 100_000}]}
    path = str(tmp_path / "n.bam")
    column = _pairs(2000, 3).split(b"\0")[:-1]
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for i, name in enumerate(column):
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.reference_id, r.reference_start, r.mapping_quality = name.decode(), 0, 20 * i, 60
            r.cigarstring, r.query_sequence, r.query_qualities = "4M", "ACGT", pysam.qualitystring_to_array("IIII")
            out.write(r)
    pysam.index(path)
    bams3 = shutil.which("bams3")
    ds = str(tmp_path / "n.bams3")
    subprocess.run([bams3, "convert", path, ds, "--chunk-size", "16K"], check=True)
    meta = json.loads(open(f"{ds}/_metadata.json").read())
    assert "names" in [c["name"] for c in meta["codecs"]]
    assert subprocess.run([bams3, "query", ds], check=True, capture_output=True, text=True).stdout == \
        pysam.view(path)
    listed = tmp_path / "names.txt"
    listed.write_text("\n".join(n.decode() for n in column[::97]) + "\n")
    assert subprocess.run([bams3, "query", ds, "-N", str(listed)], check=True, capture_output=True,
                          text=True).stdout == pysam.view("-N", str(listed), path)


def test_the_names_codec_is_refused_for_another_column(tmp_path):
    src = str(pathlib.Path(__file__).parent / "data" / "htslib" / "range.bam")
    bams3 = shutil.which("bams3")
    for option in (["--aux-codec", "names"], ["--name-codec", "mates"], ["--name-codec", "qual"],
                   ["--codec", "names"]):
        p = subprocess.run([bams3, "convert", src, str(tmp_path / "x.bams3"), *option], capture_output=True, text=True)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (option, p.stderr)
        assert not (tmp_path / "x.bams3").exists()
    subprocess.run([bams3, "convert", src, str(tmp_path / "z.bams3"), "--name-codec", "none"], check=True)
    meta = json.loads((tmp_path / "z.bams3" / "_metadata.json").read_text())
    assert "names" not in [c["name"] for c in meta["codecs"]]
    assert subprocess.run([bams3, "query", str(tmp_path / "z.bams3")], check=True, capture_output=True,
                          text=True).stdout == pysam.view(src)
