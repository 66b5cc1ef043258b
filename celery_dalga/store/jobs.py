"""A job's operations other than PUT: get, list, trigger, pause and resume, delete."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, func, or_, select, update
from sqlalchemy import delete as delete_rows
from sqlalchemy.engine import Connection

from celery_dalga import runs as protocol
from celery_dalga.jobs import Job, job_key, naive
from celery_dalga.store import links
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.rows import job_of, stored
from celery_dalga.store.schema import if_running


def read(conn: Connection, jobs: Table, key: str, lock: bool = False) -> Job | None:
    """The job with this key as the transaction sees it (with `lock`, locked), or None."""
    row = _read_row(conn, jobs, key, lock)
    return job_of(row) if row else None


def _read_row(conn: Connection, jobs: Table, key: str, lock: bool = False) -> Any:
    """The row (a mapping of its columns) with this key, or None."""
    row = conn.execute(_by_key(jobs, lock), {"key": key}).first()
    return row._mapping if row else None


@lru_cache(maxsize=32)
def _by_key(jobs: Table, lock: bool) -> Select:
    """The SELECT of a job by its key, built once per table: building it cost more than the
    server's lookup."""
    query = select(jobs).where(jobs.c.job_key == bindparam("key"))
    return query.with_for_update() if lock else query


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
    after the keyset `after` of the last job on the page before: in insert order, its (id,);
    in next-sched order, its (next_sched, id), the jobs without a next_sched (dependent
    ones) first, by id; with a path prefix (the UI's search), by path, its (path, id)."""
    jobs: list[Job] = []
    with db.engine.connect() as conn:
        for query in listing(
            db.table,
            path,
            sort_by,
            reverse,
            after,
            limit,
            path_prefix,
            parent_key,
            conn.dialect.name,
        ):
            jobs += [job_of(r._mapping) for r in conn.execute(query.limit(limit - len(jobs)))]
            if len(jobs) == limit:
                break
    return jobs


def listing(
    t: Table,
    path: str | None = None,
    sort_by: str = "insert-order",
    reverse: bool = False,
    after: tuple[Any, ...] | None = None,
    limit: int = 100,
    path_prefix: str | None = None,
    parent_key: str | None = None,
    dialect: str = "mariadb",
) -> list[Select]:
    """The statements of page(), run in turn until the page is full: each walks an index
    (the primary key, (path, id), (next_sched, id) or (path, next_sched, id)) from the
    keyset on, in its order, and stops after `limit` rows, on the `dialect` (its name)."""
    query = select(t).limit(limit)
    if path is not None:
        query = query.where(t.c.path == path)
    if path_prefix:
        escaped = path_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
        # the bound starts the index walk at the prefix where LIKE's own range does not
        # (SQLite, and PostgreSQL under a collation other than C)
        query = query.where(t.c.path.like(escaped + "%", escape="!"), t.c.path >= path_prefix)
    if parent_key is not None:
        query = query.where(t.c.parent_key == parent_key)
    # each statement's keyset, its order and its conditions; the untimed jobs' order is the
    # index's on PostgreSQL, which sorts them for ORDER BY id, and id on MariaDB, which sorts
    # them for ORDER BY next_sched, id
    segments: list[tuple[tuple[Any, ...], tuple[Any, ...], list[Any]]]
    if path_prefix:
        segments = [((t.c.path, t.c.id), (t.c.path, t.c.id), [])]
        index = f"ix_{t.name}_path_id"
    elif parent_key is not None:
        segments = [((t.c.id,), (t.c.id,), [])]
        index = f"ix_{t.name}_parent_key"
    elif sort_by == "insert-order":
        segments = [((t.c.id,), (t.c.id,), [])]
        index = f"ix_{t.name}_path_id" if path is not None else "PRIMARY"
    else:
        index = f"ix_{t.name}_{'path_' if path is not None else ''}next_sched_id"
        timed = (t.c.next_sched, t.c.id)
        by = timed if dialect == "postgresql" else (t.c.id,)
        untimed = ((t.c.id,), by, [t.c.next_sched.is_(None)])
        timed_ = (timed, timed, [t.c.next_sched.is_not(None)])
        segments = [timed_, untimed] if reverse else [untimed, timed_]
    if after is not None:
        last = tuple(naive(v) if isinstance(v, datetime) else v for v in after)
        if len(segments) == 2:  # the keyset's segment and those after it
            untimed_last = last[0] is None
            segments = segments[int(untimed_last == reverse) :]
            last = last[1:] if untimed_last else last
        keys, order, conditions = segments[0]
        segments[0] = (keys, order, [*conditions, _beyond(keys, last, reverse)])
    # MariaDB's optimizer may walk the primary key for ORDER BY id LIMIT, or sort a path's
    # jobs read by another index: every statement names its index
    hint = f"FORCE INDEX (`{index}`)"
    query = query.with_hint(t, hint, "mysql").with_hint(t, hint, "mariadb")
    return [
        query.where(*conditions).order_by(*(k.desc() if reverse else k for k in order))
        for _, order, conditions in segments
    ]


def _beyond(keys: tuple[Any, ...], last: tuple[Any, ...], reverse: bool) -> Any:
    """keys > last (< in reverse), as `k1 >= x1 AND (k1 > x1 OR k1 = x1 AND rest > ...)`: a
    range an index on the keys starts at, on every database (MariaDB walks a whole index for
    the row comparison (k1, k2) > (x1, x2), and scans every k1 = x1 for `k1 > x1 OR k2 > x2`)."""
    first, *rest = keys
    value, *more = last
    past = first < value if reverse else first > value
    if not rest:
        return past
    at_least = first <= value if reverse else first >= value
    tie = and_(first == value, _beyond(tuple(rest), tuple(more), reverse))
    return and_(at_least, or_(past, tie))


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
def set_enabled(
    db: Database, path: str, body: str, enabled: bool, skip_missed: bool = False
) -> Job | None:
    """Pause or resume (runs.on_enabled decides what that changes); with skip_missed a
    resumed job waits for its next slot, as with fixed_intervals (Kala's
    resume_at_next_scheduled_time)."""
    t, key = db.table, job_key(path, body)
    policy = replace(db.policy, fixed_intervals=True) if skip_missed else db.policy
    with db.engine.begin() as conn:
        row = _read_row(conn, t, key, lock=True)
        if row is None:
            return None
        job = job_of(row)
        values = stored(protocol.on_enabled(job, enabled, db.now(conn), policy))
        conn.execute(_set_by_id(t, tuple(values)), {"row_id": job.id, **_prefixed(values)})
        return job_of({**row, **values})  # the row is locked: it is what was written


@lru_cache(maxsize=32)
def _set_by_id(jobs: Table, names: tuple[str, ...]) -> Any:
    """The UPDATE of the columns `names` of a job by its id, built once per table and set of
    columns (their values bound as new_<name>)."""
    changes: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names}
    return update(jobs).where(jobs.c.id == bindparam("row_id")).values(changes)


