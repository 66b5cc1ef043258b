"""The processes serving a jobs table: heartbeats, and who is alive."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update

from celery_dalga.jobs import aware, naive
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient

STALE = timedelta(minutes=1)  # an instance not heard of for this long is gone (as in Dalga)


@rerun_transient
def heartbeat(db: Database, instance_id: int, kind: str, host: str, pid: int) -> None:
    """Say that this instance is alive, and forget those not heard of for STALE. The
    stale rows are found by a plain read and deleted by id in a transaction of their own:
    a range DELETE in every heartbeat took gap locks that deadlocked the heartbeats of
    concurrent processes."""
    t, now = db.instances, naive(db.now())
    row = {"id": instance_id, "kind": kind, "host": host, "pid": pid}
    with db.engine.begin() as conn:
        found = conn.execute(update(t).where(t.c.id == instance_id).values(updated_at=now)).rowcount
        if not found:
            conn.execute(insert(t).values(**row, started_at=now, updated_at=now))
    with db.engine.connect() as conn:
        stale = list(conn.execute(select(t.c.id).where(t.c.updated_at < now - STALE)).scalars())
    if stale:
        with db.engine.begin() as conn:
            conn.execute(delete(t).where(t.c.id.in_(stale), t.c.updated_at < now - STALE))


@rerun_transient
def forget(db: Database, instance_id: int) -> None:
    """This instance is stopping."""
    with db.engine.begin() as conn:
        conn.execute(delete(db.instances).where(db.instances.c.id == instance_id))


@rerun_transient
def live(db: Database) -> list[dict[str, Any]]:
    """The instances heard of within STALE, oldest first."""
    t = db.instances
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(t).where(t.c.updated_at >= naive(db.now() - STALE)).order_by(t.c.started_at)
        )
        return [
            {
                **row._mapping,
                "started_at": aware(row.started_at),
                "updated_at": aware(row.updated_at),
            }
            for row in rows
        ]
