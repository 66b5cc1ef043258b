"""Kala's and go-quartz's features on MariaDB, PostgreSQL and SQLite: run history and stats,
dependent jobs, per-job retries and epsilon, delete all, insert-if-absent."""

from datetime import timedelta

import pytest
from helpers import Clock, answer, settings_on, unique_table

from celery_dalga import Client, InvalidParameter, JobNotFound, process
from celery_dalga.runs import Outcome
from celery_dalga.store import JobExists


@pytest.fixture
def client(any_db_url):
    made = Client(settings_on(any_db_url, unique_table(), history_runs=3, lease=30))
    made.store.create_table()
    made.store.clock = Clock()
    yield made
    process.stop()
    made.store.drop_table()


def run_once(client, status=200, advance=1.0):
    """Claim whatever is due, answer every run with status, then let time pass."""
    runs = client.store.claim(100)
    outcomes = [answer(client.store, run, status) for run in runs]
    client.store.clock.advance(advance)
    return runs, outcomes


# -- history -------------------------------------------------------------------------------


def test_history_keeps_the_last_attempts_of_each_job_newest_first(client):
    clock = client.store.clock
    client.schedule("feeds", "1", interval=10, immediate=True)
    client.schedule("feeds", "2", interval=10, immediate=True)
    run_once(client, 500)
    for _ in range(4):
        clock.advance(10)
        run_once(client, 200)
    history = client.history("feeds", "1")
    assert len(history) == 3  # history_runs
    assert [a["outcome"] for a in history] == ["done", "done", "done"]
    assert history[0]["finished"] > history[1]["finished"] > history[2]["finished"]
    first = history[0]
    assert (first["status"], first["error"], first["manual"]) == (200, None, False)
    assert first["started"] <= first["finished"] and first["sched"] <= first["started"]
    assert len(client.history("feeds", "2")) == 3


def test_a_one_off_jobs_history_outlives_it_and_age_prunes_it(client):
    client.schedule("remind", "1", one_off=True, immediate=True)
    run_once(client, 500)
    client.store.clock.advance(5)
    run_once(client, 200)
    assert client.get("remind", "1") is None
    history = client.history("remind", "1")
    assert [(a["status"], a["outcome"]) for a in history] == [(200, "deleted"), (500, "retry")]
    assert history[1]["error"] == "HTTP 500"
    client.store.clock.advance(client.store.policy.history_ttl)
    assert client.store.prune_history() == 2
    assert client.history("remind", "1") == []


def test_kala_stats_per_job_and_for_the_app(client):
    client.schedule("feeds", "1", interval=10, immediate=True)
    run_once(client, 503)
    client.store.clock.advance(5)
    run_once(client, 200)
    (stat,) = client.stats("feeds", "1")
    job = client.get("feeds", "1")
    assert stat["JobId"] == str(job.id) and stat["NumberOfRetries"] == 1 and stat["Success"]
    assert stat["ExecutionDuration"] >= 5e9  # from the first attempt's start to the last's end
    status = client.status()
    assert (status["success_count"], status["error_count"]) == (1, 1)
    with pytest.raises(JobNotFound):
        client.stats("feeds", "nothing")


# -- dependent jobs ------------------------------------------------------------------------


def test_children_run_after_their_parent_succeeds_one_after_another_skipping_disabled(client):
    """Siblings one after another in creation order; a child's own children start after it
    succeeds, alongside its next sibling."""
    client.schedule("parent", "p", interval=60, immediate=True)
    for child in ("c1", "c2", "c3", "c4"):
        assert client.schedule("child", child, parent="parent/p").next_run is None
    client.schedule("grandchild", "g", parent=("child", "c1"))
    client.pause("child", "c2")
    rounds = [sorted(f"{r.path}/{r.body}" for r in run_once(client)[0]) for _ in range(6)]
    assert rounds == [
        ["parent/p"],
        ["child/c1"],
        ["child/c3", "grandchild/g"],
        ["child/c4"],
        [],
        [],
    ]
    assert client.get("child", "c2").success_count == 0


