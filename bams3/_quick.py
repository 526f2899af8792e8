"""The quick path: ``bams3 query DATASET [REGION ...] -c`` (with samtools view's flag and MAPQ
filters too: -f, -F, --rf, -G, -q), ``bams3 stats DATASET [--flagstat | --idxstats | --json]``
and ``bams3 query DATASET REGION`` (SAM of one region: bams3/_quicksam.py),
answered with the standard library, zstandard's decoder and C kernels, before numpy, click
or pysam is imported (~0.25 s of a count's ~0.3 s was those imports).

A local DATASET is read from its directory; an s3://, gs://, az:// or http(s):// one through the
store the full command opens (``bams3.storage.open_store``, without numpy: the same credentials,
endpoints, retries and checks), its requests on threads as the full command's are.

It answers only what it can answer exactly as the full command does, from the same checked
bytes: those argument shapes, a path or an object URL of bams3's own cloud store, and (for a
count) a dataset that needs only bams3's own codecs and has no count slots. A filtered count
reads each chunk's directory and its flag and MAPQ columns (and positions where a region cuts
it), as the full reader does, and only from a local dataset: the full command asks a remote
store for those columns by coalesced ranges, which this reader does not make. Everything is
checked as the full reader checks it (``_metadata.json``'s size, SHA-256 and fields, the whole
chunk table, each edge chunk's directory CRC, sizes, column CRCs and frame sizes), and anything
else (another option, another URL, an error of any kind, a check that fails) returns None: the
full command then runs from the start and answers, or says what is wrong, in its own words. So
this never prints an error of its own, and never a number the full command would not print.
Three things keep a remote dataset's requests the full command's: every read it made (and every
object it found missing) is handed over to the full command (``storage.hand_over``), which
answers them from there if it runs; once a request fails, no other is started; and a request
that failed after the store's retries is reported here, in the full command's words and status,
rather than made (and waited out) again.

``BAMS3_QUICK=0`` turns it off (the full command answers everything).
"""

from __future__ import annotations

import binascii
import os
import stat
import sys
import zlib

from .layout import (
    CHUNK_FIELDS,
    CHUNK_HEAD,
    CHUNK_MAGIC,
    DIR_ENTRY,
    FLAG_DERIVED,
    FLAG_PREDICTED,
    FLAG_SHUFFLED,
    KNOWN_FLAGS,
    L_READ_NAME_COLUMN,
    MAX_CHUNK_BYTES,
    MAX_CHUNK_RAW_BYTES,
    MAX_OBJECT,
    OBJECT_FIELD,
    OPTIONAL_CHUNK_FIELDS,
    POS_COLUMN,
    SLOT_HEAD,
    SPAN_COLUMN,
    TABLE_DELTAS,
    TABLE_ENCODING,
    TABLE_PLAIN,
    TLEN_COLUMN,
)

# bams3's own codecs: a dataset naming another needs the plugin host to find it (or say it is missing)
OWN_CODECS = frozenset({"zstd", "qual", "consensus", "tags", "mates", "names"})
# Larger chunk tables are left to the full reader, which decodes them with numpy: in lists, a
# table of a million rows (a hostile one; real ones have thousands) took seconds.
MAX_ROWS = 100_000
# the schemes of bams3's own cloud store (an outside plugin cannot take them: bams3/plugins.py)
REMOTE_SCHEMES = frozenset({"s3", "gs", "az", "http", "https"})
REMOTE_WORKERS = 4  # requests at once at most, as the full command's (`query -@`, 4 by default)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class _Refused(Exception):
    """Not for the quick count: the full command answers."""


class _Missing(_Refused):
    """An object of a remote dataset is not there: the full command says what is missing."""


class _Failed(Exception):
    """A request to a remote store failed (``error``, a Bams3Error, after the store's own
    retries): reported here as the full command reports it, which would make the same request
    and wait out the same retries again."""

    def __init__(self, error):
        super().__init__()
        self.error = error


