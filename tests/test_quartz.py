"""go-quartz's model for task jobs (celery_dalga.quartz): a task returns Reschedule (a new
payload and/or next run time) or Remove, or raises (backoff); the decisions in runs, the
replacement in the store's settle, and a real worker running examples/quartz_tasks.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from celery import shared_task
from helpers import spec
from test_runs import NOW, POLICY, TOKEN, job
from waiting import wait_until

import celery_dalga
from celery_dalga.client import Client
from celery_dalga.jobs import job_key
from celery_dalga.quartz import Remove, Reschedule
from celery_dalga.runs import Attempt, Outcome, on_answer, record
from celery_dalga.store import Store

AT = NOW + timedelta(minutes=5)


def returned(asks=None, **attempt) -> Attempt:
    """A task's return (delivered) of the job's scheduled run."""
    values = {"status": None, "error": "returned", "duration": 0.1, "ok": True, "asks": asks}
    return Attempt(job().run(NOW, TOKEN), **{**values, **attempt})


# -- the values ------------------------------------------------------------------------------


def test_they_are_celery_dalgas_names():
    assert celery_dalga.Reschedule is Reschedule and celery_dalga.Remove is Remove


@pytest.mark.parametrize(
    "fields",
    [
        {"body": ""},
        {"body": 1},
        {"at": datetime(2026, 6, 1, 12)},  # naive: whose 12:00?
        {"at": "2026-06-01T12:00:00Z"},
        {"at": datetime(1, 1, 1, tzinfo=UTC)},
        {"at": datetime(9999, 1, 1, tzinfo=UTC)},
    ],
)
def test_a_reschedule_that_could_not_be_stored_is_refused_at_once(fields):
    with pytest.raises(ValueError, match="Reschedule's"):
        Reschedule(**fields)


# -- the decisions ---------------------------------------------------------------------------


def test_reschedule_at_replaces_the_next_slot():
    change = on_answer(job(), returned(Reschedule(at=AT)), NOW, POLICY)
    assert change.outcome is Outcome.DONE
    assert (change.values["next_sched"], change.values["next_run"]) == (AT, AT)
    assert "body" not in change.values and "job_key" not in change.values


def test_reschedule_body_gives_the_job_a_new_key_and_its_history_follows():
    attempt = returned(Reschedule(body="2"))
    change = on_answer(job(), attempt, NOW, POLICY)
    assert change.outcome is Outcome.DONE
    assert change.values["body"] == "2" and change.values["job_key"] == job_key("feeds", "2")
    assert change.values["next_sched"] == NOW + timedelta(seconds=60)  # the schedule's slot
    assert change.children_of == job_key("feeds", "2")  # its children moved with it
    assert record(job(), attempt, change, NOW, POLICY, 1)["job_key"] == job_key("feeds", "2")


def test_reschedule_with_the_same_body_changes_no_key():
    change = on_answer(job(), returned(Reschedule(body="1")), NOW, POLICY)
    assert "job_key" not in change.values


def test_a_one_off_job_rescheduled_at_a_time_stays():
    one_off = job(one_off=True, interval=None)
    change = on_answer(one_off, returned(Reschedule(at=AT)), NOW, POLICY)
    assert change.outcome is Outcome.DONE and change.values["next_run"] == AT
    assert on_answer(one_off, returned(Reschedule(body="2")), NOW, POLICY).delete  # no time


def test_remove_deletes_the_job():
    change = on_answer(job(), returned(Remove()), NOW, POLICY)
    assert (change.outcome, change.delete) == (Outcome.DELETED, True)


def test_a_204_deletes_only_when_its_kind_says_so():
    """The http kind's 204 asks for Remove; a remote job's expected 204 is a plain success."""
    remote = returned(status=204)
    assert on_answer(job(), remote, NOW, POLICY).outcome is Outcome.DONE
    http = Attempt(job().run(NOW, TOKEN), 204, "HTTP 204", 0.1)  # ok None: as the status says
    assert on_answer(job(), http, NOW, POLICY).outcome is Outcome.DELETED


def test_a_failed_run_asks_nothing():
    failed = returned(Remove(), ok=False)
    assert on_answer(job(), failed, NOW, POLICY).outcome is Outcome.RETRY


# -- the store -------------------------------------------------------------------------------


def test_settle_replaces_the_job_with_its_new_body_in_one_transaction(any_db_url, make_store):
    """The renamed job keeps its id, schedule and settings; a job that held the new key is
    replaced; the children follow; the attempt goes into the new key's history."""
    store: Store = make_store(any_db_url)
    store.put(spec(body="1", interval="60", immediate="true", retries="3"))
    store.put(spec(body="2", interval="999"))  # holds the key the first one takes
    store.put(spec(path="child", body="c", parent="feeds/1"))
    before = store.get("feeds", "1")
    (run,) = store.claim(10)
    outcome = store.settle([Attempt(run, None, "returned", 0.1, ok=True, asks=Reschedule("2"))])
    assert outcome == [Outcome.DONE]
    assert store.get("feeds", "1") is None
    after = store.get("feeds", "2")
    assert (after.id, after.interval, after.retries) == (before.id, "60", 3)
    assert after.success_count == 1 and not after.running
    assert store.get("child", "c").parent_key == after.key
    history = store.history_of("feeds", "2")
    assert [h["outcome"] for h in history] == ["done"]
    assert store.history_of("feeds", "1") == []


