"""The store on MariaDB, PostgreSQL and SQLite: CRUD, listing, claim, tokens, leases."""

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import RETRY_WAIT, Attempt, Outcome, Policy
from celery_dalga.spec import parse_spec
from celery_dalga.store import Store


def spec(path="feeds", body="1", **params):
    return parse_spec(path, body, {k.replace("_", "-"): v for k, v in params.items()})


def answer(store, run, status, duration=0.0):
    """Settle one run with this answer (None: no answer came)."""
    error = f"HTTP {status}" if status else "curl error 7: refused"
    return store.settle([Attempt(run, status, error, duration)])[0]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start=datetime(2026, 6, 1, 12, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def store(any_db_url, make_store) -> Store:
    return make_store(any_db_url, policy=Policy(lease=30))


@pytest.fixture
def clock(store) -> Clock:
    store.clock = Clock()
    return store.clock


def test_create_table_is_idempotent(store):
    store.create_table()
    store.create_table()
    assert store.page() == []


def test_create_table_adds_the_columns_a_table_of_an_earlier_version_lacks(store):
    with store.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {store.table.name} DROP COLUMN attempts"))
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {store.table.name} (job_key, path, body, location, one_off, enabled,"
                " success_count, error_count) VALUES ('k', 'p', 'b', 'UTC', :no, :yes, 0, 0)"
            ),
            {"no": False, "yes": True},
        )
    store.create_table()
    assert store.get("p", "b") is None  # the key is a hash; the row is there all the same
    assert [job.attempts for job in store.page()] == [0]
    assert store.put(spec(interval="60")).attempts == 0


def test_database_clock_is_used_when_no_clock_is_set(store):
    assert abs((store.now() - datetime.now(UTC)).total_seconds()) < 5


@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_database_clock_is_read_once_and_carried_forward(request, make_store, server):
    import time

    from sqlalchemy import event

    store = make_store(request.getfixturevalue(f"{server}_url"))
    reads = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: reads.append(statement),
    )
    first = store.now()
    time.sleep(0.3)
    second = store.now()
    assert len(reads) == 1
    assert 0.25 < (second - first).total_seconds() < 1.0
    with store.engine.connect() as conn:
        database = store._database_clock(conn)
    assert abs((store.now() - database).total_seconds()) < 0.1


def test_a_killed_connection_is_replaced_without_an_error(mariadb_url, make_store):
    store = make_store(mariadb_url)
    store.put(spec(interval="60"))
    with store.engine.connect() as conn:  # the pool's one idle connection, after this block
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT CONNECTION_ID()")).scalar_one() == victim
    killer = make_store(mariadb_url).engine
    with killer.connect() as conn:
        conn.execute(text(f"KILL CONNECTION {victim}"))
    killer.dispose()
    assert store.get("feeds", "1").interval == "60"
    assert store.put(spec(interval="30")).interval == "30"


def test_the_clock_is_read_on_a_fresh_connection_when_the_pooled_one_died(mariadb_url, make_store):
    store = make_store(mariadb_url)
    with store.engine.connect() as conn:  # the pool's one idle connection, after this block
        victim = conn.execute(text("SELECT CONNECTION_ID()")).scalar_one()
    killer = make_store(mariadb_url).engine
    with killer.connect() as conn:
        conn.execute(text(f"KILL CONNECTION {victim}"))
    killer.dispose()
    assert abs((store.now() - datetime.now(UTC)).total_seconds()) < 5


def test_put_get_delete_and_long_bodies(store, clock):
    long_body = "b" * 60000
    job = store.put(spec(body=long_body, interval="60"))
    assert job.body == long_body and job.interval == "60"
    assert job.next_run == job.next_sched == clock.now + timedelta(seconds=60)
    assert store.get("feeds", long_body).id == job.id
    assert store.get("feeds", "other") is None
    assert store.delete("feeds", long_body) is True
    assert store.delete("feeds", long_body) is False


def test_put_again_reschedules_the_same_row(store, clock):
    first = store.put(spec(interval="60"))
    again = store.put(spec(cron="0 * * * *", location="Europe/Istanbul"))
    assert again.id == first.id
    assert (again.cron, again.interval, again.location) == ("0 * * * *", None, "Europe/Istanbul")
    assert len(store.page()) == 1


