"""Many datasets at once: list them, count regions and summarise them across a cohort,
concurrently in this process or on Dask.

    import bams3.cohort
    table = bams3.cohort.count(["s3://c/s1.bams3", "s3://c/s2.bams3"], ["chr1:1M-2M"])
    table = bams3.cohort.count(urls, regions, client=distributed.Client("tcp://scheduler:8786"))

A sample that fails is retried; if it still fails it is reported in its own rows
(``error`` set, ``count`` empty) and never stops the others.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from .errors import Bams3Error, DatasetError, NotADatasetError, StorageError, UnknownReferenceError, UsageError
from .storage import Interrupted, WithStoreOptions, check_interrupted, interrupted, store_options

# note: "missing_reference" when the sample's header lacks the region's reference (count 0)
COUNT_COLUMNS = ("sample", "region", "count", "note", "error")
STATS_COLUMNS = ("sample", "url", "records", "mapped", "unmapped", "duplicates", "secondary", "supplementary",
                 "chunk_size", "chunks", "size", "format_version", "error")
COVERAGE_COLUMNS = ("sample", "reference", "start", "end", "mean_depth", "error")
RETRIES = 2  # extra attempts for a failing sample
SAMPLE_NAMES = ("path", "rg")  # a sample's name: from its URL, or its header's @RG SM
MISSING_REFERENCE = "missing_reference"

# ------------------------------------------------------------------ discovery
def sample_name(url: str) -> str:
    base = url.rstrip("/").rsplit("/", 1)[-1]
    return base.removesuffix(".bams3")


def find_datasets(prefix: str) -> list[str]:
    """URLs of the datasets directly under ``prefix`` (and ``prefix`` itself if it is one)."""
    from .storage import open_store

    store = open_store(prefix)
    base = prefix.rstrip("/")
    found = [prefix] if store.size("_metadata.json") is not None else []
    lister = getattr(store, "list_dirs", None)
    if lister is not None:
        dirs = lister("")
    else:
        dirs = sorted({k.split("/", 1)[0] + "/" for k, _ in store.list("") if "/" in k})
    for d in dirs:
        d = d.strip("/")
        if d and d != "data":
            found.append(f"{base}/{d}")
    return found


def read_sample_list(path: str, name_of: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
    """``(name, url)`` from a file of ``URL`` or ``NAME<TAB>URL`` lines (# comments allowed).
    Only a tab separates a name from its URL: a path may hold spaces. ``name_of``: a URL's
    name when the line gives none (default: :func:`sample_name`)."""
    name_of = name_of or sample_name
    out = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                parts = [p.strip() for p in line.split("\t")]
                if len(parts) == 1:
                    out.append((name_of(parts[0]), parts[0]))
                elif len(parts) == 2 and all(parts):
                    out.append((parts[0], parts[1]))
                else:
                    raise UsageError(f"{path}:{n}: expected URL or NAME<TAB>URL")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not out:
        raise UsageError(f"{path} lists no samples")
    return out


def bed_regions(path: str) -> list[tuple[str, int, int]]:
    """The intervals of a BED file, in order: ``(reference, start, end)``, 0-based half-open, the
    reference name taken as it is (never re-parsed as region text)."""
    from .region import bed_intervals

    return [(name, beg, end) for _, name, beg, end in bed_intervals(path)]


def region_label(spec) -> str:
    """How a region is named in the table: its text, or ``name:start-end`` (1-based) for a BED interval."""
    if isinstance(spec, str):
        return spec
    name, beg, end = spec
    return f"{name}:{beg + 1}-{end}"


def _resolve(ds, spec):
    """A Region of the dataset for a region text or a BED interval; UnknownReferenceError when
    the dataset lacks the reference."""
    from .region import Region

    if isinstance(spec, str):
        return ds.region(spec)
    name, beg, end = spec
    tid = ds._name_index.get(name)
    if tid is None:
        raise UnknownReferenceError(f"unknown reference {name!r}")
    return Region(tid, beg, end, region_label(spec))


def rg_sample(header_text: str) -> str:
    """The sample a header's read groups name (@RG SM); DatasetError when none or several do."""
    names = []
    for line in header_text.splitlines():
        if line.startswith("@RG\t"):
            for field in line.split("\t")[1:]:
                if field.startswith("SM:") and field[3:] not in names:
                    names.append(field[3:])
    if not names:
        raise DatasetError("no @RG SM in its header to name it by (use --sample-name path)")
    if len(names) > 1:
        raise DatasetError(f"its header names several samples (@RG SM: {', '.join(names[:4])}); "
                           "use --sample-name path")
    return names[0]


def _name(name: str, header_text: str | None, how: str) -> tuple[str, str]:
    """(the sample's name, an error) under --sample-name ``how``."""
    if how == "path" or header_text is None:
        return name, ""
    try:
        return rg_sample(header_text), ""
    except DatasetError as exc:
        return name, str(exc)


# ------------------------------------------------------------------ per sample (runs on Dask workers too)
class NotADataset(str):
    """The error of a sample whose URL holds no dataset: a prefix's listing skips it (a text
    that knows what it is, never matched by its words)."""


def _with_retries(fn: Callable, retries: int, first: int = 0):
    """``(fn(), None)``, or ``(None, the last error)`` after ``retries`` more attempts; ``first``:
    attempts already made (the quick path's: bams3/_quickcohort.py)."""
    last = None
    for attempt in range(first, retries + 1):
        check_interrupted()
        try:
            return fn(), None
        except Interrupted:
            raise
        except Bams3Error as exc:
            if isinstance(exc, NotADatasetError):
                return None, NotADataset(exc)  # a missing dataset will not appear by retrying
            last = str(exc)
        except Exception as exc:  # noqa: BLE001 - a sample's failure is reported, not raised
            last = f"{type(exc).__name__}: {exc}"
        if attempt < retries:
            time.sleep(0.2 * (attempt + 1))
    return None, last


def count_sample(name: str, url: str, regions: Sequence, retries: int = RETRIES,
                 sample_names: str = "path", filters=None, attempt: int = 0) -> list[tuple]:
    """Rows ``(sample, region, count, note, error)`` for one sample. ``regions``: region texts
    or BED intervals ``(reference, start, end)``. A region on a reference the sample lacks
    counts 0 with the note ``missing_reference``: the others are counted as usual. ``filters``:
    samtools view's read filters (:class:`bams3.filters.ReadFilter`). ``attempt``: the attempts
    already made (by the quick path) of the ``1 + retries``."""
    from .dataset import Dataset

    def work():
        ds = Dataset.open(url, workers=2)
        out = []
        for spec in regions:
            check_interrupted()
            try:
                region = _resolve(ds, spec)
            except UnknownReferenceError:
                out.append((0, MISSING_REFERENCE))
                continue
            out.append((ds.count(region, filters=filters), ""))
        return ds.header.text, out

    result, error = _with_retries(work, retries, attempt)
    labels = [region_label(r) for r in regions]
    if result is None:
        return [(name, label, None, "", error) for label in labels]
    header_text, counts = result
    name, error = _name(name, header_text, sample_names)
    if error:
        return [(name, label, None, "", error) for label in labels]
    return [(name, label, c, note, "") for label, (c, note) in zip(labels, counts)]


def stats_sample(name: str, url: str, retries: int = RETRIES, sample_names: str = "path") -> tuple:
    from .dataset import Dataset

    def work():
        nonlocal name
        ds = Dataset.open(url)
        name, error = _name(name, ds.header.text, sample_names)
        if error:
            raise DatasetError(error)
        s, m = ds.stats, ds.meta
        fs = s.get("flagstat", {})
        total = s.get("n_records", 0)

        def qc(key):
            v = fs.get(key, [0, 0])
            return int(v[0]) + int(v[1]) if isinstance(v, list) else int(v)

        return (name, url, total, qc("mapped"), total - qc("mapped"), qc("duplicates"), qc("secondary"),
                qc("supplementary"), m.chunk_size, s.get("n_chunks", 0), s.get("stored_bytes", 0),
                m.format_version, "")

    row, error = _with_retries(work, retries)
    if row is None:
        return (name, url) + (None,) * (len(STATS_COLUMNS) - 3) + (error,)
    return row


def coverage_sample(name: str, url: str, bin_bp: int, retries: int = RETRIES, sample_names: str = "path",
                    region=None, options=None):
    """(sample, rows of (reference, start, end, mean depth), error). From the stored bins; with
    ``options`` (:class:`bams3.depth.DepthOptions`: samtools depth's filters) exactly, from the
    reads' columns. ``region``: only its bins (exactly: windows of ``bin_bp`` from its start)."""
    from .dataset import Dataset

    def work():
        ds = Dataset.open(url, workers=2)
        if options is not None:
            return ds.header.text, ds.exact_coverage(region, bin_bp, options=options)
        return ds.header.text, ds.coverage(region, bin_bp)

    result, error = _with_retries(work, retries)
    if result is None:
        return name, [], error or ""
    name, error = _name(name, result[0], sample_names)
    return name, [] if error else result[1], error


# ------------------------------------------------------------------ conversion of many BAMs
CONVERT_COLUMNS = ("sample", "input", "dataset", "records", "chunks", "size", "seconds", "note", "error")
INPUT_SUFFIXES = (".bam", ".cram", ".sam.gz", ".sam")
TRANSIENT = ("timeout", "unreachable", "server", "transport", "failed")  # StorageError kinds worth a retry
SKIPPED = "exists"  # the note of a sample --skip-existing left alone


def input_name(url: str) -> str:
    """A sample's name from its input's URL: the file name without .bam, .cram, .sam(.gz)."""
    base = url.rstrip("/").rsplit("/", 1)[-1]
    for suffix in INPUT_SUFFIXES:
        if base.lower().endswith(suffix) and len(base) > len(suffix):
            return base[: -len(suffix)]
    return base


def convert_jobs(samples: Sequence[tuple[str, str]], to: str) -> list[tuple[str, str, str]]:
    """``(name, input, dataset URL)`` for each sample: the dataset is ``TO/NAME.bams3``. Two
    samples of one name would write one dataset: UsageError, before anything runs."""
    seen: dict[str, str] = {}
    for name, url in samples:
        if not name or "/" in name or name in (".", ".."):
            raise UsageError(f"sample name {name!r} ({url}) cannot name a dataset")
        if name in seen:
            raise UsageError(f"two samples are named {name!r} ({seen[name]} and {url}); name them in --from "
                             "as NAME<TAB>URL")
        seen[name] = url
    base = to.rstrip("/")
    return [(name, url, f"{base}/{name}.bams3") for name, url in samples]


def _input_size(url: str) -> int | None:
    from .storage import local_path, open_store

    path = local_path(url)
    if path is not None:
        return os.path.getsize(path) if os.path.isfile(path) else None
    parent, _, key = url.rstrip("/").rpartition("/")
    return open_store(parent).size(key)


def _existing(src: str, dst: str):
    """The dataset at ``dst`` if it was converted from an input of ``src``'s name and size (a
    finished earlier run); None when there is no dataset; DatasetExistsError when it came from
    another input."""
    from .dataset import Dataset
    from .errors import DatasetExistsError

    try:
        ds = Dataset.open(dst)
    except NotADatasetError:
        return None
    source = ds.meta.source
    name = src.rstrip("/").rsplit("/", 1)[-1]
    if source.get("name") != name or source.get("size") != _input_size(src):
        raise DatasetExistsError(f"{dst} holds a dataset of another input ({source.get('name')}, "
                                 f"{source.get('size')} bytes); pass --force to replace it")
    return ds


def convert_sample(name: str, src: str, dst: str, options: dict | None = None, retries: int = RETRIES,
                   skip_existing: bool = False) -> tuple:
    """One sample converted (a row of CONVERT_COLUMNS). Failures of the store that may pass
    (timeouts, dropped connections, 5xx) are retried; an input that cannot be converted, or a
    destination that holds a dataset already (without ``force``), is not. ``options``: those
    of :func:`bams3.converter.convert`. ``skip_existing``: a dataset already converted from an
    input of this name and size is left as it is (note ``exists``)."""
    from .converter import convert

    t0 = time.monotonic()
    options = dict(options or {})

    def row(meta, note=""):
        s = meta.stats
        return (name, src, dst, s["n_records"], s["n_chunks"], s["stored_bytes"],
                round(time.monotonic() - t0, 2), note, "")

    error = ""
    for attempt in range(retries + 1):
        check_interrupted()
        try:
            if skip_existing and not options.get("force"):
                ds = _existing(src, dst)
                if ds is not None:
                    return row(ds.meta, SKIPPED)
            return row(convert(src, dst, **options))
        except Interrupted:
            raise
        except Bams3Error as exc:
            error = str(exc)
            if not (isinstance(exc, StorageError) and exc.kind in TRANSIENT):
                break
        except (OSError, MemoryError) as exc:
            error = f"{type(exc).__name__}: {exc}"
        if attempt < retries:
            time.sleep(0.5 * (attempt + 1))
    return (name, src, dst, None, None, None, round(time.monotonic() - t0, 2), "", error)


# ------------------------------------------------------------------ engines
def run(fn: Callable, jobs: list[tuple], *, engine: str = "local", workers: int = 8, scheduler: str | None = None,
        client=None, progress: Callable[[int, int], None] | None = None) -> list:
    """``fn(*job)`` for every job, results in job order: threads here, or tasks on Dask."""
    results: list = [None] * len(jobs)
    done = 0
    interrupted.clear()
    if engine == "local" and client is None:
        pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bams3-cohort")
        try:
            futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                done += 1
                if progress:
                    progress(done, len(jobs))
        except BaseException:
            # Ctrl-C: queued samples never start, running ones stop at their next region or attempt
            interrupted.set()
            pool.shutdown(wait=False, cancel_futures=True)
            # once the running samples have stopped, stores may retry again (the Python API lives on)
            threading.Thread(target=_clear_when_stopped, args=(pool,), daemon=True).start()
            raise
        pool.shutdown()
        return results
    if engine != "dask" and client is None:
        raise UsageError(f"unknown engine {engine!r} (use local or dask)")
    try:
        from distributed import Client, LocalCluster, as_completed as dask_completed
    except ImportError:
        raise UsageError("--engine dask needs dask.distributed: pip install 'bams3[cohort]'") from None
    own = None
    if client is None:
        if scheduler:
            own = client = Client(scheduler, timeout="30s")
        else:
            cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=2, processes=True,
                                   dashboard_address=None, silence_logs=50)
            own = client = Client(cluster)
    if store_options():  # the command line's --endpoint-url/--no-sign-request, in the workers too
        fn = WithStoreOptions(fn, store_options())
    try:
        futures = [client.submit(fn, *job, pure=False, key=f"bams3-{i}-{os.getpid()}-{time.time_ns()}")
                   for i, job in enumerate(jobs)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for f in dask_completed(futures):
                results[index[f.key]] = f.result()
                done += 1
                if progress:
                    progress(done, len(jobs))
        except BaseException:
            client.cancel(futures)  # the cluster drops what has not run
            raise
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None:
                cluster.close()
    return results


def _clear_when_stopped(pool: ThreadPoolExecutor) -> None:
    pool.shutdown(wait=True)
    interrupted.clear()


def _samples(datasets: Iterable) -> list[tuple[str, str]]:
    out = []
    for d in datasets:
        if isinstance(d, (tuple, list)):
            out.append((str(d[0]), str(d[1])))
        else:
            out.append((sample_name(str(d)), str(d)))
    return out


def require_pandas() -> None:
    """Cohort tables are pandas frames: without pandas, one line saying what to install, before
    any sample runs."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        raise UsageError("cohort tables need pandas: pip install 'bams3[cohort]' (or '.[all]' in a checkout)") from None


def _table(rows: list[tuple], columns: Sequence[str]):
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns))
    if "seconds" in df:
        df["seconds"] = df["seconds"].astype(float)
    for col in ("count", "records", "mapped", "unmapped", "duplicates", "secondary", "supplementary",
                "chunk_size", "chunks", "size", "format_version", "start", "end"):
        if col in df:
            df[col] = df[col].astype("Int64")
    return df



# ------------------------------------------------------------------ the Python API
def count(datasets: Iterable, regions: Sequence | str, client=None, *, workers: int = 8,
          retries: int = RETRIES, progress=None, sample_names: str = "path", filters=None):
    """The sample x region read-count table (pandas: ``sample``, ``region``, ``count``, ``note``,
    ``error``).

    ``datasets``: URLs, or ``(name, url)`` pairs. ``regions``: region texts or BED intervals
    ``(reference, start, end)``. ``client``: a ``distributed.Client`` to run on.
    ``sample_names``: ``"path"`` (from the URL or the pair) or ``"rg"`` (the header's @RG SM).
    ``filters``: samtools view's read filters (:class:`bams3.filters.ReadFilter`, e.g.
    ``bams3.filters.from_options(exclude=["0xF04"], min_mapq=20)``); none: as ``samtools view -c``.
    """
    require_pandas()
    regions = [regions] if isinstance(regions, str) else list(regions)
    if filters is not None:
        filters.check()
    jobs = [(name, url, regions, retries, sample_names, filters) for name, url in _samples(datasets)]
    results = run(count_sample, jobs, workers=workers, client=client, progress=progress)
    return _table([row for rows in results for row in rows], COUNT_COLUMNS)


def stats(datasets: Iterable, client=None, *, workers: int = 8, retries: int = RETRIES, progress=None,
          sample_names: str = "path"):
    """One row per sample from its metadata (pandas)."""
    require_pandas()
    jobs = [(name, url, retries, sample_names) for name, url in _samples(datasets)]
    return _table(run(stats_sample, jobs, workers=workers, client=client, progress=progress), STATS_COLUMNS)


def coverage(datasets: Iterable, bin_bp: int = 1 << 20, client=None, *, workers: int = 8, retries: int = RETRIES,
             progress=None, sample_names: str = "path", region=None, options=None):
    """Mean depth per bin per sample, long form (pandas: sample, reference, start, end, mean_depth, error).
    From the stored bins; with ``options`` (:class:`bams3.depth.DepthOptions`, samtools depth's
    filters) computed exactly from the reads' columns, in bins of ``bin_bp`` from the start of
    ``region`` (or of each reference)."""
    require_pandas()
    jobs = [(name, url, bin_bp, retries, sample_names, region, options) for name, url in _samples(datasets)]
    results = run(coverage_sample, jobs, workers=workers, client=client, progress=progress)
    return _table(coverage_rows(results), COVERAGE_COLUMNS)


def convert(inputs: Iterable, to: str, client=None, *, workers: int | None = None, retries: int = RETRIES,
            progress=None, skip_existing: bool = False, **options):
    """Convert many BAM/SAM/CRAM files, one task per sample, into ``TO/NAME.bams3`` (pandas: one
    row per sample, CONVERT_COLUMNS; a failed sample has ``error`` set and the others finish).

    ``inputs``: URLs (named by their file name without .bam/.cram/.sam) or ``(name, url)``
    pairs. ``client``: a ``distributed.Client`` to run on; else ``workers`` samples at a time
    in this process (default: one per two CPUs). ``options``: those of
    :func:`bams3.converter.convert` (``chunk_size``, ``compression``, ``reference``, ``force``,
    ``workers`` as ``threads``...)."""
    require_pandas()
    return _table(run(convert_sample, convert_plan(inputs, to, options, retries, skip_existing),
                      workers=workers or default_convert_workers(), client=client, progress=progress),
                  CONVERT_COLUMNS)


def convert_plan(inputs: Iterable, to: str, options: dict, retries: int = RETRIES,
                 skip_existing: bool = False) -> list[tuple]:
    """The jobs of :func:`convert_sample`, the conversion options checked once, before any runs."""
    from .converter import ConvertOptions

    options = dict(options)
    if "threads" in options:
        options["workers"] = options.pop("threads")
    ConvertOptions.of(**options)  # an unknown option or a bad value fails here, not in every sample
    samples = [(input_name(str(d)), str(d)) if not isinstance(d, (tuple, list)) else (str(d[0]), str(d[1]))
               for d in inputs]
    if not samples:
        raise UsageError("no samples to convert")
    return [(name, src, dst, options, retries, skip_existing) for name, src, dst in convert_jobs(samples, to)]


def default_convert_workers(threads: int = 2) -> int:
    """Conversions at once in this process: one per ``threads`` CPUs (conversion is CPU-bound)."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def coverage_rows(results: list) -> list[tuple]:
    """Long-form rows (COVERAGE_COLUMNS) of ``coverage_sample`` results; a failed sample is one error row."""
    rows = []
    for name, bins, error in results:
        if error:
            rows.append((name, None, None, None, None, error))
        rows += [(name, ref, beg, end, depth, "") for ref, beg, end, depth in bins]
    return rows


TABLE_FORMATS = ("tsv", "csv", "txt", "parquet")


def table_format(path: str | None) -> str:
    """The table format of an output path (``-`` or None: TSV on stdout); UsageError for an
    extension bams3 does not write, before any sample is run."""
    from .output import is_stdout, writes_in_place

    if is_stdout(path):
        return "tsv"
    ext = path.rsplit(".", 1)[-1].lower() if "." in os.path.basename(path) else ""
    if ext in TABLE_FORMATS:
        if ext == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise UsageError("writing parquet needs pyarrow: pip install 'bams3[cohort]'") from None
        return "tsv" if ext == "txt" else ext
    if writes_in_place(path):  # /dev/stdout, a FIFO: TSV
        return "tsv"
    raise UsageError(f"unknown table format {('.' + ext) if ext else path!r} (use .tsv, .csv or .parquet)")


def write_rows(rows: list[tuple], columns: Sequence[str], path: str | None, out=None) -> None:
    """Rows as TSV on ``out`` when ``path`` is None (or ``-``); else by extension: .tsv, .csv,
    .parquet, written as bams3 writes every output (bams3.output: links and FIFOs in place,
    files replaced only when complete). (No pandas: the CLI stays quick to start.)"""
    import csv
    import io

    def cell(v):
        return "NA" if v is None else v

    to_out = out is not None and (path is None or path == "-")  # TSV on ``out``: no need of bams3.output
    fmt = "tsv" if to_out else table_format(path)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from .output import Output

        with Output(path) as f:
            pq.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}), f)
        return
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="," if fmt == "csv" else "\t", lineterminator="\n")
    w.writerow(columns)
    w.writerows([cell(v) for v in r] for r in rows)
    if to_out:
        out.write(buf.getvalue())
        return
    from .output import Output

    with Output(path) as f:
        f.write(buf.getvalue().encode())


