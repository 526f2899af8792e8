"""Raw BAM records in bulk: header, record batches, column split and assembly.

A :class:`RecordBatch` is many BAM records back to back exactly as in an
uncompressed BAM stream (each with its ``block_size`` prefix) plus the offset
of each. Fields are read with numpy over those bytes; nothing here makes a
Python object per record.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator

import attrs
import numpy as np

from . import _kernels
from .errors import InputError, TruncatedInputError
from .layout import bam_header_bytes

# The 36 bytes every record starts with: block_size, then the 32-byte core.
CORE = np.dtype(
    [
        ("block_size", "<i4"),
        ("refid", "<i4"),
        ("pos", "<i4"),
        ("l_read_name", "u1"),
        ("mapq", "u1"),
        ("bin", "<u2"),
        ("n_cigar_op", "<u2"),
        ("flag", "<u2"),
        ("l_seq", "<i4"),
        ("next_refid", "<i4"),
        ("next_pos", "<i4"),
        ("tlen", "<i4"),
    ]
)
CORE_SIZE = CORE.itemsize  # 36
# CIGAR operations that consume the reference: M D N = X
_REF_CONSUMING = np.zeros(16, dtype=np.int64)
_REF_CONSUMING[[0, 2, 3, 7, 8]] = 1
FUNMAP = 4


# Limits that no real file reaches and that keep a lying file from making us read or hold
# gigabytes: header text (htslib has none; 7 million @SQ lines take ~256 MB), the
# number of references (assemblies reach millions of contigs) and one record's size
# (an ultra-long read of several Mbp with qualities and modification tags is tens of MB).
MAX_HEADER_TEXT = 1 << 30
MAX_REFERENCES = 1 << 26
MAX_RECORD = 1 << 28


@attrs.frozen
class Header:
    """The BAM header: the SAM header text and the binary reference list."""

    text: str
    references: tuple[tuple[str, int], ...]

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.references]

    def with_pg(self, program: str, version: str, command_line: str) -> Header:
        """The header with an @PG line for this program, added as htslib's sam_hdr_add_pg adds it
        for samtools: a unique ID (``bams3``, else ``bams3.1``, ``bams3.2``, ...), one line per
        end of the existing @PG chains (PP: that end), placed after the last @PG line (or at the
        end of the header when there is none)."""
        lines = self.text.splitlines()
        pgs = [(i, dict(f.split(":", 1) for f in line.split("\t")[1:] if ":" in f))
               for i, line in enumerate(lines) if line.startswith("@PG\t")]
        ids = [f.get("ID") for _, f in pgs]
        taken = set(filter(None, ids))
        linked = [f for _, f in pgs if f.get("PP") in taken]  # a PP naming a program that is there
        referenced = {f["PP"] for f in linked}
        if linked:  # chain ends: linked lines no other line points to
            ends = [f["ID"] for f in linked if f.get("ID") and f["ID"] not in referenced]
        else:  # no links at all: the last line ends the one chain
            ends = [ids[-1]] if ids and ids[-1] else []
        cl = " ".join(command_line.split())  # no tabs or newlines inside a header field
        new, counter = [], 1
        for end in ends or [None]:
            pid = program
            while pid in taken:
                pid = f"{program}.{counter}"
                counter += 1
            taken.add(pid)
            new.append("\t".join(["@PG", f"ID:{pid}", f"PN:{program}"] + ([f"PP:{end}"] if end else [])
                                  + [f"VN:{version}", f"CL:{cl}"]))
        at = pgs[-1][0] + 1 if pgs else len(lines)
        text = "\n".join(lines[:at] + new + lines[at:]) + "\n"
        return Header(text, self.references)

    def to_bam_bytes(self) -> bytes:
        return bam_header_bytes(self.text, self.references)

    @classmethod
    def parse(cls, buf: bytes) -> tuple[Header, int] | None:
        """Parse a header at the start of ``buf``; ``None`` if ``buf`` is too short."""
        if len(buf) < 12:
            return None
        if buf[:4] != b"BAM\x01":
            raise InputError("not a BAM file (bad magic number)")
        (l_text,) = struct.unpack_from("<i", buf, 4)
        if l_text < 0:
            raise InputError("corrupt BAM header (negative text length)")
        if l_text > MAX_HEADER_TEXT:
            raise InputError(f"corrupt BAM header (it claims {l_text:,} bytes of text; the limit is "
                             f"{MAX_HEADER_TEXT:,})")
        o = 8 + l_text
        if len(buf) < o + 4:
            return None
        text = buf[8:o].decode("utf-8", "surrogateescape")
        (n_ref,) = struct.unpack_from("<i", buf, o)
        if n_ref < 0 or n_ref > MAX_REFERENCES:
            raise InputError(f"corrupt BAM header ({n_ref:,} references; the limit is {MAX_REFERENCES:,})")
        o += 4
        refs = []
        for _ in range(n_ref):
            if len(buf) < o + 4:
                return None
            (l_name,) = struct.unpack_from("<i", buf, o)
            if l_name <= 0 or l_name > 1 << 20:
                raise InputError("corrupt BAM header (bad reference name length)")
            if len(buf) < o + 4 + l_name + 4:
                return None
            name = buf[o + 4 : o + 4 + l_name].rstrip(b"\x00").decode("utf-8", "surrogateescape")
            (l_ref,) = struct.unpack_from("<i", buf, o + 4 + l_name)
            refs.append((name, l_ref))
            o += 8 + l_name
        return cls(text, tuple(refs)), o


class RecordBatch:
    """Records back to back (``data``) and where each starts (``offsets``, N+1 entries)."""

    __slots__ = ("data", "offsets", "_core")

    def __init__(self, data: np.ndarray, offsets: np.ndarray, core: np.ndarray | None = None):
        self.data = data
        self.offsets = offsets
        self._core = core

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return int(self.offsets[-1] - self.offsets[0])

    @property
    def core(self) -> np.ndarray:
        """The fixed fields of every record, as a structured array (copied out)."""
        if self._core is None:
            core = np.empty(len(self), dtype=CORE)
            _kernels.gather(self.data, np.ascontiguousarray(self.offsets[:-1], dtype=np.int64), core.view(np.uint8))
            self._core = core
        return self._core

    def tobytes(self) -> bytes:
        return self.data[self.offsets[0] : self.offsets[-1]].tobytes()

    def select(self, mask: np.ndarray) -> RecordBatch:
        """The records where ``mask`` is true, in order."""
        if mask.all():
            return self
        idx = np.flatnonzero(mask)
        starts = np.ascontiguousarray(self.offsets[idx], dtype=np.int64)
        lens = np.ascontiguousarray(self.offsets[idx + 1], dtype=np.int64) - starts
        offsets = np.zeros(len(idx) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        data = np.empty(int(offsets[-1]), dtype=np.uint8)
        _kernels.pieces(self.data, starts, lens, data)
        return RecordBatch(data, offsets, None if self._core is None else self._core[mask])

    def slice(self, start: int, stop: int) -> RecordBatch:
        core = None if self._core is None else self._core[start:stop]
        return RecordBatch(self.data, self.offsets[start : stop + 1], core)

    @staticmethod
    def concat(batches: list[RecordBatch]) -> RecordBatch:
        if len(batches) == 1:
            b = batches[0]
            if b.offsets[0] == 0 and len(b.data) == b.offsets[-1]:
                return b
        datas = [b.data[b.offsets[0] : b.offsets[-1]] for b in batches]
        data = np.concatenate(datas) if datas else np.zeros(0, np.uint8)
        lens = np.concatenate([np.diff(b.offsets) for b in batches]) if batches else np.zeros(0, np.int64)
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        cores = [b._core for b in batches]
        core = np.concatenate(cores) if all(c is not None for c in cores) and cores else None
        return RecordBatch(data, offsets, core)


def segment_lengths(core: np.ndarray, check: bool = True) -> np.ndarray:
    """Per record, the byte lengths of (core, name, cigar, seq, qual, aux): shape (N, 6)."""
    n = len(core)
    seg = np.empty((n, 6), dtype=np.int64)
    seg[:, 0] = CORE_SIZE
    seg[:, 1] = core["l_read_name"]
    seg[:, 2] = core["n_cigar_op"].astype(np.int64) * 4
    l_seq = core["l_seq"].astype(np.int64)
    seg[:, 3] = (l_seq + 1) // 2
    seg[:, 4] = l_seq
    seg[:, 5] = core["block_size"].astype(np.int64) + 4 - seg[:, :5].sum(axis=1)
    if check and n and (l_seq.min() < 0 or seg[:, 5].min() < 0 or seg[:, 1].min() < 1):
        raise InputError("corrupt BAM record (field lengths exceed the record size)")
    return seg


def split_columns(batch: RecordBatch, seg: np.ndarray) -> list[np.ndarray]:
    """The five variable-length columns (name, cigar, seq, qual, aux), each concatenated."""
    base = batch.offsets[0]
    body = batch.data[base : batch.offsets[-1]]
    totals = seg.sum(axis=0)
    outs = [np.empty(int(t), dtype=np.uint8) for t in totals]
    _kernels.split(body, np.ascontiguousarray(batch.offsets - base, dtype=np.int64),
                   np.ascontiguousarray(seg, dtype=np.int64), *outs)
    return outs[1:]


def layout(core: np.ndarray, l_aux: np.ndarray) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Each record's place when its core fields and ``l_aux`` aux bytes are joined with its
    variable fields: ``block_size`` is set in ``core`` (in place, modulo 2**32) and the records'
    offsets (N + 1) returned, with the bytes each variable column (name, CIGAR, sequence,
    qualities, aux) must hold; None for those when a record's sizes are negative or add up past
    2**63 (corrupt).
    One C pass (what segment_lengths and its sums computed in numpy)."""
    offsets = np.empty(len(core) + 1, dtype=np.int64)
    totals = _kernels.layout(core.view(np.uint8), np.ascontiguousarray(l_aux, dtype=np.int64), offsets)
    return offsets, totals