def test_keyset_listing_with_path_filter(store, clock):
    for i in range(7):
        store.put(spec(path="a" if i % 2 else "b", body=str(i), interval="60"))
    page1 = store.page(limit=3)
    page2 = store.page(after=(page1[-1].id,), limit=3)
    page3 = store.page(after=(page2[-1].id,), limit=3)
    assert [j.body for j in page1 + page2 + page3] == [str(i) for i in range(7)]
    assert [j.body for j in store.page(path="a")] == ["1", "3", "5"]


def test_pages_by_next_sched_keep_ties_and_go_both_ways(store, clock):
    for i, delay in enumerate([30, 10, 20, 10, 10, 40]):
        store.put(spec(body=str(i), interval=str(delay)))
    order = ["1", "3", "4", "2", "0", "5"]
    seen, after = [], None
    while page := store.page(sort_by="next-sched", after=after, limit=2):
        seen += [j.body for j in page]
        after = (page[-1].next_sched, page[-1].id)
    assert seen == order
    backwards = store.page(sort_by="next-sched", reverse=True, limit=3)
    assert [j.body for j in backwards] == order[::-1][:3]
    last = backwards[-1]
    rest = store.page(sort_by="next-sched", reverse=True, after=(last.next_sched, last.id))
    assert [j.body for j in rest] == order[::-1][3:]
    assert [j.body for j in store.page(reverse=True)] == ["5", "4", "3", "2", "1", "0"]


def test_claim_takes_due_rows_in_order_with_one_token_and_a_lease(store, clock):
    store.put(spec(body="late", one_off="true", immediate="true"))
    clock.advance(1)
    store.put(spec(body="later", interval="5", immediate="true"))
    store.put(spec(body="future", interval="60"))
    clock.advance(1)
    runs = store.claim(10)
    assert [r.body for r in runs] == ["late", "later"]
    assert len({r.token for r in runs}) == 1
    assert store.get("feeds", "late").next_run == clock.now + timedelta(seconds=30)
    assert store.claim(10) == []
    clock.advance(31)
    again = store.claim(10)
    assert {r.body for r in again} == {"late", "later"}
    assert again[0].token != runs[0].token
    assert {r.sched for r in again} == {r.sched for r in runs}
    assert {r.idempotency_key for r in again} == {r.idempotency_key for r in runs}


def test_claim_respects_the_batch_limit(store, clock):
    for i in range(5):
        store.put(spec(body=str(i), one_off="1", immediate="1"))
    assert len(store.claim(3)) == 3
    assert len(store.claim(3)) == 2


def test_stale_token_is_fenced_out(any_db_url, make_store):
    store = make_store(any_db_url, policy=Policy(lease=5))
    store.clock = clock = Clock()
    store.put(spec(interval="10", immediate="true"))
    old = store.claim(10)[0]
    clock.advance(6)
    new = store.claim(10)[0]
    assert store.fence([old], keep=1) == []
    assert answer(store, old, 200) is Outcome.STALE
    assert answer(store, old, 500) is Outcome.STALE
    assert store.fence([old, new], keep=1) == [new]


def test_fence_reads_while_the_lease_has_room_and_renews_it_when_short(store, clock):
    for body in ("1", "2"):
        store.put(spec(body=body, interval="10", immediate="true"))
    runs = store.claim(10)
    lease_end = clock.now + timedelta(seconds=30)
    clock.advance(5)
    assert store.fence(runs, keep=15) == runs
    assert store.get("feeds", "1").next_run == lease_end
    clock.advance(11)
    assert store.fence(runs, keep=15) == runs
    assert store.get("feeds", "1").next_run == clock.now + timedelta(seconds=30)
    assert store.get("feeds", "2").next_run == clock.now + timedelta(seconds=30)