def failure_note(rows: list[tuple], columns: Sequence[str]) -> str | None:
    """What a cohort command says on stderr when samples failed (their rows' error set), or None."""
    e, n = list(columns).index("error"), list(columns).index("sample")
    failed = list(dict.fromkeys(r[n] for r in rows if r[e]))
    if not failed:
        return None
    return (f"{len(failed)} sample(s) failed (see the error column): {', '.join(map(str, failed[:5]))}"
            + (" ..." if len(failed) > 5 else ""))


def drop_non_dataset_rows(rows: list[tuple], columns: Sequence[str]) -> list[tuple]:
    """The rows of a prefix's listing that are datasets (an entry without _metadata.json is not one)."""
    e = list(columns).index("error")
    return [r for r in rows if not isinstance(r[e], NotADataset)]


# ------------------------------------------------------------------ reads of many samples as one frame
def frame_part(name: str, url: str, region, columns=None, filters=None, with_tags=None):
    """One sample's reads in one region as a pandas frame, the sample's name first (reference
    names as plain strings, so every partition has the same types)."""
    from .dataset import Dataset

    ds = Dataset.open(url, workers=2)
    try:
        reg = _resolve(ds, region) if region is not None else None
    except UnknownReferenceError:  # a reference this sample lacks: no reads there
        table = _empty_frame(ds, columns, with_tags)
    else:
        table = ds.to_arrow(reg, columns, filters, with_tags)
    return _pandas(table, name)


