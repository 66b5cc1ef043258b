"""What Dalga v4.0.1's own tests assert, ported where celery-dalga means the same thing:
internal/scheduler TestSchedHeader, client_test TestEnableScheduling, internal/table
TestAddJob and cluster_test's "run at most once". Where our semantics differ the test says so
(docs/coming-from-dalga.md, "What is still different")."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from helpers import settings_on
from waiting import wait_until

from celery_dalga.jobs import Run, rfc3339
from celery_dalga.kinds.http import callback_post
from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import Attempt, Outcome, Policy
from celery_dalga.spec import parse_spec
from celery_dalga.wire import job_json

LA = ZoneInfo("America/Los_Angeles")
GO_RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)$")


class Clock:
    """The store's clock, moved by hand (Dalga's tests set a test clock the same way)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def sqlite_store(make_store, tmp_path):
    def make(**policy):
        return make_store(f"sqlite:///{tmp_path}/jobs.sqlite3", policy=Policy(**policy))

    return make


def settle(store, run: Run, status: int) -> Outcome:
    return store.settle([Attempt(run, status, f"HTTP {status}", 0.1)])[0]


# -- the format: Go's time.RFC3339 on the job's wall clock ---------------------------------


@pytest.mark.parametrize(
    ("instant", "location", "written"),
    [
        (
            datetime(2026, 7, 1, 14, 44, 10, 999999, tzinfo=UTC),
            "Europe/Istanbul",
            "2026-07-01T17:44:10+03:00",
        ),
        (datetime(2026, 7, 1, 14, 44, 10, 500000, tzinfo=UTC), "UTC", "2026-07-01T14:44:10Z"),
        (datetime(2026, 1, 15, 8, 0, tzinfo=UTC), "Europe/London", "2026-01-15T08:00:00Z"),
        (
            datetime(2026, 7, 1, 8, 0, tzinfo=UTC),
            "America/Los_Angeles",
            "2026-07-01T01:00:00-07:00",
        ),
        (datetime(2026, 1, 1, 8, 0, tzinfo=UTC), "Asia/Kolkata", "2026-01-01T13:30:00+05:30"),
    ],
)
def test_times_are_written_as_go_formats_time_rfc3339(instant, location, written):
    assert rfc3339(instant, location) == written  # truncated, as Go's Format truncates
    assert GO_RFC3339.match(written)


def test_a_callback_has_dalgas_headers_and_a_stable_idempotency_key():
    sched = datetime(2026, 7, 1, 14, 44, 10, 123456, tzinfo=UTC)
    run = Run(1, "k" * 64, "feeds", "42", sched, "t" * 32, location="Europe/Istanbul")
    settings = settings_on("sqlite://", "t", "http://127.0.0.1:1/")
    headers = callback_post(settings, run, 7).headers
    assert "Content-Type: text/plain" in headers
    assert "Dalga-Sched: 2026-07-01T17:44:10+03:00" in headers
    assert "Dalga-Instance: 7" in headers
    # the key is what it was before the header changed: of the instant to the microsecond
    assert f"Idempotency-Key: {run.idempotency_key}" in headers
    assert run.idempotency_key == "f1afb1690a90cbbedebeea97f5ed1a3d"


# -- internal/scheduler/scheduler_test.go TestSchedHeader ----------------------------------


def test_sched_header_is_the_rfc3339_next_run_on_the_first_call_and_the_retry(make_stack):
    """Dalga's endpoint always answers 500; `dalga-sched` equals nextRun.Format(RFC3339)."""
    stack = make_stack(retry_interval=0.3)
    stack.endpoint.script["sched"] = [500, 500]
    first = (datetime.now(UTC) + timedelta(seconds=1)).astimezone(LA).replace(microsecond=0)
    written = first.isoformat()
    put = stack.api.put(
        "/jobs/sched/1", data={"one-off": "true", "first-run": written, "location": str(LA)}
    )
    assert put.status_code == 201 and put.get_json()["next_sched"] == written
    calls = stack.endpoint.wait_for("sched", 2, timeout=20)
    assert [c.sched for c in calls[:2]] == [written, written]
    assert all(c.content_type == "text/plain" for c in calls)
    assert calls[0].idempotency_key == calls[1].idempotency_key


# -- client_test.go TestEnableScheduling ----------------------------------------------------

