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
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

from .errors import Bams3Error, DatasetError, UsageError

COUNT_COLUMNS = ("sample", "region", "count", "error")
STATS_COLUMNS = ("sample", "url", "records", "mapped", "unmapped", "duplicates", "secondary", "supplementary",
                 "chunk_size", "chunks", "size", "format_version", "error")
COVERAGE_COLUMNS = ("sample", "reference", "start", "end", "mean_depth", "error")
RETRIES = 2  # extra attempts for a failing sample


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


def read_sample_list(path: str) -> list[tuple[str, str]]:
    """``(name, url)`` from a file of ``URL`` or ``NAME<TAB>URL`` lines (# comments allowed)."""
    out = []
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                parts = line.split("\t") if "\t" in line else line.split()
                if len(parts) == 1:
                    out.append((sample_name(parts[0]), parts[0]))
                elif len(parts) == 2:
                    out.append((parts[0], parts[1]))
                else:
                    raise UsageError(f"{path}:{n}: expected URL or NAME<TAB>URL")
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    if not out:
        raise UsageError(f"{path} lists no samples")
    return out


def bed_regions(path: str) -> list[str]:
    """Region texts (samtools syntax) of the intervals of a BED file, in order."""
    from .region import bed_intervals

    return [f"{{{name}}}:{beg + 1}-{end}" if ":" in name else f"{name}:{beg + 1}-{end}"
            for _, name, beg, end in bed_intervals(path)]


# ------------------------------------------------------------------ per sample (runs on Dask workers too)
def _with_retries(fn: Callable, retries: int):
    last = None
    for attempt in range(retries + 1):
        try:
            return fn(), None
        except Bams3Error as exc:
            last = str(exc)
            if isinstance(exc, DatasetError) and "corrupt" not in last and "no bams3 dataset" in last:
                break  # a missing dataset will not appear by retrying
        except Exception as exc:  # noqa: BLE001 - a sample's failure is reported, not raised
            last = f"{type(exc).__name__}: {exc}"
        if attempt < retries:
            time.sleep(0.2 * (attempt + 1))
    return None, last


def count_sample(name: str, url: str, regions: Sequence[str], retries: int = RETRIES) -> list[tuple]:
    """Rows ``(sample, region, count, error)`` for one sample."""
    from .dataset import Dataset

    def work():
        ds = Dataset.open(url, workers=2)
        return [ds.count(r) for r in regions]

    counts, error = _with_retries(work, retries)
    if counts is None:
        return [(name, r, None, error) for r in regions]
    return [(name, r, c, "") for r, c in zip(regions, counts)]


def stats_sample(name: str, url: str, retries: int = RETRIES) -> tuple:
    from .dataset import Dataset

    def work():
        ds = Dataset.open(url)
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


def coverage_sample(name: str, url: str, bin_bp: int, retries: int = RETRIES):
    """(sample, rows of (reference, start, end, mean depth), error)."""
    from .dataset import Dataset

    rows, error = _with_retries(lambda: Dataset.open(url).coverage(None, bin_bp), retries)
    return name, rows or [], error or ""


# ------------------------------------------------------------------ engines
def run(fn: Callable, jobs: list[tuple], *, engine: str = "local", workers: int = 8, scheduler: str | None = None,
        client=None, progress: Callable[[int, int], None] | None = None) -> list:
    """``fn(*job)`` for every job, results in job order: threads here, or tasks on Dask."""
    results: list = [None] * len(jobs)
    done = 0
    if engine == "local" and client is None:
        with ThreadPoolExecutor(max(1, workers), thread_name_prefix="bams3-cohort") as pool:
            futures = {pool.submit(fn, *job): i for i, job in enumerate(jobs)}
            for f in as_completed(futures):
                results[futures[f]] = f.result()
                done += 1
                if progress:
                    progress(done, len(jobs))
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
    try:
        futures = [client.submit(fn, *job, pure=False, key=f"bams3-{i}-{os.getpid()}-{time.time_ns()}")
                   for i, job in enumerate(jobs)]
        index = {f.key: i for i, f in enumerate(futures)}
        for f in dask_completed(futures):
            results[index[f.key]] = f.result()
            done += 1
            if progress:
                progress(done, len(jobs))
    finally:
        if own is not None:
            cluster = getattr(own, "cluster", None)
            own.close()
            if cluster is not None:
                cluster.close()
    return results


