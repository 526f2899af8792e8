"""The consensus codec's C kernels (``bams3/builtins/_consensus.c``) against the numpy
implementation they replaced (``tests/consensus_reference.py``, the codec as it was written
first): the same payload bytes for any records, CIGARs that do not fit their reads, invalid
operations and positions that leave int32 included; every payload decodes back exactly, by
either; damaged payloads are refused with ValueError, never read past."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bams3.builtins import consensus
from bams3.plugins import RecordFields

from . import consensus_reference as reference


@st.composite
def chunks(draw):
    n = draw(st.integers(0, 12))
    l_seq, pos, flag, n_ops, cigar = [], [], [], [], []
    p = draw(st.sampled_from([0, 1000, (1 << 31) - 300]))
    for _ in range(n):
        ls = draw(st.integers(0, 40))
        p += draw(st.integers(0, 30))
        ops = []
        if draw(st.integers(0, 9)) > 0:  # most records: a CIGAR that fits the read (or nearly)
            left = ls
            while left > 0:
                k = draw(st.integers(1, left))
                op = draw(st.sampled_from([0, 0, 0, 1, 4, 7, 8, 2, 3, 5, 6, 9]))
                length = k if op in (0, 1, 4, 7, 8) else draw(st.integers(0, 5))
                if op in (0, 1, 4, 7, 8):
                    left -= k
                ops.append(length << 4 | op)
            if draw(st.booleans()) and draw(st.integers(0, 5)) == 0:
                ops.append(draw(st.integers(1, 3)) << 4)  # one base too many: not usable
        l_seq.append(ls)
        pos.append(draw(st.sampled_from([p, p, p, -1])))
        flag.append(draw(st.sampled_from([0, 16, 4, 99, 147])))
        n_ops.append(len(ops))
        cigar += ops
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    nbytes = sum((x + 1) // 2 for x in l_seq)
    base = rng.choice(np.array([1, 2, 4, 8, 1, 2, 4, 8, 15, 0, 3], np.uint8), size=2 * nbytes)
    seq = ((base[0::2] << 4) | base[1::2]).astype(np.uint8).tobytes()
    fields = RecordFields(l_seq=np.array(l_seq, np.int64), flag=np.array(flag, np.uint16),
                          pos=np.array(pos, np.int64), n_cigar_op=np.array(n_ops, np.int64),
                          cigar=np.array(cigar, np.uint32))
    return seq, fields


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks(), st.sampled_from([1, 3, 19]))
def test_the_same_payload_as_the_numpy_codec_and_back(chunk, level):
    seq, fields = chunk
    if not seq:
        return
    ours = consensus.encode(seq, level, records=fields)
    assert ours == reference.encode(seq, level, records=fields)
    assert consensus.decode(ours, len(seq), records=fields) == seq
    assert reference.decode(ours, len(seq), records=fields) == seq


@pytest.mark.parametrize("n", [65535, 65536, 70000])
def test_deep_positions_count_every_base(n):
    """Under 2^16 records the kernel counts the four bases in 16-bit fields (a record aligns at
    most one base to a position); from 2^16 in 32-bit counters. Either way the consensus is the
    reference's, at a position every record covers, where 16 bits would wrap: one base held by
    all but a few records (65535 at most of one), a tie broken towards A, C, G, T in order."""
    rng = np.random.default_rng(n)
    codes = np.full((n, 4), 1, np.uint8)  # 4 bases a record, all at 100..103
    codes[:, 0] = 8  # position 100: T everywhere (n of one base: 65536 and 70000 wrap 16 bits)
    codes[: n // 2, 1], codes[n // 2 :, 1] = 4, 2  # 101: as many G as C (n even): C wins the tie
    codes[:, 2] = rng.choice(np.array([1, 2, 4, 8, 15], np.uint8), n)  # 102: random, Ns among them
    codes[:3, 3] = 2  # 103: A but for three C
    seq = ((codes[:, 0::2] << 4) | codes[:, 1::2]).astype(np.uint8).tobytes()
    fields = RecordFields(l_seq=np.full(n, 4, np.int64), flag=np.zeros(n, np.uint16),
                          pos=np.full(n, 100, np.int64), n_cigar_op=np.ones(n, np.int64),
                          cigar=np.full(n, 4 << 4, np.uint32))
    ours = consensus.encode(seq, 1, records=fields)
    assert ours == reference.encode(seq, 1, records=fields)
    assert consensus.decode(ours, len(seq), records=fields) == seq
    import struct
    import zstandard

    (size,) = struct.unpack_from("<I", ours, 4)
    cons = zstandard.ZstdDecompressor().decompress(ours[8 : 8 + size])  # 2 bits a position: T C ? A
    assert len(cons) == 1 and cons[0] & 0b11110011 == 0b11010000


@settings(max_examples=200, deadline=None)
@given(chunks(), st.data())
def test_damaged_payloads_are_refused_or_read_within_bounds(chunk, data):
    seq, fields = chunk
    if not seq:
        return
    payload = bytearray(consensus.encode(seq, 1, records=fields))
    import struct
    import zstandard

    # rewrite one section with other contents, the frames intact: only the C checks stand between
    sections, o = [], 4
    for _ in range(5):
        (n,) = struct.unpack_from("<I", payload, o)
        raw = zstandard.ZstdDecompressor().decompress(bytes(payload[o + 4 : o + 4 + n])) if n else b""
        sections.append(raw)
        o += 4 + n
    k = data.draw(st.integers(0, 4))
    s = bytearray(sections[k])
    change = data.draw(st.sampled_from(["grow", "shrink", "poke"]))
    if change == "grow":
        s += bytes([data.draw(st.integers(0, 255))]) * data.draw(st.integers(1, 8))
    elif change == "shrink" and s:
        del s[-1]
    elif s:
        s[data.draw(st.integers(0, len(s) - 1))] = data.draw(st.integers(0, 255))
    sections[k] = bytes(s)
    damaged = payload[:4] + b"".join(struct.pack("<I", len(z)) + z for z in
                                     (zstandard.ZstdCompressor().compress(x) if x else b"" for x in sections))
    try:
        out = consensus.decode(bytes(damaged), len(seq), records=fields)
    except ValueError:
        return
    assert len(out) == len(seq)
    try:
        assert out == reference.decode(bytes(damaged), len(seq), records=fields)
    except ValueError:
        pytest.fail("the C decoder accepted a payload the numpy decoder refuses")
