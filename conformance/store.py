"""Behaviour every storage backend must have: the byte operations bams3 relies on."""

from __future__ import annotations

import pytest

from bams3.storage import open_store


class RawView:
    """The storage behind a store, reached without it (zarr's pattern): what the kit checks a
    store's writes and reads against. Keys are relative to the store's root, as the store's are.
    A backend's tests return their own from the ``raw`` fixture: the files on disk, the rows of
    the database, the bucket through another client."""

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def keys(self) -> set[str]:
        """Every key under the store's root."""
        raise NotImplementedError


class SecondStore(RawView):
    """The default raw view: a second store opened on the same URL. It is not a bypass (the
    same code reads and writes), but it catches a store that keeps what it writes in its own
    instance; override ``raw`` with a real bypass to catch a store that writes to the wrong
    place and reads back from it."""

    def __init__(self, url: str):
        self.store = open_store(url, create=True)

    def get(self, key):
        try:
            return self.store.get(key)
        except FileNotFoundError:
            return None

    def put(self, key, data):
        self.store.put(key, data)

    def keys(self):
        return {k for k, _ in self.store.list("")}


class StoreTests:
    """Subclass and override the ``store_url`` fixture (a fresh, empty prefix per test), and
    ``raw`` (a :class:`RawView` of the storage behind the store, bypassing it) if you can:
    without it, the store is checked against a second instance of itself."""

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

    @pytest.fixture
    def raw(self, store_url) -> RawView:
        return SecondStore(store_url)

    # ------------------------------------------------------------ checked from behind the store
    def test_a_put_lands_behind_the_store_at_its_key(self, store, raw):
        """What the store writes is there without it: those bytes, at that key, and nothing else."""
        data = bytes(range(256)) * 40 + b"end"
        store.put("runs/r1/000007", data)
        store.put("_metadata.json", b"{}")
        assert raw.get("runs/r1/000007") == data
        assert raw.get("_metadata.json") == b"{}"
        assert raw.keys() == {"runs/r1/000007", "_metadata.json"}

    def test_what_is_behind_the_store_is_what_it_reads(self, store, raw):
        """Objects written around the store are read by it, every way bams3 reads."""
        data = bytes(range(251)) * 100
        raw.put("a/x", data)
        raw.put("a/y", b"")
        assert store.get("a/x") == data
        assert store.get_range("a/x", 7, 1000) == data[7:1000]
        assert store.get_ranges("a/x", [(5, 9), (0, 2)]) == [data[5:9], data[:2]]
        assert b"".join(store.stream("a/x")) == data
        assert store.size("a/x") == len(data) and store.head("a/x")["size"] == len(data)
        assert sorted(store.list("a/")) == [("a/x", len(data)), ("a/y", 0)]

    def test_a_delete_removes_the_object_behind_the_store(self, store, raw):
        store.put("gone", b"x")
        store.put("kept", b"y")
        store.delete("gone")
        assert raw.get("gone") is None and raw.get("kept") == b"y"
        assert raw.keys() == {"kept"}

    def test_a_second_store_on_the_url_sees_the_first_ones_writes(self, store, store_url):
        """Nothing lives only in one store object: another process opens the URL anew."""
        store.put("k", b"first")
        other = open_store(store_url, create=True)
        assert other.get("k") == b"first" and [k for k, _ in other.list("")] == ["k"]
        other.put("k", b"second")
        assert store.get("k") == b"second"

    def test_conditional_writes_land_behind_the_store(self, store, raw):
        from bams3.errors import ConflictError

        if not getattr(store, "conditional_put", False):
            return  # a store without them is held to test_conditional_writes' declaration only
        v1 = store.put_if("m", b"one", expect=None)
        assert raw.get("m") == b"one"
        with pytest.raises(ConflictError):
            store.put_if("m", b"two", expect=None)
        assert raw.get("m") == b"one"
        store.put_if("m", b"three", expect=v1)
        assert raw.get("m") == b"three"

    def test_put_then_get(self, store):
        store.put("a/b", b"0123456789")
        store.put("empty", b"")
        assert store.get("a/b") == b"0123456789"
        assert store.get("empty") == b""

    def test_ranges(self, store):
        store.put("k", bytes(range(256)) * 10)
        assert store.get_range("k", 2, 5) == bytes([2, 3, 4])
        assert store.get_ranges("k", [(0, 2), (2558, 2560)]) == [bytes([0, 1]), bytes([254, 255])]
        # in the order asked, whatever order the store fetches them in; overlapping and empty ones too
        assert store.get_ranges("k", [(2558, 2560), (0, 2), (1, 3), (5, 5)]) == \
            [bytes([254, 255]), bytes([0, 1]), bytes([1, 2]), b""]
        assert store.get_range("k", 2559, 2560) == bytes([255])  # the very last byte

    def test_a_range_past_the_end_is_a_short_read(self, store):
        """bams3 reads an object up to its recorded size plus one byte, to notice a larger one:
        a range that runs past the end gives the bytes that are there, not an error."""
        store.put("k", b"0123456789")
        assert store.get_range("k", 0, 11) == b"0123456789"
        assert store.get_range("k", 2, 1000) == b"23456789"

    def test_conditional_writes(self, store):
        """A store declares whether it offers conditional writes (``conditional_put``). bams3
        publishes _metadata.json with them, so that of two conversions to one destination exactly
        one publishes; without them it cannot promise that. Offered, they must hold: create-only
        fails when the object exists, compare-and-swap when its version has changed."""
        from bams3.errors import ConflictError

        assert isinstance(getattr(store, "conditional_put", None), bool), "declare conditional_put = True or False"
        if not store.conditional_put:
            return  # nothing more to hold it to
        v1 = store.put_if("m", b"one", expect=None)
        with pytest.raises(ConflictError):
            store.put_if("m", b"two", expect=None)
        assert store.get("m") == b"one" and store.head("m")["version"] == v1
        v2 = store.put_if("m", b"three", expect=v1)
        with pytest.raises(ConflictError):
            store.put_if("m", b"four", expect=v1)  # v1 is gone
        assert store.get("m") == b"three" and store.head("m") == {"size": 5, "version": v2}
        assert store.head("missing") is None

    def test_list_by_prefix_with_sizes(self, store):
        store.put("a/b", b"0123456789")
        store.put("a/c", b"xyz")
        store.put("ab", b"1")
        assert sorted(store.list("a/")) == [("a/b", 10), ("a/c", 3)]
        assert store.size("a/c") == 3 and store.size("missing") is None

    def test_listing_takes_a_prefix_literally(self, store):
        """A prefix is characters, not a pattern (SQL LIKE's ``_`` and ``%``, a glob's ``*``), and
        a key equal to the prefix is listed too; an empty prefix lists everything, once."""
        for key in ("d_1/x", "dx1/x", "e%/y", "eZ/y", "f*/z", "fq/z", "g/h", "g/hi"):
            store.put(key, key.encode())
        assert [k for k, _ in sorted(store.list("d_"))] == ["d_1/x"]
        assert [k for k, _ in sorted(store.list("e%"))] == ["e%/y"]
        assert [k for k, _ in sorted(store.list("f*"))] == ["f*/z"]
        assert [k for k, _ in sorted(store.list("g/h"))] == ["g/h", "g/hi"]
        everything = [k for k, _ in store.list("")]
        assert sorted(everything) == sorted(set(everything)) and len(everything) == 8

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

    def test_large_object_and_stream(self, store):
        data = bytes(range(256)) * (24 << 12) + b"tail!"  # 24 MiB and a partial last piece
        store.put("big", data)
        assert store.size("big") == len(data)
        assert store.get_range("big", len(data) - 5, len(data)) == b"tail!"
        pieces = list(store.stream("big"))
        assert b"".join(pieces) == data
        assert all(isinstance(p, bytes) for p in pieces)

    def test_streams_of_small_and_empty_objects(self, store):
        """A stream gives the whole object, however it is cut: the last partial piece, an object
        smaller than a piece, an empty one (no bytes at all, and no error)."""
        for size in (0, 1, 4095, 4097, (1 << 20) + 1):
            data = bytes(i % 251 for i in range(size))
            store.put(f"s/{size}", data)
            assert b"".join(store.stream(f"s/{size}", 4096)) == data, size

    def test_a_put_is_atomic(self, store):
        """A reader never sees part of a write: while an object is rewritten, every read gives
        the whole of the old value or the whole of the new one."""
        import threading

        a, b = b"A" * (4 << 20), b"B" * (3 << 20)
        store.put("atomic", a)
        stop = threading.Event()
        seen = []

        def reader():
            while not stop.is_set():
                got = store.get("atomic")
                seen.append(got == a or got == b)

        threads = [threading.Thread(target=reader) for _ in range(4)]
        for t in threads:
            t.start()
        try:
            for i in range(12):
                store.put("atomic", b if i % 2 == 0 else a)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert seen and all(seen)

    def test_concurrent_writers_and_readers(self, store):
        from concurrent.futures import ThreadPoolExecutor

        def work(i):
            key = f"c/{i:03d}"
            store.put(key, key.encode() * 1000)
            return store.get(key) == key.encode() * 1000

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(work, range(64)))
        assert len(list(store.list("c/"))) == 64

    def test_64_concurrent_readers(self, store):
        """Queries read ranges of one object, and of many, from 64 threads at once: each read
        gets its own object's bytes."""
        from concurrent.futures import ThreadPoolExecutor

        objects = {f"r/{j}": bytes([j]) * 1000 + bytes(range(256)) * 4096 for j in range(8)}
        for key, data in objects.items():
            store.put(key, data)

        def read(i):
            key = f"r/{i % 8}"
            a = (i * 7919) % 4096
            return store.get_range(key, a, a + 4096) == objects[key][a : a + 4096]

        with ThreadPoolExecutor(64) as pool:
            assert all(pool.map(read, range(512)))

    def test_a_dataset_appears_only_when_published(self, store_url):
        """A converted dataset opens only once its _metadata.json is written (last), and reads back."""
        import os
        import tempfile

        import bams3
        from bams3.errors import DatasetError

        from .strategies import write_bam

        with tempfile.TemporaryDirectory() as d:
            bam = os.path.join(d, "in.bam")
            write_bam(bam, n=300, seed=1)
            store = open_store(store_url, create=True)
            with pytest.raises(DatasetError):
                bams3.open(store_url)
            bams3.convert(bam, store_url, force=True)
            assert store.size("_metadata.json") is not None
            ds = bams3.open(store_url)
            assert ds.count() == 300
            keys = [k for k, _ in store.list("")]
            assert all(k == "_metadata.json" or k.startswith(ds.meta.data_prefix) for k in keys)