def join(core: np.ndarray, offsets: np.ndarray, columns: list[np.ndarray], keep: np.ndarray | None = None
         ) -> RecordBatch:
    """The records :func:`layout` placed, built from their cores and the five variable columns;
    with ``keep`` (a boolean mask), only those it keeps, in order (the others are never copied)."""
    if keep is None:
        out = np.empty(int(offsets[-1]), dtype=np.uint8)
        _kernels.join(out, offsets, core.view(np.uint8), *columns)
        return RecordBatch(out, offsets, core)
    keep = np.ascontiguousarray(keep, dtype=np.bool_)
    kept = np.zeros(int(np.count_nonzero(keep)) + 1, dtype=np.int64)
    np.cumsum(np.diff(offsets)[keep], out=kept[1:])
    out = np.empty(int(kept[-1]), dtype=np.uint8)
    _kernels.join(out, offsets, core.view(np.uint8), *columns, keep.view(np.uint8))
    return RecordBatch(out, kept, core[keep])


def reference_span(core: np.ndarray, cigar: np.ndarray) -> np.ndarray:
    """``bam_endpos - pos`` per record, as htslib computes it for region overlap.

    Unmapped records and records whose CIGAR consumes no reference span 1.
    ``cigar`` is the concatenated CIGAR column (uint32 ops).
    """
    ops = cigar.view("<u4")
    contrib = (ops >> 4).astype(np.int64) * _REF_CONSUMING[ops & 0xF]
    cs = np.zeros(len(contrib) + 1, dtype=np.int64)
    np.cumsum(contrib, out=cs[1:])
    ends = np.cumsum(core["n_cigar_op"].astype(np.int64))
    starts = ends - core["n_cigar_op"]
    rlen = cs[ends] - cs[starts]
    rlen[(core["flag"] & FUNMAP) != 0] = 0
    rlen[rlen == 0] = 1
    return rlen


