"""The adaptive limit of calls in flight to one destination (scheme, host, port) from one
process: AIMD with a delay signal, as TCP does for packets (docs/design.md, "Delivery that
adapts").

- It starts at `initial` and doubles each round trip (slow start) until the first sign of
  congestion or the first rise in delay (an answer 1.25x the lowest delay and 4 ms more, as
  TCP's HyStart), then grows by about one per round trip (additive increase), and only while
  the calls in flight have filled half of it since they last ran out: a destination called
  one at a time does not earn a large limit.
- It halves on a call that was refused, timed out or answered 429/503 (multiplicative
  decrease), and also on an answer that came much slower than the destination's usual
  (a delay `tolerance` times the lowest recent one and at least `slack` seconds more): a
  queue is forming in front of the endpoint, before it overflows into timeouts. One cut per
  round: answers to calls started before the last cut do not cut again.
- A 429/503 with Retry-After closes the destination until then; while it cannot be reached
  (connections refused or timing out), it is `unreachable_for` seconds.

A process's threads share its limits (`Limits`); the clock is injected; no I/O.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

BASELINE_WINDOW = 300.0  # seconds over which the lowest delay is remembered
RISE = 0.004  # seconds of delay beyond 1.25x the lowest that end slow start


@dataclass
class Limit:
    """One destination's limit, as seen by one process."""

    initial: int = 4
    cap: int = 100
    tolerance: float = 2.0
    slack: float = 0.1
    clock: Callable[[], float] = time.monotonic
    limit: float = field(init=False)
    in_flight: int = field(default=0, init=False)
    peak: int = field(default=0, init=False)  # most in flight since the pipe was last empty
    threshold: float = field(init=False)  # slow start below it
    closed_until: float = field(default=0.0, init=False)
    down_since: float | None = field(default=None, init=False)
    last_cut: float = field(default=float("-inf"), init=False)
    _lowest: tuple[float, float] = field(default=(float("inf"), float("inf")), init=False)
    _window_start: float = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.limit = float(max(1, min(self.initial, self.cap)))
        self.threshold = float(self.cap)
        self._window_start = self.clock()

    @property
    def room(self) -> int:
        """How many more calls may start now (0 while closed)."""
        if self.clock() < self.closed_until:
            return 0
        return max(0, int(self.limit) - self.in_flight)

    @property
    def baseline(self) -> float:
        """The lowest delay seen over the last BASELINE_WINDOW to 2x that."""
        return min(self._lowest)

    def take(self, wanted: int) -> int:
        """Start up to `wanted` calls: how many may start now (they count as in flight)."""
        with self._lock:
            granted = min(wanted, self.room)
            if granted:
                self.in_flight += granted
                self.peak = max(self.peak, self.in_flight) if self.in_flight > granted else granted
            return granted

    def answered(self, started: float, seconds: float, congested: bool = False) -> None:
        """A call started at `started` (clock time) got an answer after `seconds`;
        `congested`: it was a 429 or 503."""
        with self._lock:
            self.in_flight -= 1
            self.down_since = None
            self._observe(seconds, started + seconds)
            slow = seconds > self.baseline * self.tolerance and seconds > self.baseline + self.slack
            if congested or slow:
                self._cut(started)
                return
            if self.limit < self.threshold and seconds > self.baseline * 1.25 + RISE:
                self.threshold = self.limit  # the delay rises: slow start ends (HyStart)
            if self.peak >= self.limit / 2:
                step = 1.0 if self.limit < self.threshold else 1.0 / self.limit
                self.limit = min(float(self.cap), self.limit + step)

    def failed(self, started: float, sent: bool) -> None:
        """A call started at `started` got no answer: refused, timed out, or cut short.
        `sent`: the request went out (it may still be served)."""
        with self._lock:
            self.in_flight -= 1
            if not sent and self.down_since is None:
                self.down_since = self.clock()
            self._cut(started)

    def close(self, seconds: float) -> None:
        """The destination asked for no calls for `seconds` (Retry-After)."""
        with self._lock:
            self.closed_until = max(self.closed_until, self.clock() + seconds)

    def unreachable_for(self) -> float:
        """Seconds since the destination last failed to take a connection after answering."""
        return 0.0 if self.down_since is None else self.clock() - self.down_since

    def closed_for(self) -> float:
        return max(0.0, self.closed_until - self.clock())

    def _cut(self, started: float) -> None:
        if started <= self.last_cut:
            return
        self.limit = max(1.0, self.limit / 2)
        self.threshold = self.limit
        self.last_cut = self.clock()

    def _observe(self, seconds: float, now: float) -> None:
        current, previous = self._lowest
        if now - self._window_start > BASELINE_WINDOW:
            current, previous = float("inf"), current
            self._window_start = now
        self._lowest = (min(current, seconds), previous)


class Limits:
    """The limits of one process, one per destination, shared by its threads."""

    def __init__(self, initial: int = 4, cap: int = 100):
        self.initial, self.cap = initial, cap
        self._by_destination: dict[str, Limit] = {}
        self._lock = threading.Lock()

    def __call__(self, destination: str) -> Limit:
        """The limit of a destination (scheme://host:port)."""
        limit = self._by_destination.get(destination)
        if limit is None:
            with self._lock:
                limit = self._by_destination.setdefault(destination, Limit(self.initial, self.cap))
        return limit

    def items(self) -> Iterator[tuple[str, Limit]]:
        return iter(list(self._by_destination.items()))
