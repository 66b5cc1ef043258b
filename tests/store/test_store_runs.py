"""The run protocol's statements: claim, tokens, leases, fence, settle."""

import threading
from datetime import timedelta

import pytest
from helpers import Clock, answer, spec
from sqlalchemy import text

from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import RETRY_WAIT, Attempt, Outcome, Policy


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


def test_epsilon_skips_a_run_missed_by_too_much(any_db_url, make_store):
    store = make_store(any_db_url, policy=Policy(epsilon=30))
    store.clock = clock = Clock()
    store.put(spec(body="periodic", interval="60"))
    store.put(spec(body="once", one_off="1", interval="60"))
    clock.advance(60 + 31)
    runs = store.claim(10)
    assert [r.body for r in runs] == ["once"]
    assert store.get("feeds", "periodic").next_sched == clock.now + timedelta(seconds=60)


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


def test_settling_a_task_locks_only_its_own_rows(mariadb_url, make_store):
    """On a small table MariaDB would rather scan (and lock) every row for the settle's join;
    a task must not wait for rows that another transaction holds."""

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
