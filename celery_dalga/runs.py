"""The run protocol's decisions (docs/design.md): pure functions of (job, run, now, policy) that
say what to send or what to write. No I/O; the store reads the rows and applies the changes.

Every instant here is an aware UTC datetime; a Change's values are column values.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from celery_dalga import schedules
from celery_dalga.jobs import Job, Run, job_key
from celery_dalga.quartz import Remove, Reschedule
from celery_dalga.retry import RetryPolicy

RETRY_WAIT = "retry-wait"  # the token of a row waiting out a retry delay: no message carries it


class Outcome(StrEnum):
    """What became of a due row or of a delivered run."""

    RELEASED = "released"  # due, but the job is paused: the row is let go, nothing is sent
    SKIPPED = "skipped"  # missed by more than epsilon: next slot (one-off: disabled), not sent
    STALE = "stale"  # the run is no longer the row's (re-claimed, deleted or released)
    DONE = "done"  # delivered; the job has its next run
    DELETED = "deleted"  # delivered; the job is gone (one-off, 204, or no slots left)
    RETRY = "retry"  # not delivered; due again after the retry delay, same instant
    NOT_SENT = "not_sent"  # never reached the endpoint: due again, not counted as an attempt
    GAVE_UP = "gave_up"  # not delivered, retry_stop_after passed: the job is disabled
    STOPPED = "stopped"  # not delivered, and the job was paused meanwhile: no retry
    ABANDONED = "abandoned"  # not delivered and out of retries: the job goes on to its next run


FINAL = {Outcome.DONE, Outcome.DELETED, Outcome.GAVE_UP, Outcome.STOPPED, Outcome.ABANDONED}


@dataclass(frozen=True)
class Change:
    """What to write to one job row: delete it, or set these columns; and which dependent
    jobs this makes due (Kala's rules): the first child of `children_of` (a job key), and
    the sibling after `sibling_after` ((parent key, id)), enabled ones only."""

    outcome: Outcome
    values: dict[str, Any] = field(default_factory=dict)
    delete: bool = False
    children_of: str | None = None
    sibling_after: tuple[str, int] | None = None


@dataclass(frozen=True)
class Attempt:
    """One call of a run (a POST, a publish, a task...) and what came of it. `status` is the
    HTTP status, None when no answer came or the kind has none; `error` why it failed, or,
    delivered, what to show (HTTP 200, confirmed, the task's return). `ended` is when the
    answer came (time.monotonic()), None for "just now". `sent` is False when the call never
    went out (no connection, or held back by the destination's limit); `wait` the seconds the
    destination asked for (Retry-After) or has been unreachable. `ok` says whether the run
    was delivered, for kinds without HTTP statuses; None: as the status says (200 or 204).
    `asks` is what a delivered run asks of its job (celery_dalga.quartz: Remove, Reschedule);
    with `ok` None a 204 asks for Remove."""

    run: Run
    status: int | None
    error: str
    duration: float
    ended: float | None = None
    sent: bool = True
    wait: float = 0.0
    ok: bool | None = None
    asks: Reschedule | Remove | None = None

    @property
    def delivered(self) -> bool:
        return self.status in (200, 204) if self.ok is None else self.ok

    @property
    def removes(self) -> bool:
        """Whether the delivered run asks for its job to be deleted."""
        return isinstance(self.asks, Remove) or (self.ok is None and self.status == 204)

    def ended_at(self, now: datetime, monotonic_now: float) -> datetime:
        """When the answer came, on the clock that reads `now` at `monotonic_now` (a task's
        runs are settled together, but each completed when its own answer came)."""
        if self.ended is None:
            return now
        return now - timedelta(seconds=max(0.0, monotonic_now - self.ended))


LEASE_SPARE = 1.0  # seconds of lease left over after a call that takes the whole timeout


@dataclass(frozen=True)
class Policy:
    """How runs are leased, skipped, retried (celery_dalga.retry) and remembered."""

    lease: float = 60.0
    fixed_intervals: bool = False
    epsilon: float = 0.0
    randomization_factor: float = 0.0
    history_runs: int = 10  # attempts kept per job (0: no history)
    history_ttl: float = 7 * 86400.0  # seconds an attempt is kept at most
    min_interval: float = 1.0  # a dependent job is woken no sooner after its last attempt
    retry: RetryPolicy = RetryPolicy()

    def fence_window(self, timeout: float) -> tuple[float, float]:
        """(keep, start_within) for a worker's calls of `timeout` seconds: the fence renews a
        run's lease to at least `keep` seconds, and a call starts only within `start_within`
        seconds of it, so the lease outlasts a call that takes the whole timeout by
        LEASE_SPARE."""
        keep = max(self.lease / 2, min(self.lease, timeout + 5))
        return keep, keep - timeout - LEASE_SPARE

    def for_job(self, job: Job) -> Policy:
        """This policy with the job's own retries, retry interval and epsilon, where it has
        them (Kala's per-job settings)."""
        if job.retries is None and job.retry_interval is None and job.epsilon is None:
            return self
        retry = replace(
            self.retry,
            retries=self.retry.retries if job.retries is None else job.retries,
            interval=self.retry.interval if job.retry_interval is None else job.retry_interval,
        )
        epsilon = self.epsilon if job.epsilon is None else job.epsilon
        return replace(self, retry=retry, epsilon=epsilon)


def on_due(job: Job, token: str, now: datetime, policy: Policy) -> Run | Change:
    """A claimed due row: the run to send (a manual one when a trigger is what is due), or
    what to write instead of sending anything."""
    policy = policy.for_job(job)
    sched, triggered = job.next_sched, job.triggered_at
    if triggered is not None and (not job.enabled or sched is None or sched > now):
        return job.run(triggered, token, manual=True)
    if not job.enabled or sched is None:
        return Change(Outcome.RELEASED, {"token": None, "next_run": None, "attempts": 0})
    epsilon = job.epsilon if job.one_off else policy.epsilon  # the global one: periodic only
    if epsilon and now - sched > timedelta(seconds=epsilon):
        if job.one_off:  # disabled, not deleted: the caller sees that it did not run
            late = (now - sched).total_seconds()
            return Change(
                Outcome.SKIPPED,
                {
                    "token": None,
                    "enabled": False,
                    "next_run": now if triggered else None,  # a pending trigger still runs
                    "attempts": 0,
                    "last_error": f"not sent: {late:.0f} s late, more than its epsilon "
                    f"({epsilon:g} s)",
                },
            )
        nxt = job.schedule.next(sched, now, policy.fixed_intervals)
        if nxt is None:
            return Change(Outcome.SKIPPED, delete=True)
        values = {"token": None, "next_sched": nxt, "next_run": nxt, "attempts": 0}
        return Change(Outcome.SKIPPED, values)
    return job.run(sched, token)


def on_answer(job: Job | None, attempt: Attempt, now: datetime, policy: Policy) -> Change:
    """What a delivery's answer writes: nothing if the run is no longer the row's. A success
    makes the job's first enabled child due; a dependent run that has ended makes its next
    enabled sibling due (Kala's order: children one after another, in creation order)."""
    if job is None or job.token != attempt.run.token:
        return Change(Outcome.STALE)
    policy = policy.for_job(job)
    change = (on_success if attempt.delivered else on_failure)(job, attempt, now, policy)
    ended = job.parent_key is not None and attempt.run.manual and change.outcome in FINAL
    return replace(
        change,
        children_of=change.values.get("job_key", job.key) if attempt.delivered else None,
        sibling_after=(job.parent_key, job.id) if ended and job.parent_key else None,
    )


def on_success(job: Job, attempt: Attempt, now: datetime, policy: Policy) -> Change:
    """200: the next slot (or delete a one-off job); 204 or Remove: delete; Reschedule: its
    instant instead of the next slot, and its body (a new job key) instead of the job's.
    Intervals that are not fixed count from the answer, spread by randomization_factor as
    Dalga does. A schedule replaced while the run was in flight is kept as it is; a trigger
    that came meanwhile makes the job due."""
    run, asks = attempt.run, attempt.asks
    if isinstance(asks, Reschedule) and asks.at is not None:
        nxt: datetime | None = asks.at
    else:
        nxt = job.next_sched if run.manual else _next_slot(job, run, now, policy)
    if attempt.removes or (nxt is None and not run.manual):
        return Change(Outcome.DELETED, delete=True)
    values = {
        **_afterwards(job, run, nxt, now),
        "success_count": job.success_count + 1,
        "last_success": now,
        "last_attempt": now,
        "last_duration": attempt.duration,
    }
    if isinstance(asks, Reschedule) and asks.body is not None and asks.body != job.body:
        values.update(body=asks.body, job_key=job_key(job.path, asks.body))
    return Change(Outcome.DONE, values)


def _next_slot(job: Job, run: Run, now: datetime, policy: Policy) -> datetime | None:
    """The slot after a scheduled run (None: no slot left); a schedule replaced while the run
    was in flight is kept as it is."""
    if job.next_sched != run.sched:
        return job.next_sched
    schedule = job.schedule
    nxt = schedule.next(run.sched, now, policy.fixed_intervals)
    if nxt is not None and schedule.interval and not policy.fixed_intervals:
        nxt = schedules.randomized(now, nxt, policy.randomization_factor)
    return nxt


def _afterwards(job: Job, run: Run, nxt: datetime | None, now: datetime) -> dict[str, Any]:
    """The row once a run has ended: released, due at nxt (if enabled), or now if a trigger
    came meanwhile (a manual run clears its own trigger)."""
    pending_trigger = job.triggered_at
    if run.manual and job.triggered_at == run.sched:
        pending_trigger = None
    next_run = nxt if job.enabled else None
    if pending_trigger is not None:
        next_run = now
    return {
        "token": None,
        "next_sched": nxt,
        "next_run": next_run,
        "triggered_at": pending_trigger,
        "attempts": 0,
    }


def on_failure(job: Job, attempt: Attempt, now: datetime, policy: Policy) -> Change:
    """Anything but 200/204: due again after the backoff for the row's count of failures
    (so a run that comes back after its lease keeps its place in the backoff), with the same
    instant, and no sooner than the destination asked (Retry-After) or, unreachable, as long
    as it has been; abandoned when the job's retries are used up (it goes on to its next
    run); disabled once retry_stop_after has passed since the instant; dropped if paused
    meanwhile. A call that was never sent is not an attempt: it neither moves the backoff
    nor uses a retry."""
    run = attempt.run
    counts = {
        "error_count": job.error_count + 1,
        "last_error": attempt.error[:2000],
        "last_attempt": now,
        "last_duration": attempt.duration,
    }
    if not job.enabled and not run.manual:
        return Change(Outcome.STOPPED, {"token": None, "next_run": None, "attempts": 0, **counts})
    gave_up = {"token": None, "next_run": None, "enabled": False, "triggered_at": None}
    if policy.retry.expired(run.sched, now):
        return Change(Outcome.GAVE_UP, {**gave_up, "attempts": 0, **counts})
    if attempt.sent and policy.retry.exhausted(job.attempts):
        nxt = job.next_sched if run.manual else _next_slot(job, run, now, policy)
        if nxt is None and not run.manual:
            return Change(Outcome.GAVE_UP, {**gave_up, "attempts": 0, **counts})
        return Change(Outcome.ABANDONED, {**_afterwards(job, run, nxt, now), **counts})
    delay = timedelta(seconds=policy.retry.delay(job.attempts, attempt.wait))
    values = {"token": RETRY_WAIT, "next_run": now + delay}
    if not attempt.sent:
        return Change(Outcome.NOT_SENT, {**values, **counts})
    return Change(Outcome.RETRY, {**values, "attempts": job.attempts + 1, **counts})


def record(
    job: Job,
    attempt: Attempt,
    change: Change,
    now: datetime,
    policy: Policy,
    instance_id: int | None,
) -> dict[str, Any]:
    """The history row of an attempt that ended at `now`: one of the job's last
    `history_runs` (a ring of slots by its count of attempts, so keeping the last N needs no
    deletes)."""
    run = attempt.run
    return {
        "job_key": change.values.get("job_key", job.key),  # a new body's: the job's history
        "slot": (job.success_count + job.error_count) % policy.history_runs,
        "sched": run.sched,
        "manual": run.manual,
        "finished": now,
        "status": attempt.status,
        "error": None if attempt.delivered else attempt.error[:2000],
        "duration": attempt.duration,
        "instance_id": instance_id,
        "outcome": str(change.outcome),
    }


def on_enabled(job: Job, enabled: bool, now: datetime, policy: Policy) -> dict[str, Any]:
    """Pause or resume, as Dalga's DisableJob and EnableJob do. A run in flight keeps its
    lease (it finishes, then the change shows); pausing an idle job keeps only a pending
    trigger. Resuming makes the job due at its scheduled instant, at once if that has passed
    (one catch-up run), unless intervals are fixed: then missed slots are skipped."""
    values: dict[str, Any] = {"enabled": enabled}
    if job.running:
        return values
    if not enabled or job.next_sched is None:  # a dependent job runs when its parent says
        values["next_run"] = job.triggered_at
    elif not job.enabled:
        nxt = job.next_sched or now
        if policy.fixed_intervals and nxt < now:
            nxt = job.schedule.next(nxt, now, fixed_rate=True) or now
        values["next_sched"] = nxt
        values["next_run"] = min(nxt, job.triggered_at) if job.triggered_at else nxt
    return values
