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
from bams3.builtins import qual
from bams3.builtins import _rans

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
@given(chunks(), st.sampled_from([1, 2]))
def test_round_trip(chunk, scheme):
    """Both payload schemes (2 is written; 1, written before, is read), each decoded with and
    without the SIMD paths (AVX2 rANS, SSE2 placement) where the CPU has them."""
    data, records = chunk
    if not data:
        return  # the format stores an empty column without calling the codec
    stored = qual.encode(data, None, records=records, scheme=scheme)
    assert stored[3] == scheme
    assert qual.decode(stored, len(data), records=records) == data
    assert qual.decode(stored, len(data), records=records, simd=False) == data


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 256), st.integers(1, 6), st.integers(0, 4000), st.booleans(), st.integers(0, 2**32 - 1))
def test_the_simd_encoders_write_the_scalar_encoders_bytes(a, k, n, with_lut, seed):
    """Scheme 2's encoder takes 32 symbols at a time with AVX-512 where the CPU has it
    (_rans.AVX512), else with AVX2 (_rans.AVX2; elsewhere both calls below are the scalar
    loop): the same bytes for any symbols, contexts (blocks of 32 straddling their bounds, empty
    ones) and frequencies (1 to 4096)."""
    rng = np.random.default_rng(seed)
    sym = rng.integers(0, a, n).astype(np.uint8)
    if rng.random() < 0.3:
        sym[:] = rng.integers(0, a)  # one symbol: frequency 4096, never a word
    bounds = np.sort(np.concatenate([[0, n], rng.integers(0, n + 1, k - 1)])).astype("<i8")
    counts = rng.integers(0, 3, (k, a)) * rng.integers(1, 5000, (k, 1))
    for r in range(k):
        np.add.at(counts[r], sym[bounds[r] : bounds[r + 1]], 1)
    counts[counts.sum(axis=1) == 0, 0] = 1
    freqs = qual._normalise(counts).tobytes()
    vals = np.sort(rng.choice(256, a, replace=False)).astype(np.uint8)
    lut = np.zeros(256, np.uint8)
    lut[vals] = np.arange(a)
    data, table = (vals[sym].tobytes(), lut.tobytes()) if with_lut else (sym.tobytes(), None)
    fast = _rans.encode(data, bounds.tobytes(), freqs, a, 2, table, True)
    assert fast == _rans.encode(data, bounds.tobytes(), freqs, a, 2, table, False)


def test_a_symbol_without_a_frequency_is_refused_in_a_block_of_32_too():
    freqs = np.array([[4096, 0]], "<u2").tobytes()
    bounds = np.array([0, 64], "<i8").tobytes()
    data = bytes(40) + b"\1" + bytes(23)
    for simd in (True, False):
        with pytest.raises(ValueError, match="no frequency"):
            _rans.encode(data, bounds, freqs, 2, 2, None, simd)


def test_writes_scheme_2_or_the_smaller_scheme_3():
    """Scheme 1 is never written; of 2 and 3, the one that codes the chunk smaller, scheme 2 unless
    3 saves 3% (it decodes slower), as judged on the first 2^17 qualities (here, 40 reads:
    scheme 2's 300 cycle contexts cost more table than their qualities save)."""
    for n in (40, 2000):
        q, flags = _illumina_like(n_reads=n)
        records = RecordFields(l_seq=np.full(n, 150, np.int64), flag=flags)
        stored = codec.encode(q.tobytes(), None, records=records)
        assert stored[2] == 1 and stored[3] in (2, 3)
        other = qual.encode(q.tobytes(), None, records=records, scheme=5 - stored[3])
        slack = 1 / qual._MARGIN if stored[3] == 2 else 1.0
        assert len(stored) <= len(other) * slack * 1.01, (n, stored[3], len(stored), len(other))


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
    assert [c.name for c in meta.codecs] == ["zstd", "zstd", "qual", "consensus", "tags", "mates", "names"]
    meta = bams3.convert(str(tmp_path / "in.bam"), str(tmp_path / "z"), qual_codec="zstd")
    assert [c.name for c in meta.codecs] == ["zstd", "zstd", "consensus", "tags", "mates", "names"]
    a, b = bams3.open(str(tmp_path / "d")), bams3.open(str(tmp_path / "z"))
    assert [x.tobytes() for x in a.batches()] == [x.tobytes() for x in b.batches()]


