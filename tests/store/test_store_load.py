"""The load as the store computes it, on MariaDB, PostgreSQL and SQLite: settles are tallied in
memory and written by a flush (never by the settle), percentiles come from the summed
histograms, due runs are counted per second and per minute, and the spread moves only what
it may, evenly."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from helpers import spec
from sqlalchemy import event, inspect, select
from sqlalchemy.exc import SQLAlchemyError

from celery_dalga import load
from celery_dalga.runs import Attempt
from celery_dalga.store import Store, TableError


def settle(store, runs, status, clock, late):
    """Settle the runs `late` seconds after their instant (duration 0)."""
    clock.advance(late)
    outcomes = store.settle([Attempt(r, status, f"HTTP {status}", 0.0) for r in runs])
    clock.advance(-late)
    return outcomes


def test_the_histogram_buckets_and_their_percentiles():
    assert [load.bucket_of(s) for s in (-1.0, 0.0, 0.0009, 0.001, 0.0014, 0.5, 1e9)] == [
        0,
        0,
        0,
        1,
        1,
        18,
        load.BUCKETS - 1,
    ]
    assert load.edge(18) == 0.512 and load.edge(0) == 0.001
    histogram = [0] * load.BUCKETS
    histogram[18], histogram[24] = 99, 1
    assert load.percentile(histogram, 0.5) == 0.512
    assert load.percentile(histogram, 0.99) == 0.512
    assert load.percentile(histogram, 0.999) == 4.096
    assert load.percentile([0] * load.BUCKETS, 0.5) is None


def test_settles_are_tallied_without_a_statement_and_flushed_per_minute(store, clock):
    for i in range(100):
        store.put(spec("feeds", str(i), interval="60", immediate="true"))
    runs = store.claim(100)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        settle(store, runs[:98], 200, clock, 0.5)
        settle(store, runs[98:99], 500, clock, 3.0)
        settle(store, runs[99:], 200, clock, 3.0)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)
    assert statements and not [s for s in statements if f"{store.table.name}_load" in s]
    assert store.load()["callbacks_by_outcome"] == {}  # not written yet
    assert store.flush_load() == 2 and store.flush_load() == 0
    found = store.load()
    minute = found["callbacks_per_minute"][-1]
    assert minute["minute"] == load.minute_of(clock.now)
    assert minute["outcomes"] == {"done": 99, "retry": 1} and minute["total"] == 100
    # 98 runs 0.5 s late (the bucket up to 0.512 s), 2 runs 3 s late (up to 4.096 s)
    assert (minute["lateness_p50"], minute["lateness_p99"]) == (0.512, 4.096)
    assert found["callbacks_by_outcome"] == {"done": 99, "retry": 1}


def test_two_processes_and_two_flushes_add_up(store, clock):
    other = Store(store.engine, store.table.name, store.policy)
    other.clock = clock
    for i in range(4):
        store.put(spec("feeds", str(i), interval="60", immediate="true"))
    runs = store.claim(4)
    settle(store, runs[:1], 200, clock, 0.01)
    store.flush_load()
    settle(store, runs[1:2], 200, clock, 0.01)
    store.flush_load()
    settle(other, runs[2:], 200, clock, 0.01)
    other.flush_load()
    assert store.tally.shard != other.tally.shard
    with store.engine.connect() as conn:
        assert len(conn.execute(select(store.loads.c.shard)).all()) == 2
    assert store.load()["callbacks_by_outcome"] == {"done": 4}


def test_a_failed_flush_keeps_the_counts(store, clock):
    store.put(spec("feeds", "1", interval="60", immediate="true"))
    settle(store, store.claim(1), 200, clock, 0.1)
    store.loads.drop(store.engine)
    with pytest.raises(SQLAlchemyError):
        store.flush_load()
    store.loads.create(store.engine)
    assert store.flush_load() == 1
    assert store.load()["callbacks_by_outcome"] == {"done": 1}


def test_old_rows_are_pruned(store, clock):
    store.put(spec("feeds", "1", interval="60", immediate="true"))
    settle(store, store.claim(1), 200, clock, 0.1)
    store.flush_load()
    assert store.prune_load() == 0
    clock.advance(store.policy.history_ttl + 7 * 3600)
    assert store.prune_load() == 1
    with store.engine.connect() as conn:
        assert conn.execute(select(store.loads)).all() == []


def test_due_runs_per_second_and_per_minute(store, clock):
    clock.advance(30)  # 12:00:30; the series start at 12:00:00
    start = clock.now.replace(second=0)
    for i, offset in enumerate([-600, -1, 0, 5, 5, 5, 59, 60, 61, 3599, 6 * 3600 + 1]):
        at = (clock.now + timedelta(seconds=offset)).isoformat()
        store.put(spec("feeds", str(i), interval="60", first_run=at))
    found = store.load()
    assert found["start"] == start and found["overdue"] == 1  # due before this minute
    per_second, per_minute = found["due_per_second"], found["due_per_minute"]
    assert len(per_second) == 600 and len(per_minute) == 360
    expected = {29: 1, 30: 1, 35: 3, 89: 1, 90: 1, 91: 1}
    assert {i: n for i, n in enumerate(per_second) if n} == expected
    assert {i: n for i, n in enumerate(per_minute) if n} == {0: 5, 1: 3, 60: 1}
    assert found["peak_second"] == {"index": 35, "count": 3}
    assert found["peak_minute"] == {"index": 0, "count": 5}
    clock.advance(3600)
    assert store.load()["overdue"] == 9


def test_the_spread_spaces_interval_jobs_evenly_and_skips_the_rest(store, clock):
    for i in range(10):
        store.put(spec("feeds", f"{i:02d}", interval="100", immediate="true"))
    store.put(spec("feeds/x", "1", interval="PT1M", immediate="true"))
    store.put(spec("feeds", "cron", cron="*/5 * * * *"))
    store.put(spec("feeds", "once", interval="60", one_off="true"))
    store.put(spec("feeds", "monthly", interval="P1M"))
    store.put(spec("feeds", "paused", interval="60"))
    store.set_enabled("feeds", "paused", False)
    store.put(spec("feeds", "triggered", interval="3600"))
    store.trigger("feeds", "triggered")
    store.put(spec("mail", "1", interval="100", immediate="true"))
    assert store.spread("feeds", batch=3) == {"moved": 11, "skipped": 5}
    t = store.table
    with store.engine.connect() as conn:
        rows = conn.execute(
            select(t.c.path, t.c.body, t.c.next_run, t.c.next_sched).order_by(t.c.path, t.c.id)
        ).all()
    at = {(r.path, r.body): r.next_run for r in rows}
    assert all(r.next_run == r.next_sched for r in rows if r.path == "feeds" and r.body < "1")
    start = clock.now.replace(tzinfo=None)
    assert [at[("feeds", f"{i:02d}")] - start for i in range(10)] == [
        timedelta(seconds=10 * i) for i in range(10)
    ]
    assert at[("feeds/x", "1")] == start  # alone in its interval
    assert at[("mail", "1")] == start  # not under the prefix
    assert at[("feeds", "triggered")] == start  # its trigger stays
    assert store.spread("nothing") == {"moved": 0, "skipped": 0}
    assert store.spread("feed_") == {"moved": 0, "skipped": 0}  # _ is no wildcard


def test_the_spread_skips_runs_held_by_a_claim(store, clock):
    for i in range(6):
        store.put(spec("feeds", str(i), interval="1000", immediate="true"))
    held = {r.job_id for r in store.claim(2)}
    assert store.spread("") == {"moved": 4, "skipped": 2}
    t = store.table
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.token, t.c.next_run)).all()
    lease_end = (clock.now + timedelta(seconds=store.policy.lease)).replace(tzinfo=None)
    assert {r.id for r in rows if r.token} == held
    assert all(r.next_run == lease_end for r in rows if r.id in held)


def test_a_spread_racing_claims_never_moves_a_claimed_row(store, clock):
    """Beats' claims and a spread at once: each row ends claimed (its lease untouched) or
    spread, never a claimed row moved."""
    store.put_many([spec("feeds", str(i), interval="1000", immediate="true") for i in range(300)])
    claimed: set[int] = set()
    done = threading.Event()

    def beat():
        while not done.is_set():
            claimed.update(r.job_id for r in store.claim(7))

    thread = threading.Thread(target=beat)
    thread.start()
    try:
        counts = store.spread("feeds", batch=11)
    finally:
        done.set()
        thread.join()
    t = store.table
    with store.engine.connect() as conn:
        rows = conn.execute(select(t.c.id, t.c.token, t.c.next_run)).all()
    lease_end = (clock.now + timedelta(seconds=store.policy.lease)).replace(tzinfo=None)
    start = clock.now.replace(tzinfo=None)
    assert {r.id for r in rows if r.token} == claimed
    assert all(r.next_run == lease_end for r in rows if r.token)
    assert all(start <= r.next_run < start + timedelta(seconds=1000) for r in rows if not r.token)
    assert counts["moved"] + counts["skipped"] == 300


def test_the_load_table_is_created_and_dropped_with_the_others(store):
    name = f"{store.table.name}_load"
    assert inspect(store.engine).has_table(name)
    store.check_table()
    store.loads.drop(store.engine)
    with pytest.raises(TableError, match="_load"):
        store.check_table()
    store.create_table()  # an earlier version's tables gain it
    assert inspect(store.engine).has_table(name)
    store.drop_table()
    assert not inspect(store.engine).has_table(name)
    store.create_table()  # for the fixture's own drop


def test_a_forked_child_tallies_apart_from_its_parent(store, clock):
    """The child counts under a shard of its own, and writes none of its parent's counts."""
    import os

    store.put(spec("feeds", "1", interval="60", immediate="true"))
    settle(store, store.claim(1), 200, clock, 0.1)  # the parent's, not written yet
    pid = os.fork()
    if pid == 0:  # the child: one settle of its own, written, then gone
        code = 1
        try:
            store.engine.dispose(close=False)
            store.put(spec("feeds", "2", interval="60", immediate="true"))
            settle(store, store.claim(1), 200, clock, 0.1)
            code = 0 if store.flush_load() == 1 else 1
        finally:
            os._exit(code)
    assert os.waitpid(pid, 0)[1] == 0
    store.flush_load()
    with store.engine.connect() as conn:
        rows = conn.execute(select(store.loads.c.shard, store.loads.c.count)).all()
    assert sorted(count for _, count in rows) == [1, 1] and len({s for s, _ in rows}) == 2