def test_children_do_not_run_when_their_parent_fails(client):
    client.schedule("parent", "p", interval=60, immediate=True)
    client.schedule("child", "c", parent="parent/p")
    runs, outcomes = run_once(client, 500)
    assert outcomes == [Outcome.RETRY]
    assert (
        client.get("child", "c").next_run is None and client.get("child", "c").triggered_at is None
    )


def test_deleting_a_parent_deletes_its_children_and_theirs(client):
    client.schedule("parent", "p", interval=60)
    client.schedule("child", "c", parent="parent/p")
    client.schedule("grandchild", "g", parent="child/c")
    client.schedule("other", "o", interval=60)
    assert client.cancel("parent", "p") is True
    assert [j.path for j in client.list().jobs] == ["other"]


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"parent": "nobody/here"}, "parent"),
        ({"parent": "parent/p", "interval": 60}, "interval"),
        ({"parent": "no-slash"}, "parent"),
    ],
)
def test_a_dependent_job_needs_a_parent_and_no_schedule(client, kwargs, parameter):
    client.schedule("parent", "p", interval=60)
    with pytest.raises(InvalidParameter) as caught:
        client.schedule("child", "c", **kwargs)
    assert caught.value.parameter == parameter


def test_a_job_cannot_depend_on_itself(client):
    client.schedule("a", "1", interval=60)
    client.schedule("b", "1", parent="a/1")
    with pytest.raises(InvalidParameter, match="itself"):
        client.schedule("a", "1", parent="b/1")


# -- per-job retries, retry interval, epsilon ---------------------------------------------


def test_a_jobs_retries_abandon_the_run_and_it_goes_on_to_its_next(client):
    clock = client.store.clock
    job = client.schedule("flaky", "1", interval=60, immediate=True, retries=1, retry_interval=5)
    assert (job.retries, job.retry_interval) == (1, 5.0)
    first_sched = job.next_sched
    runs, outcomes = run_once(client, 500, advance=0)
    assert outcomes == [Outcome.RETRY]
    assert client.get("flaky", "1").next_run == clock.now + timedelta(seconds=5)
    clock.advance(5)
    runs, outcomes = run_once(client, 500, advance=0)
    assert outcomes == [Outcome.ABANDONED]
    job = client.get("flaky", "1")
    assert job.next_sched == job.next_run == clock.now + timedelta(seconds=60)
    assert (job.attempts, job.error_count, job.enabled) == (0, 2, True)
    assert job.next_sched != first_sched


def test_a_one_off_job_out_of_retries_is_disabled_and_kept(client):
    client.schedule("once", "1", one_off=True, immediate=True, retries=0)
    assert run_once(client, 500)[1] == [Outcome.GAVE_UP]
    job = client.get("once", "1")
    assert not job.enabled and job.last_error == "HTTP 500"


def test_a_jobs_epsilon_skips_its_late_runs(client):
    clock = client.store.clock
    client.schedule("strict", "1", interval=60, epsilon="PT10S")
    client.schedule("lenient", "1", interval=60)
    clock.advance(60 + 30)
    skipped_at = clock.now
    runs, _ = run_once(client)
    assert [r.path for r in runs] == ["lenient"]
    assert client.get("strict", "1").next_sched == skipped_at + timedelta(seconds=60)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"retries": -1}, "retries"),
        ({"retries": 5000}, "retries"),
        ({"retry_interval": "P1D"}, "retry-interval"),
        ({"epsilon": "soon"}, "epsilon"),
        ({"task": "not a task"}, "task"),
    ],
)
def test_bad_per_job_settings_are_named(client, kwargs, parameter):
    with pytest.raises(InvalidParameter) as caught:
        client.schedule("a", "1", interval=60, **kwargs)
    assert caught.value.parameter == parameter


# -- delete all, insert-if-absent ----------------------------------------------------------


def test_delete_all_in_chunks(client):
    for i in range(25):
        client.schedule("many", str(i), interval=60)
    assert client.store.delete_all(chunk=10) == 25
    assert client.list().jobs == []


def test_insert_if_absent_leaves_an_existing_job_as_it_is(client):
    first = client.schedule("once", "1", interval=60, if_absent=True)
    with pytest.raises(JobExists) as caught:
        client.schedule("once", "1", interval=5, if_absent=True)
    assert caught.value.job.interval == "60"
    assert client.get("once", "1").next_sched == first.next_sched
