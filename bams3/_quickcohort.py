"""The quick path of ``bams3 cohort count REGION ... --from FILE [-@ N] [--no-progress]``: each
sample counted by the quick count (bams3/_quick.py: no numpy, click or pysam), on the threads
the full command runs samples on, its table written as the full command writes it.

Startup is a cohort count's one serial part: the full command's imports took ~0.3 s of CPU
before its first request, the time of ~100 samples' requests on two cores.

It answers exactly as the full command does, or leaves it to the full command:

- the command line: only REGIONs (texts), ``--from``, ``-@``/``--workers`` and
  ``--no-progress`` (or no bar because stderr is not a terminal), ``--sample-name path``; each
  once. Anything else, or a sample list the full command would refuse: the full command runs
  from the start and answers, or says what is wrong.
- each sample: one the quick count does not answer (another store, a count slot, another
  codec, a region it does not resolve, a missing object, anything at all) is counted by the
  full command's own :func:`bams3.cohort.count_sample`, which is handed the reads already made
  (``storage.hand_over``), so that no request is made twice. A request that failed after the
  store's retries counts as the sample's first attempt: the full command's retries follow it.
- the message about failed samples, when it holds escapes or text click would re-encode:
  the full command runs from the start (nothing has been written yet).

``BAMS3_QUICK=0`` turns it off, as it does the quick path.
"""

from __future__ import annotations

import io
import os
import sys
import time

from ._quick import _encoding, _Failed, _write


def _arguments(args: list[str]) -> tuple[list[str], str, int] | None:
    """(regions, the sample list's path, workers) from ``cohort count``'s arguments; None for
    anything else the command line might say."""
    regions: list[str] = []
    given: dict[str, str] = {}
    values = {"--from": "from", "-@": "workers", "--workers": "workers", "--sample-name": "sample_name"}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--no-progress":
            key, value = "progress", "no"
        elif a in values:
            if i + 1 >= len(args) or args[i + 1].startswith("-"):
                return None
            key, value = values[a], args[i + 1]
            i += 1
        elif a.startswith("--") and a.split("=", 1)[0] in values and "=" in a:
            key, value = values[a.split("=", 1)[0]], a.split("=", 1)[1]
        elif a.startswith("-@") and len(a) > 2:
            key, value = "workers", a[2:]
        elif a.startswith("-") or not a:
            return None  # another option, `-`, `--`: the full command reads it (or says what is wrong)
        else:
            regions.append(a)
            i += 1
            continue
        if key in given:
            return None  # given twice: the full command decides which counts
        given[key] = value
        i += 1
    workers = given.get("workers", "8")
    if not regions or "from" not in given or not (workers.isascii() and workers.isdigit()):
        return None
    if not 1 <= int(workers) <= 1024 or given.get("sample_name", "path") != "path":
        return None
    if "progress" not in given and sys.stderr is not None and sys.stderr.isatty():
        return None  # the full command draws a bar on a terminal
    return regions, given["from"], int(workers)


def count_sample(name: str, url: str, regions: list[str]) -> list[tuple]:
    """The full command's rows for one sample (:func:`bams3.cohort.count_sample`'s), by the
    quick count where it answers."""
    from . import _quick, cohort, storage

    if not _quick.reads_url(url) or url.startswith("-"):
        return cohort.count_sample(name, url, regions)
    try:
        counts = _quick.counts(url, regions)
    except _Failed:  # its first attempt failed (after the store's retries): the full command's retries follow
        if cohort.RETRIES < 1:
            return cohort.count_sample(name, url, regions)
        storage.drop_handed_over(url)  # a retry reads the sample afresh, as the full command's does
        time.sleep(0.2)  # as bams3.cohort._with_retries waits after a first attempt
        return cohort.count_sample(name, url, regions, attempt=1)
    except Exception:  # noqa: BLE001 - whatever it is, the full command answers (or reports it)
        return cohort.count_sample(name, url, regions)
    storage.drop_handed_over(url)  # nothing left for the full command to take over
    return [(name, region, n, "", "") for region, n in zip(regions, counts)]


def run(args: list[str]) -> int | None:
    """Answer ``bams3 cohort count ARGS`` (its exit status), or None: the full command runs."""
    parsed = _arguments(args)
    if parsed is None or sys.stdout is None or _encoding(sys.stdout) != "utf8":
        return None
    regions, from_file, workers = parsed
    from . import cohort
    from .errors import Bams3Error
    from .redact import redact

    try:
        samples = cohort.read_sample_list(from_file)
    except Bams3Error:
        return None  # the full command says what is wrong with it
    results = cohort.run(count_sample, [(name, url, regions) for name, url in samples], workers=workers)
    rows = [row for rows in results for row in rows]
    text = io.StringIO()
    cohort.write_rows(rows, cohort.COUNT_COLUMNS, None, text)
    note = cohort.failure_note(rows, cohort.COUNT_COLUMNS)
    message = ""
    if note:  # as bams3/cli/cohort.py's _cohort_write says it
        message = redact(f"bams3: {note}") + "\n"
        if "\x1b" in message or not (message.isascii() or _encoding(sys.stderr) == "utf8"):
            return None  # escapes click would strip, or text click re-encodes: the full command says it
    code = _write(text.getvalue().encode("utf-8"))
    if code is None:
        return None  # stdout refused it before a byte went out: the full command reports it
    if message:
        sys.stderr.write(message)
    return code


def leave(code: int) -> None:
    """End the process after an interruption, as the full command does (bams3/cli/app.py):
    without waiting for the requests still in flight on the pool's threads."""
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)