def test_two_runs_of_a_task_renamed_to_one_key_leave_one_job(any_db_url, make_store):
    store = make_store(any_db_url)
    for body in ("a", "b"):
        store.put(spec(body=body, interval="60", immediate="true"))
    runs = sorted(store.claim(10), key=lambda run: run.body)
    asks = Reschedule(body="same")
    store.settle([Attempt(r, None, "returned", 0.1, ok=True, asks=asks) for r in runs])
    assert [j.body for j in store.page()] == ["same"]


# -- a real worker ---------------------------------------------------------------------------

steered: list[str] = []


@shared_task(name="quartz_test.steer")
def steer(body: str) -> object:
    """Does as the body says: "remove", "raise", "later" (an hour on), anything else: done."""
    steered.append(body)
    if body == "remove":
        return Remove()
    if body == "raise":
        raise RuntimeError("asked to raise")
    if body == "later":
        return Reschedule(at=datetime.now(UTC) + timedelta(hours=1))
    return "done"


def test_tasks_reschedule_remove_and_raise_through_a_real_worker(make_stack):
    import examples.quartz_tasks  # noqa: F401  (registers quartz.countdown)

    stack = make_stack(allowed_tasks="quartz.countdown, quartz_test.steer")
    put = stack.api.put("/jobs/count/2?interval=3600&immediate=true&task=quartz.countdown")
    assert put.status_code == 201
    for body in ("remove", "raise", "later"):
        answer = stack.api.put(
            f"/jobs/steer/{body}?interval=3600&immediate=1&task=quartz_test.steer"
        )
        assert answer.status_code == 201
    # countdown: 2, then 1 and 0 a second apart (each a new body: the job is replaced), gone
    wait_until(lambda: stack.store.page(path="count") == [], 20, "the countdown to end")
    history = Client(stack.settings, store=stack.store).history
    assert [h["outcome"] for h in history("count", "1")] == ["done"]  # the run of "2"
    assert sorted(h["outcome"] for h in history("count", "0")) == ["deleted", "done"]
    wait_until(lambda: stack.store.get("steer", "remove") is None)
    wait_until(lambda: stack.store.get("steer", "raise").attempts >= 1)
    raised = stack.store.get("steer", "raise")
    assert "RuntimeError: asked to raise" in raised.last_error
    wait_until(lambda: stack.store.get("steer", "later").success_count == 1)
    later = stack.store.get("steer", "later")
    assert timedelta(minutes=59) < later.next_sched - datetime.now(UTC) <= timedelta(hours=1)
    assert stack.endpoint.calls == []


@shared_task(name="quartz_test.big")
def big(body: str) -> Reschedule:
    """Asks for a body longer than the test's max_body."""
    return Reschedule(body="x" * 11)


def test_a_reschedule_whose_body_cannot_be_a_jobs_fails(make_stack):
    stack = make_stack(allowed_tasks="quartz_test.big", max_body=10)
    stack.api.put("/jobs/big/1?interval=3600&immediate=1&task=quartz_test.big&retries=0")
    wait_until(lambda: (stack.store.get("big", "1").last_error or "").find("longer than") >= 0)
    assert stack.store.get("big", "x" * 11) is None