def _outcome(stored, size, records, simd):
    try:
        return qual.decode(stored, size, records=records, simd=simd)
    except ValueError:
        return ValueError


@pytest.mark.parametrize("scheme", [1, 2, 3])
@pytest.mark.parametrize("same_length", [True, False])
def test_large_chunks_round_trip_and_refuse_cut_or_damaged_streams(same_length, scheme):
    """Enough qualities for the decoders' unrolled bodies (scheme 1: four states stepping
    together, their bytes taken without branches; scheme 2: 32 states, in AVX2 registers where
    the CPU has them) and the record-order placement, for fixed-length reads and for reads of
    many lengths; a cut stream, or one whose bytes are replaced, is refused with ValueError or
    decodes to bytes of the right length, never anything else, and the SIMD and scalar decoders
    agree on every one of them."""
    rng = np.random.default_rng(7)
    n = 3000
    lengths = np.full(n, 151, np.int64) if same_length else rng.integers(0, 400, n).astype(np.int64)
    flags = rng.choice(np.array([99, 147, 83, 163, 0, 16, 4], dtype=np.uint16), size=n)
    q = rng.choice(np.array([2, 12, 23, 37, 41], dtype=np.uint8), p=[0.02, 0.03, 0.1, 0.6, 0.25],
                   size=int(lengths.sum()))
    records = RecordFields(l_seq=lengths, flag=flags)
    stored = qual.encode(q.tobytes(), None, records=records, scheme=scheme)
    assert stored[3] == scheme
    for simd in (True, False):
        assert qual.decode(stored, q.size, records=records, simd=simd) == q.tobytes()
    body = len(stored) - 200  # well inside the rANS stream
    for cut in (len(stored) - 1, len(stored) - 7, body):
        for simd in (True, False):
            with pytest.raises(ValueError):
                qual.decode(stored[:cut], q.size, records=records, simd=simd)
    for k in range(40):
        at = int(rng.integers(body // 2, len(stored)))
        damaged = stored[:at] + bytes([stored[at] ^ int(rng.integers(1, 256))]) + stored[at + 1:]
        out = _outcome(damaged, q.size, records, True)
        assert out is ValueError or len(out) == q.size
        assert _outcome(damaged, q.size, records, False) == out
    zeros = stored[: body // 2] + bytes(len(stored) - body // 2)
    for simd in (True, False):
        with pytest.raises(ValueError):
            qual.decode(zeros, q.size, records=records, simd=simd)


def test_fixed_length_placement_at_every_tile_edge():
    """The record-order placement moves 16 records x 16 cycles at a time: read lengths and record
    counts on either side of multiples of 16, both strands, both reads of a pair."""
    rng = np.random.default_rng(3)
    for length in (1, 15, 16, 17, 31, 32, 33, 150):
        for n in (1, 15, 16, 17, 33):
            flags = rng.choice(np.array([99, 147, 83, 163], dtype=np.uint16), size=n)
            q = rng.integers(0, 42, size=n * length, dtype=np.uint8)
            records = RecordFields(l_seq=np.full(n, length, np.int64), flag=flags)
            stored = qual.encode(q.tobytes(), None, records=records)
            for simd in (True, False):
                assert qual.decode(stored, q.size, records=records, simd=simd) == q.tobytes(), (length, n, simd)


def test_threads_decoding_at_once_each_use_their_own_buffer():
    """Each thread keeps its own buffer for the grouped symbols (grown as chunks need): chunks of
    different sizes decoded on several threads at once all come back whole."""
    from concurrent.futures import ThreadPoolExecutor

    work = []
    for k, n_reads in enumerate((300, 2000, 50, 900)):
        q, flags = _illumina_like(n_reads=n_reads, seed=k)
        records = RecordFields(l_seq=np.full(n_reads, 150, np.int64), flag=flags)
        work.append((codec.encode(q.tobytes(), None, records=records), q.tobytes(), records))

    def decode(i):
        stored, data, records = work[i % len(work)]
        return codec.decode(stored, len(data), records=records) == data

    with ThreadPoolExecutor(4) as ex:
        assert all(ex.map(decode, range(64)))


def test_the_writers_bytes_are_pinned():
    """The payloads this codec writes, byte for byte (a change here is a format change: readers
    of the datasets already written must still read them; see tests/golden). Last changed when the
    frequency table's zstd frame went from level 19 to 12 (a writer's choice: any frame reads)."""
    import hashlib

    q, flags = _illumina_like(n_reads=600, seed=5)
    records = RecordFields(l_seq=np.full(600, 150, np.int64), flag=flags)
    assert hashlib.md5(qual.encode(q.tobytes(), None, records=records, scheme=2)).hexdigest() == \
        "9314d05c09e8c755f8a78a8dc7ecdfae"
    assert (hashlib.md5(qual.encode(q.tobytes(), None, records=records, scheme=1)).hexdigest()
            == "2ae79ad7c2a3540378ff3ac1950f0b1f")


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 200), st.integers(0, 70), st.integers(0, 2**32 - 1))
def test_grouping_of_fixed_length_reads_in_c(length, n, seed):
    """The encoder's grouping in C (16 x 16-byte SSE2 transposes, or record by record) equals its
    plain transcription: row c holds cycle c of every first read, then of every second, a reversed
    record's qualities read back to front; and each row's counts."""
    from bams3.builtins import _rans

    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(n, length), dtype=np.uint8)
    rev, r2 = rng.random(n) < 0.5, rng.random(n) < 0.5
    cyc = q.copy()
    cyc[rev] = cyc[rev, ::-1]
    want = np.concatenate([cyc[~r2], cyc[r2]]).T.copy()
    counts = np.zeros((2 * length, 256), np.int64)
    for c in range(length):
        counts[2 * c] = np.bincount(cyc[~r2, c], minlength=256)
        counts[2 * c + 1] = np.bincount(cyc[r2, c], minlength=256)
    for simd in (1, 0):
        grouped, rows = _rans.group_fixed(q.tobytes(), length, rev.astype(np.uint8).tobytes(),
                                          r2.astype(np.uint8).tobytes(), simd)
        assert grouped == want.tobytes()
        assert np.array_equal(np.frombuffer(rows, np.int64).reshape(2 * length, 256), counts)


