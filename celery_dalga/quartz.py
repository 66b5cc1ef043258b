"""go-quartz's model for task jobs: what a Celery task that a job calls (the task kind) may
return to steer its job, as go-quartz's Execute returns a new StoreTask, nil or an error.

- `Reschedule(body=..., at=...)`: the job goes on with a new payload (body) and/or runs next
  at `at` (else at its schedule's next slot);
- `Remove()`: the job is deleted;
- anything else: a plain success (the job's next slot); raising: a failure, retried with
  backoff.

Any task may return them (examples/quartz_tasks.py):

    @shared_task(name="app.crawl")
    def crawl(body):
        cursor = fetch_page(body)
        return Reschedule(body=cursor) if cursor else Remove()

A new body is a new job key (path, body): the job is replaced by one with the new body, its
schedule and settings kept, in the transaction that records the run; a job that held that
key already is replaced, as a PUT of it would be.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from celery_dalga.spec import EARLIEST, LATEST


@dataclass(frozen=True)
class Reschedule:
    """The job's next run: with `body` as its payload (None: the same) at `at` (an aware
    datetime; None: its schedule's next slot; a one-off job without `at` ends as usual)."""

    body: str | None = None
    at: datetime | None = None

    def __post_init__(self) -> None:
        if self.body is not None and (not isinstance(self.body, str) or not self.body):
            raise ValueError("Reschedule's body must be a non-empty str (or None: the same)")
        if self.at is not None and (
            not isinstance(self.at, datetime)
            or self.at.tzinfo is None
            or not EARLIEST <= self.at <= LATEST
        ):
            raise ValueError(
                "Reschedule's at must be an aware datetime between 1970 and 9000 (or None: "
                "the schedule's next slot)"
            )


@dataclass(frozen=True)
class Remove:
    """The job is deleted, as an HTTP 204 deletes an http job."""
