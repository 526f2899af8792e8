"""Behaviour every codec must have. Subclass and set ``codec_name``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bams3


class CodecTests:
    codec_name: str = ""
    column: str = "qual"  # for a record-aware codec: the per-base column it is for ("qual" or "seq")
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
        # one record per 100 bytes (the last shorter), as the column would be laid out
        n = len(data)
        lens = [100] * (n // 100) + ([n % 100] if n % 100 else [])
        lens = lens or [0]
        if self.column == "seq":  # two bases per byte
            lens = [2 * x for x in lens]
        return {"records": bams3.RecordFields(l_seq=np.array(lens, np.int64),
                                              flag=np.array([16 * (i % 2) for i in range(len(lens))], np.uint16),
                                              pos=np.zeros(len(lens), np.int64), n_cigar_op=np.zeros(len(lens),
                                                                                                       np.int64),
                                              cigar=np.zeros(0, np.uint32))}

    def test_compresses_redundant_data(self, codec):
        data = bytes([30, 31, 32, 33]) * 5000
        kw = self._fields(data, codec)
        assert len(codec.encode(data, codec.default_level, **kw)) < len(data) // 4

    def test_is_registered_with_a_description(self, codec):
        assert codec.name == self.codec_name and codec.description