def _markov(n_reads=3000, seed=2, lengths=None):
    """Qualities as instruments write them: each follows the one before it in the read (runs of
    good qualities, a dip, then recovery), whatever the cycle."""
    rng = np.random.default_rng(seed)
    values = np.array([2, 11, 25, 30, 37, 40], dtype=np.uint8)
    step = np.array([[0.7, 0.2, 0.05, 0.03, 0.01, 0.01], [0.1, 0.5, 0.2, 0.1, 0.05, 0.05],
                     [0.02, 0.1, 0.5, 0.25, 0.08, 0.05], [0.01, 0.03, 0.1, 0.6, 0.2, 0.06],
                     [0.005, 0.01, 0.03, 0.1, 0.7, 0.155], [0.005, 0.005, 0.01, 0.03, 0.15, 0.8]])
    lengths = np.full(n_reads, 100, np.int64) if lengths is None else lengths
    flags = rng.choice(np.array([99, 147, 83, 163], dtype=np.uint16), size=len(lengths))
    out = []
    for L in lengths:
        s, read = 5, np.empty(L, np.uint8)
        for c in range(L):
            s = rng.choice(6, p=step[s])
            read[c] = values[s]
        out.append(read)
    return np.concatenate(out) if out else np.zeros(0, np.uint8), flags, lengths


@st.composite
def markov_chunks(draw):
    n = draw(st.integers(1, 30))
    lengths = np.array(draw(st.lists(st.sampled_from([0, 1, 15, 16, 17, 100, 520, 700]), min_size=n, max_size=n)),
                       np.int64)
    q, flags, _ = _markov(seed=draw(st.integers(0, 2**32 - 1)), lengths=lengths)
    flags = np.array(draw(st.lists(st.sampled_from([0, 16, 128, 144, 83, 163, 4]), min_size=n, max_size=n)), np.uint16)
    return q.tobytes(), RecordFields(l_seq=lengths, flag=flags)


