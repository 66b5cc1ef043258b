"""Scheduling jobs: PUT one, PUT a batch, and the checks of dependent jobs' parents."""

from __future__ import annotations

from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Select, Table, case, insert, select
from sqlalchemy.engine import Connection, Dialect

from celery_dalga.jobs import Job, job_key
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.store import dialects
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.jobs import read
from celery_dalga.store.rows import job_of, new_row
from celery_dalga.values import shown

MAX_DEPTH = 100  # the most ancestors a dependent job may have
# what a PUT of an existing job replaces (next_run too, see _upsert)
REPLACED = (
    "interval",
    "cron",
    "repeat",
    "location",
    "one_off",
    "exchange",
    "task",
    "kind",
    "options",
    "parent_key",
    "retries",
    "retry_interval",
    "epsilon",
    "enabled",
    "next_sched",
)


class JobExists(Exception):
    """An insert-if-absent PUT found the job already scheduled."""

    def __init__(self, job: Job):
        super().__init__("job already scheduled")
        self.job = job


class JobRefused(InvalidParameter):
    """A job the table refuses (its parent is missing or it would depend on itself, or it has
    no first run); `key` names the job among a batch's."""

    def __init__(self, key: str, parameter: str, message: str):
        super().__init__(parameter, message)
        self.key = key


@rerun_transient
def put(db: Database, spec: JobSpec) -> Job:
    """Schedule or reschedule (path, body). A run in flight keeps its lease; no second call.
    With spec.if_absent an existing job is left as it is: JobExists. Where the database
    returns the upserted row (MariaDB 10.5+, PostgreSQL, SQLite 3.35+) the job comes back
    with the write, else it is read back in the transaction."""
    now = db.now()
    row = new_row(spec, spec.first_sched(now), now)
    t = db.table
    with db.engine.begin() as conn:
        written = None
        if spec.if_absent:
            found = read(conn, t, row["job_key"])
            if found is not None:
                raise JobExists(found)
            conn.execute(insert(t), [row])
        elif conn.dialect.insert_returning:
            written = job_of(conn.execute(_put_returning(t, conn.dialect), row).one()._mapping)
        else:
            conn.execute(_put_one(t, conn.dialect), [row])
        _check_parents(db, conn, [spec])
        written = written or read(conn, t, row["job_key"])
        assert written is not None, row["job_key"]
        return written


@lru_cache(maxsize=16)
def _put_one(table: Table, dialect: Dialect) -> Any:
    """The upsert of one PUT, built once per table: building it cost more than running it."""
    return _upsert(table, dialect)


@lru_cache(maxsize=16)
def _put_returning(table: Table, dialect: Dialect) -> Any:
    """The upsert of one PUT that returns the row as written (a kept lease, a pending
    trigger and the job's id and counters included), built once per table."""
    return _upsert(table, dialect).returning(*table.c)


@rerun_transient
def put_many(db: Database, specs: list[JobSpec]) -> int:
    """Schedule or reschedule many jobs in one transaction (the bulk path), as put() does
    each (an if_absent job that exists is left as it is); returns len. A job put() would
    refuse is a JobRefused naming it, and the batch is not written. Rows go in job_key order,
    so the unique index is walked once and concurrent batches lock rows in one order."""
    if not specs:
        return 0
    now = db.now()
    rows: list[dict[str, Any]] = []
    absent: list[dict[str, Any]] = []
    for spec in specs:
        try:
            row = new_row(spec, spec.first_sched(now), now)
        except InvalidParameter as exc:
            key = job_key(spec.path, spec.body)
            raise JobRefused(key, exc.parameter, str(exc).partition(": ")[2]) from None
        (absent if spec.if_absent else rows).append(row)
    rows.sort(key=itemgetter("job_key"))
    dialect = db.engine.dialect
    with db.engine.begin() as conn:
        if rows and dialects.uses_json_table(dialect):
            document = dialects.json_document([list(row.values()) for row in rows])
            source = dialects.json_rows(dialect, db.table, list(rows[0]), document)
            conn.execute(_upsert(db.table, dialect, source))
        elif rows:
            conn.execute(_put_one(db.table, dialect), rows)
        if absent:
            insert_absent = dialects.insert_absent(dialect, db.table, "job_key")
            conn.execute(insert_absent, sorted(absent, key=itemgetter("job_key")))
        _check_parents(db, conn, specs)
    return len(specs)


def _upsert(t: Table, dialect: Dialect, source: Select | None = None) -> Any:
    """The PUT of existing jobs replaces their REPLACED columns, and next_run too unless a run
    holds the row (then it keeps its lease) or a trigger is pending (then the trigger's run
    comes first)."""

    def changes(new: Any) -> dict[str, Any]:
        next_run = case(
            (t.c.token.is_not(None), t.c.next_run),
            (t.c.triggered_at < new.next_run, t.c.triggered_at),
            else_=new.next_run,
        )
        return {**{name: new[name] for name in REPLACED}, "next_run": next_run}

    return dialects.upsert(dialect, t, ["job_key"], changes, source)


def _check_parents(db: Database, conn: Connection, specs: list[JobSpec]) -> None:
    """JobRefused unless each dependent job's parent exists and the job is not among its
    ancestors (up to MAX_DEPTH of them). Run after the jobs are written, in the same
    transaction: the ancestors' rows are locked, so two PUTs that would close a loop
    wait for each other (or deadlock, and the rerun sees the other's commit)."""
    t = db.table
    named = {job_key(s.path, s.body): s.parent for s in specs if s.parent}
    at = {own: job_key(*parent) for own, parent in named.items()}  # job -> its ancestor
    for depth in range(MAX_DEPTH):
        if not at:
            return
        found = dict(
            conn.execute(
                select(t.c.job_key, t.c.parent_key)
                .where(t.c.job_key.in_(sorted(set(at.values()))))
                .with_for_update()
            ).all()
        )
        above = {}
        for own, key in at.items():
            if key == own:
                raise JobRefused(own, "parent", "the job would depend on itself")
            if key not in found and depth == 0:
                raise JobRefused(own, "parent", f"no job {shown('/'.join(named[own]))}")
            if found.get(key) is not None:
                above[own] = found[key]
        at = above
    if at:
        raise JobRefused(next(iter(at)), "parent", f"more than {MAX_DEPTH} ancestors")
