"""Security of input (issue 15): dependent jobs cannot form a loop (not even by a race, and a
loop already in the table cannot hang DELETE), schedules far from now are fast and bounded,
schedules without a next slot are refused at PUT and end cleanly later, task and exchange
jobs obey the allow-lists, SQLite files are private, `dalga import` checks as PUT does, and
error messages quote only a prefix of a bad value."""

from __future__ import annotations

import io
import json
import os
import stat
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from helpers import api_client, settings_on, unique_table
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from celery_dalga.bulk import BadRecord, import_jobs
from celery_dalga.client import Client
from celery_dalga.jobs import Run, job_key
from celery_dalga.process import store_for
from celery_dalga.runs import Attempt, Outcome, Policy
from celery_dalga.schedules import (
    Repeat,
    Schedule,
    next_repeat,
    parse_duration,
    parse_location,
    repeat_slot,
)
from celery_dalga.spec import parse_spec
from celery_dalga.tasks import call_tasks, publish

UTC_ZONE = parse_location("UTC")
LA = parse_location("America/Los_Angeles")


# -- 1. dependent jobs never form a loop --------------------------------------------------


def _put(api, url: str, answers: list, barrier: threading.Barrier) -> None:
    barrier.wait()
    answers.append(api.put(url))


def test_two_concurrent_puts_naming_each_other_as_parent_never_make_a_loop(mariadb_url):
    with api_client(mariadb_url) as api:
        for i in range(40):
            a, b = f"race/a{i}", f"race/b{i}"
            assert api.put(f"/jobs/{a}?interval=60").status_code == 201
            assert api.put(f"/jobs/{b}?interval=60").status_code == 201
            answers: list = []
            barrier = threading.Barrier(2)
            threads = [
                threading.Thread(
                    target=_put,
                    args=(api.application.test_client(), f"/jobs/{x}?parent={y}", answers, barrier),
                )
                for x, y in ((a, b), (b, a))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            codes = sorted(answer.status_code for answer in answers)
            assert codes in ([201, 400], [201, 409]), (i, [a.get_json() for a in answers])
            refused = next(answer for answer in answers if answer.status_code != 201)
            assert "depend on itself" in refused.get_json()["error"]
        jobs = {job.key: job for job in api.store.page(limit=1000)}
        for job in jobs.values():  # no loop anywhere
            seen, key = set(), job.parent_key
            while key is not None:
                assert key not in seen and key != job.key
                seen.add(key)
                key = jobs[key].parent_key


def _set_parent(store, child: str, parent: str) -> None:
    with store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {store.table.name} SET parent_key = :parent WHERE job_key = :child"),
            {"parent": job_key(*parent.split("/")), "child": job_key(*child.split("/"))},
        )


def test_a_loop_already_in_the_table_cannot_hang_delete_or_put(any_db_url):
    with api_client(any_db_url) as api:
        for name in ("loop/a", "loop/b", "loop/c"):
            assert api.put(f"/jobs/{name}?interval=60").status_code == 201
        _set_parent(api.store, "loop/a", "loop/b")  # written by hand: a -> b -> a
        _set_parent(api.store, "loop/b", "loop/a")
        put = api.put("/jobs/loop/d?parent=loop/a")
        assert put.status_code == 400 and "ancestors" in put.get_json()["error"]
        answers: list = []
        deleting = threading.Thread(
            target=lambda: answers.append(api.delete("/jobs/loop/a")), daemon=True
        )
        deleting.start()
        deleting.join(10)
        assert not deleting.is_alive(), "DELETE of a job in a loop hangs"
        assert answers[0].status_code == 204
        assert api.get("/jobs/loop/b").status_code == 404
        assert api.get("/jobs/loop/c").status_code == 200


