"""The table's status, in Dalga's names and celery-dalga's: the counts (one scan of the
table) and what an index answers at once (the next run, the lag, the live instances); and
CachedStatus, the status whose counts are redone at most once a period (the web app's)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from celery_dalga.jobs import aware, naive
from celery_dalga.runs import RETRY_WAIT
from celery_dalga.snapshot import Snapshot
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.instances import STALE


def _int(condition: Any) -> Any:
    return case((condition, 1), else_=0)


def _sum(value: Any) -> Any:
    return func.coalesce(func.sum(value), 0)


@rerun_transient
def counts(db: Database, instance_id: int | None = None) -> dict[str, Any]:
    """The table's counts in one scan: jobs, paused, due, running (and running as
    instance_id), successes and errors summed, the last attempt; and when they were counted."""
    t, now = db.table, db.now()
    in_flight = t.c.token.is_not(None) & (t.c.token != RETRY_WAIT) & (t.c.next_run > naive(now))
    with db.engine.connect() as conn:
        row = conn.execute(
            select(
                func.count(),
                _sum(_int(~t.c.enabled)),
                _sum(_int(t.c.next_run <= naive(now))),
                _sum(_int(in_flight)),
                _sum(_int(in_flight & (t.c.instance_id == instance_id))),
                _sum(t.c.success_count),
                _sum(t.c.error_count),
                func.max(t.c.last_attempt),
            )
        ).one()
    total, disabled, pending, running, running_here, successes, errors, last_attempt = row
    return {
        "total_jobs": int(total),
        "disabled_jobs": int(disabled),
        "pending_jobs": int(pending),
        "running_jobs": int(running),
        "instance_running_jobs": int(running_here),
        "success_count": int(successes),
        "error_count": int(errors),
        "last_attempt": aware(last_attempt) if last_attempt else None,
        "counted_at": now,
    }


@rerun_transient
def status(
    db: Database, instance_id: int | None = None, counted: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Dalga's status (totals, runs in flight, due runs, live instances, the lag of the
    oldest due run in whole seconds) and celery-dalga's (paused jobs, the lag exactly, when
    the counts were made). The counts are `counted` (counts() made earlier), else counted
    now; the next run, the lag and the instances are read now (an index each)."""
    counted = counted or counts(db, instance_id)
    t, now = db.table, db.now()
    live = db.instances.c.updated_at >= naive(now - STALE)
    with db.engine.connect() as conn:
        next_run, instances = conn.execute(
            select(
                select(func.min(t.c.next_run)).scalar_subquery(),
                select(func.count()).select_from(db.instances).where(live).scalar_subquery(),
            )
        ).one()
    soonest = aware(next_run) if next_run else None
    lag = (now - soonest).total_seconds() if soonest and soonest <= now else 0.0
    last_attempt, counted_at = counted["last_attempt"], counted["counted_at"]
    return {
        "instance_id": instance_id,
        "instance_running_jobs": counted["instance_running_jobs"],
        "running_jobs": counted["running_jobs"],
        "total_jobs": counted["total_jobs"],
        "pending_jobs": counted["pending_jobs"],
        "total_instances": instances,
        "lag": int(lag),
        "disabled_jobs": counted["disabled_jobs"],
        "lag_seconds": round(lag, 3),
        "success_count": counted["success_count"],
        "error_count": counted["error_count"],
        "next_run": soonest.isoformat() if soonest else None,
        "last_attempt": last_attempt.isoformat() if last_attempt else None,
        "now": now.isoformat(),
        "counted_at": counted_at.isoformat(),
        "counts_age_seconds": round(max(0.0, (now - counted_at).total_seconds()), 3),
    }


class CachedStatus:
    """status() as instance_id, its counts from a Snapshot: counted at most every second, or
    20 times what a count takes, and in the background once a count takes 50 ms or more
    (celery_dalga.snapshot); the answer's counted_at and counts_age_seconds say when."""

    def __init__(self, db: Database, instance_id: int | None):
        self.db = db
        self.instance_id = instance_id
        self.counts = Snapshot(lambda: counts(db, instance_id), db.now)

    def __call__(self) -> dict[str, Any]:
        return status(self.db, self.instance_id, self.counts.read())
