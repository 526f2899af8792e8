"""Check a dataset object by object: nothing missing, nothing extra, nothing corrupt.

Every chunk is fetched and checked against the chunk table (size) and its own
checksums (every column payload and count slot); the chunk table, binned
depth and count index objects against the sizes and CRCs the metadata records,
and each part of the count index against the count prefixes of its chunks. ``deep`` also
decodes every record, checks each chunk's counts and positions against the
table, and recomputes the statistics, which must equal the metadata's.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import attrs
import numpy as np

from ._threads import ordered_map
from .errors import Bams3Error, CorruptDatasetError
from .destination import run_marker
from .format import METADATA_KEY, chunk_key


@attrs.define
class Report:
    dataset: str
    objects: int = 0
    records: int = 0
    missing: list = attrs.field(factory=list)
    extra: list = attrs.field(factory=list)
    corrupt: list = attrs.field(factory=list)  # (key, reason)
    stats_match: bool | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.corrupt) and self.stats_match is not False

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "ok": self.ok, "objects": self.objects, "records": self.records,
                "missing": self.missing, "extra": self.extra,
                "corrupt": [{"object": k, "reason": r} for k, r in self.corrupt], "stats_match": self.stats_match}


def verify(url: str, deep: bool = False, workers: int = 8,
           progress: Callable[[int, int], None] | None = None) -> Report:
    from .dataset import Dataset
    from .stats import StatsAccumulator

    ds = Dataset.open(url, workers=workers)
    m = ds.meta
    rep = Report(url)
    present = {k: size for k, size in ds.store.list("")}
    expected = {METADATA_KEY}
    if run_marker(m.data_prefix) in present:  # written by conversions since the marker existed
        expected.add(run_marker(m.data_prefix))
    if m.chunks_ref is not None:
        expected.add(m.chunks_key)
    if m.coverage is not None:
        expected.add(m.coverage["object"])
    parts = list(m.count_index or ())
    expected.update(p["object"] for p in parts)
    try:
        t = ds.chunks
    except Bams3Error as exc:
        rep.corrupt.append((m.chunks_key, str(exc)))
        rep.missing = sorted(k for k in expected if k not in present)
        return rep
    keys = [chunk_key(m.data_prefix, t.object_of(i)) for i in range(len(t))]
    expected.update(keys)
    rep.missing = sorted(k for k in expected if k not in present)
    rep.extra = sorted(k for k in present if k not in expected)
    rep.objects = len(expected) - len(rep.missing)
    if m.coverage is not None and m.coverage["object"] in present:
        try:
            ds.depth_sums()
        except Bams3Error as exc:
            rep.corrupt.append((m.coverage["object"], _reason(exc)))
    for part in parts:
        if part["object"] not in present:
            continue
        try:
            if zlib.crc32(ds.source.object(part["object"], part["nbytes"], "the count index's part")) != part["crc32"]:
                rep.corrupt.append((part["object"], "checksum mismatch"))
        except Bams3Error as exc:
            rep.corrupt.append((part["object"], _reason(exc)))
    # each part's CRC32, of its chunks' count prefixes as they are (None once one is unreadable)
    prefix_crc: dict[int, int | None] = {}
    part_of = {i: k for k, p in enumerate(parts) for i in range(p["first"], p["first"] + p["n"])}
    stats = StatsAccumulator(len(m.references)) if deep else None

    def check(i: int):
        key = keys[i]
        if key not in present:
            return None
        if present[key] != int(t.nbytes[i]):  # never read an object larger than recorded
            return ("corrupt", key, f"{present[key]:,} bytes where the chunk table says {int(t.nbytes[i]):,}")
        try:
            blob = ds.store.get_range(key, 0, int(t.nbytes[i]) + 1)
        except FileNotFoundError:
            return ("missing", key)
        try:
            r = ds.source.check(blob, i)
            prefix = blob[:int(t.count_nbytes[i])] if parts else b""
            if not deep:
                return ("ok", key, r.n_records, None, prefix)
            batch = r.records()
            pos, span = r.positions()
            if len(pos) and t.ref_id[i] >= 0 and (int(pos[0]) != int(t.min_pos[i]) or int(pos[-1]) != int(
                    t.max_pos[i]) or int((pos + span).max()) != int(t.max_end[i])):
                return ("corrupt", key, "positions differ from the chunk table")
            return ("ok", key, r.n_records, batch, prefix)
        except Bams3Error as exc:
            return ("corrupt", key, _reason(exc))

    done = 0
    for i, res in enumerate(ordered_map(check, range(len(keys)), workers)):
        done += 1
        if progress:
            progress(done, len(keys))
        if i in part_of:
            k = part_of[i]
            crc = prefix_crc.get(k, 0)
            ok = res is not None and res[0] == "ok" and crc is not None
            prefix_crc[k] = zlib.crc32(res[4], crc) if ok else None
        if res is None:
            continue
        if res[0] == "missing":
            rep.missing.append(res[1])
        elif res[0] == "corrupt":
            rep.corrupt.append((res[1], res[2]))
        else:
            rep.records += res[2]
            if stats is not None and res[3] is not None:
                stats.add(res[3].core, res[3].nbytes)
    for k, part in enumerate(parts):
        if prefix_crc.get(k) is not None and prefix_crc[k] != part["crc32"]:
            rep.corrupt.append((part["object"], "differs from the count prefixes of its chunks"))
    if deep and not rep.corrupt and not rep.missing:
        got = stats.result(m.references, int(t.nbytes.sum()) if len(t) else 0, len(t))
        want = m.stats
        rep.stats_match = all(_same(got.get(k), want.get(k)) for k in ("n_records", "flagstat", "idxstats",
                                                                         "total_bases", "mapped_bases", "raw_bytes"))
    return rep


def _reason(exc: Bams3Error) -> str:
    """What is wrong with an object, without where (the report names the object)."""
    return exc.reason if isinstance(exc, CorruptDatasetError) else str(exc)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b
