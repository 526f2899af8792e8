"""Behaviour every storage backend must have: the byte operations bams3 relies on."""

from __future__ import annotations

import pytest

from bams3.storage import open_store


class StoreTests:
    """Subclass and override the ``store_url`` fixture (a fresh, empty prefix per test)."""

    __test__ = False  # collected only through subclasses

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__test__ = True

    @pytest.fixture
    def store_url(self):
        raise NotImplementedError("override the store_url fixture")

    @pytest.fixture
    def store(self, store_url):
        return open_store(store_url, create=True)

    def test_put_then_get(self, store):
        store.put("a/b", b"0123456789")
        store.put("empty", b"")
        assert store.get("a/b") == b"0123456789"
        assert store.get("empty") == b""

    def test_ranges(self, store):
        store.put("k", bytes(range(256)) * 10)
        assert store.get_range("k", 2, 5) == bytes([2, 3, 4])
        assert store.get_ranges("k", [(0, 2), (2558, 2560)]) == [bytes([0, 1]), bytes([254, 255])]

    def test_list_by_prefix_with_sizes(self, store):
        store.put("a/b", b"0123456789")
        store.put("a/c", b"xyz")
        store.put("ab", b"1")
        assert sorted(store.list("a/")) == [("a/b", 10), ("a/c", 3)]
        assert store.size("a/c") == 3 and store.size("missing") is None

    def test_missing_key(self, store):
        with pytest.raises(FileNotFoundError):
            store.get("missing")

    def test_overwrite_and_delete(self, store):
        store.put("a/b", b"old")
        store.put("a/b", b"new")
        assert store.get("a/b") == b"new"
        store.delete("a/b")
        store.delete("a/b")  # deleting a missing key is not an error
        assert list(store.list("a/")) == []
