"""End to end on MariaDB + Redis: beat claims, a real Celery worker POSTs to a real endpoint."""

import time

from waiting import stays, wait_until

from celery_dalga.messages import TASK_NAME


def test_interval_job_is_called_repeatedly_with_the_callback_contract(make_stack):
    stack = make_stack()
    assert stack.api.put("/jobs/feeds/42?interval=1&immediate=true").status_code == 201
    calls = stack.endpoint.wait_for("feeds", 3, timeout=15)
    assert all(c.body == "42" and c.content_type == "text/plain" for c in calls)
    assert len({c.sched for c in calls}) == len(calls)
    assert len({c.idempotency_key for c in calls}) == len(calls)
    # the endpoint sees the third call before the worker settles it: wait for the settle
    wait_until(lambda: stack.store.get("feeds", "42").success_count >= 3)


def test_one_off_job_is_called_once_and_is_gone(make_stack):
    stack = make_stack()
    stack.api.put("/jobs/remind/7?one-off=true&immediate=true")
    stack.endpoint.wait_for("remind", 1)
    wait_until(lambda: stack.store.get("remind", "7") is None)
    stays(lambda: len(stack.endpoint.calls_to("remind")) == 1, 1, "one call, no second")


def test_204_deletes_the_job(make_stack):
    stack = make_stack()
    stack.endpoint.script["expire"] = [204]
    stack.api.put("/jobs/expire/1?interval=1&immediate=true")
    stack.endpoint.wait_for("expire", 1)
    wait_until(lambda: stack.api.get("/jobs/expire/1").status_code == 404)
    stays(lambda: len(stack.endpoint.calls_to("expire")) == 1, 1.5, "one call, no second")


def test_500_twice_then_200_is_retried_with_backoff_and_the_same_sched(make_stack):
    stack = make_stack(retry_interval=0.5)
    stack.endpoint.script["flaky"] = [500, 500, 200]
    stack.api.put("/jobs/flaky/1?one-off=true&immediate=true")
    calls = stack.endpoint.wait_for("flaky", 3, timeout=20)
    assert len({c.sched for c in calls}) == 1
    assert len({c.idempotency_key for c in calls}) == 1
    first_gap, second_gap = calls[1].at - calls[0].at, calls[2].at - calls[1].at
    assert first_gap >= 0.5 and second_gap >= 1.0 and second_gap > first_gap
    wait_until(lambda: stack.store.get("flaky", "1") is None)


def test_slow_endpoint_hitting_the_timeout_is_retried(make_stack):
    stack = make_stack(callback_timeout=1.0, retry_interval=0.2)
    stack.endpoint.delays["slow"] = [2.5]
    stack.api.put("/jobs/slow/1?one-off=true&immediate=true")
    calls = stack.endpoint.wait_for("slow", 2, timeout=20)
    assert calls[0].sched == calls[1].sched
    wait_until(lambda: stack.store.get("slow", "1") is None)


def test_429_with_retry_after_is_retried_no_sooner_than_asked(make_stack):
    stack = make_stack(retry_interval=0.2)
    stack.endpoint.script["busy"] = [429, 200]
    stack.endpoint.headers["busy"] = {"Retry-After": "2"}
    stack.api.put("/jobs/busy/1?one-off=true&immediate=true")
    first, second = stack.endpoint.wait_for("busy", 2, timeout=20)
    assert second.at - first.at >= 2.0 and first.sched == second.sched
    wait_until(lambda: stack.store.get("busy", "1") is None)


def test_a_refused_call_is_not_sent_and_uses_no_retry(make_stack):
    from processes import free_port

    stack = make_stack(base_url=f"http://127.0.0.1:{free_port()}/", retry_interval=0.2)
    assert stack.api.put("/jobs/down/1?interval=60&immediate=true&retries=0").status_code == 201
    wait_until(lambda: stack.store.get("down", "1").error_count >= 3)
    job = stack.store.get("down", "1")
    assert job.attempts == 0 and job.enabled and job.next_sched is not None
    assert "not sent" in job.last_error
    runs = stack.api.get("/jobs/down/1/runs").get_json()["runs"]
    assert {r["outcome"] for r in runs} == {"not_sent"} and len(runs) >= 3


def test_retry_stop_after_disables_the_job_and_keeps_the_error(make_stack):
    stack = make_stack(retry_interval=0.2, retry_stop_after=1.5)
    stack.endpoint.script["broken"] = [503] * 100
    stack.api.put("/jobs/broken/1?interval=60&immediate=true")
    wait_until(lambda: not stack.store.get("broken", "1").enabled, timeout=20)
    job = stack.store.get("broken", "1")
    assert job.last_error == "HTTP 503" and job.next_run is None and not job.running
    assert job.error_count >= 2


def test_trigger_disable_and_enable(make_stack):
    stack = make_stack()
    before = stack.api.put("/jobs/report/1?interval=3600").get_json()
    stack.api.post("/jobs/report/1")
    stack.endpoint.wait_for("report", 1)
    wait_until(lambda: stack.store.get("report", "1").triggered_at is None)
    assert stack.api.get("/jobs/report/1").get_json()["next_sched"] == before["next_sched"]

    stack.api.put("/jobs/tick/1?interval=1&immediate=true")
    stack.endpoint.wait_for("tick", 1)
    stack.api.patch("/jobs/tick/1?disable=true")
    wait_until(lambda: not stack.store.get("tick", "1").running)
    paused = len(stack.endpoint.calls_to("tick"))
    stays(lambda: len(stack.endpoint.calls_to("tick")) == paused, 2.5, "no call while disabled")
    stack.api.patch("/jobs/tick/1?enable=true")
    stack.endpoint.wait_for("tick", paused + 1, timeout=10)