def test_a_loop_already_in_the_table_runs_no_faster_than_min_interval(any_db_url, make_store):
    store = make_store(any_db_url, policy=Policy(min_interval=30))
    store.put(parse_spec("loop", "a", {"interval": "60", "immediate": "true"}))
    store.put(parse_spec("loop", "b", {"interval": "60"}))
    _set_parent(store, "loop/a", "loop/b")  # written by hand, as an older version could
    _set_parent(store, "loop/b", "loop/a")
    for body in ("a", "b"):  # a runs, wakes b (its child); b runs, wakes a
        (run,) = store.claim(10)
        assert run.body == body
        assert store.settle([Attempt(run, 200, "HTTP 200", 0.01)]) == [Outcome.DONE]
    assert store.claim(10) == []  # a ran a moment ago: not due again before 30 s
    woken = store.get("loop", "a")
    assert woken.next_run >= store.now() + timedelta(seconds=29)
    assert woken.triggered_at == woken.next_run


def test_a_job_cannot_be_its_own_parent_or_have_a_missing_one(any_db_url):
    with api_client(any_db_url) as api:
        own = api.put("/jobs/self/x?parent=self/x")
        assert own.status_code == 400 and "depend on itself" in own.get_json()["error"]
        missing = api.put("/jobs/child/x?parent=nobody/x")
        assert missing.status_code == 400 and missing.get_json()["parameter"] == "parent"
        assert api.get("/jobs/self/x").status_code == 404
        assert api.get("/jobs/child/x").status_code == 404


# -- 2. repeats far in the past are arithmetic, and bounded --------------------------------


def _stepped(repeat: Repeat, after: datetime, location) -> datetime | None:
    """next_repeat the slow way: slot after slot from the start."""
    index = 0
    while repeat_slot(repeat, index, location) <= after:
        index += 1
    if repeat.count is not None and index >= repeat.count:
        return None
    return repeat_slot(repeat, index, location)


@pytest.mark.parametrize("year", [1800, 1970])
@pytest.mark.parametrize("period", ["PT1S", "P1D", "P1M", "P1Y", "P1DT1S"])
def test_the_next_slot_of_an_old_repeat_is_fast_and_right(year, period):
    repeat = Repeat(None, datetime(year, 1, 31, 5, 0, 7, tzinfo=UTC), parse_duration(period))
    after = datetime(2026, 6, 1, 12, 30, tzinfo=UTC)
    started = time.perf_counter()
    slot = next_repeat(repeat, after, UTC_ZONE)
    assert time.perf_counter() - started < 0.05
    assert slot is not None and slot > after
    assert slot - after <= parse_duration(period).approx()
    previous = next_repeat(repeat, slot - timedelta(microseconds=1), UTC_ZONE)
    assert previous == slot  # no slot between after and slot
    assert repeat_slot(repeat, 0, UTC_ZONE) == repeat.start


@settings(max_examples=200, deadline=None)
@given(
    start=st.datetimes(datetime(1970, 1, 1), datetime(2030, 1, 1)),
    period=st.sampled_from(["PT1S", "PT7M", "P1D", "P1M", "P2W", "P1Y", "P1MT5H", "P3D"]),
    offset=st.integers(-(10**6), 3 * 10**7),
    count=st.one_of(st.none(), st.integers(1, 400)),
    zone=st.sampled_from([UTC_ZONE, LA]),
)
def test_next_repeat_agrees_with_stepping(start, period, offset, count, zone):
    duration = parse_duration(period)
    repeat = Repeat(count, start.replace(tzinfo=zone).astimezone(UTC), duration)
    after = repeat.start + timedelta(seconds=offset)
    if after - repeat.start > duration.approx() * 2000:
        after = repeat.start + duration.approx() * 2000  # keep the stepping short
    assert next_repeat(repeat, after, zone) == _stepped(repeat, after, zone)


@pytest.mark.parametrize(
    "query",
    [
        "schedule=R/1800-01-01T00:00:00Z/P1D",
        "schedule=R/0001-01-01T00:00:00Z/PT1S",
        "schedule=R/9500-01-01T00:00:00Z/P1D",
        "schedule=R2000/8990-01-01T00:00:00Z/P1Y",
        "schedule=R99999999999/2026-01-01T00:00:00Z/P1D",
    ],
)
def test_repeats_out_of_range_are_a_400(any_db_url, query):
    with api_client(any_db_url) as api:
        started = time.perf_counter()
        answer = api.put(f"/jobs/range/x?{query}")
        assert time.perf_counter() - started < 1
        assert answer.status_code == 400, answer.get_json()
        assert answer.get_json()["parameter"] == "schedule"
        assert api.get("/jobs/range/x").status_code == 404


