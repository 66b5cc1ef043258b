"""Each job's last attempts, as settle writes them and history_of reads them."""

from datetime import timedelta

from helpers import spec

from celery_dalga.runs import Attempt, Policy


def test_a_tasks_attempts_go_into_their_jobs_history(any_db_url, make_store):
    store = make_store(any_db_url, policy=Policy(lease=30, history_runs=2))
    for body in ("a", "b"):
        store.put(spec(body=body, interval="10", immediate="true"))
    runs = {r.body: r for r in store.claim(10)}
    store.settle(
        [
            Attempt(runs["a"], 200, "HTTP 200", 0.5),
            Attempt(runs["b"], 500, "HTTP 500", 1.5),
        ],
        instance_id=7,
    )
    (a,) = store.history_of("feeds", "a")
    (b,) = store.history_of("feeds", "b")
    assert (a["status"], a["error"], a["outcome"], a["instance_id"]) == (200, None, "done", 7)
    assert (b["status"], b["error"], b["outcome"]) == (500, "HTTP 500", "retry")
    assert (a["sched"], a["manual"]) == (runs["a"].sched, False)
    assert a["finished"] - a["started"] == timedelta(seconds=0.5)
    assert store.now() - a["finished"] < timedelta(seconds=5)
