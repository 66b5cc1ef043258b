"""Dalga's wire format: a job and the status as JSON, as Dalga v4 writes them (its
internal/table/job.go and internal/server/server.go), with celery-dalga's own fields added
where Dalga's client ignores them. Kala's JSON is celery_dalga.kala's.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery_dalga.jobs import Job, rfc3339
from celery_dalga.runs import RETRY_WAIT
from celery_dalga.spec import InvalidParameter

SORTS = ("insert-order", "next-sched")
LARGEST_ID = 2**63 - 1  # a BIGINT
LARGEST_LIMIT = 2**31


def instant(value: datetime | None) -> str | None:
    """RFC 3339 in UTC (`Z`), with fractions of a second when there are some: the history's,
    the web UI's and Kala's times (Go's RFC 3339 parser takes fractions)."""
    if value is None:
        return None
    text = value.astimezone(UTC).isoformat()
    return text[:-6] + "Z"


def job_time(value: datetime | None, location: str) -> str | None:
    """A job's time as Dalga writes it: on the job's wall clock, whole seconds (the table
    keeps microseconds)."""
    return None if value is None else rfc3339(value, location)


def dalga_interval(job: Job) -> str:
    """The interval as Dalga writes it: an ISO 8601 duration, `PT60S` for 60 seconds (not
    normalised), `P0D` for a one-off job; empty for cron and repeat schedules."""
    if job.one_off:
        return "P0D"
    if job.interval is None:
        return ""
    return f"PT{job.interval}S" if job.interval.isdigit() else job.interval


def job_json(job: Job) -> dict[str, Any]:
    """A job as JSON: Dalga's seven fields first (`next_run` is null while the job is paused,
    `instance_id` is the instance that claimed the run in flight, else null), then
    celery-dalga's."""
    at = job.location
    paused = not job.enabled and job.triggered_at is None
    in_flight = job.running and job.token != RETRY_WAIT
    return {
        "path": job.path,
        "body": job.body,
        "interval": dalga_interval(job),
        "location": job.location,
        "next_run": None if paused else job_time(job.next_run, at),
        "next_sched": job_time(job.next_sched, at),
        "instance_id": job.instance_id if in_flight else None,
        "id": job.id,
        "cron": job.cron,
        "schedule": job.repeat,
        "one_off": job.one_off,
        "exchange": job.exchange,
        "task": job.task,
        "parent_key": job.parent_key,
        "retries": job.retries,
        "retry_interval": job.retry_interval,
        "epsilon": job.epsilon,
        "enabled": job.enabled,
        "running": job.running,
        "triggered_at": job_time(job.triggered_at, at),
        "success_count": job.success_count,
        "error_count": job.error_count,
        "attempts": job.attempts,
        "last_success": job_time(job.last_success, at),
        "last_attempt": job_time(job.last_attempt, at),
        "last_error": job.last_error,
        "last_duration": job.last_duration,
        **({"kind": job.kind, "options": job.options} if job.kind else {}),
    }


@dataclass(frozen=True)
class Cursor:
    """Where a listing goes on: Dalga's cursor (base64 of a JSON object with Path, SortBy,
    Reverse, LastValue, Limit). LastValue is the last job's id, or for next-sched its
    next_sched (empty for a dependent job, which has none) and id, `next_sched|id`, so that jobs
    due at the same instant are neither skipped nor repeated."""

    path: str | None
    sort_by: str
    reverse: bool
    last: tuple[Any, ...]
    limit: int

    @classmethod
    def after(cls, job: Job, path: str | None, sort_by: str, reverse: bool, limit: int) -> Cursor:
        last = (job.id,) if sort_by == "insert-order" else (job.next_sched, job.id)
        return cls(path, sort_by, reverse, last, limit)

    def encode(self) -> str:
        if len(self.last) == 1:
            last = str(self.last[0])
        else:  # a dependent job has no next_sched: "|id"
            at, id_ = self.last
            last = f"{at.isoformat() if at else ''}|{id_}"
        document = {
            "Path": self.path or "",
            "SortBy": self.sort_by,
            "Reverse": self.reverse,
            "LastValue": last,
            "Limit": self.limit,
        }
        return base64.b64encode(json.dumps(document).encode()).decode()

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """A cursor from its text; a 400 (InvalidParameter) for anything else. A space is
        the `+` of a cursor that Dalga's client sent without escaping it (its ListContinue
        writes `?cursor=` + the cursor): base64 has no spaces."""
        try:
            fields = json.loads(base64.b64decode(text.replace(" ", "+"), validate=True))
            sort_by, last, path = fields["SortBy"], str(fields["LastValue"]), fields["Path"]
            if sort_by not in SORTS or not isinstance(path, str):
                raise ValueError(sort_by)
            if sort_by == "insert-order":
                keys: tuple[Any, ...] = (_bounded(last, LARGEST_ID),)
            else:
                at, bar, id_ = last.rpartition("|")
                if not bar:
                    raise ValueError(last)
                when = datetime.fromisoformat(at).astimezone(UTC) if at else None
                keys = (when, _bounded(id_, LARGEST_ID))
            limit = _bounded(str(fields["Limit"]), LARGEST_LIMIT)
            return cls(path or None, sort_by, bool(fields["Reverse"]), keys, limit)
        except (binascii.Error, ValueError, OverflowError, KeyError, TypeError, RecursionError):
            raise InvalidParameter("cursor", "not a cursor this server gave") from None


def _bounded(text: str, largest: int) -> int:
    """A whole number from 0 to largest in text; ValueError for anything else."""
    value = int(text)
    if not 0 <= value <= largest:
        raise ValueError(text)
    return value


def attempt_json(attempt: dict[str, Any]) -> dict[str, Any]:
    """One attempt of a job's history as JSON; lateness is its start minus its instant."""
    return {
        "sched": instant(attempt["sched"]),
        "manual": attempt["manual"],
        "started": instant(attempt["started"]),
        "finished": instant(attempt["finished"]),
        "lateness": round((attempt["started"] - attempt["sched"]).total_seconds(), 3),
        "status": attempt["status"],
        "error": attempt["error"],
        "duration": attempt["duration"],
        "instance_id": attempt["instance_id"],
        "outcome": attempt["outcome"],
    }
