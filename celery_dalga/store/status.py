"""The table's status, in Dalga's names and celery-dalga's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select

from celery_dalga.jobs import aware, naive
from celery_dalga.runs import RETRY_WAIT
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.instances import STALE


def _int(condition: Any) -> Any:
    return case((condition, 1), else_=0)


@rerun_transient
def status(db: Database, instance_id: int | None = None) -> dict[str, Any]:
    """Dalga's status (totals, runs in flight, due runs, live instances, the lag of the
    oldest due run in whole seconds) and celery-dalga's (paused jobs, the lag exactly)."""
    t, now = db.table, db.now()
    in_flight = (t.c.token.is_not(None), t.c.token != RETRY_WAIT, t.c.next_run > naive(now))
    mine = t.c.instance_id == instance_id
    with db.engine.connect() as conn:
        total, disabled, successes, errors, last_attempt = conn.execute(
            select(
                func.count(),
                func.coalesce(func.sum(_int(~t.c.enabled)), 0),
                func.coalesce(func.sum(t.c.success_count), 0),
                func.coalesce(func.sum(t.c.error_count), 0),
                func.max(t.c.last_attempt),
            )
        ).one()
        next_run = conn.execute(select(func.min(t.c.next_run))).scalar()
        running, running_here = conn.execute(
            select(func.count(), func.coalesce(func.sum(_int(mine)), 0)).where(*in_flight)
        ).one()
        pending, oldest = conn.execute(
            select(func.count(), func.min(t.c.next_run)).where(t.c.next_run <= naive(now))
        ).one()
        instances = conn.execute(
            select(func.count()).where(db.instances.c.updated_at >= naive(now - STALE))
        ).scalar_one()
    lag = (now - aware(oldest)).total_seconds() if oldest else 0.0
    return {
        "instance_id": instance_id,
        "instance_running_jobs": int(running_here),
        "running_jobs": running,
        "total_jobs": total,
        "pending_jobs": pending,
        "total_instances": instances,
        "lag": int(lag),
        "disabled_jobs": int(disabled),
        "lag_seconds": round(lag, 3),
        "success_count": int(successes),
        "error_count": int(errors),
        "next_run": aware(next_run).isoformat() if next_run else None,
        "last_attempt": aware(last_attempt).isoformat() if last_attempt else None,
        "now": now.isoformat(),
    }
