"""Behaviour every codec must have. Subclass and set ``codec_name``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3


class CodecTests:
    codec_name: str = ""
    column: str = "qual"  # for a record-aware codec: its column ("qual", "seq", "next_pos" or "read_name")
    __test__ = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__test__ = True
        # hypothesis tests are made per subclass: one test function must not run under two classes
        hc = [HealthCheck.function_scoped_fixture]

        @settings(max_examples=60, deadline=None, suppress_health_check=hc)
        @given(data=st.binary(min_size=1, max_size=5000))
        def test_round_trip(self, codec, data):
            kw = self._fields(data, codec)
            stored = codec.encode(data, codec.default_level, **kw)
            assert codec.decode(stored, len(data), **kw) == data

        @settings(max_examples=60, deadline=None, suppress_health_check=hc)
        @given(data=st.binary(min_size=64, max_size=2000), cut=st.integers(0, 63), flip=st.integers(0, 255))
        def test_damaged_input_is_an_error_or_bounded(self, codec, data, cut, flip):
            """Damaged input raises, or decodes to at most raw_size bytes: never more, never a crash."""
            kw = self._fields(data, codec)
            stored = bytearray(codec.encode(data, codec.default_level, **kw))
            if cut < len(stored):
                stored[cut] ^= flip or 1
            try:
                out = codec.decode(bytes(stored), len(data), **kw)
            except Exception:
                return
            assert len(out) <= len(data)

        cls.test_round_trip = test_round_trip
        cls.test_damaged_input_is_an_error_or_bounded = test_damaged_input_is_an_error_or_bounded

    @pytest.fixture
    def codec(self):
        return bams3.get_registry().codec(self.codec_name)

    def _fields(self, data: bytes, codec):
        if not codec.record_aware:
            return {}
        n = len(data)
        if self.column == "next_pos":  # a record per 4 bytes (of a column of 4-byte numbers)
            m = max(n // 4, 1)
            rng = np.random.default_rng(n)
            pos = np.sort(rng.integers(0, 1 << 20, m))  # sorted, as a chunk's records are
            return {"records": bams3.RecordFields(l_seq=np.full(m, 100, np.int64), flag=np.zeros(m, np.uint16),
                                                  pos=pos, n_cigar_op=np.zeros(m, np.int64),
                                                  cigar=np.zeros(0, np.uint32))}
        if self.column == "read_name":  # a record per name (NUL-ended), paired with its neighbour
            m = max(data.count(0), 1)
            rng = np.random.default_rng(n)
            pos = np.sort(rng.integers(0, 1 << 20, m))
            mate = np.arange(m) ^ 1
            mate[mate >= m] = m - 1
            return {"records": bams3.RecordFields(l_seq=np.full(m, 100, np.int64), flag=np.zeros(m, np.uint16),
                                                  pos=pos, n_cigar_op=np.zeros(m, np.int64),
                                                  cigar=np.zeros(0, np.uint32), next_pos=pos[mate])}
        # one record per 100 bytes (the last shorter), as the column would be laid out
        lens = [100] * (n // 100) + ([n % 100] if n % 100 else [])
        lens = lens or [0]
        if self.column == "seq":  # two bases per byte
            lens = [2 * x for x in lens]
        return {"records": bams3.RecordFields(l_seq=np.array(lens, np.int64),
                                              flag=np.array([16 * (i % 2) for i in range(len(lens))], np.uint16),
                                              pos=np.zeros(len(lens), np.int64), n_cigar_op=np.zeros(len(lens),
                                                                                                       np.int64),
                                              cigar=np.zeros(0, np.uint32))}

    @staticmethod
    def _realistic(n: int, seed: int) -> bytes:
        """``n`` bytes as a column holds them: runs of similar values with noise (qualities, flags)."""
        rng = np.random.default_rng(seed)
        base = rng.integers(20, 42, size=n // 64 + 1).repeat(64)[:n]
        noise = rng.integers(-2, 3, size=n) * (rng.random(n) < 0.3)
        return (base + noise).clip(2, 60).astype(np.uint8).tobytes()

    @pytest.mark.parametrize("n", [65_535, 65_536, 65_537, (1 << 20) + 3, (4 << 20) + 17])
    def test_round_trip_at_real_sizes(self, codec, n):
        """Columns of real chunks are megabytes: every size round-trips, to the last byte (block
        boundaries at 64 KiB and 1 MiB included), random bytes and realistic ones alike."""
        for data in (self._realistic(n, n), np.random.default_rng(n).bytes(n)):
            kw = self._fields(data, codec)
            stored = codec.encode(data, codec.default_level, **kw)
            out = codec.decode(stored, len(data), **kw)
            assert len(out) == len(data) and out == data

    def test_never_more_than_raw_size(self, codec):
        """``decode`` is told how many bytes to expect and must never give more, whatever it was
        handed (bams3 sizes its buffers by it): asked for fewer than were encoded, it gives at most
        that many, or raises."""
        data = self._realistic(300_000, 1)
        kw = self._fields(data, codec)
        stored = codec.encode(data, codec.default_level, **kw)
        for raw_size in (len(data) - 1, len(data) // 2, 100):
            try:
                out = codec.decode(stored, raw_size, **kw)
            except Exception:  # noqa: BLE001 - refusing is as good as bounding
                continue
            assert len(out) <= raw_size, (raw_size, len(out))

    def test_from_many_threads_at_once(self, codec):
        """bams3 encodes and decodes chunks on several threads with one codec object: 8 threads,
        each its own inputs, must give what one thread gives."""
        from concurrent.futures import ThreadPoolExecutor

        inputs = [self._realistic(200_000 + 7919 * i, i) for i in range(16)]

        def one(data):
            kw = self._fields(data, codec)
            stored = codec.encode(data, codec.default_level, **kw)
            return stored, codec.decode(stored, len(data), **kw)

        alone = [one(d)[0] for d in inputs]
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, inputs))
        for data, solo, (stored, back) in zip(inputs, alone, results):
            assert back == data
            assert codec.decode(solo, len(data), **self._fields(data, codec)) == data

    def test_compresses_redundant_data(self, codec):
        data = bytes([30, 31, 32, 33]) * 5000
        kw = self._fields(data, codec)
        assert len(codec.encode(data, codec.default_level, **kw)) < len(data) // 4

    def test_is_registered_with_a_description(self, codec):
        assert codec.name == self.codec_name and codec.description
