"""celery_dalga.Client: schedule, get, cancel, trigger, pause, resume, list and status from
Python, without the web server (in a Django or Flask app, a script, a Celery task), with the
same checks and the same errors as the HTTP interface.

The Client is the one scheduling path: PUT /jobs, /schedule, the UI's form and
Client.schedule write through Client.put, `dalga import` through Client.spec and
Client.put_many; every job passes one set of checks (Client.spec: the callback kind's and
min_interval), then the store's in the writing transaction (the parent exists, no cycle,
if-absent)."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from celery_dalga import kinds
from celery_dalga.config import Settings, load_settings, settings_for
from celery_dalga.jobs import Job
from celery_dalga.kala import kala_job_stats
from celery_dalga.process import store_for
from celery_dalga.schedules import Schedule, ScheduleError
from celery_dalga.spec import InvalidParameter, JobSpec, check_key, parse_spec
from celery_dalga.store import JobExists, Store
from celery_dalga.values import shown
from celery_dalga.wire import SORTS, Cursor

__all__ = ["Client", "JobExists", "JobNotFound", "Page"]


class JobNotFound(LookupError):
    """No job has this path and body (HTTP answers 404)."""


@dataclass(frozen=True)
class Page:
    """A page of jobs and the cursor of the next page ("" after the last)."""

    jobs: list[Job]
    cursor: str


class Client:
    """The jobs table of a Celery app (its dalga_* keys) or of settings (by default the
    environment's, as `dalga` reads it)."""

    def __init__(
        self, settings: Settings | None = None, *, app: Any = None, store: Store | None = None
    ):
        if settings is None:
            settings = settings_for(app) if app is not None else load_settings()
        self.settings = settings
        self.store: Store = store or store_for(settings)

    def schedule(
        self,
        path: str,
        body: str,
        *,
        interval: int | float | timedelta | str | None = None,
        cron: str | None = None,
        schedule: str | None = None,
        first_run: datetime | str | None = None,
        one_off: bool = False,
        immediate: bool = False,
        location: str | None = None,
        exchange: str | None = None,
        task: str | None = None,
        parent: str | tuple[str, str] | None = None,
        retries: int | None = None,
        retry_interval: int | float | timedelta | str | None = None,
        epsilon: int | float | timedelta | str | None = None,
        if_absent: bool = False,
    ) -> Job:
        """Schedule or reschedule (path, body), as PUT /jobs/{path}/{body} with these
        parameters; raises InvalidParameter (naming the parameter) for bad input, and
        JobExists with if_absent when the job is there already. The values are written as
        PUT's parameters, so that every refusal is PUT's, word for word."""
        params = {
            "interval": _seconds(interval),
            "cron": cron,
            "schedule": schedule,
            "first-run": first_run.isoformat() if isinstance(first_run, datetime) else first_run,
            "one-off": "true" if one_off else None,
            "immediate": "true" if immediate else None,
            "location": location,
            "exchange": exchange,
            "task": task,
            "parent": "/".join(parent) if isinstance(parent, tuple) else parent,
            "retries": None if retries is None else str(retries),
            "retry-interval": _seconds(retry_interval),
            "epsilon": _seconds(epsilon),
            "if-absent": "true" if if_absent else None,
        }
        return self.put(path, body, {k: v for k, v in params.items() if v is not None})

    def put(self, path: str, body: str, params: Mapping[str, str]) -> Job:
        """Schedule or reschedule (path, body) with PUT's parameters (the query string or
        form of PUT /jobs and /schedule, the UI's form): read and checked by spec(), then
        written by the store, which checks the parent (it exists, no cycle) in the writing
        transaction; JobExists for an if-absent job that is there already."""
        return self.store.put(self.spec(path, body, params))

    def put_many(self, specs: builtins.list[JobSpec]) -> int:
        """Write specs that spec() returned in one transaction (`dalga import`), each as put()
        writes it; returns how many. A job the store refuses (its parent) is a JobRefused
        naming it, and none of the batch is written."""
        return self.store.put_many(specs)

    def spec(self, path: str, body: str, params: Mapping[str, str]) -> JobSpec:
        """PUT's parameters read into a spec and checked: the one set of checks a job passes
        before it is written, on every path (the callback kind's, then min_interval);
        InvalidParameter, naming the parameter, for anything PUT refuses before it writes."""
        spec = parse_spec(path, body, params, self.settings.max_body)
        kinds.validate(spec, self.settings)
        _check_gaps(spec, self.settings.min_interval)
        return spec

    def get(self, path: str, body: str) -> Job | None:
        """The job, or None."""
        self._check_key(path, body)
        return self.store.get(path, body)

    def cancel(self, path: str, body: str) -> bool:
        """Delete the job; False if there was none (HTTP answers 204 either way)."""
        self._check_key(path, body)
        return self.store.delete(path, body)

    def trigger(self, path: str, body: str) -> Job:
        """Run the job once, now, leaving its schedule as it is."""
        self._check_key(path, body)
        return self._found(self.store.trigger(path, body))

    def pause(self, path: str, body: str) -> Job:
        """Stop the job's runs until resume(); a run in flight finishes."""
        self._check_key(path, body)
        return self._found(self.store.set_enabled(path, body, enabled=False))

    def resume(self, path: str, body: str, skip_missed: bool = False) -> Job:
        """Run the job again: at once if its scheduled instant passed meanwhile (unless
        intervals are fixed, or skip_missed: then at its next slot), else at that instant."""
        self._check_key(path, body)
        return self._found(self.store.set_enabled(path, body, True, skip_missed))

    def list(
        self,
        path: str | None = None,
        sort_by: str = "insert-order",
        reverse: bool = False,
        limit: int = 100,
        cursor: str | None = None,
        after: tuple[Any, ...] | None = None,
    ) -> Page:
        """A page of jobs as GET /jobs lists them; pass the page's cursor for the next (or
        `after`, the keyset of the last job seen: its (id,), or (next_sched, id) in
        next-sched order)."""
        if cursor:
            at = Cursor.decode(cursor)
            path, sort_by, reverse, limit, after = (
                at.path,
                at.sort_by,
                at.reverse,
                at.limit,
                at.last,
            )
        if sort_by not in SORTS:
            raise InvalidParameter("sort-by", f"{shown(sort_by)} is not one of {', '.join(SORTS)}")
        if not 1 <= limit <= 1000:
            raise InvalidParameter("limit", "must be between 1 and 1000")
        jobs = self.store.page(path, sort_by, reverse, after, limit)
        next_cursor = Cursor.after(jobs[-1], path, sort_by, reverse, limit).encode() if jobs else ""
        return Page(jobs, next_cursor)

    def search(
        self, prefix: str | None, after: tuple[Any, ...] | None, limit: int
    ) -> builtins.list[Job]:
        """Jobs whose path starts with prefix, by path then id after the keyset (path, id)
        of the last job seen; without a prefix, every job in insert order after (id,) (the
        UI's search)."""
        return self.store.page(path_prefix=prefix, after=after, limit=limit)

    def parent(self, job: Job) -> Job | None:
        """The job's parent, None for a job that has none."""
        return self.store.get_by_key(job.parent_key)

    def children(self, job: Job, limit: int) -> builtins.list[Job]:
        """The first `limit` of the jobs that run after this one, in insert order."""
        return self.store.page(parent_key=job.key, limit=limit)

    def status(self, instance_id: int | None = None) -> dict[str, Any]:
        """What GET /status answers, as the given instance (instance_id is None for a client
        that is no instance)."""
        return self.store.status(instance_id)

    def instances(self) -> builtins.list[dict[str, Any]]:
        """The live beat, worker and web instances, from their heartbeats."""
        return self.store.live_instances()

    def history(self, path: str, body: str) -> builtins.list[dict[str, Any]]:
        """The job's last attempts, newest first: scheduled instant, start, finish, status,
        error, duration, instance and outcome (kept after a one-off job is gone)."""
        self._check_key(path, body)
        return self.store.history_of(path, body)

    def stats(self, path: str, body: str) -> builtins.list[dict[str, Any]]:
        """Kala's per-job stats (/api/v1/job/stats): one entry per run, retries included."""
        job = self.get(path, body)
        if job is None:
            raise JobNotFound("job not found")
        return kala_job_stats(job.id, self.store.history_of(path, body))

    def cancel_all(self) -> int:
        """Delete every job; returns how many there were."""
        return self.store.delete_all()

    def _check_key(self, path: str, body: str) -> None:
        check_key(path, body, self.settings.max_body)

    @staticmethod
    def _found(job: Job | None) -> Job:
        if job is None:
            raise JobNotFound("job not found")
        return job


def _check_gaps(spec: JobSpec, least: float) -> None:
    """The hot-loop guard: no schedule and no retry runs a job more often than `least`
    (min_interval) seconds."""
    if spec.retry_interval is not None and spec.retry_interval < least:
        raise InvalidParameter("retry-interval", f"must be at least {least:g} s (min_interval)")
    schedule = spec.schedule
    try:
        if spec.parent:
            gap = None
        elif schedule.cron or schedule.repeat:  # sampled: once an hour per schedule
            gap = _shortest_gap(schedule, _hour())
        else:
            gap = schedule.shortest_gap(datetime.now(UTC))
    except ScheduleError:
        return  # no slots to compare: first_sched says what is wrong with the schedule
    if gap is not None and gap < least:
        name = "cron" if schedule.cron else "schedule" if schedule.repeat else "interval"
        raise InvalidParameter(name, f"runs every {gap:g} s, less than min_interval {least:g} s")


def _hour() -> int:
    return int(datetime.now(UTC).timestamp() // 3600)


@lru_cache(maxsize=4096)
def _shortest_gap(schedule: Schedule, hour: int) -> float | None:
    """schedule.shortest_gap from the start of this hour: sampled once an hour per schedule,
    as a bulk import checks a few schedules a million times."""
    return schedule.shortest_gap(datetime.fromtimestamp(hour * 3600, UTC))


def _seconds(interval: int | float | timedelta | str | None) -> str | None:
    """An interval as PUT takes it: seconds or an ISO 8601 duration."""
    if isinstance(interval, timedelta):
        interval = interval.total_seconds()
    if isinstance(interval, float) and interval.is_integer():
        interval = int(interval)
    return None if interval is None else str(interval)
