"""Snapshot: a costly value (the jobs table's counts) computed at most once a period per
process, by one thread at a time, so that frequent readers (health checks, scrapes) cost the
database nothing more.

The period is at least MIN_PERIOD and at least COST_SHARE times what the last computation
took (so computing takes at most 1/COST_SHARE of one connection's time). A reader that finds
the value older than the period gets it recomputed: within its own call when the last
computation took under INLINE_UNDER seconds, else in a background thread while it and every
reader meanwhile get the previous value. Only the first reader (no value yet) waits."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

MIN_PERIOD = 1.0  # seconds
COST_SHARE = 20
INLINE_UNDER = 0.05  # seconds (the first count of a connection takes a few ms more)

T = TypeVar("T")


class Snapshot(Generic[T]):
    """`compute()`'s last value, taken at `now()` (the store's clock, which tests move)."""

    def __init__(self, compute: Callable[[], T], now: Callable[[], datetime]):
        self.compute = compute
        self.now = now
        self.lock = threading.Lock()
        self.value: T | None = None
        self.taken_at: datetime | None = None
        self.took = 0.0  # seconds the last computation took
        self.computing: threading.Event | None = None  # set when the computation under way ends

    @property
    def period(self) -> float:
        """Seconds a value is answered before it is recomputed."""
        return max(MIN_PERIOD, COST_SHARE * self.took)

    def read(self) -> T:
        """The value, recomputed first if it is older than the period (see the module)."""
        while True:
            with self.lock:
                value, under_way = self.value, self.computing
                if value is not None and not self._stale():
                    return value
                computing = under_way or threading.Event()
                if under_way is None:
                    self.computing = computing
            if under_way is None and (value is None or self.took < INLINE_UNDER):
                return self._take(computing)
            if under_way is None:
                threading.Thread(target=self._take_logged, args=(computing,), daemon=True).start()
            if value is not None:
                return value
            computing.wait()  # the first value, being computed by another reader

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the computation under way, if any (tests and benchmarks)."""
        computing = self.computing
        if computing is not None:
            computing.wait(timeout)

    def _stale(self) -> bool:
        age = (self.now() - self.taken_at).total_seconds() if self.taken_at else 0.0
        return not 0.0 <= age < self.period

    def _take(self, computing: threading.Event) -> T:
        """Compute the value and keep it; the computing event is set either way."""
        try:
            taken_at, started = self.now(), time.perf_counter()
            value = self.compute()
            with self.lock:
                self.value, self.taken_at = value, taken_at
                self.took = time.perf_counter() - started
            return value
        finally:
            with self.lock:
                self.computing = None
            computing.set()

    def _take_logged(self, computing: threading.Event) -> None:
        try:
            self._take(computing)
        except Exception as exc:  # the previous value stays; the next reader tries again
            log.warning("snapshot not recomputed: %s: %s", type(exc).__name__, exc)
