"""The ``qual`` codec: lossless for any qualities and record layout, and close to the
conditional entropy of qualities given (cycle, read 1/2)."""

from __future__ import annotations

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

import bams3
from bams3 import RecordFields

codec = bams3.get_registry().codec("qual")


@st.composite
def chunks(draw):
    n = draw(st.integers(1, 40))
    same = draw(st.booleans())
    if same:
        lengths = [draw(st.integers(0, 700))] * n
    else:
        lengths = draw(st.lists(st.integers(0, 700), min_size=n, max_size=n))
    flags = draw(st.lists(st.sampled_from([0, 16, 128, 144, 1, 83, 163, 99, 147, 4, 2048]), min_size=n, max_size=n))
    alphabet = draw(st.sampled_from([[255], [30], [2, 12, 23, 37], list(range(94)) + [255], list(range(256))]))
    total = sum(lengths)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    q = rng.choice(np.array(alphabet, dtype=np.uint8), size=total)
    return q.tobytes(), RecordFields(l_seq=np.array(lengths, np.int64), flag=np.array(flags, np.uint16))


@settings(max_examples=150, deadline=None)
@given(chunks())
def test_round_trip(chunk):
    data, records = chunk
    if not data:
        return  # the format stores an empty column without calling the codec
    stored = codec.encode(data, None, records=records)
    assert codec.decode(stored, len(data), records=records) == data


def _illumina_like(n_reads=4000, length=150, seed=1):
    """Qualities whose distribution depends on the cycle and on read 1/2, stored reversed on reverse strands."""
    rng = np.random.default_rng(seed)
    values = np.array([2, 12, 23, 37, 41], dtype=np.uint8)
    flags = rng.choice(np.array([99, 147, 83, 163], dtype=np.uint16), size=n_reads)
    q = np.empty((n_reads, length), dtype=np.uint8)
    for r in range(n_reads):
        second = bool(flags[r] & 128)
        for c in range(length):
            good = 0.95 - c / length * (0.5 if second else 0.3)
            p = np.array([0.01, 0.04, 0.05, good, 0.9 - good + 0.0])
            p = np.clip(p, 0.001, None)
            q[r, c] = rng.choice(values, p=p / p.sum())
        if flags[r] & 16:
            q[r] = q[r, ::-1]
    return q, flags


def test_close_to_conditional_entropy_and_better_than_zstd():
    q, flags = _illumina_like()
    n_reads, length = q.shape
    records = RecordFields(l_seq=np.full(n_reads, length, np.int64), flag=flags)
    data = q.tobytes()
    stored = codec.encode(data, None, records=records)
    assert codec.decode(stored, len(data), records=records) == data
    # empirical H(q | cycle, read2) of this very chunk
    cyc = q.copy()
    rev = (flags & 16) != 0
    cyc[rev] = cyc[rev, ::-1]
    r2 = ((flags & 128) != 0)
    bits = 0.0
    for block in (cyc[~r2], cyc[r2]):
        for c in range(length):
            _, counts = np.unique(block[:, c], return_counts=True)
            p = counts / counts.sum()
            bits += -(counts * np.log2(p)).sum()
    entropy_bytes = bits / 8
    assert len(stored) <= entropy_bytes * 1.01 + 3000  # + the stored context table
    assert len(stored) < 0.85 * len(zstandard.ZstdCompressor(level=19).compress(data))


def test_decode_refuses_records_that_do_not_match():
    q, flags = _illumina_like(n_reads=50)
    records = RecordFields(l_seq=np.full(50, 150, np.int64), flag=flags)
    stored = codec.encode(q.tobytes(), None, records=records)
    other = RecordFields(l_seq=np.full(50, 150, np.int64), flag=flags ^ 128)
    with pytest.raises(ValueError):
        codec.decode(stored, q.size, records=other)
    with pytest.raises(ValueError):
        codec.decode(stored[:1] + b"X" + stored[2:], q.size, records=records)


def test_dataset_records_the_codecs_it_was_written_with(tmp_path):
    src = "tests/golden/v1/qual_ctx.bams3"
    bams3.open(src).to_bam(str(tmp_path / "in.bam"))
    meta = bams3.convert(str(tmp_path / "in.bam"), str(tmp_path / "d"))
    assert [c.name for c in meta.codecs] == ["zstd", "qual"]
    meta = bams3.convert(str(tmp_path / "in.bam"), str(tmp_path / "z"), qual_codec="zstd")
    assert [c.name for c in meta.codecs] == ["zstd"]
    a, b = bams3.open(str(tmp_path / "d")), bams3.open(str(tmp_path / "z"))
    assert [x.tobytes() for x in a.batches()] == [x.tobytes() for x in b.batches()]


@pytest.mark.parametrize("same_length", [True, False])
def test_large_chunks_round_trip_and_refuse_cut_or_damaged_streams(same_length):
    """Enough qualities for the decoder's unrolled body (four states stepping together, their
    bytes taken without branches) and its record-order placement, for fixed-length reads and
    for reads of many lengths; a cut stream, or one whose bytes are replaced, is refused with
    ValueError or decodes to bytes of the right length, never anything else."""
    rng = np.random.default_rng(7)
    n = 3000
    lengths = np.full(n, 151, np.int64) if same_length else rng.integers(0, 400, n).astype(np.int64)
    flags = rng.choice(np.array([99, 147, 83, 163, 0, 16, 4], dtype=np.uint16), size=n)
    q = rng.choice(np.array([2, 12, 23, 37, 41], dtype=np.uint8), p=[0.02, 0.03, 0.1, 0.6, 0.25],
                   size=int(lengths.sum()))
    records = RecordFields(l_seq=lengths, flag=flags)
    stored = codec.encode(q.tobytes(), None, records=records)
    assert codec.decode(stored, q.size, records=records) == q.tobytes()
    body = len(stored) - 200  # well inside the rANS stream
    for cut in (len(stored) - 1, len(stored) - 7, body):
        with pytest.raises(ValueError):
            codec.decode(stored[:cut], q.size, records=records)
    for k in range(40):
        at = int(rng.integers(body // 2, len(stored)))
        damaged = stored[:at] + bytes([stored[at] ^ int(rng.integers(1, 256))]) + stored[at + 1:]
        try:
            out = codec.decode(damaged, q.size, records=records)
        except ValueError:
            continue
        assert len(out) == q.size
    zeros = stored[: body // 2] + bytes(len(stored) - body // 2)
    with pytest.raises(ValueError):
        codec.decode(zeros, q.size, records=records)
