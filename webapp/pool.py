"""One bounded pool for the app's heavy work (audio decoding, model calls, Griffin-Lim), shared by every
session of the server process.

A Streamlit server runs each session's script in its own thread, so twenty visitors uploading at once ran
twenty decodes at once: each costs hundreds of MB, and together they took the server past 15 GB. Here at
most `HEAVY_SLOTS` requests hold a slot at a time, and their heavy calls run on as many long-lived worker
threads. A request that finds every slot taken waits, at most `WAIT_S` seconds, holding nothing but the
input it already has; when `WAITING_PER_SLOT` requests a slot are already waiting, or the wait runs out, it
is refused with `Busy`, whose words the page shows. Nothing here knows Streamlit: the page's waiting message
comes in through a callback.

Why worker threads, not only a semaphore: glibc gives each thread that allocates a heap of its own (up to
8 per core) and keeps there what a decode freed, and Streamlit starts a fresh thread for every run of a
script. Measured in one process with the load benchmark's visits (a drawing and an upload, twice, by 4, 8
and 12 visitors at once, two slots): done on the visitors' own threads, memory grew by 32 MB at every
level and stayed there, malloc_trim or not; done on two workers, it grew by 14 MB in all.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

# More slots than cores buy nothing (the work is numpy on every core it can get) and each costs a request's
# memory; MAX_HEAVY_SLOTS keeps a big machine's peak at a few requests' worth.
MAX_HEAVY_SLOTS = 4
WAIT_S = 30.0  # the longest a visitor is asked to wait before being told to come back
WAITING_PER_SLOT = 8  # beyond this many waiting per slot, a wait would only end in a refusal anyway
POLL_S = 0.25  # how often a waiting request wakes, to update its message and to notice a closed session
BUSY = "The demo is busy right now: too many visitors at once. Please try again in a few seconds."
WAITING = "The demo is busy: waiting for a free slot"


def cpu_count() -> int:
    """The cores this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


HEAVY_SLOTS = max(1, min(MAX_HEAVY_SLOTS, cpu_count()))


class Busy(Exception):
    """Every slot stayed taken: the request is refused in words, never queued without bound."""

    def __init__(self, message: str = BUSY):
        super().__init__(message)


class HeavyPool:
    """At most `slots` holders at once across threads, whose heavy calls (`call`) run on `slots` worker
    threads. A thread that holds a slot may enter again freely (a page's section holds one, and the model
    calls inside it do not take a second), and so may a worker running a call for it."""

    def __init__(self, slots: int = HEAVY_SLOTS, wait_s: float = WAIT_S, max_waiting: int | None = None,
                 poll_s: float = POLL_S):
        if slots < 1:
            raise ValueError("a pool needs at least one slot")
        self.slots = slots
        self.wait_s = wait_s
        self.max_waiting = WAITING_PER_SLOT * slots if max_waiting is None else max_waiting
        self.poll_s = poll_s
        self._free = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._running = 0
        self._mine = threading.local()
        # Started on first use and kept: a worker is a slot holder by proxy (see `slot`).
        self._workers = ThreadPoolExecutor(slots, thread_name_prefix="mvae-heavy", initializer=self._as_worker)

    def _as_worker(self) -> None:
        self._mine.worker = True

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def _acquire(self, on_wait: Callable[[float], None] | None) -> None:
        if self._free.acquire(blocking=False):
            return
        with self._lock:
            if self._waiting >= self.max_waiting:
                raise Busy()
            self._waiting += 1
        try:
            deadline = time.monotonic() + self.wait_s
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy()
                if on_wait is not None:
                    on_wait(left)  # may raise: Streamlit stops a closed session's script this way
                if self._free.acquire(timeout=min(self.poll_s, left)):
                    return
        finally:
            with self._lock:
                self._waiting -= 1

    @contextmanager
    def slot(self, on_wait: Callable[[float], None] | None = None) -> Iterator[None]:
        """Runs the block in a slot. `on_wait(seconds_left)` is called while waiting for one; `Busy` when
        none came free in time or too many are waiting already."""
        depth = getattr(self._mine, "depth", 0)
        if depth or getattr(self._mine, "worker", False):
            self._mine.depth = depth + 1
            try:
                yield
            finally:
                self._mine.depth = depth
            return
        self._acquire(on_wait)
        with self._lock:
            self._running += 1
        self._mine.depth = 1
        try:
            yield
        finally:
            self._mine.depth = 0
            with self._lock:
                self._running -= 1
            self._free.release()

    def call(self, fn: Callable, *args, on_wait: Callable[[float], None] | None = None, **kwargs):
        """fn(*args, **kwargs) on a worker, in a slot (the caller's, or one it waits for); its result or its
        exception. Holders never outnumber workers, so a call never queues behind another."""
        if getattr(self._mine, "worker", False):
            return fn(*args, **kwargs)
        with self.slot(on_wait):
            return self._workers.submit(fn, *args, **kwargs).result()


POOL = HeavyPool()