def _prefixed(values: dict[str, Any]) -> dict[str, Any]:
    return {f"new_{name}": value for name, value in values.items()}


@rerun_transient
def delete(db: Database, path: str, body: str) -> bool:
    """Cancel the job, and the dependent jobs it leaves without a parent, with theirs (Kala:
    a child goes with its last parent); an in-flight run finds its token gone and stops."""
    key = job_key(path, body)
    with db.engine.begin() as conn:
        if not conn.execute(_delete_by_key(db.table), {"key": key}).rowcount:
            return False
        _delete_with_orphans(conn, db, {key}, deleted={key})
    return True


@lru_cache(maxsize=16)
def _delete_by_key(jobs: Table) -> Any:
    """The DELETE of a job by its key, built once per table."""
    return delete_rows(jobs).where(jobs.c.job_key == bindparam("key"))


@rerun_transient
def delete_path(db: Database, path: str, chunk: int = 1000) -> int:
    """Delete every job with this path (Kala's delete-all: its jobs), `chunk` a transaction,
    with the dependent jobs they leave without a parent; returns how many had the path."""
    t = db.table
    deleted = 0
    while True:
        with db.engine.begin() as conn:
            keys = set(
                conn.execute(select(t.c.job_key).where(t.c.path == path).limit(chunk)).scalars()
            )
            if not keys:
                return deleted
            _delete_with_orphans(conn, db, keys)
        deleted += len(keys)


def _delete_with_orphans(
    conn: Connection, db: Database, keys: set[str], deleted: frozenset[str] | set[str] = frozenset()
) -> None:
    """Delete the jobs `keys` (those in `deleted` are already gone), then each dependent job
    whose parents are all deleted, and so on down; a child that keeps a parent loses the
    deleted ones (its parent_key moves to one it keeps). Each job is looked at once per parent
    deleted: a loop written by hand ends."""
    t = db.table
    gone, frontier, kept = set(keys), set(keys), set()
    while frontier:
        children = links.children_of(conn, db, frontier) - gone
        parents = links.parents_of(conn, db, children) if children else {}
        frontier = {child for child in children if not parents[child] - gone}
        kept |= children - frontier
        gone |= frontier
    kept -= gone
    for child, left in (links.parents_of(conn, db, kept) if kept else {}).items():
        moved = min(left - gone)
        conn.execute(
            update(t)
            .where(t.c.job_key == child, t.c.parent_key.in_(sorted(gone)))
            .values(parent_key=moved)
        )
    links.forget(conn, db, gone)
    if gone - deleted:
        conn.execute(delete_rows(t).where(t.c.job_key.in_(sorted(gone - deleted))))


def delete_all(db: Database, chunk: int = 10_000) -> int:
    """Delete every job, `chunk` rows a transaction (a million rows in one would hold the
    table); returns how many."""
    deleted = 0
    while gone := _delete_some(db, chunk):
        deleted += gone
    with db.engine.begin() as conn:
        conn.execute(delete_rows(db.links))
    return deleted


@rerun_transient
def _delete_some(db: Database, chunk: int) -> int:
    t = db.table
    with db.engine.begin() as conn:
        ids = list(conn.execute(select(t.c.id).order_by(t.c.id).limit(chunk)).scalars())
        return conn.execute(delete_rows(t).where(t.c.id.in_(ids))).rowcount if ids else 0
