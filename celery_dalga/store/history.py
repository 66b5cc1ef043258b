"""Each job's last attempts: written as runs settle, read for the API and the UI, pruned by
age."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import Table, delete, select, tuple_
from sqlalchemy.engine import Connection, Dialect

from celery_dalga.jobs import aware, job_key, naive
from celery_dalga.store import dialects
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.rows import stored

COLUMNS = (
    "job_key",
    "slot",
    "sched",
    "manual",
    "finished",
    "status",
    "error",
    "duration",
    "instance_id",
    "outcome",
)


def write(conn: Connection, history: Table, rows: list[dict[str, Any]]) -> None:
    """Upsert the attempts (runs.record) into their slots, in one statement, in key order (as
    put_many: one walk of the primary key, and concurrent settles lock slots in one order)."""
    rows = sorted(rows, key=itemgetter("job_key", "slot"))
    upsert = _upsert(history, conn.dialect)
    if dialects.uses_json_table(conn.dialect):
        document = dialects.json_document([[row[name] for name in COLUMNS] for row in rows])
        conn.execute(upsert, {"document": document})
    else:
        conn.execute(upsert, [stored(row) for row in rows])


@lru_cache(maxsize=16)
def _upsert(history: Table, dialect: Dialect) -> Any:
    """INSERT-or-UPDATE of attempts into their (job_key, slot), of the executed rows or (with
    JSON_TABLE) of the JSON document bound as `document`. Built once per table: compiling it
    cost more than the server's insert."""
    source = None
    if dialects.uses_json_table(dialect):
        source = dialects.json_rows(dialect, history, list(COLUMNS), None)
    return dialects.upsert(
        dialect,
        history,
        ["job_key", "slot"],
        lambda new: {c: new[c] for c in COLUMNS[2:]},
        source,
    )


@rerun_transient
def read(db: Database, path: str, body: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The job's kept attempts, newest first (also after a one-off job is gone)."""
    h = db.history
    query = (
        select(h)
        .where(h.c.job_key == job_key(path, body))
        .order_by(h.c.finished.desc())
        .limit(limit)
    )
    with db.engine.connect() as conn:
        return [
            {
                **row._mapping,
                **{k: aware(row._mapping[k]) for k in ("sched", "finished")},
                "started": aware(row.finished) - timedelta(seconds=row.duration),
                "manual": bool(row.manual),
            }
            for row in conn.execute(query)
        ]


@rerun_transient
def prune(db: Database, chunk: int = 10_000) -> int:
    """Forget up to `chunk` attempts older than history_ttl; returns how many."""
    h = db.history
    cutoff = naive(db.now() - timedelta(seconds=db.policy.history_ttl))
    with db.engine.begin() as conn:
        old = conn.execute(
            select(h.c.job_key, h.c.slot).where(h.c.finished < cutoff).limit(chunk)
        ).all()
        if not old:
            return 0
        pairs = tuple_(h.c.job_key, h.c.slot).in_([tuple(row) for row in old])
        return conn.execute(delete(h).where(pairs)).rowcount
