"""A job's operations other than PUT: get, list, trigger, pause and resume, delete."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table, func, select, tuple_, update
from sqlalchemy import delete as delete_rows
from sqlalchemy.engine import Connection

from celery_dalga import runs as protocol
from celery_dalga.jobs import Job, job_key, naive
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.rows import job_of, stored
from celery_dalga.store.schema import if_running


def read(conn: Connection, jobs: Table, key: str, lock: bool = False) -> Job | None:
    """The job with this key as the transaction sees it (with `lock`, locked), or None."""
    query = select(jobs).where(jobs.c.job_key == key)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return job_of(row._mapping) if row else None


def get(db: Database, path: str, body: str) -> Job | None:
    """The job (path, body), or None."""
    return get_by_key(db, job_key(path, body))


@rerun_transient
def get_by_key(db: Database, key: str | None) -> Job | None:
    """The job with this job_key, or None."""
    if key is None:
        return None
    with db.engine.connect() as conn:
        return read(conn, db.table, key)


@rerun_transient
def page(
    db: Database,
    path: str | None = None,
    sort_by: str = "insert-order",
    reverse: bool = False,
    after: tuple[Any, ...] | None = None,
    limit: int = 100,
    path_prefix: str | None = None,
    parent_key: str | None = None,
) -> list[Job]:
    """A page of jobs, optionally only those with this path (or path prefix, or parent),
    in insert order (by id) or in next-sched order (by next_sched, then id), after the
    keyset `after`: the last job's (id,) or (next_sched, id) on the page before."""
    t = db.table
    keys = (t.c.id,) if sort_by == "insert-order" else (t.c.next_sched, t.c.id)
    query = select(t).order_by(*(k.desc() if reverse else k for k in keys)).limit(limit)
    if path is not None:
        query = query.where(t.c.path == path)
    if path_prefix:
        escaped = path_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        query = query.where(t.c.path.like(escaped + "%", escape="!"))
    if parent_key is not None:
        query = query.where(t.c.parent_key == parent_key)
    if after is not None:
        last = tuple(naive(v) if isinstance(v, datetime) else v for v in after)
        row = tuple_(*keys)
        query = query.where(row < last if reverse else row > last)
    with db.engine.connect() as conn:
        return [job_of(r._mapping) for r in conn.execute(query)]


@rerun_transient
def trigger(db: Database, path: str, body: str) -> Job | None:
    """Run the job once, now, leaving its schedule as it is."""
    t, key = db.table, job_key(path, body)
    with db.engine.begin() as conn:
        now = naive(db.now(conn))
        found = conn.execute(
            update(t)
            .where(t.c.job_key == key)
            .values(triggered_at=now, next_run=func.coalesce(if_running(t, t.c.next_run), now))
        ).rowcount
        return read(conn, t, key) if found else None


@rerun_transient
def set_enabled(db: Database, path: str, body: str, enabled: bool) -> Job | None:
    """Pause or resume (runs.on_enabled decides what that changes)."""
    t, key = db.table, job_key(path, body)
    with db.engine.begin() as conn:
        job = read(conn, t, key, lock=True)
        if job is None:
            return None
        values = stored(protocol.on_enabled(job, enabled, db.now(conn), db.policy))
        conn.execute(update(t).where(t.c.id == job.id).values(values))
        return read(conn, t, key)


@rerun_transient
def delete(db: Database, path: str, body: str) -> bool:
    """Cancel the job, and its dependent jobs with theirs (Kala: a child without its parent
    goes too); an in-flight run finds its token gone and stops."""
    t = db.table
    with db.engine.begin() as conn:
        keys = {job_key(path, body)}
        if not conn.execute(select(t.c.id).where(t.c.job_key.in_(keys))).first():
            return False
        frontier = keys
        while frontier:  # each job once: a loop in the table (written by hand) ends too
            children = conn.execute(
                select(t.c.job_key).where(t.c.parent_key.in_(sorted(frontier)))
            ).scalars()
            frontier = set(children) - keys
            keys |= frontier
        conn.execute(delete_rows(t).where(t.c.job_key.in_(sorted(keys))))
    return True


def delete_all(db: Database, chunk: int = 10_000) -> int:
    """Delete every job, `chunk` rows a transaction (a million rows in one would hold the
    table); returns how many."""
    deleted = 0
    while gone := _delete_some(db, chunk):
        deleted += gone
    return deleted


@rerun_transient
def _delete_some(db: Database, chunk: int) -> int:
    t = db.table
    with db.engine.begin() as conn:
        ids = list(conn.execute(select(t.c.id).order_by(t.c.id).limit(chunk)).scalars())
        return conn.execute(delete_rows(t).where(t.c.id.in_(ids))).rowcount if ids else 0
