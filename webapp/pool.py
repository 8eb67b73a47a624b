"""One bounded pool for the app's heavy work (audio decoding, model calls, Griffin-Lim), shared by every
session of the server process.

A Streamlit server runs each session's script in its own thread, so twenty visitors uploading at once ran
twenty decodes at once: each costs hundreds of MB, and together they took the server past 15 GB. Here at
most `HEAVY_SLOTS` pieces of heavy work run at a time. A request that finds every slot taken waits, at most
`WAIT_S` seconds, holding nothing but the input it already has; when `MAX_WAITING` requests are already
waiting, or the wait runs out, it is refused with `Busy`, whose words the page shows. Nothing here knows
Streamlit: the page's waiting message comes in through a callback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Two slots per core buy nothing (the work is numpy on every core it can get) and cost a request's memory
# each; MAX_HEAVY_SLOTS keeps a big machine's peak at a few requests' worth.
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


def _trimmer() -> Callable[[], None]:
    """glibc's malloc_trim, or nothing. Freed blocks of a decode stay in the heap of whichever thread ran it;
    trimming when the pool falls idle gives them back, so that the server's memory returns to where it was."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl, macOS, Windows
        return lambda: None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: trim(0)


class HeavyPool:
    """At most `slots` holders at once across threads; a thread that holds a slot may enter again freely
    (a page's section holds one, and the model calls inside it do not take a second)."""

    def __init__(self, slots: int = HEAVY_SLOTS, wait_s: float = WAIT_S, max_waiting: int | None = None,
                 poll_s: float = POLL_S, trim_when_idle: bool = True):
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
        self._trim = _trimmer() if trim_when_idle else (lambda: None)

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
        if depth:
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
                idle = self._running == 0
            self._free.release()
            if idle:
                self._trim()

    def call(self, fn: Callable, *args, on_wait: Callable[[float], None] | None = None, **kwargs):
        with self.slot(on_wait):
            return fn(*args, **kwargs)


POOL = HeavyPool()
