"""go-quartz's job model with Celery tasks: a task that a job calls (the task kind) steers its
job by what it returns, as go-quartz's Execute does with a new StoreTask, nil or an error.

- `Reschedule(body=..., at=...)`: go on with a new payload and/or at a chosen time;
- `Remove()`: delete the job;
- anything else: done, the job runs at its next slot; raising: retried with backoff.

Run a worker that loads these tasks and may call them, and schedule a job of each:

    DALGA_ALLOWED_TASKS=quartz.countdown,quartz.flaky \\
        celery -A celery_dalga worker --include examples.quartz_tasks
    curl -X PUT 'localhost:34006/jobs/countdown/3?interval=3600&immediate=1&task=quartz.countdown'
    curl -X PUT 'localhost:34006/jobs/flaky/1?interval=60&immediate=1&task=quartz.flaky'

The countdown job runs with body 3, 2, 1 and 0, a second apart (each new body replaces the
job: /jobs/countdown/2 then /jobs/countdown/1...), and is gone after 0.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from celery import shared_task

from celery_dalga import Remove, Reschedule


@shared_task(name="quartz.countdown")
def countdown(body: str) -> Reschedule | Remove:
    """The body is a count: run again in a second with one less, and remove the job at 0."""
    left = int(body)
    if left <= 0:
        return Remove()
    return Reschedule(body=str(left - 1), at=datetime.now(UTC) + timedelta(seconds=1))


@shared_task(name="quartz.flaky")
def flaky(body: str) -> str:
    """Fails half the time: the run is retried with backoff, as for a failed callback."""
    if random.random() < 0.5:
        raise RuntimeError(f"flaky failed for {body}")
    return "ok"
