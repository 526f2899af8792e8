"""The mates codec (``bams3/builtins/mates.py``, ``_mates.c``): any next_pos column comes back
exactly over any positions (pairs in the chunk, mates elsewhere, several records at one
position, unsorted, values at the limits of 32 bits, columns that are not 4 bytes a record);
damaged payloads are refused with ValueError, never read past; and a dataset's next_pos, and
filters on it, equal samtools'."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pysam
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings, strategies as st

from bams3 import RecordFields
from bams3.builtins import _mates, mates


def _records(pos) -> RecordFields:
    n = len(pos)
    return RecordFields(l_seq=np.full(n, 100, np.int64), flag=np.zeros(n, np.uint16), pos=np.asarray(pos, np.int64),
                        n_cigar_op=np.zeros(n, np.int64), cigar=np.zeros(0, np.uint32))


def _column(next_pos, pos) -> bytes:
    """The next_pos column as a chunk stores it: next_pos - pos mod 2**32, shuffled by byte."""
    v = (np.asarray(next_pos, np.int64) - np.asarray(pos, np.int64)) & 0xFFFFFFFF
    return v.astype("<u4").view(np.uint8).reshape(-1, 4).T.tobytes()


@st.composite
def chunks(draw):
    """Positions (sorted, as a chunk's are, or not) and next_pos values: mates in the chunk
    (pointing at each other, or one-way), mates elsewhere, unmapped (-1), anything."""
    n = draw(st.integers(1, 400))
    pos = draw(st.lists(st.sampled_from([-1, 0, 5, 7, 100, 2**31 - 1]) | st.integers(-1, 3000), min_size=n, max_size=n))
    if draw(st.booleans()):
        pos.sort()
    nxt = [0] * n
    for i in range(n):
        kind = draw(st.integers(0, 4))
        if kind <= 1 and n > 1:  # the position of a record up to 300 on (within reach, or past it)
            j = min(n - 1, i + draw(st.integers(1, 300)))
            nxt[i] = pos[j]
            if kind == 0:
                nxt[j] = pos[i]
        elif kind == 2:
            nxt[i] = -1
        elif kind == 3:
            nxt[i] = draw(st.integers(-(2**31), 2**31 - 1))
        else:
            nxt[i] = pos[i]
    return pos, nxt


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from([None, 1, 19]))
def test_any_column_over_any_positions_comes_back_exactly(chunk, level):
    pos, nxt = chunk
    data, records = _column(nxt, pos), _records(pos)
    stored = mates.encode(data, level, records=records)
    assert stored[3] == 1  # 4 bytes a record: the streams, never the column as it is
    assert mates.decode(stored, len(data), records=records) == data


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=400), st.integers(0, 50))
def test_a_column_not_four_bytes_a_record_is_stored_as_it_is(data, n):
    records = _records(np.arange(n))
    stored = mates.encode(data, 3, records=records)
    if len(data) == 4 * n and n:
        return
    assert stored[3] == 0
    assert mates.decode(stored, len(data), records=records) == data


def _pairs(n_pairs: int, seed: int):
    """Sorted reads of pairs 200-600 bp apart, the second read of each later in the chunk."""
    rng = np.random.default_rng(seed)
    a = np.sort(rng.integers(0, 200_000, n_pairs))
    b = a + rng.integers(200, 600, n_pairs)
    pos = np.concatenate([a, b])
    nxt = np.concatenate([b, a])
    order = np.argsort(pos, kind="stable")
    return pos[order], nxt[order]


def test_pairs_in_the_chunk_cost_a_byte_for_the_first_read_and_nothing_for_the_second():
    pos, nxt = _pairs(5000, 1)
    data, records = _column(nxt, pos), _records(pos)
    codes, oks, values = _mates.split(data, records.pos)
    assert len(codes) == 5000 and len(oks) == 5000 and set(oks) == {1} and values == b""
    stored = mates.encode(data, None, records=records)
    plain = zstandard.ZstdCompressor(level=19).compress(data)
    assert len(stored) < len(plain) / 2, (len(stored), len(plain))
    assert mates.decode(stored, len(data), records=records) == data


def test_the_streams_are_checked_against_the_column():
    pos, nxt = _pairs(50, 2)
    nxt[7] = 123_456_789  # a mate elsewhere: one value stored as it is
    data, p = _column(nxt, pos), np.asarray(pos, np.int64)
    codes, oks, values = _mates.split(data, p)
    # the changed value stored as it is; and its mate's, when that mate comes later (nothing names it)
    assert 1 <= len(values) // 4 <= 2 and oks.count(0) + codes.count(0) == len(values) // 4
    assert _mates.join(len(data), p, codes, oks, values) == data
    with pytest.raises(ValueError, match="do not match"):
        _mates.join(len(data) + 4, p, codes, oks, values)
    with pytest.raises(ValueError, match="do not match"):
        _mates.join(len(data), p, codes, oks, values + b"\0")
    with pytest.raises(ValueError, match="run out"):
        _mates.join(len(data), p, codes[:-1], oks, values)
    with pytest.raises(ValueError, match="more than"):
        _mates.join(len(data), p, codes + b"\0", oks, values)
    with pytest.raises(ValueError, match="neither"):
        _mates.join(len(data), p, codes, bytes([2]) + oks[1:], values)
    with pytest.raises(ValueError, match="past the chunk"):
        _mates.join(len(data), p, codes[:-1] + b"\xff", oks, values)
    with pytest.raises(ValueError, match="already named"):  # two records naming one
        first = next(i for i, c in enumerate(codes) if c >= 2)
        bad = bytearray(codes)
        bad[first + 1 : first + 1] = bytes([codes[first] - 1])
        _mates.join(len(data), p, bytes(bad), oks, values)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.data())
def test_damaged_payloads_are_refused(chunk, draw):
    pos, nxt = chunk
    data, records = _column(nxt, pos), _records(pos)
    stored = bytearray(mates.encode(data, 3, records=records))
    at = draw.draw(st.integers(0, len(stored) - 1))
    stored[at] ^= draw.draw(st.integers(1, 255))
    try:
        out = mates.decode(bytes(stored), len(data), records=records)
    except ValueError:
        return
    assert len(out) == len(data)  # a changed value, never a read past the streams


def test_a_section_larger_than_the_column_is_refused():
    pos, nxt = _pairs(10, 3)
    data, records = _column(nxt, pos), _records(pos)
    big = zstandard.ZstdCompressor().compress(b"\1" * 1000)
    payload = b"MT\x01\x01" + len(big).to_bytes(4, "little") + big + b"\0" * 8
    with pytest.raises(ValueError, match="larger than"):
        mates.decode(payload, len(data), records=records)


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    """A BAM of 3,000 pairs on two references: most mates a few records on, some on the other
    reference, some unmapped (placed at the mate), some of each pair past the chunk's end."""
    tmp = tmp_path_factory.mktemp("mates")
    header = {"HD": {"VN": "1.6", "SO": "coordinate"}, "SQ": [{"SN": "a", "LN": 300_000}, {"SN": "b", "LN": 300_000}]}
    rng = np.random.default_rng(5)
    reads = []
    for k in range(3000):
        ref = int(rng.integers(0, 2))
        p1 = int(rng.integers(0, 290_000))
        p2 = p1 + int(rng.integers(150, 700))
        ref2 = 1 - ref if k % 50 == 0 else ref
        unmapped = k % 37 == 0
        if unmapped:
            p2, ref2 = p1, ref
        reads.append((ref, p1, f"p{k}", 0x1 | 0x40 | (0x8 if unmapped else 0) | 0x20, ref2, p2))
        reads.append((ref2, p2, f"p{k}", 0x1 | 0x80 | (0x4 if unmapped else 0) | 0x10, ref, p1))
    reads.sort(key=lambda r: (r[0], r[1]))
    path = str(tmp / "p.bam")
    with pysam.AlignmentFile(path, "wb", header=header) as out:
        for ref, p, name, flag, mref, mpos in reads:
            r = pysam.AlignedSegment(out.header)
            r.query_name, r.flag, r.reference_id, r.reference_start = name, flag, ref, p
            r.next_reference_id, r.next_reference_start = mref, mpos
            r.mapping_quality = 0 if flag & 0x4 else 60
            r.cigarstring = None if flag & 0x4 else "8M"
            r.template_length = 0 if (flag & 0xC or mref != ref) else (mpos - p) + (8 if mpos > p else -8)
            r.query_sequence, r.query_qualities = "ACGTACGT", pysam.qualitystring_to_array("IIIIIIII")
            out.write(r)
    pysam.index(path)
    ds = str(tmp / "p.bams3")
    subprocess.run([shutil.which("bams3"), "convert", path, ds, "--chunk-size", "64K"], check=True)
    return path, ds


def test_a_paired_dataset_reads_as_samtools_does(paired):
    path, ds = paired
    meta = json.loads(open(f"{ds}/_metadata.json").read())
    assert "mates" in [c["name"] for c in meta["codecs"]]
    ours = subprocess.run([shutil.which("bams3"), "query", ds], check=True, capture_output=True, text=True).stdout
    assert ours == pysam.view(path)
    assert ours.count("\n") == 6000


def test_the_names_of_pairs_are_told_from_their_mates(paired, tmp_path):
    """The names codec's paired form (a second read's name from the record its positions name):
    in every chunk of pairs, and read back as samtools reads it, whole or by a filter on names
    alone (which fetches next_pos and the positions that the names need)."""
    path, ds = paired
    from bams3.dataset import Dataset

    d = Dataset.open(ds)
    forms = set()
    for i in range(len(d.source.table.nbytes)):
        reader = d.source.chunk(i)
        o, end = reader.extent("read_name")
        forms.add(reader.blob[o + 2])
    assert forms == {2}
    listed = tmp_path / "names.txt"
    listed.write_text("".join(f"p{k}\n" for k in range(0, 3000, 7)))
    bams3 = shutil.which("bams3")
    for args in (["-N", str(listed)], ["-e", 'qname =~ "^p1[0-9]$"']):
        ours = subprocess.run([bams3, "query", ds, *args], check=True, capture_output=True, text=True).stdout
        assert ours == pysam.view(*args, path) and ours


@pytest.mark.parametrize("args", [["-e", "pnext > 150000"], ["-e", "mrefid != refid"], ["-c", "-e", "pnext < pos"],
                                  ["b:100000-120000"], ["-c", "-f", "0x8", "a"]])
def test_filters_and_regions_on_next_pos_equal_samtools(paired, args):
    path, ds = paired
    ours = subprocess.run([shutil.which("bams3"), "query", ds, *args], check=True, capture_output=True,
                          text=True).stdout
    regions = [a for a in args if a in ("a", "b") or ":" in a]
    flags = [a for a in args if a not in regions]
    assert ours == pysam.view(path, *flags, *regions)


def test_the_mates_codec_is_refused_for_another_column(paired, tmp_path):
    path, _ = paired
    bams3 = shutil.which("bams3")
    for option in (["--aux-codec", "mates"], ["--mate-codec", "qual"], ["--mate-codec", "tags"], ["--codec", "mates"]):
        p = subprocess.run([bams3, "convert", path, str(tmp_path / "x.bams3"), *option], capture_output=True,
                           text=True)
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, (option, p.stderr)
        assert not (tmp_path / "x.bams3").exists()
    subprocess.run([bams3, "convert", path, str(tmp_path / "none.bams3"), "--mate-codec", "none"], check=True)
    meta = json.loads((tmp_path / "none.bams3" / "_metadata.json").read_text())
    assert "mates" not in [c["name"] for c in meta["codecs"]]
    assert subprocess.run([bams3, "query", str(tmp_path / "none.bams3")], check=True, capture_output=True,
                          text=True).stdout == pysam.view(path)
