"""One dataset's objects, fetched from its store and checked: the chunk table, whole chunks,
a chunk's count prefix, its count slots, or only the columns a question needs (ranged reads),
and the coverage object. :class:`bams3.dataset.Dataset`, ``verify`` and ``cp`` (and through
the dataset, the cohort code) read through it alone; nothing here decides what to read."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .errors import Bams3Error, CorruptDatasetError, DatasetError, PluginError
from .format import (
    ChunkReader,
    ChunkTable,
    Metadata,
    SlotLayout,
    chunk_key,
    decode_slots,
    directory_nbytes,
)
from .format.columns import ALL, BY_NAME
from .layout import FLAG_DERIVED, L_READ_NAME_COLUMN, READ_NAME_COLUMN
from .metacheck import COUNT_INDEX_SPAN, count_index_groups, count_index_offsets
from .plugins import get_registry, outside_origins

_GAP = 64 << 10  # ranges of columns closer than this are fetched as one


class ChunkSource:
    """Checked bytes of the dataset at ``url`` (its ``store``, its ``meta``)."""

    def __init__(self, store, meta: Metadata, url: str):
        self.store = store
        self.meta = meta
        self.url = url
        self._codecs = None
        self._layouts: dict[int, SlotLayout | None] = {}
        self._index_at: list[int] | None = None  # each chunk's count prefix's offset in its part
        self.origins: dict[str, tuple[str, str]] = {}  # outside codecs: (plugin, package)

    # ------------------------------------------------------------------ what every read needs
    @property
    def table(self) -> ChunkTable:
        """The chunk table (fetched and checked on first use when it is an object of its own)."""
        if self.meta.chunks is None:
            frame = self.object(self.meta.chunks_key, int(self.meta.chunks_ref["nbytes"]), "the chunk table")
            self.meta = self.meta.with_chunks(frame, self.url)  # validated there, references included
        return self.meta.chunks

    @property
    def codecs(self) -> list:
        """The codecs the dataset was written with, from the installed plugins."""
        if self._codecs is None:
            reg = get_registry(codecs=[spec.name for spec in self.meta.codecs])
            out = []
            for spec in self.meta.codecs:
                try:
                    out.append(reg.codec(spec.name))
                except PluginError:
                    if spec.package and spec.package != "?":
                        hint = f"install {spec.package!r}, the package that provided it (pip install {spec.package})"
                    else:
                        hint = f"install the package that provides the {spec.name!r} codec"
                    raise PluginError(f"{self.url} was written with codec {spec.name!r}, which no installed plugin "
                                      f"provides; {hint}") from None
            self._codecs = out
            self.origins = outside_origins(reg, "codecs", [c.name for c in out])
        return self._codecs

    def object(self, key: str, nbytes: int, what: str) -> bytes:
        """An object of recorded size ``nbytes``, whole: one byte more is asked for, so a larger
        object is noticed (and never read whole)."""
        try:
            data = self.store.get_range(key, 0, nbytes + 1)
        except FileNotFoundError:
            raise CorruptDatasetError(self.url, f"{what} {key} is missing; the dataset is incomplete or damaged") \
                from None
        if len(data) != nbytes:
            raise CorruptDatasetError(self.url, f"{what} {key} has {len(data):,} bytes where the dataset records "
                                      f"{nbytes:,}; the dataset is damaged")
        return data

    def _range(self, key: str, start: int, end: int, what: str = "chunk", recorded: str = "the chunk table says"
               ) -> bytes:
        """Bytes [start, end) of ``what`` ``key``, all of them: anything less is damage."""
        try:
            data = self.store.get_range(key, start, end)
        except FileNotFoundError:
            raise CorruptDatasetError(self.url, f"{what} {key} is missing; the dataset is incomplete or damaged") \
                from None
        if len(data) != end - start:
            raise CorruptDatasetError(self.url, f"{what} {key} is shorter than {recorded}; the dataset is damaged")
        return data

    def layout(self, index: int) -> SlotLayout | None:
        """Where chunk ``index``'s count slots lie (None: it has none)."""
        layout = self._layouts.get(index, False)
        if layout is False:  # computed once per chunk (idempotent: threads may race harmlessly)
            m = self.meta
            layout = self._layouts[index] = SlotLayout.of(self.table.row(index), m.chunk_size, m.count_slot_bp,
                                                          m.n_slots)
        return layout

    def key(self, index: int) -> str:
        """Chunk ``index``'s object."""
        return chunk_key(self.meta.data_prefix, self.table.object_of(index))

    def _reader(self, index: int, blob: bytes, pieces=None, where: str | None = None) -> ChunkReader:
        t = self.table
        key = self.key(index)
        reader = ChunkReader(blob, self.codecs, where or f"{self.url}/{key}", max_raw=int(t.raw_nbytes[index]),
                             head_crc=int(t.head_crc[index]), version=self.meta.format_version, pieces=pieces,
                             origins=self.origins)
        if reader.n_records != int(t.n_records[index]):
            raise CorruptDatasetError(self.url, f"chunk {key} does not match the chunk table (its record count); "
                                      "the dataset is damaged")
        return reader

    # ------------------------------------------------------------------ reads
    def chunk(self, index: int) -> ChunkReader:
        """A whole chunk, every checksum verified."""
        key = self.key(index)
        return self.check(self.object(key, int(self.table.nbytes[index]), "chunk"), index, decode_slots=False)

    def check(self, blob: bytes, index: int, *, decode_slots: bool = True) -> ChunkReader:
        """Chunk ``index``'s bytes against everything recorded of them: size, header, every
        column payload and every count slot (decoded too with ``decode_slots``), record count."""
        t = self.table
        if len(blob) != int(t.nbytes[index]):
            raise CorruptDatasetError(f"{self.url}/{self.key(index)}",
                                      f"{len(blob):,} bytes where the chunk table says {int(t.nbytes[index]):,}")
        reader = self._reader(index, blob)
        reader.verify_checksums(int(t.slot_nbytes[index]) if self.meta.count_slot_bp else 0)
        layout = self.layout(index)
        if layout is not None and (layout.base != reader.end or layout.count * layout.size != len(blob) - reader.end):
            raise CorruptDatasetError(reader.where, "the chunk holds other count slots than its records need; "
                                      "the dataset is corrupt")
        if decode_slots:
            reader.verify_slots(layout, self.codecs[0], int(t.n_records[index]))
        return reader

    def prefix(self, index: int) -> ChunkReader:
        """The start of a chunk: its header, directory and the columns a count needs (pos, span)."""
        key = self.key(index)
        return self._reader(index, self._range(key, 0, int(self.table.count_nbytes[index])))

    def prefix_groups(self, indices: Iterable[int]) -> list[tuple]:
        """Chunks ``indices`` (ascending) grouped as :meth:`prefixes` fetches them from the count
        index (the dataset has one): the chunks of one part whose count prefixes lie within
        COUNT_INDEX_SPAN of each other, ``(part, [indices], start, end)``."""
        parts = self.meta.count_index
        t = self.table  # validated against the parts: they hold every chunk
        if self._index_at is None:
            self._index_at = count_index_offsets(parts, t.count_nbytes.tolist())
        return count_index_groups(parts, self._index_at, t.count_nbytes, indices, COUNT_INDEX_SPAN)

    def prefixes(self, group: tuple) -> dict[int, ChunkReader]:
        """The count prefixes of a group of :meth:`prefix_groups`, in one read: {index: reader}."""
        part, indices, a, b = group
        key = part["object"]
        data = self._range(key, a, b, "the count index's part", "the dataset records")
        out = {}
        for i in indices:
            s = self._index_at[i] - a
            out[i] = self._reader(i, data[s: s + int(self.table.count_nbytes[i])], where=f"{self.url}/{key}")
        return out

    def columns(self, index: int, names: Iterable[str]) -> ChunkReader:
        """Only the named columns of a chunk (and what decoding them needs), by ranged reads: the
        directory, then the columns' bytes, ranges close together fetched as one."""
        return self.fill(self.directory(index), index, names)

    def directory(self, index: int) -> ChunkReader:
        """A chunk's header and column directory alone (one small ranged read), checked."""
        t = self.table
        key = self.key(index)
        # the header and directory (of as many columns as we write); the columns come next, ranged
        head = self._range(key, 0, min(directory_nbytes(len(ALL)), int(t.nbytes[index])))
        n_columns = int.from_bytes(head[8:12], "little")
        end_dir = directory_nbytes(n_columns)
        if len(head) < end_dir:  # a longer directory: not one we wrote
            head = self._range(key, 0, min(end_dir, int(t.nbytes[index])))
        return self._reader(index, head)

    def fill(self, reader: ChunkReader, index: int, names: Iterable[str]) -> ChunkReader:
        """``reader`` (of chunk ``index``) with the named columns it lacks fetched, in one request
        of coalesced ranges; ``names`` None: every column."""
        key = self.key(index)
        want = {c.name for c in ALL} if names is None else set(names)
        unknown = want - {c.name for c in ALL}
        if unknown:
            raise DatasetError(f"no column named {', '.join(sorted(unknown))}")
        ids = {c.id for c in ALL if c.name in want}
        if L_READ_NAME_COLUMN in ids and reader.columns.get(L_READ_NAME_COLUMN, (0,) * 6)[5] & FLAG_DERIVED:
            ids.add(READ_NAME_COLUMN)  # l_read_name derived from the names (FLAG_DERIVED)
        if READ_NAME_COLUMN in ids and READ_NAME_COLUMN in reader.columns \
                and self.codecs[reader.columns[READ_NAME_COLUMN][4]].record_aware:
            ids.add(BY_NAME["next_pos"].id)  # the names codec reads next_pos (and, through it, pos)
        if any(self.codecs[reader.columns[cid][4]].record_aware for cid in ids if cid in reader.columns):
            ids |= {c.id for c in ALL if c.name in ("pos", "flag", "l_seq", "n_cigar_op", "cigar")}
        missing = [cid for cid in sorted(ids) if cid in reader.columns and not reader.has(cid)]
        if not missing:
            return reader
        spans = sorted(reader.extent(cid) for cid in missing)
        merged: list[list[int]] = []
        for a, b in spans:
            if merged and a - merged[-1][1] <= _GAP:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        try:
            got = self.store.get_ranges(key, [(a, b) for a, b in merged])
        except FileNotFoundError:
            raise CorruptDatasetError(self.url, f"chunk {key} is missing; the dataset is incomplete or "
                                      "damaged") from None
        for (a, b), data in zip(merged, got):
            if len(data) != b - a:
                raise CorruptDatasetError(self.url, f"chunk {key} is shorter than the chunk table says; "
                                          "the dataset is damaged")
        for cid in missing:
            s, e = reader.extent(cid)
            for (a, b), data in zip(merged, got):
                if a <= s and e <= b:
                    reader.pieces[cid] = data[s - a : e - a]
                    break
        return reader

    def slots(self, index: int, a: int, b: int, layout: SlotLayout | None = None
              ) -> tuple[SlotLayout, list[tuple[int, int, np.ndarray, np.ndarray]]]:
        """Chunk ``index``'s count slots ``a``..``b`` (0 = its first), decoded and checked:
        (n_before, max_end_before, pos, span) each. ``layout``: :meth:`layout`, if known."""
        layout = layout or self.layout(index)
        key = self.key(index)
        if layout is None or layout.base < 0:
            raise CorruptDatasetError(self.url, f"chunk {key} has no count slots where the table says; "
                                      "the dataset is damaged")
        blob = self._range(key, *layout.byte_range(a, b))
        codec, where = self.codecs[0], f"{self.url}/{key}"
        try:
            slots = decode_slots(blob, a, layout.size, layout.start_of(0), layout.slot_bp, codec, where,
                                 int(self.table.n_records[index]), whole_crc=self.meta.format_version >= 2)
        except Bams3Error:
            raise
        except Exception as exc:
            if codec.name in self.origins:  # an outside codec: corrupt data, or a broken plugin
                plugin, package = self.origins[codec.name]
                raise PluginError(f"codec {codec.name!r} (plugin {plugin!r} from package {package}) failed to "
                                  f"decode a count slot of {where} ({type(exc).__name__}: {exc}); the dataset may "
                                  "be damaged (`bams3 verify`), or the plugin broken", plugin=plugin,
                                  package=package) from exc
            raise CorruptDatasetError(where, f"a count slot does not decode ({exc}); the dataset is corrupt") \
                from None
        return layout, slots

