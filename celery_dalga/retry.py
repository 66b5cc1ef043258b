"""The retry policy: how long a run that failed waits before it is tried again, and when
retrying ends (Dalga's retry.go, with Kala's per-job retries). Pure arithmetic, no I/O."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

LONGEST_POWER = 64  # multiplier ** failures grows no further (the cap holds long before)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from `interval`, times `multiplier` per failure, capped at
    `max_interval`, with full jitter if asked; retrying stops `stop_after` seconds after the
    run's instant (0: never), and a run is abandoned after `retries` retries (None: never)."""

    interval: float = 1.0
    multiplier: float = 2.0
    max_interval: float = 600.0
    stop_after: float = 0.0
    jitter: bool = False
    retries: int | None = None

    def delay(self, failures: int, asked: float = 0.0) -> float:
        """Seconds to wait after the failure that follows `failures` earlier ones: the backoff
        (drawn uniformly below it with jitter), but no less than the destination `asked` for
        (Retry-After, or as long as it has been unreachable), itself capped at max_interval."""
        growth = self.multiplier ** min(failures, LONGEST_POWER)
        backoff = min(self.max_interval, self.interval * growth)
        if self.jitter:
            backoff = random.uniform(0, backoff)
        return max(min(asked, self.max_interval), backoff)

    def expired(self, sched: datetime, now: datetime) -> bool:
        """Whether stop_after has passed since the run's instant: the job gives up."""
        return bool(self.stop_after) and now - sched > timedelta(seconds=self.stop_after)

    def exhausted(self, retries: int) -> bool:
        """Whether a run already retried `retries` times is out of retries."""
        return self.retries is not None and retries >= self.retries