# -- 3. no next slot: a 400 at PUT, a clean end later ---------------------------------------


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("cron=0 0 30 2 *", "cron"),
        ("cron=0 0 0 31 4 ?", "cron"),
        ("schedule=R1000/8995-01-01T00:00:00Z/P5Y", "schedule"),
        ("first-run=9999-12-31T23:59:59-05:00&interval=60", "first-run"),
        ("first-run=9999-12-31T00:00:00Z&interval=60", "first-run"),
    ],
)
def test_a_schedule_without_a_next_slot_is_a_400(any_db_url, query, parameter):
    with api_client(any_db_url) as api:
        answer = api.put(f"/jobs/never/x?{query}")
        assert answer.status_code == 400, answer.get_json()
        assert answer.get_json()["parameter"] == parameter
        assert api.get("/jobs/never/x").status_code == 404


@pytest.mark.parametrize(
    ("schedule", "sched"),
    [
        (Schedule(cron="0 0 30 2 *"), datetime(2026, 1, 1, tzinfo=UTC)),
        (Schedule(interval=parse_duration("P1D")), datetime(9999, 12, 31, 1, tzinfo=UTC)),
        (Schedule(interval=parse_duration("P100Y")), datetime(9950, 1, 1, tzinfo=UTC)),
        (Schedule(cron="0 0 * * *"), datetime(9999, 12, 31, 1, tzinfo=UTC)),
    ],
)
@pytest.mark.parametrize("fixed_rate", [False, True])
def test_a_schedule_without_a_next_slot_is_done(schedule, sched, fixed_rate):
    assert schedule.next(sched, sched, fixed_rate) is None


def test_a_stored_job_without_a_next_slot_ends_cleanly_at_settle(any_db_url, make_store):
    store = make_store(any_db_url)
    store.put(parse_spec("never", "x", {"interval": "60", "immediate": "true"}))
    with store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {store.table.name} SET cron = '0 0 30 2 *', {_quoted(store)} = NULL")
        )
    (run,) = store.claim(10)
    assert store.settle([Attempt(run, 200, "", 0.01)]) == [Outcome.DELETED]
    assert store.get("never", "x") is None


def _quoted(store) -> str:
    return store.engine.dialect.identifier_preparer.quote("interval")


# -- 4. task and exchange jobs obey the allow-lists ----------------------------------------


@pytest.fixture
def app_with(tmp_path):
    """app_with(**settings) -> a test client of the API with these settings, on SQLite."""
    from webapi import create_app

    def make(**extra):
        settings = settings_on(f"sqlite:///{tmp_path}/jobs.sqlite3", unique_table(), **extra)
        store_for(settings).create_table()
        return create_app(settings).test_client()

    return make


def test_task_jobs_call_only_allowed_tasks(app_with):
    api = app_with(allowed_tasks="dalga_test.record, other.task")
    refused = api.put("/jobs/t/1?interval=60&task=celery.accumulate")
    assert refused.status_code == 400 and refused.get_json()["parameter"] == "task"
    assert "allowed_tasks" in refused.get_json()["error"]
    assert api.get("/jobs/t/1").status_code == 404
    assert api.put("/jobs/t/1?interval=60&task=dalga_test.record").status_code == 201
    nothing = app_with().put("/jobs/t/2?interval=60&task=dalga_test.record")
    assert nothing.status_code == 400 and "allowed_tasks" in nothing.get_json()["error"]


def test_exchange_jobs_use_only_allowed_exchanges(app_with):
    api = app_with(publish_url="amqp://guest:guest@127.0.0.1:5672//", allowed_exchanges="jobs")
    for name in ("amq.default", "amq.topic", "celery"):
        refused = api.put(f"/jobs/celery/1?interval=60&exchange={name}")
        assert refused.status_code == 400 and refused.get_json()["parameter"] == "exchange"
        assert "allowed_exchanges" in refused.get_json()["error"]
    assert api.put("/jobs/feeds/1?interval=60&exchange=jobs").status_code == 201