def test_put_on_an_existing_job_reschedules_it(make_stack):
    stack = make_stack()
    stack.api.put("/jobs/later/1?interval=3600")
    stays(lambda: stack.endpoint.calls_to("later") == [], 1, "not called before it is due")
    stack.api.put("/jobs/later/1?interval=1&immediate=true")
    stack.endpoint.wait_for("later", 2, timeout=10)


def test_put_while_a_run_is_in_flight_causes_no_second_concurrent_call(make_stack):
    stack = make_stack(callback_timeout=5.0)
    stack.endpoint.delays["busy"] = [3.0]
    stack.api.put("/jobs/busy/1?interval=1&immediate=true")
    stack.endpoint.wait_for("busy", 1)
    for _ in range(3):
        assert stack.api.put("/jobs/busy/1?interval=1&immediate=true").status_code == 201
        time.sleep(0.3)  # pacing: the PUTs spread over the 3 s the first call takes
    stack.endpoint.wait_for("busy", 2, timeout=10)
    assert stack.endpoint.most_at_once("path") == 1


def test_stale_message_is_dropped_without_a_post(make_stack):
    stack = make_stack()
    job = stack.store.put(_spec("stale", "1"))
    task = stack.app.tasks[TASK_NAME]
    result = task.apply(
        kwargs={
            "path": "stale",
            "body": "1",
            "sched": job.next_sched.isoformat(),
            "job_id": job.id,
            "key": "k",
            "token": "not-the-token",
        }
    )
    assert result.get() == "stale"
    assert stack.endpoint.calls_to("stale") == []


def test_a_message_queued_by_the_previous_version_is_delivered(make_stack):
    """One http_callback per run, its keyword arguments as the previous version sent them."""
    stack = make_stack(beat=False)
    stack.store.put(_spec("legacy", "1"))
    stack.store.trigger("legacy", "1")
    (run,) = stack.store.claim(10)
    stack.app.send_task(
        TASK_NAME,
        kwargs={
            "path": run.path,
            "body": run.body,
            "sched": run.sched.isoformat(),
            "job_id": run.job_id,
            "key": run.key,
            "token": run.token,
            "manual": run.manual,
        },
        queue=stack.settings.queue,
    )
    (call,) = stack.endpoint.wait_for("legacy", 1)
    assert call.idempotency_key == run.idempotency_key
    wait_until(lambda: stack.store.get("legacy", "1").success_count == 1)


def _spec(path, body):
    from celery_dalga.spec import parse_spec

    return parse_spec(path, body, {"interval": "3600"})


def test_a_job_can_call_a_celery_task_with_its_body(make_stack):
    import celery_test_tasks

    stack = make_stack(retry_interval=0.3, allowed_tasks="dalga_test.record, dalga_test.missing")
    put = stack.api.put("/jobs/tasks/ok?interval=1&immediate=true&task=dalga_test.record")
    assert put.status_code == 201 and put.get_json()["task"] == "dalga_test.record"
    stack.api.put("/jobs/tasks/fail-1?one-off=true&immediate=true&task=dalga_test.record")
    stack.api.put("/jobs/tasks/none?one-off=1&immediate=1&task=dalga_test.missing&retries=0")
    wait_until(lambda: celery_test_tasks.received.count("ok") >= 2)
    wait_until(lambda: celery_test_tasks.received.count("fail-1") >= 2)
    failing = stack.store.get("tasks", "fail-1")
    assert "RuntimeError: asked to fail: fail-1" in failing.last_error and failing.attempts >= 1
    wait_until(lambda: not stack.store.get("tasks", "none").enabled)
    assert "no task 'dalga_test.missing'" in stack.store.get("tasks", "none").last_error
    assert stack.endpoint.calls == []  # no HTTP call for task jobs
    done = stack.api.get("/jobs/tasks/ok/runs").get_json()["runs"][-1]
    assert (done["status"], done["error"], done["outcome"]) == (None, None, "done")  # no 200
    assert stack.api.get("/jobs/tasks/ok/stats").get_json()["job_stats"][0]["Success"]


def test_cron_with_seconds_first_runs_every_second(make_stack):
    stack = make_stack()
    assert stack.api.put("/jobs/sec/1?cron=*+*+*+*+*+*").status_code == 201
    calls = stack.endpoint.wait_for("sec", 3, timeout=15)
    scheds = [c.sched for c in calls[:3]]
    assert all("." not in s for s in scheds)  # whole seconds
    assert len(set(scheds)) == 3


def test_a_child_job_is_called_after_its_parent_succeeds(make_stack):
    stack = make_stack()
    stack.api.put("/jobs/parent/1?interval=3600")
    assert stack.api.put("/jobs/child/1?parent=parent/1").status_code == 201
    stack.api.post("/jobs/parent/1")
    parent_call = stack.endpoint.wait_for("parent", 1)[0]
    child_call = stack.endpoint.wait_for("child", 1)[0]
    assert child_call.at >= parent_call.at