class _Local:
    """A local dataset, read from its root directory without following a link out of it."""

    def __init__(self, dest: str):
        self.root = os.open(os.path.abspath(os.path.expanduser(dest)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def read(self, key: str, start: int, end: int) -> bytes:
        return _read(self.root, key, start, end)

    def reads(self, asks: list[tuple[str, int, int]]) -> list[bytes]:
        return [_read(self.root, *ask) for ask in asks]

    def close(self) -> None:
        os.close(self.root)


class _Remote:
    """A dataset at an s3://, gs://, az:// or http(s):// URL, read through the store the full
    command opens (``bams3.storage.open_store``: the same credentials, endpoints, retries and
    checks). Requests run on threads, several at once as the full command's do, while this
    thread waits where Ctrl-C and SIGTERM reach it."""

    def __init__(self, dest: str):
        from .storage import open_store

        self.url = dest
        self.store = open_store(dest)

    def read(self, key: str, start: int, end: int) -> bytes:
        return self.reads([(key, start, end)])[0]

    def reads(self, asks: list[tuple[str, int, int]]) -> list[bytes]:
        """The bytes of each (key, start, end), in order: REMOTE_WORKERS requests at a time, none
        REMOTE_WORKERS places or more past the first one not yet answered, and none started once
        one has failed (so never a request the full command's pool would not have made: it has
        REMOTE_WORKERS in flight from the start). Each read is handed over to the full command
        (``storage.hand_over``), in case it runs after this. On the main thread, a failure the
        command reports itself (a Bams3Error) is raised once it is the first in order, as the
        full command's ordered reads raise it and its process ends: the reads behind it are not
        waited for (they are daemons; the process ends). Any other failure waits for every read,
        since the full command follows and takes the reads over.

        Not ``_threads.ordered_map``, which would do the same: its pool's threads are joined when
        the interpreter exits, so a Ctrl-C here would wait out the stalled requests (the full
        command leaves by ``os._exit``; this returns to ``_main``), and it imports
        ``concurrent.futures`` (~7 ms). These threads are daemons. One read asked on a thread
        other than the main one (a cohort count's sample: bams3/_quickcohort.py) is made on that
        thread: nothing runs beside it, and Ctrl-C reaches the main thread, not this one."""
        import threading

        from .errors import Bams3Error
        from .storage import hand_over, interrupted

        n, ahead = len(asks), REMOTE_WORKERS
        out: list = [None] * n
        done = [False] * n
        cond = threading.Condition()
        state = {"next": 0, "oldest": 0, "failed": n}  # failed: the first read in order that failed (n: none)

        def fetch(k: int) -> bool:
            """Read ask ``k`` into ``out[k]`` (or the error), handed over; whether it failed."""
            try:
                out[k] = self.store.get_range(*asks[k])
                hand_over(self.url, *asks[k], out[k])
                return False
            except BaseException as exc:  # noqa: BLE001 (reported in order below)
                out[k] = exc
                if isinstance(exc, FileNotFoundError):
                    hand_over(self.url, *asks[k], None)
                return True

        def work() -> None:
            while True:
                with cond:
                    while state["failed"] == n and state["next"] < n and state["next"] >= state["oldest"] + ahead:
                        cond.wait()
                    k = state["next"]
                    if state["failed"] < n or k >= n:
                        return
                    state["next"] = k + 1
                failed = fetch(k)
                with cond:
                    done[k] = True
                    if failed:
                        state["failed"] = min(state["failed"], k)
                    while state["oldest"] < n and done[state["oldest"]]:
                        state["oldest"] += 1
                    cond.notify_all()

        if n == 1 and threading.current_thread() is not threading.main_thread():
            fetch(0)
        else:
            threads = [threading.Thread(target=work, daemon=True) for _ in range(min(REMOTE_WORKERS, n))]
            for th in threads:
                th.start()
            try:
                if threading.current_thread() is threading.main_thread():
                    with cond:  # until every read is in, or the first failure in order is known
                        while state["oldest"] < n and state["oldest"] <= state["failed"]:
                            cond.wait()
                    first = out[state["failed"]] if state["failed"] < n else None
                    if isinstance(first, Bams3Error) and not isinstance(first, FileNotFoundError):
                        raise _Failed(first)  # reported, and the process ends: the reads behind it not waited for
                for th in threads:
                    th.join()
            except _Failed:
                raise
            except BaseException:
                interrupted.set()  # the requests still running stop retrying
                raise
        for got in out:  # the first failure in order, as the full command reports it
            if isinstance(got, FileNotFoundError):
                raise _Missing  # the full command says what is missing
            if isinstance(got, Bams3Error):
                raise _Failed(got)
            if isinstance(got, BaseException):
                raise _Refused
        return out

    def close(self) -> None:
        pass


def reads_url(dest: str) -> bool:
    """Whether the quick path reads ``dest``: a path, or a URL of bams3's own cloud store."""
    return not (("://" in dest and dest.split("://", 1)[0] not in REMOTE_SCHEMES) or dest.startswith("file:"))


def run(args: list[str]) -> int | None:
    """Answer ``bams3 ARGS`` when it is a count or a statistics text this module answers (exit
    status 0), or None: the full command must run."""
    if os.environ.get("BAMS3_QUICK", "1") == "0" or sys.byteorder != "little":
        return None
    verb, rest = args[0], args[1:]
    if verb == "cohort":  # `cohort count`
        from ._quickcohort import run as cohort_count

        return cohort_count(rest[1:])
    if verb == "query":
        split = _filter_options(rest)
        if split is None:
            return None
        rest, given = split
        positional = [a for a in rest if a not in ("-c", "--count")]
        if len(positional) == len(rest):  # records: SAM of one region, without filters
            if given:
                return None

            def answer():
                from ._quicksam import sam

                return sam(positional[0], positional[1:])
        else:
            answer = lambda: f"{count(positional[0], positional[1:], given)}\n"  # noqa: E731
    elif verb == "stats":
        positional = [a for a in rest if a not in ("--flagstat", "--idxstats", "--json")]
        if len(rest) - len(positional) > 1:
            return None
        answer = lambda: stats(positional[0], next((a for a in rest if a != positional[0]), None))  # noqa: E731
    else:
        return None
    if len(positional) < 1 or any(a.startswith("-") for a in positional) or (verb == "stats" and len(positional) > 1):
        return None  # an option (or `-`, `--`) the full command reads, or a usage error it reports
    dest = positional[0]
    if not reads_url(dest):
        return None
    if sys.stdout is None or _encoding(sys.stdout) != "utf8":
        return None  # a closed stdout, or another encoding: the full command says so, or prints it
    try:
        text = answer()
        if isinstance(text, str):  # (SAM is written as bytes, by the full command too)
            text = text.encode("utf-8")
            if b"\x1b" in text:
                return None  # escapes click would strip: the full command prints it
    except _Failed as failed:  # a request failed, after the store's retries: as the full command reports it
        from .redact import redact

        message = redact(f"bams3: error: {' '.join(str(failed.error).split())}") + "\n"  # as bams3/cli/common.py's _err
        if "\x1b" in message or os.environ.get("BAMS3_DEBUG") or not (message.isascii() or _encoding(sys.stderr) == "utf8"):
            return None  # escapes click would strip, a traceback asked for, or text click re-encodes: the full command reports it
        sys.stderr.write(message)
        return failed.error.exit_code
    except Exception:  # whatever it is, the full command says it in its own words (or answers)
        return None
    return _write(text)


# samtools view's flag and MAPQ filters, as `bams3 query` spells them (bams3/cli/common.py)
FILTER_OPTIONS = {"-f": "require", "--require-flags": "require", "-F": "exclude", "--excl-flags": "exclude",
                  "--exclude-flags": "exclude", "--rf": "any_of", "--incl-flags": "any_of",
                  "--include-flags": "any_of", "-G": "not_all", "-q": "min_mapq", "--min-MQ": "min_mapq",
                  "--min-mapq": "min_mapq", "--min-mq": "min_mapq"}


def _filter_options(rest: list[str]) -> tuple[list[str], dict[str, list[str]]] | None:
    """The arguments other than the flag and MAPQ filters, and the filters' values as given
    (``-F 4``, ``-F4``, ``--excl-flags=4``); None when an option's value is missing or begins
    with ``-`` (the full command reads or refuses it)."""
    other: list[str] = []
    given: dict[str, list[str]] = {}
    i = 0
    while i < len(rest):
        a = i
        name, value = rest[i], None
        if name not in FILTER_OPTIONS:
            head, eq, tail = name.partition("=")
            if name[:2] in FILTER_OPTIONS and len(name) > 2 and not name.startswith("--"):
                name, value = name[:2], name[2:]
            elif eq and head.startswith("--") and head in FILTER_OPTIONS:
                name, value = head, tail
            else:
                other.append(name)
                i += 1
                continue
        if value is None:
            if a + 1 >= len(rest):
                return None
            value, i = rest[a + 1], a + 2
        else:
            i = a + 1
        if not value or value.startswith("-"):
            return None
        given.setdefault(FILTER_OPTIONS[name], []).append(value)
    return other, given


def _read_filter(given: dict[str, list[str]]) -> tuple[int, int, int, int, int] | None:
    """(require, exclude, any_of, not_all, min_mapq) as ``bams3.filters.from_options`` makes
    them (flag options OR-ed, the last -q), or None when no record can be left out. Values the
    full command might read otherwise (a MAPQ other than ASCII digits, a flag outside 16 bits)
    are refused."""
    from .flagtext import parse_flag_options

    flags = [parse_flag_options(given.get(dest, ())) for dest in ("require", "exclude", "any_of", "not_all")]
    if not all(0 <= v <= 0xFFFF for v in flags):
        raise _Refused
    mapq = given.get("min_mapq", ["0"])[-1]
    if not (mapq.isascii() and mapq.isdigit()):
        raise _Refused
    out = (*flags, int(mapq))
    return out if any(out) else None


def _encoding(stream) -> str:
    return (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")


def _write(data: bytes) -> int | None:
    """Write the answer to stdout as the full command would: a reader that went away ends it
    quietly (status 0); a failure before anything is written is left to the full command to
    report, one after part of it is reported here."""
    view, done = memoryview(data), 0
    try:
        while done < len(view):
            done += os.write(sys.stdout.fileno(), view[done:])
    except BrokenPipeError:
        return 0
    except (OSError, ValueError) as exc:
        if not done:
            return None
        sys.stderr.write(f"bams3: error: {getattr(exc, 'strerror', None) or exc}\n")
        return 1
    return 0


def _open(dest: str) -> tuple[_Local | _Remote, dict, int]:
    """The dataset's reader, its checked metadata fields and format version, with an inline
    chunk table decoded and validated as the full reader does on opening."""
    from . import metacheck

    src = _Remote(dest) if "://" in dest else _Local(dest)
    try:
        data = src.read(metacheck.METADATA_KEY, 0, 1 << 20)  # the full command's first read of it
        if len(data) >= 1 << 20:
            raise _Refused  # a metadata this large is rare: the full command reads the rest
        obj, version = metacheck.parse(data, dest)
        f = metacheck.fields(obj, version)
        if f["chunks_ref"] is None:
            if not isinstance(f["chunks"].get("count"), int) or f["chunks"]["count"] > MAX_ROWS:
                raise _Refused
            f["table"] = decode_table(f["chunks"], None)
            validate_table(f["table"], len(f["references"]), f["chunk_size"], f["n_slots"], f["stats"]["n_records"],
                           version)
            # as Metadata.from_json checks an inline table's count index on opening: a statistics
            # text of a metadata the full command refuses would be an answer it never gives
            metacheck.count_index_covers(f["count_index"], len(f["table"]["n_records"]), f["table"]["count_nbytes"])
        return src, f, version
    except BaseException:
        src.close()
        raise


def stats(dest: str, which: str | None) -> str:
    """What ``bams3 stats DEST`` prints (``which``: ``--flagstat``, ``--idxstats`` or ``--json``)."""
    from types import SimpleNamespace

    from .statstext import flagstat_text, idxstats_text, stats_block, stats_json

    src, f, version = _open(dest)
    src.close()
    s = f["stats"]
    if which == "--flagstat":
        return flagstat_text(s["flagstat"])
    if which == "--idxstats":
        return idxstats_text(s["idxstats"])
    m = SimpleNamespace(source=f["source"], codecs=[SimpleNamespace(name=n, level=lv) for n, lv, _ in f["codecs"]],
                        format_version=version, references=f["references"], chunk_size=f["chunk_size"],
                        count_index=f["count_index"])
    return stats_json(dest, m, s) if which == "--json" else stats_block(dest, m, s)


def count(dest: str, regions: list[str], given: dict[str, list[str]] | None = None) -> int:
    """``samtools view -c`` of the regions (none: every record) in the dataset ``dest``, with
    samtools view's flag and MAPQ filters (``given``: their values by ``FILTER_OPTIONS``' names)."""
    flt = _read_filter(given or {})
    src, f, version = _open(dest)
    try:
        if flt is not None and not isinstance(src, _Local):
            raise _Refused  # the full command reads a remote chunk's columns by coalesced ranges
        if f["count_slot_bp"] and flt is None or any(name not in OWN_CODECS for name, _, _ in f["codecs"]):
            raise _Refused
        spans = resolve_spans(f, regions)
        t = _table(src, f, version)
        if flt is not None:
            return _count_filtered(src, f, t, spans, flt)
        if not spans:
            return int(f["stats"]["n_records"])  # (a JSON true is 1, as the full reader prints it)
        return _count(src, f, t, spans)
    finally:
        src.close()


def counts(dest: str, regions: list[str]) -> list[int]:
    """``samtools view -c`` of each region alone in the dataset ``dest`` (a cohort count's row
    for each: bams3/_quickcohort.py), read as the full reader reads them: the metadata (and an
    external chunk table) once, then each region's count prefixes."""
    src, f, version = _open(dest)
    try:
        if f["count_slot_bp"] or any(name not in OWN_CODECS for name, _, _ in f["codecs"]):
            raise _Refused
        spans = resolve_spans(f, regions)
        t = _table(src, f, version)
        return [_count(src, f, t, [span]) for span in spans]
    finally:
        src.close()


def resolve_spans(f: dict, regions: list[str]) -> list[tuple[int, int, int]]:
    """Each region's (reference id, 0-based start, end) in the dataset of metadata fields ``f``,
    resolved as the full reader resolves it."""
    from .regiontext import resolve_region

    names = {name: i for i, (name, _) in enumerate(f["references"])}
    return [resolve_region(r, names) for r in regions]


def _table(src: _Local | _Remote, f: dict, version: int) -> dict[str, list[int]]:
    """The chunk table: inline (checked on opening), or external, fetched and checked by every
    count, as the full reader does."""
    from . import metacheck

    t = f.get("table")
    if t is None:
        ref = f["chunks_ref"]
        if ref["count"] > MAX_ROWS:
            raise _Refused
        frame = src.read(ref["object"], 0, ref["nbytes"] + 1)
        if len(frame) != ref["nbytes"] or zlib.crc32(frame) != ref["crc32"]:
            raise _Refused
        t = decode_table(f["chunks"], frame)
        validate_table(t, len(f["references"]), f["chunk_size"], f["n_slots"], f["stats"]["n_records"], version)
        metacheck.count_index_covers(f["count_index"], len(t["n_records"]), t["count_nbytes"])
    return t


def _plan(t: dict[str, list[int]], spans) -> tuple[list[int], dict[int, list[tuple[int, int]]]]:
    """The chunks the regions ``spans`` hold whole (a chunk once for each region) and those
    they cut, with the intervals that cut each (in order), as the full reader plans a count."""
    from bisect import bisect_left, bisect_right

    ref, min_pos, max_pos, max_end = t["ref_id"], t["min_pos"], t["max_pos"], t["max_end"]
    n_placed = sum(1 for r in ref if r >= 0)
    placed = ref[:n_placed]
    whole: list[int] = []
    edges: dict[int, list[tuple[int, int]]] = {}
    for tid, beg, end in spans:
        if tid < 0:  # `*`: the unplaced records' chunks, whole
            whole.extend(i for i, r in enumerate(ref) if r == -1)
            continue
        for i in range(bisect_left(placed, tid), bisect_right(placed, tid)):
            if min_pos[i] < end and max_end[i] > beg:
                if min_pos[i] >= beg and max_pos[i] < end:
                    whole.append(i)
                else:
                    edges.setdefault(i, []).append((beg, end))
    return whole, edges


def _count(src: _Local | _Remote, f: dict, t: dict[str, list[int]], spans) -> int:
    from ._kernels import count_overlaps

    whole, edges = _plan(t, spans)
    total = sum(t["n_records"][i] for i in whole)
    for i, blob in _prefixes(src, f, t, sorted(edges)):
        pos, span = _positions(blob, f, t, i)
        total += count_overlaps(pos, span, edges[i])
    return total


def _count_filtered(src: _Local, f: dict, t: dict[str, list[int]], spans, flt: tuple[int, ...]) -> int:
    """A count with flag and MAPQ filters: each chunk's flag and MAPQ columns (and its positions
    where a region cuts it), read and checked as the full reader reads a filtered count's; no
    region: every chunk, whole."""
    from ._kernels import count_overlaps, keep_mask

    whole, edges = _plan(t, spans) if spans else (list(range(len(t["n_records"]))), {})
    require, exclude, any_of, not_all, min_mapq = flt
    wanted = ([3] if require or exclude or any_of or not_all else []) + ([4] if min_mapq else [])
    kept: dict[int, int] = {}
    total = 0
    for i in sorted(set(whole) | set(edges)):
        cols = _columns(src, f, t, i, ([POS_COLUMN, SPAN_COLUMN] if i in edges else []) + wanted)
        keep = keep_mask(t["n_records"][i], cols.get(3), cols.get(4), *flt)
        kept[i] = len(keep) - keep.count(0)
        if i in edges:
            total += count_overlaps(cols[POS_COLUMN], cols[SPAN_COLUMN], edges[i], keep)
    return total + sum(kept[i] for i in whole)


def _prefixes(src: _Local | _Remote, f: dict, t: dict[str, list[int]], indices: list[int]):
    """(chunk, its count prefix) for each of ``indices``, read as the full reader reads them: from
    the count index when the dataset has one (the prefixes close together in one read), else
    from each chunk object."""
    from .metacheck import COUNT_INDEX_SPAN, count_index_groups, count_index_offsets

    parts, size = f["count_index"], t["count_nbytes"]
    if not parts:
        return zip(indices, src.reads([(_chunk_key(f, t, i), 0, size[i]) for i in indices]))
    at = count_index_offsets(parts, size)
    groups = count_index_groups(parts, at, size, indices, COUNT_INDEX_SPAN)
    out = []
    for (_, members, a, b), data in zip(groups, src.reads([(g[0]["object"], g[2], g[3]) for g in groups])):
        if len(data) != b - a:
            raise _Refused
        out.extend((i, data[at[i] - a: at[i] - a + size[i]]) for i in members)
    return out


def _positions(blob: bytes, f: dict, t: dict[str, list[int]], i: int) -> tuple[bytes, bytes]:
    """Chunk ``i``'s pos (deltas) and span columns, from its count prefix ``blob``, checked as
    :class:`bams3.format.ChunkReader` checks them."""
    if len(blob) != t["count_nbytes"][i]:
        raise _Refused
    columns = _directory(blob, f, t, i)
    return tuple(_column(blob, columns[cid], f, t, i, cid) for cid in (POS_COLUMN, SPAN_COLUMN))


# each fixed column's value width, by id (bams3.format.columns.FIXED's dtypes; tests/test_quick.py
# holds them equal): pos, span, refid, flag, mapq, bin, l_read_name, n_cigar_op, l_seq, next_refid,
# next_pos, tlen, l_aux
WIDTH = {0: 4, 1: 4, 2: 4, 3: 2, 4: 1, 5: 2, 6: 1, 7: 2, 8: 4, 9: 4, 10: 4, 11: 4, 12: 4}


def _directory(blob: bytes, f: dict, t: dict[str, list[int]], i: int) -> dict[int, tuple[int, ...]]:
    """Chunk ``i``'s column directory (id: offset, stored, raw, crc, codec, flags) from its first
    bytes ``blob``, checked as :class:`bams3.format.ChunkReader` checks it."""
    n_records, max_raw, head_crc = t["n_records"][i], t["raw_nbytes"][i], t["head_crc"][i]
    if len(blob) < CHUNK_HEAD.size or blob[:8] != CHUNK_MAGIC:
        raise _Refused
    _, ncol, n = CHUNK_HEAD.unpack_from(blob, 0)
    end_dir = CHUNK_HEAD.size + ncol * DIR_ENTRY.size
    if ncol > 255 or len(blob) < end_dir or n != n_records:
        raise _Refused
    if head_crc >= 0 and zlib.crc32(blob[:end_dir]) != head_crc:
        raise _Refused
    columns: dict[int, tuple[int, ...]] = {}
    o = end_dir
    for k in range(ncol):
        cid, codec_idx, flags, crc, stored, raw = DIR_ENTRY.unpack_from(blob, CHUNK_HEAD.size + k * DIR_ENTRY.size)
        if flags & ~KNOWN_FLAGS or codec_idx >= len(f["codecs"]) or (flags & FLAG_PREDICTED and cid != TLEN_COLUMN) \
                or raw > max_raw or cid in columns \
                or flags & FLAG_DERIVED and (cid != L_READ_NAME_COLUMN or flags != FLAG_DERIVED or stored or crc):
            raise _Refused
        columns[cid] = (o, stored, raw, crc, codec_idx, flags)
        o += stored
    return columns


def _column(data: bytes, entry: tuple[int, ...], f: dict, t: dict[str, list[int]], i: int, cid: int,
            at: int = 0) -> bytes:
    """Fixed column ``cid`` of chunk ``i`` (``entry``: its directory entry) from ``data``, the
    chunk's bytes from offset ``at``: checked, decoded (zstd alone) and unshuffled."""
    from ._kernels import unshuffle

    o, stored, raw, crc, codec_idx, flags = entry
    width = WIDTH[cid]
    piece = data[o - at : o - at + stored]
    if o < at or len(piece) != stored or zlib.crc32(piece) != crc or f["codecs"][codec_idx][0] != "zstd":
        raise _Refused
    col = _zstd_decode(piece, raw) if raw else b""
    if len(col) != raw or raw % width:
        raise _Refused
    if flags & FLAG_SHUFFLED and width > 1:
        col = unshuffle(col, width)
    if len(col) != width * t["n_records"][i]:
        raise _Refused
    return col


def _columns(src: _Local, f: dict, t: dict[str, list[int]], i: int, ids: list[int]) -> dict[int, bytes]:
    """Fixed columns ``ids`` of chunk ``i``, read from its directory and the span of the columns
    (a local dataset: its bytes are read, not requested)."""
    key = _chunk_key(f, t, i)
    columns = _directory(src.read(key, 0, min(CHUNK_HEAD.size + 255 * DIR_ENTRY.size, t["nbytes"][i])), f, t, i)
    if any(cid not in columns for cid in ids):
        raise _Refused
    a = min(columns[cid][0] for cid in ids)
    b = max(columns[cid][0] + columns[cid][1] for cid in ids)
    if b > t["nbytes"][i]:
        raise _Refused
    data = src.read(key, a, b)
    return {cid: _column(data, columns[cid], f, t, i, cid, a) for cid in ids}


def _chunk_key(f: dict, t: dict[str, list[int]], i: int) -> str:
    objects = t.get(OBJECT_FIELD)
    return f"{f['data_prefix']}{objects[i] if objects is not None else i:06d}"


def decode_table(obj: dict, frame: bytes | None) -> dict[str, list[int]]:
    """The chunk table's columns (lists of ints), decoded as
    :meth:`bams3.format.ChunkTable.from_json` decodes them."""
    if not isinstance(obj.get("count"), int):
        raise ValueError("chunk count must be an integer")
    n = obj["count"]
    fields = list(obj["fields"])
    encoding = obj.get("encoding")
    required = [x for x in CHUNK_FIELDS if x not in OPTIONAL_CHUNK_FIELDS]
    if encoding not in (TABLE_ENCODING, TABLE_PLAIN) or any(x not in fields for x in required):
        raise ValueError("unsupported chunk table encoding")
    if n < 0 or n > 1 << 32 or len(fields) > 64:
        raise ValueError("absurd chunk count")
    want = n * len(fields) * 8
    if frame is None:
        frame = binascii.a2b_base64(obj["data"])  # base64.b64decode, without importing base64
    from ._kernels import unshuffle

    raw = _zstd_decode(frame, max(want, 1))
    if len(raw) != want:
        raise ValueError("chunk table has the wrong size")
    mat = []
    for j in range(len(fields)):
        part = raw[j * n * 8 : (j + 1) * n * 8]
        if encoding == TABLE_ENCODING:
            part = unshuffle(part, 8)  # the field's 8-byte values from all their byte 0s, then byte 1s, ...
        mat.append(list(memoryview(part).cast("q")) if n else [])
    if encoding == TABLE_ENCODING:
        for name in TABLE_DELTAS:  # in dependency order
            if name in fields:
                v = mat[fields.index(name)]
                base = TABLE_DELTAS[name]
                if base is None:
                    acc = 0
                    for k in range(n):
                        acc = _wrap64(acc + v[k])
                        v[k] = acc
                else:
                    b = mat[fields.index(base)]
                    for k in range(n):
                        v[k] = _wrap64(v[k] + b[k])
    out = {x: mat[fields.index(x)] if x in fields else [OPTIONAL_CHUNK_FIELDS[x]] * n for x in CHUNK_FIELDS}
    if OBJECT_FIELD in fields:
        out[OBJECT_FIELD] = mat[fields.index(OBJECT_FIELD)]
    return out


def _wrap64(x: int) -> int:
    """int64 arithmetic as numpy's (wrapping)."""
    return (x + (1 << 63)) % (1 << 64) - (1 << 63)


def validate_table(t: dict[str, list[int]], n_refs: int, chunk_size: int, n_slots: int, n_records: int,
                   version: int) -> None:
    """:meth:`bams3.format.ChunkTable.validate`, over lists: ValueError for values no writer produces."""
    if sum(t["n_records"]) != n_records:
        raise ValueError("the chunk table and the statistics disagree on the number of records")
    rows = zip(t["ref_id"], t["window"], t["n_records"], t["min_pos"], t["max_pos"], t["max_end"], t["nbytes"],
               t["count_nbytes"], t["raw_nbytes"], t["slot_nbytes"], t["head_crc"])
    max_window = (1 << 62) // chunk_size
    crc_min = 0 if version >= 2 else -1
    last = -1
    for ref, win, n, lo, hi, end, nb, cnb, raw, snb, crc in rows:
        if ref < -1 or ref >= n_refs or win < -1 or win > max_window or n < 1 or n > raw // 36 or raw < 36 \
                or raw > MAX_CHUNK_RAW_BYTES or nb < CHUNK_HEAD.size or nb > MAX_CHUNK_BYTES \
                or cnb < CHUNK_HEAD.size or cnb > nb or snb < 0 or snb > nb \
                or snb > 0 and (n_slots == 0 or snb < SLOT_HEAD.size) or crc < crc_min or crc >= 1 << 32 \
                or ref >= 0 and (lo < -1 or lo > hi or hi >= 1 << 31 or end < hi or end > 1 << 32):
            raise ValueError("a chunk's fields are out of range")
        order = n_refs if ref < 0 else ref
        if order < last:
            raise ValueError("chunks are out of reference order")
        last = order
    objects = t.get(OBJECT_FIELD)
    if objects is not None:
        if version < 3:
            raise ValueError("chunk object numbers need format version 3")
        if any(x < 0 or x >= MAX_OBJECT for x in objects) or len(set(objects)) != len(objects):
            raise ValueError("a chunk's object number is out of range")


def _read(root: int, key: str, start: int, end: int) -> bytes:
    """Bytes [start, end) of a regular file in the dataset (fewer at its end), walked from the
    dataset's root without following a link, as the local store reads."""
    parts = key.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        raise _Refused
    fds = []
    try:
        d = root
        for p in parts[:-1]:
            d = os.open(p, _DIR_FLAGS, dir_fd=d)
            fds.append(d)
        fd = os.open(parts[-1], _READ_FLAGS, dir_fd=d)
        fds.append(fd)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused
        out = []
        while start < end:
            b = os.pread(fd, end - start, start)
            if not b:
                break
            out.append(b)
            start += len(b)
        return b"".join(out)
    finally:
        for fd in fds:
            os.close(fd)


def _zstd_decode(frame: bytes, size: int) -> bytes:
    """A zstd frame's content, as bams3's zstd codec decodes it: a frame declaring more than
    ``size`` is refused before anything is allocated."""
    from ._zstd import zstandard

    z = zstandard()
    declared = z.frame_content_size(frame)
    if declared > size:
        raise _Refused
    return z.ZstdDecompressor().decompress(frame, max_output_size=size)
