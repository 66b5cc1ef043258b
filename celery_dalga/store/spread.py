"""Spreading a peak: one time, the next runs of the interval jobs under a path prefix are
spaced evenly over their interval from now (schedules.spread_at), in batches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, false, func, or_, select, true

from celery_dalga import schedules
from celery_dalga.jobs import naive
from celery_dalga.store import dialects
from celery_dalga.store.engine import rerun_transient

if TYPE_CHECKING:
    from celery_dalga.store.database import Database

BATCH = 5000


def _under(db: Database, prefix: str) -> Any:
    """The rows whose path starts with `prefix` (LIKE's wildcards taken literally)."""
    if not prefix:
        return true()
    escaped = prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
    return db.table.c.path.like(escaped + "%", escape="!")


def _movable(db: Database) -> Any:
    """A periodic interval job, enabled, held by no run and with no trigger pending."""
    t = db.table
    return and_(
        t.c.interval.is_not(None),
        t.c.cron.is_(None),
        t.c.repeat.is_(None),
        t.c.one_off == false(),
        t.c.enabled == true(),
        t.c.token.is_(None),
        t.c.triggered_at.is_(None),
        t.c.next_run.is_not(None),
    )


def spread(
    db: Database,
    prefix: str,
    batch: int = BATCH,
    progress: Callable[[int], Any] | None = None,
) -> dict[str, int]:
    """Move the next run (and next_sched) of each movable job under `prefix` into
    [now, now + its interval), the jobs of one interval evenly spaced in (path, id) order;
    the others under the prefix (cron, one-off, paused, running, triggered, locked by a
    beat's claim at that moment, or of an interval in months or years) stay and count as
    skipped. One transaction a batch, keyset by (path, id); `progress` is told each
    batch's size. Returns {"moved": n, "skipped": n}."""
    under, movable = _under(db, prefix), _movable(db)
    now = db.now()
    counts = _counts(db, under, movable)
    spans = {text: schedules.spread_span(schedules.parse_duration(text)) for text in counts}
    placed: dict[str, int] = defaultdict(int)
    moved = skipped = 0
    after: tuple[str, int] | None = None
    while True:
        keys = _next_keys(db, under, after, batch)
        if not keys:
            break
        after = keys[-1]
        changes = _move(db, [key[1] for key in keys], movable, spans, counts, placed, now)
        moved += changes
        skipped += len(keys) - changes
        if progress is not None:
            progress(len(keys))
    return {"moved": moved, "skipped": skipped}


@rerun_transient
def _counts(db: Database, under: Any, movable: Any) -> dict[str, int]:
    """The movable jobs under the prefix, counted by interval."""
    t = db.table
    query = select(t.c.interval, func.count()).where(under, movable).group_by(t.c.interval)
    with db.engine.connect() as conn:
        return {text: int(n) for text, n in conn.execute(query)}


@rerun_transient
def _next_keys(
    db: Database, under: Any, after: tuple[str, int] | None, batch: int
) -> list[tuple[str, int]]:
    """The next batch of (path, id) under the prefix after `after`, on the (path, id) index
    (the OR is a range MariaDB and MySQL read in order; a row comparison is not)."""
    t = db.table
    query = select(t.c.path, t.c.id).where(under).order_by(t.c.path, t.c.id).limit(batch)
    if after is not None:
        path, job_id = after
        query = query.where(or_(t.c.path > path, and_(t.c.path == path, t.c.id > job_id)))
    with db.engine.connect() as conn:
        return [(row.path, row.id) for row in conn.execute(query)]


@rerun_transient
def _move(
    db: Database,
    ids: list[int],
    movable: Any,
    spans: dict[str, Any],
    counts: dict[str, int],
    placed: dict[str, int],
    now: Any,
) -> int:
    """In one transaction, lock the batch's movable rows that no one else holds (a beat
    claiming one keeps it) and give each its place; how many moved. `placed` counts each
    interval's places given, and is updated only once the transaction commits."""
    t = db.table
    given = dict(placed)
    with db.engine.begin() as conn:
        rows = conn.execute(
            select(t.c.id, t.c.interval)
            .where(t.c.id.in_(ids), movable)
            .with_for_update(skip_locked=True)
        ).all()
        order = {job_id: i for i, job_id in enumerate(ids)}
        changes = []
        for row in sorted(rows, key=lambda r: order[r.id]):
            span = spans.get(row.interval)
            if span is None:  # months or years, or an interval first seen after the count
                continue
            at = naive(
                schedules.spread_at(now, span, given.get(row.interval, 0), counts[row.interval])
            )
            given[row.interval] = given.get(row.interval, 0) + 1
            changes.append({"id": row.id, "next_run": at, "next_sched": at})
        if changes:
            dialects.update_rows(conn, t, ["next_run", "next_sched"], changes)
    placed.update(given)
    return len(changes)
