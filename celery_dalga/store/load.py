"""The load: runs due ahead (a GROUP BY over the next_run index's range) and callbacks per
minute by outcome with their lateness (read from <table>_load, which each process's Tally
adds to); CachedLoad, the load computed at most once a period (celery_dalga.snapshot)."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, case, delete, func, select, tuple_
from sqlalchemy.engine import Dialect

from celery_dalga import load as arithmetic
from celery_dalga.jobs import aware, naive
from celery_dalga.load import AHEAD, AHEAD_BY_SECOND, BEHIND, BUCKETS, Row
from celery_dalga.snapshot import Snapshot
from celery_dalga.store import dialects
from celery_dalga.store.engine import rerun_transient

if TYPE_CHECKING:
    from celery_dalga.store.database import Database

COUNTED = ["count", *(f"b{i:02d}" for i in range(BUCKETS))]


@rerun_transient
def write(db: Database, shard: int, rows: list[Row]) -> None:
    """Add a process's tally (minute, outcome, [count, buckets...]) to its rows, in one
    upsert."""
    values = [
        {
            "minute": naive(minute),
            "outcome": outcome,
            "shard": shard,
            **dict(zip(COUNTED, counts, strict=True)),
        }
        for minute, outcome, counts in rows
    ]
    with db.engine.begin() as conn:
        conn.execute(_upsert(db.loads, conn.dialect), values)


@lru_cache(maxsize=16)
def _upsert(loads: Table, dialect: Dialect) -> Any:
    return dialects.upsert(
        dialect,
        loads,
        ["minute", "outcome", "shard"],
        lambda new: {c: loads.c[c] + new[c] for c in COUNTED},
    )


@rerun_transient
def prune(db: Database, chunk: int = 10_000) -> int:
    """Forget up to `chunk` rows older than history_ttl (and than BEHIND); how many."""
    t = db.loads
    age = max(timedelta(seconds=db.policy.history_ttl), BEHIND + timedelta(minutes=1))
    cutoff = naive(db.now() - age)
    with db.engine.begin() as conn:
        keys = [c for c in (t.c.minute, t.c.outcome, t.c.shard)]
        old = conn.execute(select(*keys).where(t.c.minute < cutoff).limit(chunk)).all()
        if not old:
            return 0
        return conn.execute(delete(t).where(tuple_(*keys).in_([tuple(r) for r in old]))).rowcount


@rerun_transient
def due(db: Database, start: datetime, end: datetime) -> tuple[int, dict[int, int]]:
    """The runs due before `start` (overdue), and those due in [start, end) by whole
    seconds after start: one GROUP BY over the next_run index's range."""
    t = db.table
    offset = case(
        (t.c.next_run < naive(start), -1),
        else_=dialects.seconds_after(db.engine.dialect, t.c.next_run, naive(start)),
    ).label("offset")
    query = select(offset, func.count()).where(t.c.next_run < naive(end)).group_by(offset)
    with db.engine.connect() as conn:
        found = {int(o): int(n) for o, n in conn.execute(query)}
    return found.pop(-1, 0), found


@rerun_transient
def settled(db: Database, since: datetime) -> list[Row]:
    """The load table's rows from `since` on, summed over the processes."""
    t = db.loads
    sums = [func.sum(t.c[c]) for c in COUNTED]
    query = (
        select(t.c.minute, t.c.outcome, *sums)
        .where(t.c.minute >= naive(since))
        .group_by(t.c.minute, t.c.outcome)
    )
    with db.engine.connect() as conn:
        return [(aware(r[0]), r[1], [int(v or 0) for v in r[2:]]) for r in conn.execute(query)]


def load(db: Database) -> dict[str, Any]:
    """The load now: runs due per second over AHEAD_BY_SECOND and per minute over AHEAD
    (from this minute's start), those overdue, and callbacks per minute over BEHIND (up to
    this minute) by outcome, with their lateness p50 and p99."""
    now = db.now()
    start = arithmetic.minute_of(now)
    overdue, offsets = due(db, start, start + AHEAD)
    minutes = int(BEHIND.total_seconds() // 60)
    since = start - timedelta(minutes=minutes - 1)
    per_second = arithmetic.series(offsets, 1, int(AHEAD_BY_SECOND.total_seconds()))
    per_minute = arithmetic.series(offsets, 60, int(AHEAD.total_seconds() // 60))
    calls = arithmetic.callbacks(settled(db, since), since, minutes)
    outcomes: dict[str, int] = defaultdict(int)
    for entry in calls:
        for outcome, n in entry["outcomes"].items():
            outcomes[outcome] += n
    return {
        "computed_at": now,
        "start": start,
        "overdue": overdue,
        "due_per_second": per_second,
        "due_per_minute": per_minute,
        "peak_second": arithmetic.peak(per_second),
        "peak_minute": arithmetic.peak(per_minute),
        "callbacks_since": since,
        "callbacks_per_minute": calls,
        "callbacks_by_outcome": dict(sorted(outcomes.items())),
    }


class CachedLoad:
    """load() from a Snapshot: computed at most every second, or 20 times what it takes,
    and in the background once it takes 50 ms or more; the answer says when
    (computed_at, age_seconds)."""

    def __init__(self, db: Database):
        self.db = db
        self.snapshot = Snapshot(lambda: load(db), db.now)

    def __call__(self) -> dict[str, Any]:
        found = self.snapshot.read()
        now = self.db.now()
        age = max(0.0, (now - found["computed_at"]).total_seconds())
        return {**found, "now": now, "age_seconds": round(age, 3)}
