"""Small concurrency helpers: read-ahead of an iterator, ordered bounded parallel map."""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

_END = object()


def prefetch(it: Iterable, depth: int = 2) -> Iterator:
    """Run ``it`` on a background thread, ``depth`` items ahead; errors re-raise here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run():
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put((True, item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put((True, _END))
        except BaseException as exc:
            q.put((False, exc))

    t = threading.Thread(target=run, daemon=True, name="bams3-prefetch")
    t.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is _END:
                return
            yield item
    finally:
        stop.set()


def ordered_map(fn: Callable, items: Iterable, workers: int, ahead: int | None = None) -> Iterator:
    """``map(fn, items)`` on ``workers`` threads, in order, at most ``ahead`` results in flight."""
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
        ex.shutdown(wait=True, cancel_futures=True)
