"""What a job and a run are, and the one codec between a Schedule and the table's columns."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, overload
from zoneinfo import ZoneInfo

from celery_dalga import schedules
from celery_dalga.schedules import Schedule
from celery_dalga.spec import JobSpec


def job_key(path: str, body: str) -> str:
    """The unique key of a job: SHA-256 of (path, body)."""
    return hashlib.sha256(f"{path}\0{body}".encode()).hexdigest()


def naive(instant: datetime) -> datetime:
    """An aware instant as the naive UTC value the table stores."""
    return instant.astimezone(UTC).replace(tzinfo=None)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """A stored (naive UTC) instant as an aware one."""
    return None if value is None else value.replace(tzinfo=UTC)


def rfc3339(value: datetime, location: str = "UTC") -> str:
    """An instant as Dalga writes it (Go's time.RFC3339 layout): on the location's wall clock,
    in whole seconds (truncated, as Go does), `Z` for a zero offset."""
    text = value.astimezone(ZoneInfo(location)).replace(microsecond=0).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def schedule_columns(schedule: Schedule) -> dict[str, Any]:
    """The columns that store a schedule."""
    repeat = schedule.repeat
    return {
        "interval": str(schedule.interval) if schedule.interval else None,
        "cron": schedule.cron,
        "repeat": (
            f"R{repeat.count or ''}/{repeat.start.isoformat()}/{repeat.period}" if repeat else None
        ),
        "location": schedule.location.key,
        "one_off": bool(schedule.one_off),
    }


def schedule_of(columns: Any) -> Schedule:
    """The Schedule stored in an object with the schedule columns as attributes."""
    return _schedule(
        columns.interval, columns.cron, columns.repeat, columns.location, bool(columns.one_off)
    )


@lru_cache(maxsize=4096)
def _schedule(
    interval: str | None, cron: str | None, repeat: str | None, location: str, one_off: bool
) -> Schedule:
    """Parsed once per distinct schedule: a million jobs share a few."""
    return Schedule(
        interval=schedules.parse_duration(interval) if interval else None,
        cron=cron,
        repeat=schedules.parse_repeat(repeat) if repeat else None,
        location=ZoneInfo(location),
        one_off=one_off,
    )


def new_job_columns(spec: JobSpec, first_sched: datetime | None, now: datetime) -> dict[str, Any]:
    """The columns a PUT writes for spec, whose first run is first_sched (None: a dependent
    job, due when its parent makes it due)."""
    first = naive(first_sched) if first_sched else None
    return {
        "job_key": job_key(spec.path, spec.body),
        "path": spec.path,
        "body": spec.body,
        **schedule_columns(spec.schedule),
        "exchange": spec.exchange,
        "task": spec.task,
        "parent_key": job_key(*spec.parent) if spec.parent else None,
        "retries": spec.retries,
        "retry_interval": spec.retry_interval,
        "epsilon": spec.epsilon,
        "enabled": True,
        "next_sched": first,
        "triggered_at": None,
        "next_run": first,
        "created_at": naive(now),
        "success_count": 0,
        "error_count": 0,
        "attempts": 0,
    }


@dataclass(frozen=True)
class Job:
    """A job as stored; instants are aware UTC. `token` is set while a run holds the row."""

    id: int
    key: str
    path: str
    body: str
    interval: str | None
    cron: str | None
    repeat: str | None
    location: str
    one_off: bool
    exchange: str | None
    task: str | None
    parent_key: str | None
    retries: int | None
    retry_interval: float | None
    epsilon: float | None
    enabled: bool
    next_run: datetime | None
    next_sched: datetime | None
    triggered_at: datetime | None
    token: str | None
    instance_id: int | None
    attempts: int
    success_count: int
    error_count: int
    last_success: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    last_duration: float | None
    kind: str | None = None  # the callback kind's name (celery_dalga.kinds); None: chosen as before
    options: dict[str, Any] | None = None  # the kind's own settings, stored as JSON

    @property
    def running(self) -> bool:
        return self.token is not None

    @property
    def expires(self) -> float | None:
        """Seconds a published run of the job lives: its interval (a one-off's: none)."""
        interval = self.schedule.interval
        return interval.approx().total_seconds() if interval and not self.one_off else None

    def run(self, sched: datetime, token: str, manual: bool = False) -> Run:
        """A run of the job at `sched`, held by `token`."""
        return Run(
            self.id,
            self.key,
            self.path,
            self.body,
            sched,
            token,
            manual,
            self.exchange,
            self.expires,
            self.task,
            self.location,
        )

    @property
    def schedule(self) -> Schedule:
        return schedule_of(self)

    @classmethod
    def from_mapping(cls, m: Mapping[Any, Any]) -> Job:
        """A Job from a row's mapping (all the table's columns)."""
        return cls(
            id=m["id"],
            key=m["job_key"],
            path=m["path"],
            body=m["body"],
            interval=m["interval"],
            cron=m["cron"],
            repeat=m["repeat"],
            location=m["location"],
            one_off=bool(m["one_off"]),
            exchange=m["exchange"],
            task=m["task"],
            parent_key=m["parent_key"],
            retries=m["retries"],
            retry_interval=m["retry_interval"],
            epsilon=m["epsilon"],
            enabled=bool(m["enabled"]),
            next_run=aware(m["next_run"]),
            next_sched=aware(m["next_sched"]),
            triggered_at=aware(m["triggered_at"]),
            token=m["token"],
            instance_id=m["instance_id"],
            attempts=m["attempts"],
            success_count=m["success_count"],
            error_count=m["error_count"],
            last_success=aware(m["last_success"]),
            last_attempt=aware(m["last_attempt"]),
            last_error=m["last_error"],
            last_duration=m["last_duration"],
        )


@dataclass(frozen=True)
class Run:
    """One dispatch of a job: what a callback task carries."""

    job_id: int
    key: str
    path: str
    body: str
    sched: datetime
    token: str
    manual: bool = False
    exchange: str | None = None  # publish to this AMQP exchange instead of calling HTTP
    expires: float | None = None  # seconds the published message lives (the job's interval)
    task: str | None = None  # call this Celery task with the body instead of calling HTTP
    location: str = "UTC"  # the job's time zone: Dalga-Sched is on its wall clock

    @property
    def task_id(self) -> str:
        """Stable for (job, scheduled instant): a re-delivery shows as the same run."""
        kind = "trigger" if self.manual else "sched"
        return f"dalga-{self.key[:16]}-{kind}-{self.sched.strftime('%Y%m%dT%H%M%S.%fZ')}"

    @property
    def dalga_sched(self) -> str:
        """The Dalga-Sched header: the instant this run serves, as Dalga writes it."""
        return rfc3339(self.sched, self.location)

    @property
    def idempotency_key(self) -> str:
        return hashlib.sha256(f"{self.key}|{self.task_id}".encode()).hexdigest()[:32]
