"""The C kernels that lay out and join records, and shuffle fixed-width columns, against the
numpy definitions they replaced (docs/format.md §4.3, §4.4): any cores, including sizes that
wrap block_size and the negative sizes of a corrupt chunk."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bams3 import _kernels
from bams3.records import CORE, CORE_SIZE, join, layout, segment_lengths


def _numpy_shuffle(raw: bytes, w: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(-1, w).T.tobytes()


def _numpy_unshuffle(raw: bytes, w: int) -> bytes:
    return np.frombuffer(raw, np.uint8).reshape(w, -1).T.tobytes()


@settings(max_examples=300, deadline=None)
@given(w=st.integers(1, 9), data=st.data())
def test_shuffle_is_the_transpose_and_unshuffle_its_inverse(w, data):
    raw = data.draw(st.binary(max_size=64).map(lambda b: b[: len(b) // w * w]))
    assert _kernels.shuffle(raw, w) == _numpy_shuffle(raw, w)
    assert _kernels.unshuffle(raw, w) == _numpy_unshuffle(raw, w)
    assert _kernels.unshuffle(_kernels.shuffle(raw, w), w) == raw


def test_a_partial_value_is_refused():
    for fn in (_kernels.shuffle, _kernels.unshuffle):
        with pytest.raises(ValueError, match="whole number"):
            fn(b"abcde", 4)


def _cores(draw_sizes):
    n = len(draw_sizes)
    core = np.zeros(n, dtype=CORE)
    core["l_read_name"] = [s[0] for s in draw_sizes]
    core["n_cigar_op"] = [s[1] for s in draw_sizes]
    core["l_seq"] = [s[2] for s in draw_sizes]
    core["refid"] = np.arange(n)
    return core


sizes = st.tuples(st.integers(0, 255), st.integers(0, 65535), st.integers(-3, (1 << 31) - 1))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(sizes, st.integers(0, (1 << 32) - 1)), max_size=20))
def test_layout_is_segment_lengths_and_its_sums(records):
    core = _cores([r[0] for r in records])
    l_aux = np.array([r[1] for r in records], dtype=np.int64)
    want = core.copy()
    seg = segment_lengths(want, check=False)
    seg[:, 5] = l_aux
    offsets, totals = layout(core, l_aux)
    if len(records) and want["l_seq"].min() < 0:
        assert totals is None
        return
    want["block_size"] = seg[:, :5].sum(axis=1) + l_aux - 4  # numpy's assignment wraps modulo 2**32
    assert totals == tuple(int(t) for t in seg[:, 1:].sum(axis=0))
    assert np.array_equal(offsets, np.concatenate([[0], np.cumsum(seg.sum(axis=1))]))
    assert core.tobytes() == want.tobytes()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 255), st.integers(0, 9), st.integers(0, 40), st.integers(0, 30)),
                max_size=12), st.randoms(use_true_random=False))
def test_join_is_the_records_byte_for_byte(records, rng):
    core = _cores([(a, b, c) for a, b, c, _ in records])
    l_aux = np.array([d for *_, d in records], dtype=np.int64)
    offsets, totals = layout(core, l_aux)
    cols = [np.frombuffer(rng.randbytes(t), np.uint8) for t in totals]
    batch = join(core, offsets, cols)
    pos = [0] * 5
    want = b""
    for i, (a, b, c, d) in enumerate(records):
        want += core[i].tobytes()
        for k, n in enumerate((a, 4 * b, (c + 1) // 2, c, d)):
            want += cols[k][pos[k] : pos[k] + n].tobytes()
            pos[k] += n
    assert batch.data.tobytes() == want and np.array_equal(batch.offsets, offsets)
    block_sizes = [int.from_bytes(want[o : o + 4], "little") for o in offsets[:-1]]
    assert block_sizes == [CORE_SIZE - 4 + a + 4 * b + (c + 1) // 2 + c + d for a, b, c, d in records]
    keep = np.array([rng.random() < 0.5 for _ in records], dtype=bool)
    some = join(core.copy(), offsets, cols, keep)  # only the records kept, never the others copied
    picked = batch.select(keep) if len(records) else batch
    assert some.data.tobytes() == picked.data[picked.offsets[0] : picked.offsets[-1]].tobytes()
    assert np.array_equal(some.offsets - some.offsets[0], picked.offsets - picked.offsets[0])
    assert some.core.tobytes() == core[keep].tobytes()
    if records and sum(totals):  # a column shorter than the records need is refused, never overrun
        short = [c[:-1] if len(c) else c for c in cols]
        with pytest.raises(ValueError, match="exceed the columns"):
            join(core, offsets, short)
        with pytest.raises(ValueError, match="exceed the columns"):
            join(core, offsets, short, np.zeros(len(records), dtype=bool))  # walked past, even unkept


def test_hostile_offsets_and_masks_are_refused_not_followed():
    """join's offsets come from layout, but join is public: offsets that do not start at 0,
    wrap, go back or leave a record less than its core, and masks of the wrong length, are a
    ValueError, never a copy outside the buffers (the first two crashed an earlier draft)."""
    core = np.zeros(3, dtype=CORE)
    empty = np.zeros(0, dtype=np.uint8)
    cols = [empty, empty, empty, empty, np.zeros(64, dtype=np.uint8)]
    low = np.iinfo(np.int64).min
    cases = [
        (200, [0, 100, low + 99, 200], None),
        (100, [0, 100, low + 99, 100], np.ones(3, np.uint8)),
        (200, [8, 100, 150, 200], None),  # not from 0
        (200, [0, 100, 90, 200], None),  # back
        (200, [0, 10, 110, 200], None),  # a record smaller than its core
        (100, [0, 36, 72, 108], np.ones(2, np.uint8)),  # mask of the wrong length
        (0, [0], None),  # offsets for no record, three cores
    ]
    for size, offsets, keep in cases:
        args = [np.empty(size, np.uint8), np.array(offsets, np.int64), core.view(np.uint8), *cols]
        with pytest.raises(ValueError):
            _kernels.join(*args, *([] if keep is None else [keep]))


def test_sizes_past_2_to_the_63_are_corrupt_not_wrapped():
    core = np.zeros(2, dtype=CORE)
    offsets, totals = layout(core, np.array([2**62, 2**62], dtype=np.int64))
    assert totals is None
    offsets, totals = layout(core, np.array([1, 2], dtype=np.int64))
    assert totals == (0, 0, 0, 0, 3) and offsets.tolist() == [0, 37, 75]


def test_an_empty_column_shuffles_at_once_whatever_the_width():
    assert _kernels.shuffle(b"", 1 << 40) == b"" == _kernels.unshuffle(b"", 1 << 40)
    for w in (0, -1):
        with pytest.raises(ValueError):
            _kernels.shuffle(b"ab", w)
