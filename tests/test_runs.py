"""The run protocol's decisions (celery_dalga.runs), without a database: every branch of each
decision, and properties over generated job states."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from celery_dalga.jobs import Job, Run, job_key
from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import (
    RETRY_WAIT,
    Attempt,
    Change,
    Outcome,
    Policy,
    on_answer,
    on_due,
    on_enabled,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
TOKEN = "t" * 32
POLICY = Policy()


def job(**changes) -> Job:
    """A periodic job (every 60 s) due now and held by TOKEN, unless changed."""
    values = dict(
        id=1,
        key=job_key("feeds", "1"),
        path="feeds",
        body="1",
        interval="60",
        cron=None,
        repeat=None,
        location="UTC",
        one_off=False,
        exchange=None,
        task=None,
        parent_key=None,
        retries=None,
        retry_interval=None,
        epsilon=None,
        enabled=True,
        next_run=NOW,
        next_sched=NOW,
        triggered_at=None,
        token=TOKEN,
        instance_id=7,
        attempts=0,
        success_count=5,
        error_count=2,
        last_success=None,
        last_attempt=None,
        last_error="HTTP 500",
        last_duration=None,
    )
    values.update(changes)
    return Job(**values)


def run_of(j: Job, manual: bool = False, sched: datetime | None = None) -> Run:
    sched = sched or (j.triggered_at if manual else j.next_sched)
    return Run(j.id, j.key, j.path, j.body, sched, TOKEN, manual)


def answer(j: Job, status: int | None, now=NOW, policy=POLICY, run=None) -> Change:
    run = run or run_of(j)
    error = f"HTTP {status}" if status else "curl error 7: refused"
    return on_answer(j, Attempt(run, status, error, 0.5), now, policy)


# -- on_due --------------------------------------------------------------------------------


def test_a_due_scheduled_run_is_sent_with_its_instant():
    decision = on_due(job(token=None), TOKEN, NOW, POLICY)
    assert decision == Run(
        1, job_key("feeds", "1"), "feeds", "1", NOW, TOKEN, False, None, 60, None
    )
    published = on_due(job(token=None, exchange="jobs", one_off=True), TOKEN, NOW, POLICY)
    assert (published.exchange, published.expires) == ("jobs", None)


def test_a_trigger_ahead_of_the_schedule_is_sent_as_a_manual_run():
    triggered = NOW - timedelta(seconds=1)
    future = job(next_sched=NOW + timedelta(hours=1), triggered_at=triggered)
    decision = on_due(future, TOKEN, NOW, POLICY)
    assert isinstance(decision, Run) and decision.manual and decision.sched == triggered


@pytest.mark.parametrize("state", [dict(enabled=False), dict(next_sched=None)])
def test_a_trigger_on_a_paused_or_unscheduled_job_is_still_sent(state):
    decision = on_due(job(triggered_at=NOW, **state), TOKEN, NOW, POLICY)
    assert isinstance(decision, Run) and decision.manual


def test_a_scheduled_run_that_is_due_goes_before_a_trigger():
    decision = on_due(job(triggered_at=NOW), TOKEN, NOW + timedelta(seconds=1), POLICY)
    assert isinstance(decision, Run) and not decision.manual and decision.sched == NOW


@pytest.mark.parametrize("state", [dict(enabled=False), dict(next_sched=None)])
def test_a_paused_job_whose_lease_ran_out_is_released(state):
    decision = on_due(job(**state), TOKEN, NOW, POLICY)
    assert decision == Change(Outcome.RELEASED, {"token": None, "next_run": None, "attempts": 0})


def test_epsilon_moves_a_run_missed_by_more_to_its_next_slot():
    late = NOW + timedelta(seconds=31)
    decision = on_due(job(attempts=3), TOKEN, late, Policy(epsilon=30))
    assert decision.outcome is Outcome.SKIPPED
    assert decision.values == {
        "token": None,
        "next_sched": late + timedelta(seconds=60),
        "next_run": late + timedelta(seconds=60),
        "attempts": 0,
    }


def test_epsilon_sends_a_run_missed_by_less_and_the_global_one_never_skips_one_off_jobs():
    late = NOW + timedelta(seconds=29)
    assert isinstance(on_due(job(), TOKEN, late, Policy(epsilon=30)), Run)
    later = NOW + timedelta(hours=1)
    assert isinstance(on_due(job(one_off=True), TOKEN, later, Policy(epsilon=30)), Run)
    assert isinstance(on_due(job(), TOKEN, later, Policy(epsilon=0)), Run)


def test_a_one_off_jobs_own_epsilon_disables_it_when_missed_by_more():
    """A one-off run 11 s late with epsilon 5 is not sent; the job stays, disabled, saying
    why, and a global epsilon (periodic runs only) does not save it."""
    once = job(one_off=True, interval=None, epsilon=5.0, attempts=2)
    late = NOW + timedelta(seconds=11)
    for policy in (POLICY, Policy(epsilon=60)):
        decision = on_due(once, TOKEN, late, policy)
        assert decision == Change(
            Outcome.SKIPPED,
            {
                "token": None,
                "enabled": False,
                "next_run": None,
                "attempts": 0,
                "last_error": "not sent: 11 s late, more than its epsilon (5 s)",
            },
        )
    assert isinstance(on_due(once, TOKEN, NOW + timedelta(seconds=5), POLICY), Run)


def test_a_one_off_skipped_by_its_epsilon_keeps_a_pending_trigger():
    once = job(one_off=True, epsilon=5.0, triggered_at=NOW)
    decision = on_due(once, TOKEN, NOW + timedelta(seconds=6), POLICY)
    assert decision.outcome is Outcome.SKIPPED and decision.values["next_run"] == NOW + timedelta(
        seconds=6
    )
    again = replace(once, enabled=False, next_run=decision.values["next_run"])
    assert on_due(again, TOKEN, NOW + timedelta(seconds=6), POLICY).manual


def test_epsilon_deletes_a_repeat_with_no_slots_left():
    last_slot = NOW - timedelta(minutes=59, seconds=50)
    used_up = job(interval=None, repeat="R2/2026-06-01T11:00:00+00:00/PT10S", next_sched=last_slot)
    decision = on_due(used_up, TOKEN, NOW, Policy(epsilon=30))
    assert decision == Change(Outcome.SKIPPED, delete=True)


# -- on_answer: stale ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 204, 500, None])
def test_an_answer_for_a_row_gone_or_re_claimed_changes_nothing(status):
    assert answer(job(token="other"), status).outcome is Outcome.STALE
    assert on_answer(None, Attempt(run_of(job()), status, "", 0), NOW, POLICY) == Change(
        Outcome.STALE
    )


# -- on_success ----------------------------------------------------------------------------


def test_200_sets_the_next_slot_from_completion_and_resets_the_backoff():
    later = NOW + timedelta(seconds=3)
    change = answer(job(attempts=4), 200, now=later)
    assert change == Change(
        Outcome.DONE,
        {
            "token": None,
            "next_sched": later + timedelta(seconds=60),
            "next_run": later + timedelta(seconds=60),
            "triggered_at": None,
            "attempts": 0,
            "success_count": 6,
            "last_success": later,
            "last_attempt": later,
            "last_duration": 0.5,
        },
        children_of=job().key,
    )


def test_randomization_spreads_the_next_interval_within_its_factor():
    policy = Policy(randomization_factor=0.5)
    waits = {
        (answer(job(), 200, policy=policy).values["next_sched"] - NOW).total_seconds()
        for _ in range(200)
    }
    assert len(waits) > 100 and all(30 <= wait <= 90 for wait in waits)
    fixed = Policy(randomization_factor=0.5, fixed_intervals=True)
    assert answer(job(), 200, policy=fixed).values["next_sched"] == NOW + timedelta(seconds=60)
    cron = job(interval=None, cron="*/5 * * * *")
    assert answer(cron, 200, policy=policy).values["next_sched"] == NOW + timedelta(minutes=5)


def test_200_with_fixed_intervals_keeps_the_grid_and_skips_missed_slots():
    later = NOW + timedelta(seconds=130)
    change = answer(job(), 200, now=later, policy=Policy(fixed_intervals=True))
    assert change.values["next_sched"] == NOW + timedelta(seconds=180)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (dict(interval=None, cron="*/5 * * * *"), NOW + timedelta(minutes=5)),
        (
            dict(interval=None, repeat="R/2026-06-01T11:00:00+00:00/PT10S"),
            NOW + timedelta(seconds=10),
        ),
    ],
)
def test_200_on_calendar_schedules_takes_the_next_slot(schedule, expected):
    assert answer(job(**schedule), 200).values["next_sched"] == expected


@pytest.mark.parametrize(
    "state",
    [
        dict(one_off=True),
        dict(interval=None, repeat="R1/2026-06-01T12:00:00+00:00/PT10S"),
    ],
)
def test_200_deletes_a_job_with_no_run_left(state):
    deleted = answer(job(**state), 200)
    assert deleted == Change(Outcome.DELETED, delete=True, children_of=job().key)


def test_204_deletes_any_job():
    assert answer(job(), 204) == Change(Outcome.DELETED, delete=True, children_of=job().key)


def test_a_schedule_replaced_during_the_run_is_kept():
    replaced = job(next_sched=NOW + timedelta(hours=2))
    change = answer(replaced, 200, run=run_of(job()))
    assert change.values["next_sched"] == change.values["next_run"] == NOW + timedelta(hours=2)


def test_a_one_off_job_rescheduled_during_its_run_is_not_deleted():
    replaced = job(one_off=True, next_sched=NOW + timedelta(hours=2))
    assert answer(replaced, 200, run=run_of(job())).outcome is Outcome.DONE


def test_a_manual_run_leaves_the_schedule_and_clears_its_trigger():
    triggered = job(next_sched=NOW + timedelta(hours=1), triggered_at=NOW)
    change = answer(triggered, 200, run=run_of(triggered, manual=True))
    assert change.values["next_sched"] == change.values["next_run"] == NOW + timedelta(hours=1)
    assert change.values["triggered_at"] is None


def test_a_trigger_that_came_during_the_run_makes_the_job_due_now():
    later = NOW + timedelta(seconds=2)
    change = answer(job(triggered_at=NOW + timedelta(seconds=1)), 200, now=later)
    assert change.values["next_run"] == later
    assert change.values["triggered_at"] == NOW + timedelta(seconds=1)


def test_a_job_paused_during_the_run_gets_no_next_run():
    change = answer(job(enabled=False), 200)
    assert change.values["next_run"] is None and change.values["token"] is None


def test_a_run_completes_when_its_answer_came_not_when_its_task_settles():
    assert Attempt(run_of(job()), 200, "", 0.1, ended=100.0).ended_at(
        NOW, 105.5
    ) == NOW - timedelta(seconds=5.5)
    assert Attempt(run_of(job()), 200, "", 0.1).ended_at(NOW, 105.5) == NOW


# -- on_failure ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 404, 301, None])
def test_a_failure_waits_the_backoff_for_the_rows_count_of_failures(status):
    for attempts, delay in ((0, 1), (1, 2), (2, 4), (3, 8), (20, 600)):
        change = answer(job(attempts=attempts), status)
        assert change.outcome is Outcome.RETRY
        assert change.values["token"] == RETRY_WAIT
        assert change.values["next_run"] == NOW + timedelta(seconds=delay)
        assert change.values["attempts"] == attempts + 1
        assert change.values["error_count"] == 3 and change.values["last_attempt"] == NOW
        assert "next_sched" not in change.values


def test_a_call_never_sent_waits_the_backoff_without_counting_an_attempt():
    j = job(attempts=3, retries=3)
    refused = Attempt(run_of(j), None, "curl error 7: refused (not sent)", 0.0, sent=False)
    change = on_answer(j, refused, NOW, POLICY)
    assert change.outcome is Outcome.NOT_SENT  # not abandoned: no attempt reached the endpoint
    assert change.values["token"] == RETRY_WAIT
    assert change.values["next_run"] == NOW + timedelta(seconds=8)
    assert "attempts" not in change.values
    assert change.values["error_count"] == 3 and "not sent" in change.values["last_error"]
    down = replace(refused, wait=100.0)  # unreachable for 100 s: wait as long again
    assert on_answer(j, down, NOW, POLICY).values["next_run"] == NOW + timedelta(seconds=100)
    late = NOW + timedelta(seconds=61)
    assert (
        on_answer(j, refused, late, Policy(retry=RetryPolicy(stop_after=60))).outcome
        is Outcome.GAVE_UP
    )


def test_retry_after_delays_the_retry_up_to_the_longest_backoff():
    j = job(attempts=1)
    busy = Attempt(run_of(j), 429, "HTTP 429", 0.01, wait=30.0)
    change = on_answer(j, busy, NOW, POLICY)
    assert change.outcome is Outcome.RETRY and change.values["attempts"] == 2
    assert change.values["next_run"] == NOW + timedelta(seconds=30)
    forever = replace(busy, wait=10**9)
    assert on_answer(j, forever, NOW, POLICY).values["next_run"] == NOW + timedelta(seconds=600)
    soon = replace(busy, wait=0.5)  # shorter than the backoff: the backoff holds
    assert on_answer(j, soon, NOW, POLICY).values["next_run"] == NOW + timedelta(seconds=2)


def test_retry_stop_after_disables_the_job_and_keeps_the_error():
    late = NOW + timedelta(seconds=61)
    change = answer(
        job(attempts=6, triggered_at=NOW),
        503,
        now=late,
        policy=Policy(retry=RetryPolicy(stop_after=60)),
    )
    assert change.outcome is Outcome.GAVE_UP
    assert change.values == {
        "token": None,
        "next_run": None,
        "enabled": False,
        "triggered_at": None,
        "attempts": 0,
        "error_count": 3,
        "last_error": "HTTP 503",
        "last_attempt": late,
        "last_duration": 0.5,
    }
    early = NOW + timedelta(seconds=59)
    assert (
        answer(job(), 503, now=early, policy=Policy(retry=RetryPolicy(stop_after=60))).outcome
        is Outcome.RETRY
    )


def test_a_failure_of_a_job_paused_meanwhile_stops_but_a_manual_run_retries():
    paused = job(enabled=False, triggered_at=NOW)
    assert answer(paused, 500).outcome is Outcome.STOPPED
    assert answer(paused, 500).values["next_run"] is None
    assert answer(paused, 500, run=run_of(paused, manual=True)).outcome is Outcome.RETRY


def test_an_error_text_is_cut_at_2000_characters():
    attempt = Attempt(run_of(job()), None, "x" * 5000, 0.1)
    assert len(on_answer(job(), attempt, NOW, POLICY).values["last_error"]) == 2000


# -- on_enabled ----------------------------------------------------------------------------


def test_pausing_or_resuming_a_running_job_leaves_its_lease():
    assert on_enabled(job(), False, NOW, POLICY) == {"enabled": False}
    assert on_enabled(job(enabled=False), True, NOW, POLICY) == {"enabled": True}


def test_pausing_an_idle_job_keeps_only_a_pending_trigger():
    assert on_enabled(job(token=None), False, NOW, POLICY) == {"enabled": False, "next_run": None}
    pending = job(token=None, triggered_at=NOW)
    assert on_enabled(pending, False, NOW, POLICY)["next_run"] == NOW


def test_resuming_keeps_a_slot_still_ahead_and_runs_a_missed_slot_at_once():
    ahead = job(token=None, enabled=False, next_sched=NOW + timedelta(seconds=30))
    assert on_enabled(ahead, True, NOW, POLICY)["next_run"] == NOW + timedelta(seconds=30)
    missed = job(token=None, enabled=False, next_sched=NOW - timedelta(hours=1))
    resumed = on_enabled(missed, True, NOW, POLICY)
    assert resumed["next_sched"] == resumed["next_run"] == NOW - timedelta(hours=1)  # due now
    triggered = replace(missed, triggered_at=NOW - timedelta(hours=2))
    assert on_enabled(triggered, True, NOW, POLICY)["next_run"] == NOW - timedelta(hours=2)


def test_resuming_with_fixed_intervals_skips_the_missed_slots_on_the_grid():
    missed = job(token=None, enabled=False, next_sched=NOW - timedelta(seconds=150))
    resumed = on_enabled(missed, True, NOW, Policy(fixed_intervals=True))
    assert resumed["next_sched"] == resumed["next_run"] == NOW + timedelta(seconds=30)


def test_resuming_an_enabled_job_changes_nothing_else():
    assert on_enabled(job(token=None), True, NOW, POLICY) == {"enabled": True}


# -- properties ----------------------------------------------------------------------------

instants = st.integers(-7200, 7200).map(lambda s: NOW + timedelta(seconds=s))
jobs = st.builds(
    job,
    one_off=st.booleans(),
    enabled=st.booleans(),
    next_sched=st.one_of(st.none(), instants),
    triggered_at=st.one_of(st.none(), instants),
    token=st.sampled_from([TOKEN, "other", RETRY_WAIT, None]),
    attempts=st.integers(0, 70),
    epsilon=st.sampled_from([None, 5.0]),
)


@settings(max_examples=400, deadline=None)
@given(
    j=jobs,
    status=st.sampled_from([200, 204, 500, 302, None]),
    now=instants,
    manual=st.booleans(),
    stop_after=st.sampled_from([0, 60]),
    sent=st.booleans(),
)
def test_every_answer_keeps_the_protocols_invariants(j, status, now, manual, stop_after, sent):
    if manual and j.triggered_at is None or not manual and j.next_sched is None:
        return
    run = run_of(j, manual=manual)
    policy = Policy(retry=RetryPolicy(stop_after=stop_after))
    sent = sent or status is not None
    change = on_answer(j, Attempt(run, status, "e", 0.1, sent=sent), now, policy)
    if j.token != TOKEN:
        assert change == Change(Outcome.STALE)
        return
    if change.delete:
        assert change.outcome is Outcome.DELETED and status in (200, 204)
        return
    values = change.values
    if status in (200, 204):
        assert change.outcome is Outcome.DONE
        assert values["token"] is None and values["attempts"] == 0
        assert values["success_count"] == j.success_count + 1
    elif change.outcome is Outcome.RETRY:
        assert values["token"] == RETRY_WAIT and values["attempts"] == j.attempts + 1
        assert now < values["next_run"] <= now + timedelta(seconds=600)
    elif change.outcome is Outcome.NOT_SENT:
        assert not sent and values["token"] == RETRY_WAIT and "attempts" not in values
        assert now < values["next_run"] <= now + timedelta(seconds=600)
    else:
        assert change.outcome in (Outcome.GAVE_UP, Outcome.STOPPED)
        assert values["token"] is None and values["next_run"] is None
    if "next_run" in values and values["next_run"] is not None and not j.enabled:
        assert manual or values["next_run"] == now  # a paused job runs only when triggered


@settings(max_examples=300, deadline=None)
@given(j=jobs, now=instants, epsilon=st.sampled_from([0, 30]))
def test_every_due_row_is_sent_once_or_settled(j, now, epsilon):
    decision = on_due(j, TOKEN, now, Policy(epsilon=epsilon))
    if isinstance(decision, Run):
        assert decision.token == TOKEN
        assert decision.sched == (j.triggered_at if decision.manual else j.next_sched)
        assert j.enabled or decision.manual
        return
    assert decision.outcome in (Outcome.RELEASED, Outcome.SKIPPED)
    if decision.outcome is Outcome.SKIPPED:
        limit = j.epsilon if j.one_off else j.epsilon or epsilon
        assert limit and now - j.next_sched > timedelta(seconds=limit)
        if j.one_off:
            assert decision.values["enabled"] is False
        else:
            assert decision.delete or decision.values["next_run"] > now


@pytest.mark.parametrize(
    ("lease", "timeout", "keep", "start_within"),
    [(60, 10, 30, 19), (13, 10, 13, 2), (300, 10, 150, 139), (20, 10, 15, 4)],
)
def test_the_fence_keeps_a_lease_that_outlasts_a_call_started_within_its_window(
    lease, timeout, keep, start_within
):
    assert Policy(lease=lease).fence_window(timeout) == (keep, start_within)
