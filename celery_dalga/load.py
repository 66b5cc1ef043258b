"""The load's arithmetic, without a database: lateness histograms in fixed log-scale buckets
and their percentiles, this process's Tally of settled runs by minute and outcome (written
by a thread of its own, never by the settle), and the due counts as per-second and
per-minute series.

A lateness histogram has BUCKETS buckets: bucket 0 holds lateness under FIRST_EDGE (1 ms,
early runs too), bucket i holds [1 ms x √2^(i-1), 1 ms x √2^i), and the last bucket also
everything above (√2^46 ms, about 2 h 20 min). A percentile is quoted as its bucket's upper
edge: at most 41 % above the true value, never below it (the last bucket: its lower edge).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

BUCKETS = 48
FIRST_EDGE = 0.001  # seconds
RATIO = math.sqrt(2)
FLUSH_SECONDS = 2.0  # how often a process writes its tally
AHEAD = timedelta(hours=6)  # due runs: per minute this far ahead
AHEAD_BY_SECOND = timedelta(minutes=10)  # and per second this far
BEHIND = timedelta(hours=6)  # callbacks: per minute this far back

Row = tuple[datetime, str, list[int]]  # minute, outcome, [count, bucket 0, bucket 1, ...]


def bucket_of(seconds: float) -> int:
    """The histogram bucket of a lateness in seconds."""
    if not seconds >= FIRST_EDGE:  # NaN too
        return 0
    return min(BUCKETS - 1, 1 + int(2 * math.log2(seconds / FIRST_EDGE)))


def edge(bucket: int) -> float:
    """The lateness quoted for a bucket: its upper edge (the last bucket's: its lower)."""
    return round(FIRST_EDGE * RATIO ** min(bucket, BUCKETS - 2), 4)


def percentile(histogram: list[int], q: float) -> float | None:
    """The q-quantile (0 < q <= 1) of a histogram's lateness as its bucket's edge; None
    when it is empty."""
    total = sum(histogram)
    if not total:
        return None
    rank, seen = math.ceil(q * total), 0
    for bucket, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return edge(bucket)
    return edge(len(histogram) - 1)


def minute_of(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)


class Tally:
    """The runs this process settled and has not written yet: per (minute, outcome) a count
    and a lateness histogram. add() only counts in memory; a daemon thread started by the
    first add() hands the rows to `write` every FLUSH_SECONDS (rows it fails to write are
    kept for the next time), and flush() writes them at once (at shutdown). `shard` names
    this process's rows, so processes never write the same row; a forked child draws its
    own, starts its own thread and forgets its parent's rows."""

    def __init__(self, write: Callable[[int, list[Row]], None], every: float = FLUSH_SECONDS):
        self.write = write
        self.every = every
        self.lock = threading.Lock()
        self.rows: dict[tuple[datetime, str], list[int]] = {}
        self.pid = -1
        self.shard = 0

    def add(self, settled: Iterable[tuple[datetime, str, float]]) -> None:
        """Count runs settled: (when, outcome, lateness in seconds) each."""
        with self.lock:
            if self.pid != os.getpid():
                self._start()
            for at, outcome, lateness in settled:
                row = self.rows.get((minute_of(at), outcome))
                if row is None:
                    row = self.rows[(minute_of(at), outcome)] = [0] * (BUCKETS + 1)
                row[0] += 1
                row[1 + bucket_of(lateness)] += 1

    def flush(self) -> int:
        """Write the rows counted so far; how many. Kept for the next flush if that fails."""
        with self.lock:
            taken, self.rows = self.rows, {}
            shard = self.shard
        if not taken:
            return 0
        try:
            self.write(shard, [(m, o, counts) for (m, o), counts in sorted(taken.items())])
        except Exception:
            with self.lock:
                for key, counts in taken.items():
                    kept = self.rows.setdefault(key, [0] * (BUCKETS + 1))
                    kept[:] = [a + b for a, b in zip(kept, counts, strict=True)]
            raise
        return len(taken)

    def _start(self) -> None:
        """A new shard and flushing thread for this process (under the lock); a forked
        child drops the rows it inherited (its parent writes them)."""
        self.pid, self.shard, self.rows = os.getpid(), secrets.randbits(31), {}
        threading.Thread(target=self._run, name="dalga-load", daemon=True).start()

    def _run(self) -> None:
        while True:
            time.sleep(self.every)
            try:
                self.flush()
            except Exception as exc:  # the rows stay; the next flush tries again
                log.warning("load tally not written: %s: %s", type(exc).__name__, exc)


def series(offsets: dict[int, int], step: int, length: int) -> list[int]:
    """Counts by offset in seconds summed into `length` steps of `step` seconds."""
    counts = [0] * length
    for offset, count in offsets.items():
        if 0 <= offset // step < length:
            counts[offset // step] += count
    return counts


def peak(counts: list[int]) -> dict[str, int]:
    """The largest count and its index (the first of equals)."""
    top = max(counts, default=0)
    return {"index": counts.index(top) if counts else 0, "count": top}


def callbacks(rows: Iterable[Row], start: datetime, minutes: int) -> list[dict[str, Any]]:
    """Per minute from `start`: the callbacks by outcome, their total, and the lateness p50
    and p99 of them all (rows: minute, outcome, [count, buckets...] summed over shards)."""
    outcomes: list[dict[str, int]] = [{} for _ in range(minutes)]
    histograms = [[0] * BUCKETS for _ in range(minutes)]
    for minute, outcome, counts in rows:
        i = int((minute - start).total_seconds() // 60)
        if 0 <= i < minutes:
            outcomes[i][outcome] = outcomes[i].get(outcome, 0) + counts[0]
            histograms[i] = [a + b for a, b in zip(histograms[i], counts[1:], strict=True)]
    return [
        {
            "minute": start + timedelta(minutes=i),
            "outcomes": dict(sorted(outcomes[i].items())),
            "total": sum(outcomes[i].values()),
            "lateness_p50": percentile(histograms[i], 0.5),
            "lateness_p99": percentile(histograms[i], 0.99),
        }
        for i in range(minutes)
    ]
