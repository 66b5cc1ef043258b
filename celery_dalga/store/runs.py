"""The run protocol's statements (docs/design.md): claim() gives due rows a fresh token and a
lease (next_run = now + lease); fence() and settle() act on a task's runs only while the rows
still carry the runs' tokens, each in one statement or transaction for the whole task. What to
write is decided in celery_dalga.runs; this module only reads and writes."""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.engine import Connection

from celery_dalga import runs as protocol
from celery_dalga.jobs import Run, aware, naive
from celery_dalga.runs import Attempt, Change, Outcome
from celery_dalga.store import dialects, history, links
from celery_dalga.store.database import Database
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.rows import job_of, stored
from celery_dalga.store.schema import if_running

log = logging.getLogger(__name__)
FAILED_FOR_GOOD = {Outcome.ABANDONED, Outcome.GAVE_UP}  # what runs a job's on-failure job


@rerun_transient
def claim(db: Database, limit: int, instance_id: int | None = None) -> list[Run]:
    """Take up to `limit` due rows, give those to send one fresh token, a lease and the
    claiming instance, settle the others (runs.on_due); return the runs to send."""
    t = db.table
    with db.engine.begin() as conn:
        now = db.now(conn)
        rows = conn.execute(
            select(t)
            .where(t.c.next_run <= naive(now))
            .order_by(t.c.next_run)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return []
        token = uuid.uuid4().hex
        sent, changes = [], []
        for row in rows:
            decision = protocol.on_due(job_of(row._mapping), token, now, db.policy)
            if isinstance(decision, Run):
                sent.append(decision)
            else:
                changes.append((row.id, decision))
                log.log(
                    logging.WARNING if decision.outcome is Outcome.SKIPPED else logging.INFO,
                    "%s due run path=%s sched=%s",
                    decision.outcome,
                    row.path,
                    aware(row.next_sched),
                )
        if sent:
            conn.execute(
                update(t)
                .where(t.c.id.in_([r.job_id for r in sent]))
                .values(
                    token=token,
                    instance_id=instance_id,
                    next_run=naive(now + timedelta(seconds=db.policy.lease)),
                )
            )
        _apply(db, conn, changes)
    return sent


@rerun_transient
def seconds_until_due(db: Database) -> float | None:
    """Seconds until the earliest next_run (0 if due now); None when nothing is scheduled."""
    with db.engine.connect() as conn:
        now = db.now(conn)
        earliest = conn.execute(select(func.min(db.table.c.next_run))).scalar_one()
    if earliest is None:
        return None
    return max(0.0, (aware(earliest) - now).total_seconds())


@rerun_transient
def fence(db: Database, runs: list[Run], keep: float) -> list[Run]:
    """The runs whose rows still carry their tokens, in one read. A run whose lease has
    less than `keep` seconds left has it renewed first (a run that cannot be renewed is
    no longer ours)."""
    if not runs:
        return []
    t = db.table
    with db.engine.connect() as conn:
        held = {
            row.id: row
            for row in conn.execute(
                select(t.c.id, t.c.token, t.c.next_run).where(t.c.id.in_([r.job_id for r in runs]))
            )
        }
        ours = [r for r in runs if r.job_id in held and held[r.job_id].token == r.token]
        now = db.now(conn)
        short = [r for r in ours if aware(held[r.job_id].next_run) - now < timedelta(seconds=keep)]
        if not short:
            return ours
        pairs = tuple_(t.c.id, t.c.token).in_([(r.job_id, r.token) for r in short])
        lease_end = naive(now + timedelta(seconds=db.policy.lease))
        conn.execute(update(t).where(pairs).values(next_run=lease_end))
        renewed = set(conn.execute(select(t.c.id).where(pairs)).scalars())
        conn.commit()
    lost = {r.job_id for r in short} - renewed
    return [r for r in ours if r.job_id not in lost]


@rerun_transient
def settle(db: Database, attempts: list[Attempt], instance_id: int | None = None) -> list[Outcome]:
    """Apply the answers of a task's POSTs (runs.on_answer) in one transaction: the rows
    are locked, and only those still carrying the runs' tokens change; each attempt goes
    into the jobs' history, and the dependent jobs the answers make due become due. The
    outcomes are counted in memory for the load table (db.tally: no statement here)."""
    if not attempts:
        return []
    t, policy = db.table, db.policy
    with db.engine.begin() as conn:
        rows = conn.execute(
            select(t).where(t.c.id.in_([a.run.job_id for a in attempts])).with_for_update()
        )
        jobs = {row.id: job_of(row._mapping) for row in rows}
        now, clock = db.now(conn), time.monotonic()
        ended = [a.ended_at(now, clock) for a in attempts]
        changes = [
            protocol.on_answer(jobs.get(a.run.job_id), a, at, policy)
            for a, at in zip(attempts, ended, strict=True)
        ]
        settled = [
            (a, c, at)
            for a, c, at in zip(attempts, changes, ended, strict=True)
            if c.outcome is not Outcome.STALE
        ]
        _apply(db, conn, [(a.run.job_id, c) for a, c, _ in settled])
        if policy.history_runs and settled:
            records = [
                protocol.record(jobs[a.run.job_id], a, c, at, policy, instance_id)
                for a, c, at in settled
            ]
            history.write(conn, db.history, records)
        _wake(db, conn, [(jobs[a.run.job_id].key, c) for a, c, _ in settled], now)
    db.tally.add(
        (at, str(c.outcome), (at - a.run.sched).total_seconds() - a.duration)
        for a, c, at in settled
    )
    return [c.outcome for c in changes]


def _apply(db: Database, conn: Connection, changes: list[tuple[int, Change]]) -> None:
    """Write the changes: one DELETE for the rows to delete, and one UPDATE for each set
    of columns the others change (after making room for new job keys)."""
    t = db.table
    changes = _make_room(db, conn, changes)
    gone = [job_id for job_id, change in changes if change.delete]
    if gone:
        conn.execute(delete(t).where(t.c.id.in_(gone)))
    by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for job_id, change in changes:
        if change.values and not change.delete:
            values = stored(change.values)
            by_columns[tuple(sorted(values))].append({"id": job_id, **values})
    for columns, rows in by_columns.items():
        dialects.update_rows(conn, t, list(columns), rows)


def _make_room(
    db: Database, conn: Connection, changes: list[tuple[int, Change]]
) -> list[tuple[int, Change]]:
    """Before jobs take new keys (a task's Reschedule with a new body): delete the other jobs
    that hold those keys (the renamed job replaces them, as a PUT of that key would; of two
    jobs of a task renamed to one key, the last does), and move the jobs' children to their
    new keys. The changes to write."""
    takes: dict[str, int] = {}  # new key -> the job that takes it
    for job_id, change in changes:
        if "job_key" in change.values and not change.delete:
            takes[change.values["job_key"]] = job_id
    if not takes:
        return changes
    t = db.table
    renamed = sorted(takes.values())
    old_keys = dict(conn.execute(select(t.c.id, t.c.job_key).where(t.c.id.in_(renamed))).all())
    conn.execute(delete(t).where(t.c.job_key.in_(sorted(takes)), t.c.id.not_in(renamed)))
    for key, job_id in takes.items():
        conn.execute(update(t).where(t.c.parent_key == old_keys[job_id]).values(parent_key=key))
    return [
        (job_id, change)
        if takes.get(change.values.get("job_key", ""), job_id) == job_id
        else (job_id, Change(change.outcome, delete=True))
        for job_id, change in changes
    ]


def _wake(db: Database, conn: Connection, settled: list[tuple[str, Change]], now: datetime) -> None:
    """Make due the dependent jobs the changes name (settled: each job's key and change):
    each parent's first enabled child and its enabled children with several parents, the
    enabled sibling after each dependent run that ended, and the on-failure job of each run
    that failed for good (store.links; one SELECT when none). One attempted less than
    min_interval ago is due min_interval from now: a loop of parents cannot run hot."""
    t = db.table
    parents = [c.children_of for _, c in settled if c.children_of]
    woken: list[int] = []
    if parents:
        woken += conn.execute(links.children_due(db, parents)).scalars()
    for parent, after in (c.sibling_after for _, c in settled if c.sibling_after):
        found = conn.execute(links.sibling_due(db, parent, after)).scalar()
        if found is not None:
            woken.append(found)
    failed = [key for key, c in settled if c.outcome in FAILED_FOR_GOOD]
    if failed:
        woken += links.on_failure_due(conn, db, failed)
    if not woken:
        return
    spacing = timedelta(seconds=db.policy.min_interval)
    recent = set(
        conn.execute(
            select(t.c.id).where(t.c.id.in_(woken), t.c.last_attempt > naive(now - spacing))
        ).scalars()
    )
    for ids, at in ((set(woken) - recent, now), (recent, now + spacing)):
        if ids:
            conn.execute(
                update(t)
                .where(t.c.id.in_(sorted(ids)))
                .values(
                    triggered_at=naive(at),
                    next_run=func.coalesce(if_running(t, t.c.next_run), naive(at)),
                )
            )