def _samples(datasets: Iterable) -> list[tuple[str, str]]:
    out = []
    for d in datasets:
        if isinstance(d, (tuple, list)):
            out.append((str(d[0]), str(d[1])))
        else:
            out.append((sample_name(str(d)), str(d)))
    return out


def _table(rows: list[tuple], columns: Sequence[str]):
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns))
    for col in ("count", "records", "mapped", "unmapped", "duplicates", "secondary", "supplementary",
                "chunk_size", "chunks", "size", "format_version", "start", "end"):
        if col in df:
            df[col] = df[col].astype("Int64")
    return df



# ------------------------------------------------------------------ the Python API
def count(datasets: Iterable, regions: Sequence[str] | str, client=None, *, workers: int = 8,
          retries: int = RETRIES, progress=None):
    """The sample x region read-count table (pandas: ``sample``, ``region``, ``count``, ``error``).

    ``datasets``: URLs, or ``(name, url)`` pairs. ``client``: a ``distributed.Client`` to run on.
    """
    regions = [regions] if isinstance(regions, str) else list(regions)
    jobs = [(name, url, regions, retries) for name, url in _samples(datasets)]
    results = run(count_sample, jobs, workers=workers, client=client, progress=progress)
    return _table([row for rows in results for row in rows], COUNT_COLUMNS)


def stats(datasets: Iterable, client=None, *, workers: int = 8, retries: int = RETRIES, progress=None):
    """One row per sample from its metadata (pandas)."""
    jobs = [(name, url, retries) for name, url in _samples(datasets)]
    return _table(run(stats_sample, jobs, workers=workers, client=client, progress=progress), STATS_COLUMNS)


def coverage(datasets: Iterable, bin_bp: int = 1 << 20, client=None, *, workers: int = 8, retries: int = RETRIES,
             progress=None):
    """Mean depth per bin per sample, long form (pandas: sample, reference, start, end, mean_depth, error)."""
    jobs = [(name, url, bin_bp, retries) for name, url in _samples(datasets)]
    results = run(coverage_sample, jobs, workers=workers, client=client, progress=progress)
    return _table(coverage_rows(results), COVERAGE_COLUMNS)


def coverage_rows(results: list) -> list[tuple]:
    """Long-form rows (COVERAGE_COLUMNS) of ``coverage_sample`` results; a failed sample is one error row."""
    rows = []
    for name, bins, error in results:
        if error:
            rows.append((name, None, None, None, None, error))
        rows += [(name, ref, beg, end, depth, "") for ref, beg, end, depth in bins]
    return rows


def write_rows(rows: list[tuple], columns: Sequence[str], path: str | None, out=None) -> None:
    """Rows as TSV on ``out`` when ``path`` is None; else by extension: .tsv, .csv, .parquet.
    (No pandas: the CLI stays quick to start.)"""
    import csv
    import io

    def cell(v):
        return "NA" if v is None else v

    if path is not None:
        ext = path.rsplit(".", 1)[-1].lower()
        if ext == "parquet":
            try:
                import pyarrow as pa
                import pyarrow.parquet as pq
            except ImportError:
                raise UsageError("writing parquet needs pyarrow: pip install 'bams3[cohort]'") from None
            pq.write_table(pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)}), path)
            return
        if ext not in ("csv", "tsv", "txt"):
            raise UsageError(f"unknown table format .{ext} (use .tsv, .csv or .parquet)")
        try:
            with open(path, "w", newline="") as f:
                w = csv.writer(f, delimiter="," if ext == "csv" else "\t", lineterminator="\n")
                w.writerow(columns)
                w.writerows([cell(v) for v in r] for r in rows)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
        return
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(columns)
    w.writerows([cell(v) for v in r] for r in rows)
    out.write(buf.getvalue())


def drop_non_dataset_rows(rows: list[tuple], columns: Sequence[str]) -> list[tuple]:
    e = list(columns).index("error")
    return [r for r in rows if not (r[e] or "").startswith("no bams3 dataset")]