def test_a_task_whose_lease_is_half_gone_renews_it_before_any_post(make_stack):
    """A call starts only while its lease outlasts the timeout, so a task that finds less than
    half of its lease left (15 of 40 s: it waited in the queue) renews it before any POST."""
    from sqlalchemy import event

    from celery_dalga.tasks import deliver

    stack = make_stack(beat=False, lease=40.0, callback_timeout=10.0, runs_per_task=300)
    stack.store.put_many([spec(body=str(i), interval="60", immediate="1") for i in range(300)])
    runs = stack.store.claim(300)
    stack.store.clock = lambda: runs[0].sched + timedelta(seconds=25)  # 15 s of lease left
    statements = []
    listen = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    event.listen(stack.store.engine, "before_cursor_execute", listen)
    try:
        assert set(deliver(stack.settings, runs)) == {Outcome.DONE}
    finally:
        event.remove(stack.store.engine, "before_cursor_execute", listen)
    writes = [
        s.lstrip() for s in statements if s.lstrip().startswith("UPDATE") or "FOR UPDATE" in s
    ]
    assert writes[0].startswith("UPDATE")  # the renewal, before the settle's lock
    assert len(stack.endpoint.calls) == 300


def test_a_run_whose_row_changes_token_during_renewal_is_not_ours(store, clock):
    store.put(spec(interval="10", immediate="true"))
    run = store.claim(10)[0]
    clock.advance(20)
    store.delete("feeds", "1")
    assert store.fence([run], keep=15) == []


def test_completion_sets_next_run_and_counts(store, clock):
    store.put(spec(interval="10", immediate="true"))
    run = store.claim(10)[0]
    clock.advance(2)
    assert answer(store, run, 200, duration=0.25) is Outcome.DONE
    job = store.get("feeds", "1")
    assert not job.running and job.success_count == 1 and job.last_duration == 0.25
    assert job.next_run == job.next_sched == clock.now + timedelta(seconds=10)


def test_each_run_of_a_task_completes_when_its_own_answer_came(store, clock):
    import time

    for body in ("fast", "slow"):
        store.put(spec(body=body, interval="10", immediate="true"))
    runs = {r.body: r for r in store.claim(10)}
    answered = time.monotonic()
    store.settle(
        [
            Attempt(runs["fast"], 200, "HTTP 200", 0.1, ended=answered - 8),
            Attempt(runs["slow"], 200, "HTTP 200", 8.0, ended=answered),
        ]
    )
    fast, slow = store.get("feeds", "fast"), store.get("feeds", "slow")
    assert (slow.next_run - fast.next_run).total_seconds() == pytest.approx(8, abs=0.5)
    assert abs((slow.next_run - clock.now).total_seconds() - 10) < 0.5


def test_one_off_and_204_delete(store, clock):
    store.put(spec(body="once", one_off="true", immediate="true"))
    store.put(spec(body="gone", interval="10", immediate="true"))
    runs = {r.body: r for r in store.claim(10)}
    assert answer(store, runs["once"], 200) is Outcome.DELETED
    assert answer(store, runs["gone"], 204) is Outcome.DELETED
    assert store.page() == []


def test_one_task_settles_200_204_500_and_no_answer_in_one_transaction(store, clock):
    for body in ("ok", "gone", "error", "timeout", "stale"):
        store.put(spec(body=body, interval="10", immediate="true"))
    runs = {r.body: r for r in store.claim(10)}
    stale = runs["stale"]
    clock.advance(1)
    store.delete("feeds", "stale")
    statements = []
    listen = lambda conn, cursor, statement, *rest: statements.append(statement)  # noqa: E731
    from sqlalchemy import event

    event.listen(store.engine, "before_cursor_execute", listen)
    outcomes = store.settle(
        [
            Attempt(runs["ok"], 200, "HTTP 200", 0.1),
            Attempt(runs["gone"], 204, "HTTP 204", 0.1),
            Attempt(runs["error"], 500, "HTTP 500", 0.1),
            Attempt(runs["timeout"], None, "curl error 28: timed out", 2.0),
            Attempt(stale, 200, "HTTP 200", 0.1),
        ]
    )
    event.remove(store.engine, "before_cursor_execute", listen)
    assert outcomes == [Outcome.DONE, Outcome.DELETED, Outcome.RETRY, Outcome.RETRY, Outcome.STALE]
    writes = [s for s in statements if s.lstrip().upper().startswith(("UPDATE", "DELETE"))]
    assert len(writes) <= 3  # one DELETE, one UPDATE per set of columns written
    assert store.get("feeds", "ok").next_run == clock.now + timedelta(seconds=10)
    assert store.get("feeds", "gone") is None
    for body, error in (("error", "HTTP 500"), ("timeout", "curl error 28: timed out")):
        job = store.get("feeds", body)
        assert (job.token, job.attempts, job.last_error) == (RETRY_WAIT, 1, error)
        assert job.next_run == clock.now + timedelta(seconds=1)


