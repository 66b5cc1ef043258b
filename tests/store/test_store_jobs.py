"""Jobs on MariaDB, PostgreSQL and SQLite: PUT, get, list, trigger, pause, delete."""

from dataclasses import replace
from datetime import timedelta

from helpers import answer, spec

from celery_dalga.runs import Outcome


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


def test_a_jobs_kind_and_options_are_kept(store, clock):
    options = {"method": "PATCH", "headers": {"X-Key": "ü"}, "retries": [1, 2.5, None, True]}
    job = store.put(replace(spec(interval="60"), kind="kala", options=options))
    assert (job.kind, job.options) == ("kala", options)
    assert store.get("feeds", "1") == job
    assert [(j.kind, j.options) for j in store.page()] == [("kala", options)]
    assert store.put(spec(interval="60")).kind is None  # a PUT replaces them, as exchange
    assert store.get("feeds", "1").options is None


def test_put_many_keeps_each_jobs_kind_and_options(store, clock):
    specs = [
        replace(spec(body=str(i), interval="60"), kind=kind, options=options)
        for i, (kind, options) in enumerate(
            [("kala", {"url": "http://x/"}), (None, None), ("shell", {"args": ["a", 'ü "b"']})]
        )
    ]
    specs.append(replace(spec(body="3", interval="60", if_absent="true"), kind="kala", options={}))
    assert store.put_many(specs) == 4
    kept = {j.body: (j.kind, j.options) for j in store.page()}
    assert kept == {
        "0": ("kala", {"url": "http://x/"}),
        "1": (None, None),
        "2": ("shell", {"args": ["a", 'ü "b"']}),
        "3": ("kala", {}),
    }
    store.put_many([replace(specs[0], kind="other", options={"n": 1}), specs[1]])
    assert (store.get("feeds", "0").kind, store.get("feeds", "0").options) == ("other", {"n": 1})