def _add(parts: list, piece: bytes | list[bytes]) -> int:
    """A piece of the stream (bytes, or a list of bytes) put at the end of ``parts``; its size."""
    if isinstance(piece, list):
        parts.extend(piece)
        return sum(map(len, piece))
    parts.append(piece)
    return len(piece)


def split_records(pieces: Iterable[bytes | list[bytes]], target: int = 16 << 20
                  ) -> tuple[Header, Iterator[RecordBatch]]:
    """Parse an uncompressed BAM stream into its header and batches of whole records. The
    stream comes in pieces: each bytes, or a list of bytes (``bgzf.decompress_blocks``: joined
    only once, with what comes before and after them in a batch).

    Raises :class:`InputError` if the stream ends inside the header or a record.
    """
    it = iter(pieces)
    parts: list[bytes] = []
    size = 0
    parsed = None
    attempt = 0  # parse again only once the buffer has doubled: linear in the header's size
    for piece in it:
        size += _add(parts, piece)
        if size >= attempt:
            buf = b"".join(parts)
            parts = [buf]
            parsed = Header.parse(buf)
            if parsed is not None:
                break
            attempt = 2 * size
    buf = b"".join(parts)
    if parsed is None and buf:
        parsed = Header.parse(buf)
    if parsed is None:
        if not buf:
            raise InputError("input is empty (no BAM header)")
        raise TruncatedInputError("input is truncated inside the BAM header")
    header, used = parsed
    return header, record_batches(it, buf[used:], target)


def record_batches(it: Iterator[bytes | list[bytes]], rest: bytes = b"", target: int = 16 << 20
                   ) -> Iterator[RecordBatch]:
    """Batches of whole records from an uncompressed stream of BAM records (no header): ``rest``,
    then the pieces of ``it`` (bytes, or lists of bytes, as ``split_records`` takes them).
    Raises :class:`InputError` if the stream ends inside a record."""
    it = iter(it)
    pending = [rest] if rest else []
    size = len(rest)
    exhausted = False
    # the first batches are small, so that the work downstream starts early; then target
    step = min(target, 1 << 20)
    need = step
    while not exhausted or pending:
        while not exhausted and size < need:
            try:
                p = next(it)
            except StopIteration:
                exhausted = True
                break
            size += _add(pending, p)
        data = pending[0] if len(pending) == 1 and type(pending[0]) is bytes else b"".join(pending)
        pending = []
        n = len(data)
        offs = np.empty(n // CORE_SIZE + 1, dtype=np.int64)
        count, o = _kernels.scan(data, offs)
        if count < 0:
            raise InputError("corrupt BAM record (block size too small)")
        block = -1
        if o + 4 <= n:
            (block,) = struct.unpack_from("<i", data, o)
            if block > MAX_RECORD:
                raise InputError(f"corrupt BAM record (it claims {block:,} bytes; the limit is {MAX_RECORD:,})")
        if o < n:
            if exhausted:
                raise TruncatedInputError("input is truncated (ends inside a BAM record)")
            pending = [data[o:]]
        size = n - o
        if count:
            offs[count] = o
            step = min(target, 2 * step)
            need = step
            arr = np.frombuffer(data, dtype=np.uint8)
            yield RecordBatch(arr, offs[: count + 1].copy())
        elif exhausted:
            break
        else:
            # one record larger than the target: read on until all of it is here (joined once)
            need = max(block + 4, size + 1)