def test_failure_waits_out_the_backoff_then_runs_again_with_the_same_instant(
    any_db_url, make_store
):
    store = make_store(any_db_url, policy=Policy(lease=30, retry=RetryPolicy(stop_after=60)))
    store.clock = clock = Clock()
    store.put(spec(interval="10", immediate="true"))
    run = store.claim(10)[0]
    assert answer(store, run, 500) is Outcome.RETRY
    job = store.get("feeds", "1")
    assert job.next_run == clock.now + timedelta(seconds=1)
    assert (job.error_count, job.last_error, job.next_sched, job.attempts) == (
        1,
        "HTTP 500",
        run.sched,
        1,
    )
    assert store.claim(10) == [] and store.fence([run], keep=1) == []
    clock.advance(1)
    again = store.claim(10)[0]
    assert again.sched == run.sched and again.idempotency_key == run.idempotency_key
    assert answer(store, again, 500) is Outcome.RETRY
    assert store.get("feeds", "1").next_run == clock.now + timedelta(seconds=2)
    clock.advance(61)
    third = store.claim(10)[0]
    assert answer(store, third, 503) is Outcome.GAVE_UP
    job = store.get("feeds", "1")
    assert (job.enabled, job.next_run, job.running, job.last_error, job.attempts) == (
        False,
        None,
        False,
        "HTTP 503",
        0,
    )


def test_the_backoff_goes_on_when_a_run_comes_back_after_its_lease(store, clock):
    store.put(spec(interval="10", immediate="true"))
    for attempt in range(3):
        run = store.claim(10)[0]
        assert answer(store, run, 500) is Outcome.RETRY
        clock.advance(2**attempt)
    lost = store.claim(10)[0]  # its worker dies: no answer is ever recorded
    clock.advance(30)
    back = store.claim(10)[0]
    assert back.sched == lost.sched and back.token != lost.token
    assert answer(store, back, 500) is Outcome.RETRY
    assert store.get("feeds", "1").next_run == clock.now + timedelta(seconds=8)
    assert store.get("feeds", "1").attempts == 4


def test_put_during_a_run_keeps_the_lease_and_the_run_applies_the_new_schedule(store, clock):
    store.put(spec(interval="10", immediate="true"))
    run = store.claim(10)[0]
    clock.advance(1)
    job = store.put(spec(interval="100", immediate="true"))
    assert job.running and job.next_run == clock.now + timedelta(seconds=29)
    assert store.claim(10) == []
    answer(store, run, 200)
    job = store.get("feeds", "1")
    assert job.next_sched == job.next_run == clock.now


def test_trigger_runs_once_without_changing_the_schedule(store, clock):
    scheduled = store.put(spec(interval="3600")).next_sched
    store.trigger("feeds", "1")
    run = store.claim(10)[0]
    assert run.manual and run.sched == clock.now
    answer(store, run, 200)
    job = store.get("feeds", "1")
    assert job.next_sched == job.next_run == scheduled and job.triggered_at is None
    assert store.trigger("feeds", "missing") is None


def test_a_put_right_after_a_trigger_keeps_the_triggered_run(store, clock):
    store.put(spec(interval="3600"))
    store.trigger("feeds", "1")
    job = store.put(spec(interval="60"))
    assert job.triggered_at == clock.now and job.next_run == clock.now
    (run,) = store.claim(10)
    assert run.manual and run.sched == clock.now
    answer(store, run, 200)
    job = store.get("feeds", "1")
    assert job.triggered_at is None and job.next_run == clock.now + timedelta(seconds=60)


def test_disable_and_enable(store, clock):
    store.put(spec(interval="60"))
    job = store.set_enabled("feeds", "1", enabled=False)
    assert not job.enabled and job.next_run is None
    clock.advance(600)
    assert store.claim(10) == []
    job = store.set_enabled("feeds", "1", enabled=True)  # the missed slot runs at once
    assert job.enabled and job.next_run == job.next_sched == clock.now - timedelta(seconds=540)
    assert len(store.claim(10)) == 1