@settings(max_examples=150, deadline=None)
@given(markov_chunks())
def test_scheme_3_round_trips_any_layout(chunk):
    """Groups of four records with reads of many lengths (ended ones skipped), both strands,
    both reads of a pair, cycles past the last bin (16 x 31)."""
    data, records = chunk
    if not data:
        return
    stored = qual.encode(data, None, records=records, scheme=3)
    assert stored[3] == 3
    assert qual.decode(stored, len(data), records=records) == data


def test_the_writer_chooses_scheme_3_for_qualities_that_follow_the_one_before():
    q, flags, lengths = _markov()
    records = RecordFields(l_seq=lengths, flag=flags)
    stored = codec.encode(q.tobytes(), None, records=records)
    assert stored[3] == 3
    assert len(stored) < 0.97 * len(qual.encode(q.tobytes(), None, records=records, scheme=2))
    assert codec.decode(stored, q.size, records=records) == q.tobytes()
    iid, flags = _illumina_like(n_reads=2000)  # the cycle, not the quality before: scheme 2
    records = RecordFields(l_seq=np.full(2000, 150, np.int64), flag=flags)
    assert codec.encode(iid.tobytes(), None, records=records)[3] == 2


def test_scheme_3_refuses_tables_it_does_not_write():
    import struct

    q, flags, lengths = _markov(n_reads=200)
    records = RecordFields(l_seq=lengths, flag=flags)
    stored = qual.encode(q.tobytes(), None, records=records, scheme=3)
    a = struct.unpack_from("<H", stored, 4)[0]
    o = 6 + a
    k = struct.unpack_from("<H", stored, o)[0]
    ids = np.frombuffer(stored, "<u2", count=k, offset=o + 2).copy()
    for bad in (ids[::-1].copy(), np.concatenate([ids[:-1], [(a + 1) * 64]]).astype("<u2")):
        damaged = stored[: o + 2] + bad.astype("<u2").tobytes() + stored[o + 2 + 2 * k :]
        with pytest.raises(ValueError):
            qual.decode(damaged, q.size, records=records)
    other = RecordFields(l_seq=lengths[::-1].copy(), flag=flags)  # the same total, other reads
    if not np.array_equal(other.l_seq, lengths):
        out = _outcome(stored, q.size, other, True)
        assert out is ValueError or out != q.tobytes()
    with pytest.raises(ValueError):
        qual.decode(stored, q.size + 1, records=records)


def test_the_scheme_3_writers_bytes_are_pinned():
    import hashlib

    q, flags, lengths = _markov(n_reads=600, seed=5)
    records = RecordFields(l_seq=lengths, flag=flags)
    assert hashlib.md5(qual.encode(q.tobytes(), None, records=records)).hexdigest() == "7c69bf4877d7cb8884bc76f9d2ddbc30"


def test_a_truncated_or_oversized_header_is_a_value_error():
    """Any cut of a payload's header is ValueError (not struct's or zstd's error), and a header
    naming more contexts than the column has qualities is refused before its table is read."""
    import struct

    q, flags, lengths = _markov(n_reads=50)
    records = RecordFields(l_seq=lengths, flag=flags)
    for scheme in (2, 3):
        stored = qual.encode(q.tobytes(), None, records=records, scheme=scheme)
        a = struct.unpack_from("<H", stored, 4)[0]
        k = struct.unpack_from("<H", stored, 6 + a)[0]
        for cut in range(6, 6 + a + 2 + 2 * k + 4 + 8):
            with pytest.raises(ValueError):
                qual.decode(stored[:cut], q.size, records=records)
    one = RecordFields(l_seq=np.array([1], np.int64), flag=np.zeros(1, np.uint16))
    many = b"BQ\x01\x03\x01\x00\x05" + struct.pack("<H", 1000) + bytes(2000) + struct.pack("<I", 0)
    with pytest.raises(ValueError, match="more contexts"):
        qual.decode(many, 1, records=one)
