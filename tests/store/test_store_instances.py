"""Instances' heartbeats, and the table's status."""

import logging
import threading

from helpers import spec
from sqlalchemy import text


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
