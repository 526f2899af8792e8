"""Small concurrency helpers: read-ahead of an iterator, ordered bounded parallel map."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

_END = object()
# Set by the bams3 program when Ctrl-C or SIGTERM ends it (bams3/cli/app.py), which then exits at
# once (os._exit) when its cleanup is done: the pools here stop without waiting for threads still
# blocked in a request (a stalled read waited out its retries first: 39 s for a count). A library
# caller's interrupt never sets it; its pools wait for their threads as before.
ending = threading.Event()


class prefetch:
    """Run an iterator on a background thread, ``depth`` items ahead; errors re-raise here.

    ``close()`` stops the thread and waits for it, so the source may be closed afterwards.
    """

    def __init__(self, it: Iterable, depth: int = 2):
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(it,), daemon=True, name="bams3-prefetch")
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, it) -> None:
        try:
            for item in it:
                if not self._put((True, item)):
                    return
            self._put((True, _END))
        except BaseException as exc:
            self._put((False, exc))

    def __iter__(self):
        return self

    def __next__(self):
        ok, item = self._q.get()
        if not ok:
            self.close()
            raise item
        if item is _END:
            self.close()
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        if not ending.is_set():
            self._thread.join()


def ordered_map(fn: Callable, items: Iterable, workers: int, ahead: int | None = None, *,
                writes: bool = False) -> Iterator:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``ahead`` results in flight.
    When the program is ending (``ending``), it does not wait for the calls in flight, unless
    they ``writes``: then the cleanup that follows must come after them. A list of one item (a
    count's one group of count prefixes, for each sample of a cohort) is mapped on the calling
    thread: there is nothing to overlap, and no pool to start and stop."""
    if isinstance(items, (list, tuple)) and len(items) <= 1:
        yield from map(fn, items)
        return
    ahead = ahead or 2 * workers
    ex = ThreadPoolExecutor(max(1, workers), thread_name_prefix="bams3")
    futures: deque = deque()
    it = iter(items)
    try:
        for item in it:
            futures.append(ex.submit(fn, item))
            if len(futures) >= ahead:
                break
        while futures:
            res = futures.popleft().result()
            for item in it:
                futures.append(ex.submit(fn, item))
                break
            yield res
    finally:
        for f in futures:
            f.cancel()
        ex.shutdown(wait=writes or not ending.is_set(), cancel_futures=True)