def _empty_frame(ds, columns, with_tags):
    from . import frames

    cols = frames.check_columns(columns)
    tags = frames.tag_types(with_tags)
    if columns is None and tags is not None:
        cols = cols + ("tags",)
    return frames.schema(cols, ds.meta.references, tags).empty_table()


def _pandas(table, name: str):
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string()))
    df = table.to_pandas()
    df.insert(0, "sample", name)
    return df


def frame(datasets: Iterable, regions: Sequence | str | None = None, columns=None, filters=None, with_tags=None):
    """The reads of many samples as one Dask DataFrame: one partition per sample and region
    (``regions`` None: each sample whole), a ``sample`` column first, then the columns of
    :mod:`bams3.frames` (projected by ``columns``, filtered by ``filters``: a
    :class:`bams3.filters.ReadFilter`). Nothing is read until it is computed; each partition
    reads only the columns asked for, on whichever worker runs it."""
    import dask.dataframe as dd
    from dask import delayed

    from . import frames

    require_pandas()
    regions = [regions] if isinstance(regions, str) or regions is None else list(regions)
    if filters is not None:
        filters.check()
    cols = frames.check_columns(columns)
    tags = frames.tag_types(with_tags)
    if columns is None and tags is not None:
        cols = cols + ("tags",)
    meta = _pandas(frames.schema(cols, (), tags).empty_table(), "")
    parts = [delayed(frame_part)(name, url, region, columns, filters, with_tags)
             for name, url in _samples(datasets) for region in regions]
    return dd.from_delayed(parts, meta=meta, verify_meta=False)