def _run(path: str = "celery", **kind) -> Run:
    return Run(1, "k" * 64, path, "body", datetime.now(UTC), "t" * 32, **kind)


def test_a_task_no_longer_allowed_is_not_called_at_delivery():
    import celery_test_tasks

    settings = settings_on("sqlite://", unique_table(), allowed_tasks="other.task")
    before = list(celery_test_tasks.received)
    (answer,) = call_tasks(settings, [_run(task="dalga_test.record")], 0, celery_test_tasks.app)
    assert answer.status is None and "allowed_tasks" in answer.error
    assert celery_test_tasks.received == before
    allowed = settings_on("sqlite://", unique_table(), allowed_tasks="dalga_test.record")
    (answer,) = call_tasks(allowed, [_run(task="dalga_test.record")], 0, celery_test_tasks.app)
    assert answer.status == 200 and celery_test_tasks.received == [*before, "body"]


def test_an_exchange_no_longer_allowed_is_not_published_to(rabbitmq_url):
    settings = settings_on(
        "sqlite://",
        unique_table(),
        publish_url=rabbitmq_url,
        publish_exchange="amq.default",
        allowed_exchanges="jobs",
    )
    nobody = f"nobody-{uuid.uuid4().hex}"
    runs = [_run(exchange="amq.default"), _run(nobody)]
    refused, trusted = publish(settings, runs, 0, None)
    assert refused.status is None and "allowed_exchanges" in refused.error
    assert "Unroutable" in trusted.error  # publish_exchange, the operator's, was tried


# -- 5. the SQLite files are private ---------------------------------------------------------