def test_disable_during_a_run_stops_its_retries(store, clock):
    store.put(spec(interval="60", immediate="true"))
    run = store.claim(10)[0]
    store.set_enabled("feeds", "1", enabled=False)
    assert answer(store, run, 500) is Outcome.STOPPED
    assert store.get("feeds", "1").next_run is None


def test_epsilon_skips_a_run_missed_by_too_much(any_db_url, make_store):
    store = make_store(any_db_url, policy=Policy(epsilon=30))
    store.clock = clock = Clock()
    store.put(spec(body="periodic", interval="60"))
    store.put(spec(body="once", one_off="1", interval="60"))
    clock.advance(60 + 31)
    runs = store.claim(10)
    assert [r.body for r in runs] == ["once"]
    assert store.get("feeds", "periodic").next_sched == clock.now + timedelta(seconds=60)


def test_status_counts_in_dalgas_names(store, clock):
    store.put(spec(body="a", interval="60", immediate="1"))
    store.put(spec(body="b", interval="60", immediate="1"))
    store.put(spec(body="c", interval="60"))
    store.set_enabled("feeds", "c", enabled=False)
    clock.advance(5.5)
    status = store.status(instance_id=42)
    assert {k: status[k] for k in ("total_jobs", "pending_jobs", "running_jobs")} == {
        "total_jobs": 3,
        "pending_jobs": 2,
        "running_jobs": 0,
    }
    assert (status["disabled_jobs"], status["lag"], status["lag_seconds"]) == (1, 5, 5.5)
    assert (status["instance_id"], status["total_instances"]) == (42, 0)
    store.claim(1, instance_id=42)
    store.heartbeat(42, "run", "here", 1)
    status = store.status(instance_id=42)
    assert (status["pending_jobs"], status["running_jobs"]) == (1, 1)
    assert (status["instance_running_jobs"], status["total_instances"]) == (1, 1)
    assert store.status(instance_id=43)["instance_running_jobs"] == 0


def test_instances_live_while_they_beat_and_are_forgotten_a_minute_after(store, clock):
    store.heartbeat(1, "beat", "host-a", 11)
    clock.advance(30)
    store.heartbeat(2, "worker", "host-b", 22)
    assert [(i["id"], i["kind"]) for i in store.live_instances()] == [(1, "beat"), (2, "worker")]
    clock.advance(31)
    assert [i["id"] for i in store.live_instances()] == [2]
    store.heartbeat(2, "worker", "host-b", 22)  # also removes instance 1's stale row
    with store.engine.connect() as conn:
        assert conn.execute(text(f"SELECT id FROM {store.instances.name}")).scalars().all() == [2]
    store.forget_instance(2)
    assert store.live_instances() == []


def test_concurrent_heartbeats_never_deadlock(mariadb_url, make_store, caplog):
    """Six processes' heartbeats at once: each used to prune with a range DELETE that took gap
    locks, and they deadlocked every few seconds (reruns logged, some given up)."""
    store = make_store(mariadb_url)
    failures: list[Exception] = []

    def beat(instance: int) -> None:
        for _ in range(100):
            try:
                store.heartbeat(instance, "beat", "here", instance)
            except Exception as exc:  # a deadlock that outlived the reruns
                failures.append(exc)

    with caplog.at_level(logging.WARNING, logger="celery_dalga.store"):
        threads = [threading.Thread(target=beat, args=(i,)) for i in range(1, 7)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert failures == []
    assert not [r for r in caplog.records if "running it again" in r.getMessage()]
    assert len(store.live_instances()) == 6


def test_seconds_until_due(store, clock):
    assert store.seconds_until_due() is None
    store.put(spec(interval="42"))
    assert store.seconds_until_due() == 42.0


def test_claim_query_is_served_by_the_next_run_index(mariadb_url, make_store):
    store = make_store(mariadb_url)
    with store.engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO {store.table.name} (job_key, path, body, location, one_off, "
                "enabled, next_run, success_count, error_count) SELECT SHA2(seq, 256), 'p', seq, "
                "'UTC', 0, 1, NOW() - INTERVAL seq SECOND, 0, 0 FROM seq_1_to_2000"
            )
        )
        conn.execute(text(f"ANALYZE TABLE {store.table.name}"))
        plan = (
            conn.execute(
                text(
                    f"EXPLAIN SELECT id FROM {store.table.name} WHERE next_run <= NOW() "
                    "ORDER BY next_run LIMIT 500 FOR UPDATE SKIP LOCKED"
                )
            )
            .mappings()
            .one()
        )
    assert plan["key"] == f"ix_{store.table.name}_next_run"
    assert "filesort" not in (plan["Extra"] or "").lower()