def store_state_machine(make_url):
    """A hypothesis rule-based test of a store against a dict model: put, get, range, list,
    size, delete, in any order. ``make_url()`` returns a fresh, empty prefix URL.

        TestMyStoreStateful = store_state_machine(lambda: "myfs://bucket/" + uuid4().hex).TestCase
    """
    from hypothesis import settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

    # no key is also a "directory" of another (the Store contract): "a/b" but never "a" too
    keys = st.sampled_from(["a/b", "a/c", "b/x/y", "ab", "abc", "d_1", "e-2.bin"])
    values = st.binary(max_size=2048)

    class StoreMachine(RuleBasedStateMachine):
        def __init__(self):
            super().__init__()
            self.store = open_store(make_url(), create=True)
            self.model: dict[str, bytes] = {}

        @rule(key=keys, value=values)
        def put(self, key, value):
            self.store.put(key, value)
            self.model[key] = value

        @rule(key=keys)
        def get(self, key):
            if key in self.model:
                assert self.store.get(key) == self.model[key]
            else:
                with pytest.raises(FileNotFoundError):
                    self.store.get(key)

        @rule(key=keys, a=st.integers(0, 2100), n=st.integers(1, 300))
        def get_range(self, key, a, n):
            if key in self.model and a + n <= len(self.model[key]):
                assert self.store.get_range(key, a, a + n) == self.model[key][a : a + n]

        @rule(key=keys)
        def delete(self, key):
            self.store.delete(key)
            self.model.pop(key, None)

        @rule(prefix=st.sampled_from(["", "a", "a/", "b/", "z"]))
        def list_prefix(self, prefix):
            got = sorted(self.store.list(prefix))
            assert got == sorted((k, len(v)) for k, v in self.model.items() if k.startswith(prefix))

        @invariant()
        def sizes(self):
            for k, v in self.model.items():
                assert self.store.size(k) == len(v)

    StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
    return StoreMachine