@pytest.fixture
def open_umask():
    """A umask that would make files readable by all, as on most machines."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_fresh_sqlite_jobs_database_is_private(tmp_path, open_umask):
    url = f"sqlite:///{tmp_path}/jobs.sqlite3"
    settings = settings_on(url, unique_table())
    store = store_for(settings)
    store.create_table()
    store.put(parse_spec("secret", "body", {"interval": "60"}))
    files = sorted(tmp_path.glob("jobs.sqlite3*"))
    assert {f.name for f in files} >= {"jobs.sqlite3", "jobs.sqlite3-wal", "jobs.sqlite3-shm"}
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}
    store.engine.dispose()


def test_the_embedded_brokers_file_is_private(tmp_path, open_umask):
    from celery_dalga.celery import make_app

    broker = tmp_path / "broker.sqlite3"
    settings = settings_on(
        f"sqlite:///{tmp_path}/jobs.sqlite3", unique_table(), broker_url=f"sqla+sqlite:///{broker}"
    )
    app = make_app(settings)
    with app.connection_for_write() as conn:
        conn.default_channel.basic_publish(
            conn.default_channel.prepare_message("secret body"), "", settings.queue
        )
    files = sorted(tmp_path.glob("broker.sqlite3*"))
    assert broker in files
    assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


# -- 6. `dalga import` checks as PUT does ---------------------------------------------------


def _import(store, *records, **extra) -> int:
    lines = "\n".join(json.dumps(record) for record in records)
    client = Client(settings_on("sqlite://", unique_table(), **extra), store=store)
    return import_jobs(client, io.StringIO(lines), "jsonl", progress=False)


def _put_error(api, url: str) -> str:
    answer = api.put(url)
    assert answer.status_code == 400
    return answer.get_json()["error"]


@pytest.mark.parametrize(
    ("record", "url"),
    [
        ({"interval": "PT0.5S"}, "interval=PT0.5S"),
        ({"schedule": "R/2030-01-01T00:00:00Z/PT0.5S"}, "schedule=R/2030-01-01T00:00:00Z/PT0.5S"),
        ({"interval": 60, "retry-interval": "PT0.1S"}, "interval=60&retry-interval=PT0.1S"),
        ({"parent": "nobody/x"}, "parent=nobody/x"),
        ({"parent": "p/x"}, "parent=p/x"),
        ({"interval": 60, "task": "celery.accumulate"}, "interval=60&task=celery.accumulate"),
        ({"interval": 60, "exchange": "amq.default"}, "interval=60&exchange=amq.default"),
        ({"cron": "0 0 30 2 *"}, "cron=0 0 30 2 *"),
    ],
)
def test_import_refuses_what_put_refuses_with_the_same_message(any_db_url, make_store, record, url):
    store = make_store(any_db_url)
    with api_client(any_db_url) as api:
        expected = _put_error(api, f"/jobs/p/x?{url}")
    with pytest.raises(BadRecord) as refused:
        _import(
            store, {"path": "ok", "body": "1", "interval": 60}, {"path": "p", "body": "x"} | record
        )
    assert str(refused.value) == f"line 2: {expected}"
    assert store.get("p", "x") is None


def test_import_refuses_a_loop_between_lines_and_takes_parents_from_earlier_lines(
    any_db_url, make_store
):
    store = make_store(any_db_url)
    assert (
        _import(
            store,
            {"path": "a", "body": "1", "interval": 60},
            {"path": "b", "body": "1", "parent": "a/1"},
            {"path": "c", "body": "1", "parent": "b/1"},
        )
        == 3
    )
    assert store.get("c", "1").parent_key == job_key("b", "1")
    with pytest.raises(BadRecord, match="line 2: parent: the job would depend on itself"):
        _import(
            store,
            {"path": "x", "body": "1", "interval": 60},
            {"path": "a", "body": "1", "parent": "c/1"},
        )
    assert store.get("a", "1").parent_key is None and store.get("x", "1") is None


def test_import_leaves_an_existing_job_as_it_is_with_if_absent(any_db_url, make_store):
    store = make_store(any_db_url)
    _import(store, {"path": "keep", "body": "1", "interval": 60})
    kept = store.get("keep", "1")
    _import(
        store,
        {"path": "keep", "body": "1", "interval": 120, "if-absent": True},
        {"path": "new", "body": "1", "interval": 120, "if-absent": True},
    )
    assert store.get("keep", "1") == kept
    assert store.get("new", "1") is not None


def test_import_takes_allowed_tasks_and_exchanges(any_db_url, make_store):
    store = make_store(any_db_url)
    written = _import(
        store,
        {"path": "t", "body": "1", "interval": 60, "task": "dalga_test.record"},
        {"path": "e", "body": "1", "interval": 60, "exchange": "jobs"},
        allowed_tasks="dalga_test.record",
        allowed_exchanges="jobs",
        publish_url="amqp://guest:guest@127.0.0.1:5672//",
    )
    assert written == 2 and store.get("t", "1").task == "dalga_test.record"


# -- 7. errors quote a prefix of a bad value -----------------------------------------------

LONG = "x" * 10_000


@pytest.mark.parametrize(
    "query",
    [
        f"interval=P{'0' * 10_000}1D",
        f"interval=PT{'0' * 200}1S",
        f"interval={LONG}",
        f"cron={LONG}",
        f"schedule={LONG}",
        f"schedule=R/{LONG}/PT1M",
        f"interval=60&location={LONG}",
        f"first-run={LONG}&one-off=1",
        f"interval=60&exchange={LONG}",
        f"interval=60&task={LONG}",
        f"parent={LONG}/x",
        f"interval=60&retries={'9' * 10_000}",
        f"interval=60&retries={LONG}",
        f"interval=60&one-off={LONG}",
        f"interval=60&if-absent={LONG}",
        f"interval=60&retry-interval={LONG}",
        f"interval=60&{LONG}=1",
    ],
)
def test_an_over_long_value_is_a_short_400_and_never_reaches_the_database(mariadb_url, query):
    with api_client(mariadb_url) as api:
        answer = api.put(f"/jobs/long/x?{query}")
        assert answer.status_code == 400, answer.get_json()
        assert "parameter" in answer.get_json()  # refused by validation, not by the database
        assert len(answer.get_json()["error"]) < 400
        assert api.get("/jobs/long/x").status_code == 404