@pytest.mark.parametrize("server", ["mariadb", "postgres"])
def test_claim_locks_with_skip_locked(request, make_store, server):
    from sqlalchemy import event

    store = make_store(request.getfixturevalue(f"{server}_url"))
    store.put(spec(one_off="1", immediate="1"))
    statements = []
    event.listen(
        store.engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *rest: statements.append(statement),
    )
    assert len(store.claim(10)) == 1
    claim = next(s for s in statements if "next_run <=" in s and s.lstrip().startswith("SELECT"))
    assert claim.rstrip().endswith("FOR UPDATE SKIP LOCKED")


def test_a_real_deadlock_is_classified_as_transient(mariadb_url, make_store):
    import threading

    from sqlalchemy.exc import OperationalError

    from celery_dalga.store import is_transient

    store = make_store(mariadb_url)
    a = store.put(spec(body="a", interval="60")).id
    b = store.put(spec(body="b", interval="60")).id
    table, errors, barrier = store.table.name, [], threading.Barrier(2)

    def lock(first: int, second: int) -> None:
        try:
            with store.engine.begin() as conn:
                conn.execute(text(f"SELECT id FROM {table} WHERE id = {first} FOR UPDATE"))
                barrier.wait()
                conn.execute(text(f"SELECT id FROM {table} WHERE id = {second} FOR UPDATE"))
        except OperationalError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=lock, args=ab) for ab in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(errors) == 1 and is_transient(errors[0])
    assert not is_transient(ValueError("not a database error"))


def test_a_transaction_that_loses_a_real_deadlock_is_run_again(mariadb_url, make_store):
    import threading

    from celery_dalga.store import rerun_transient

    store = make_store(mariadb_url)
    a = store.put(spec(body="a", interval="60")).id
    b = store.put(spec(body="b", interval="60")).id
    table, barrier, attempts = store.table.name, threading.Barrier(2, timeout=10), []

    def heavier() -> None:  # modifies rows, so InnoDB picks the other one as the victim
        with store.engine.begin() as conn:
            conn.execute(text(f"UPDATE {table} SET error_count = 1 WHERE id = {b}"))
            barrier.wait()
            conn.execute(text(f"UPDATE {table} SET error_count = 1 WHERE id = {a}"))

    @rerun_transient
    def victim() -> None:
        attempts.append(1)
        with store.engine.begin() as conn:
            conn.execute(text(f"SELECT id FROM {table} WHERE id = {a} FOR UPDATE"))
            if len(attempts) == 1:
                barrier.wait()
            conn.execute(text(f"SELECT id FROM {table} WHERE id = {b} FOR UPDATE"))

    other = threading.Thread(target=heavier)
    other.start()
    victim()
    other.join(30)
    assert len(attempts) == 2
    assert store.get("feeds", "a").error_count == 1


def test_settling_a_task_locks_only_its_own_rows(mariadb_url, make_store):
    """On a small table MariaDB would rather scan (and lock) every row for the settle's join;
    a task must not wait for rows that another transaction holds."""
    import threading

    store = make_store(mariadb_url, policy=Policy(lease=30))
    store.put_many([spec(body=str(i), interval="60", immediate="true") for i in range(40)])
    runs = store.claim(100)
    held, settled = runs[0], []
    with store.engine.connect() as other:
        other.execute(
            text(f"SELECT id FROM {store.table.name} WHERE id = {held.job_id} FOR UPDATE")
        )
        thread = threading.Thread(
            target=lambda: settled.append(
                store.settle([Attempt(r, 200, "HTTP 200", 0.1) for r in runs[1:4]])
            ),
            daemon=True,
        )
        thread.start()
        thread.join(5)
        done_while_held = bool(settled)
        other.rollback()
    thread.join(60)
    assert done_while_held and settled == [[Outcome.DONE] * 3]