START = datetime(2020, 8, 29, 15, 47, tzinfo=LA)
HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("fixed", "success", "disable_at", "enable_at", "expect_run_at"),
    [
        pytest.param(False, True, 2 * HOUR, 3 * HOUR, 6 * HOUR, id="brief-pause"),
        pytest.param(True, True, 2 * HOUR, 3 * HOUR, 6 * HOUR, id="brief-pause-fixed"),
        pytest.param(
            False,
            False,
            HOUR + timedelta(seconds=30),
            HOUR + timedelta(seconds=45),
            HOUR + timedelta(minutes=1),
            id="brief-pause-during-retry",
        ),
        # Dalga: 6 h (resuming with fixed intervals drops the retry for the next slot). Here
        # a pause during a retry keeps the retry, fixed intervals or not.
        pytest.param(
            True,
            False,
            HOUR + timedelta(seconds=30),
            HOUR + timedelta(seconds=45),
            HOUR + timedelta(minutes=1),
            id="brief-pause-during-retry-fixed (Dalga: 6 h)",
        ),
        pytest.param(False, True, 2 * HOUR, 7 * HOUR, 6 * HOUR, id="pass-over-schedule-point"),
        pytest.param(
            True, True, 2 * HOUR, 7 * HOUR, 11 * HOUR, id="pass-over-schedule-point-fixed"
        ),
    ],
)
def test_enable_scheduling(sqlite_store, fixed, success, disable_at, enable_at, expect_run_at):
    """First run at start + 1 h, every PT5H in Los Angeles, retries every 60 s: the run
    after a pause (disable, enable) is due at expect_run_at (within a second, as Dalga's)."""
    store = sqlite_store(
        fixed_intervals=fixed, retry=RetryPolicy(interval=60, multiplier=1, max_interval=60)
    )
    store.clock = clock = Clock(START)
    params = {"interval": "PT5H", "location": str(LA), "first-run": (START + HOUR).isoformat()}
    store.put(parse_spec("abc", "job", params))
    clock.now = START + HOUR + timedelta(seconds=1)
    (run,) = store.claim(10)
    assert settle(store, run, 200 if success else 400) is (
        Outcome.DONE if success else Outcome.RETRY
    )
    clock.now = START + disable_at
    assert job_json(store.set_enabled("abc", "job", enabled=False))["next_run"] is None
    clock.now = START + enable_at
    shown = job_json(store.set_enabled("abc", "job", enabled=True))["next_run"]
    next_run = datetime.fromisoformat(shown)
    assert shown == rfc3339(next_run, str(LA))
    assert abs(next_run - (START + expect_run_at)) <= timedelta(seconds=1)


# -- internal/table/table_test.go TestAddJob (and client_test.go TestDisableRunningJob) -----


def test_add_job_claim_disable_and_enable_as_dalgas_table_test(sqlite_store):
    store = sqlite_store()
    start = datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)
    store.clock = clock = Clock(start)
    job = store.put(parse_spec("abc", "def", {"interval": "PT30M", "location": str(LA)}))
    shown = job_json(job)
    assert shown["next_run"] == shown["next_sched"] == "2026-03-01T04:30:00-08:00"
    assert store.claim(10) == []  # not due yet
    assert job_json(store.get("abc", "def"))["next_sched"] == shown["next_sched"]

    clock.now = start + timedelta(minutes=30)
    (run,) = store.claim(10)  # due: claimed, on the job's wall clock
    assert run.dalga_sched == shown["next_sched"]
    assert store.set_enabled("abc", "def", enabled=False) is not None  # while it runs
    assert settle(store, run, 200) is Outcome.DONE
    paused = job_json(store.get("abc", "def"))
    assert paused["next_run"] is None  # a finished run does not re-enable the job
    assert paused["next_sched"] == "2026-03-01T05:00:00-08:00"

    clock.now = start + timedelta(hours=2)
    assert store.claim(10) == []  # a disabled job is not claimed
    resumed = job_json(store.set_enabled("abc", "def", enabled=True))
    assert resumed["next_run"] == resumed["next_sched"] == "2026-03-01T05:00:00-08:00"
    (again,) = store.claim(10)  # its slot has passed: due at once
    assert again.dalga_sched == "2026-03-01T05:00:00-08:00"


# -- cluster_test.go TestCluster: run at most once ---------------------------------------


def test_one_off_jobs_due_at_once_each_run_exactly_once(make_stack):
    """100 one-off jobs with first-run = now: every body is called, none twice. (Dalga's
    "distributed amongst instances" needs several worker processes:
    tests/test_beat_processes.py runs those.)"""
    stack = make_stack()
    now = datetime.now(UTC).isoformat()
    for i in range(100):
        resp = stack.api.put(f"/jobs/cluster/{i}", data={"one-off": "true", "first-run": now})
        assert resp.status_code == 201
    calls = stack.endpoint.wait_for("cluster", 100, timeout=60)
    assert sorted(int(c.body) for c in calls) == list(range(100))
    for i in range(100):
        url = f"/jobs/cluster/{i}"
        wait_until(lambda url=url: stack.api.get(url).status_code == 404, 20, f"{url} is gone")
    assert len(stack.endpoint.calls_to("cluster")) == 100
