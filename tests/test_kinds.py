"""celery_dalga.kinds: the registry chooses a job's kind; a kind validates at PUT what a job
asks of it, and delivers through the real path (fence, deliver, settle, history).

The "record" kind below is a whole new callback kind: this module is all it takes (in the
package it would be one file in celery_dalga/kinds/, which imports its modules by itself)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from helpers import api_client, settings_on
from waiting import wait_until

from celery_dalga import kinds, messages
from celery_dalga.client import Client
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds import Delivery, Kind, Result, UnknownKind
from celery_dalga.runs import Outcome
from celery_dalga.spec import InvalidParameter, JobSpec, parse_spec
from celery_dalga.tasks import deliver


class Record(Kind):
    """Appends each run's body to a list named by its job's options: {"to": <name>}. A body
    starting with "fail" fails, one starting with "later" is not sent."""

    name = "record"
    lists: dict[str, list[str]] = {}

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        options = spec.options or {}
        if set(options) != {"to"} or not isinstance(options["to"], str):
            raise InvalidParameter("options", 'the record kind takes {"to": <a list name>}')

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        results = []
        for run in runs:
            if run.body.startswith("later"):
                results.append(Result(Delivery.NOT_SENT, "not sent: later", 0.0, 0.0, wait=5.0))
                continue
            if run.body.startswith("fail"):
                results.append(Result.refused(f"asked to fail: {run.body}"))
                continue
            self.lists.setdefault((run.options or {})["to"], []).append(run.body)
            results.append(Result(Delivery.DELIVERED, "recorded", 0.001, 0.0))
        return results


@pytest.fixture
def record():
    kind = kinds.register(Record())
    yield kind
    del kinds.registry[kind.name]
    Record.lists.clear()


def spec(body: str = "1", **fields: Any) -> JobSpec:
    return replace(parse_spec("feeds", body, {"interval": "60", "immediate": "true"}), **fields)


SETTINGS = Settings()


# -- the registry ----------------------------------------------------------------------------


def test_the_built_in_kinds_are_registered():
    assert {"http", "amqp", "task"} <= set(kinds.registry)


def test_a_job_names_its_kind_or_gets_the_one_its_fields_imply():
    assert kinds.name_of(spec(), SETTINGS) == "http"
    assert kinds.name_of(spec(task="app.refresh"), SETTINGS) == "task"
    assert kinds.name_of(spec(exchange="jobs"), SETTINGS) == "amqp"
    assert kinds.name_of(spec(), Settings(publish_exchange="jobs")) == "amqp"
    assert kinds.name_of(spec(kind="record"), Settings(publish_exchange="jobs")) == "record"
    assert kinds.kind_of(spec(task="app.refresh"), SETTINGS) is kinds.registry["task"]


def test_a_job_and_its_run_choose_the_same_kind():
    from test_runs import NOW, job

    named = job(kind="record", options={"to": "a"})
    run = named.run(NOW, "t")
    assert (run.kind, run.options) == ("record", {"to": "a"})
    assert kinds.name_of(named, SETTINGS) == kinds.name_of(run, SETTINGS) == "record"


def test_an_unknown_kind_is_named_in_the_error():
    with pytest.raises(UnknownKind, match=r"no callback kind 'kala' \(known: amqp, http"):
        kinds.kind_of(spec(kind="kala"), SETTINGS)


def test_a_second_kind_of_the_same_name_is_refused(record):
    assert kinds.register(record) is record  # registering it again changes nothing
    with pytest.raises(ValueError, match="registered already"):
        kinds.register(Record())


# -- validate at PUT -------------------------------------------------------------------------


def refusal(job: JobSpec, settings: Settings = SETTINGS) -> tuple[str, str]:
    with pytest.raises(InvalidParameter) as refused:
        kinds.validate(job, settings)
    return refused.value.parameter, str(refused.value)


def test_validate_refuses_an_unknown_kind_and_a_kind_that_contradicts_task_or_exchange():
    assert refusal(spec(kind="kala"))[0] == "kind"
    parameter, message = refusal(spec(kind="http", task="app.refresh"))
    assert parameter == "kind" and "cannot be combined with task" in message
    assert refusal(spec(kind="task", exchange="jobs"))[0] == "kind"
    assert refusal(spec(kind="task"))[0] == "task"  # the task kind needs a task
    assert refusal(spec(kind="amqp"))[0] == "exchange"  # no exchange, no publish_exchange


def test_validate_takes_the_allowed_tasks_and_exchanges_settings():
    allowed = Settings(
        allowed_tasks="app.refresh",
        allowed_exchanges="jobs",
        publish_url="amqp://guest:guest@127.0.0.1:5672//",
    )
    kinds.validate(spec(), allowed)
    kinds.validate(spec(task="app.refresh"), allowed)
    kinds.validate(spec(kind="task", task="app.refresh"), allowed)
    kinds.validate(spec(exchange="jobs"), allowed)
    kinds.validate(spec(kind="amqp"), replace(allowed, publish_exchange="jobs"))
    parameter, message = refusal(spec(task="app.other"), allowed)
    assert parameter == "task" and "allowed_tasks" in message
    parameter, message = refusal(spec(exchange="other"), allowed)
    assert parameter == "exchange" and "allowed_exchanges" in message
    no_broker = Settings(allowed_exchanges="jobs")  # broker_url is Redis's
    assert "DALGA_PUBLISH_URL" in refusal(spec(exchange="jobs"), no_broker)[1]


def test_the_built_in_kinds_take_no_options():
    parameter, message = refusal(spec(options={"method": "GET"}))
    assert parameter == "options" and "the http kind takes no options" in message


def test_a_new_kind_validates_its_own_options(record):
    kinds.validate(spec(kind="record", options={"to": "a"}), SETTINGS)
    for bad in (None, {}, {"to": 1}, {"to": "a", "also": "b"}):
        parameter, message = refusal(spec(kind="record", options=bad))
        assert parameter == "options" and '{"to": <a list name>}' in message


# -- delivery through the real path ----------------------------------------------------------


def test_a_new_kind_delivers_through_the_real_path(record, mariadb_url, make_store):
    """fence, the kind's deliver, settle: its outcomes drive the job as an HTTP answer would,
    and the history shows no HTTP status for it."""
    store = make_store(mariadb_url)
    settings = settings_on(mariadb_url, store.table.name)
    for body in ("ok", "fail", "later"):
        store.put(spec(body, kind="record", options={"to": "mine"}))
    claimed = {run.body: run for run in store.claim(10)}
    runs = [claimed[b] for b in ("ok", "fail", "later")]
    assert {(run.kind, str(run.options)) for run in runs} == {("record", "{'to': 'mine'}")}
    outcomes = deliver(settings, runs)
    assert outcomes == [Outcome.DONE, Outcome.RETRY, Outcome.NOT_SENT]
    assert Record.lists == {"mine": ["ok"]}
    ok, failed, later = (store.get("feeds", b) for b in ("ok", "fail", "later"))
    assert ok.success_count == 1 and not ok.running
    assert failed.attempts == 1 and failed.last_error == "asked to fail: fail"
    assert later.attempts == 0 and later.error_count == 1  # not sent: no retry used
    client = Client(settings, store=store)
    (done,) = client.history("feeds", "ok")
    assert (done["status"], done["error"], done["outcome"]) == (None, None, "done")
    (retry,) = client.history("feeds", "fail")
    assert (retry["status"], retry["error"]) == (None, "asked to fail: fail")


def test_a_run_of_a_kind_this_worker_does_not_know_fails_and_is_retried(mariadb_url, make_store):
    store = make_store(mariadb_url)
    settings = settings_on(mariadb_url, store.table.name)
    store.put(spec())
    (run,) = store.claim(10)
    assert deliver(settings, [replace(run, kind="kala")]) == [Outcome.RETRY]
    assert "no callback kind 'kala'" in store.get("feeds", "1").last_error


def test_a_new_kind_runs_through_beat_and_a_worker(record, make_stack):
    """A claim as beat makes it, the messages (tasks of one run and of several) carry their kind
    and options, the worker's tasks hand the runs to the kind."""
    stack = make_stack(beat=False)
    bodies = [str(i) for i in range(6)]  # one claim, cut into tasks of 2, 2, 1 and 1 runs
    stack.store.put_many([spec(body, kind="record", options={"to": "beat"}) for body in bodies])
    tasks = messages.tasks(stack.store.claim(10), stack.settings.runs_per_task)  # as beat does
    assert sorted(len(messages.runs_of(t.name, t.kwargs)) for t in tasks) == [1, 1, 2, 2]
    messages.publish(stack.app, stack.app.amqp.queues[stack.settings.queue], tasks)
    recorded = lambda: Record.lists.get("beat", [])  # noqa: E731
    wait_until(lambda: len(recorded()) == len(bodies), what=lambda: f"recorded {recorded()}")
    assert sorted(recorded()) == bodies
    assert stack.endpoint.calls == []


# -- a job names its kind over the API -------------------------------------------------------


def test_put_names_a_kind_and_its_options_and_get_shows_them(record, mariadb_url):
    with api_client(mariadb_url) as api:
        put = api.put('/jobs/feeds/1?interval=60&kind=record&options={"to": "mine"}')
        assert put.status_code == 201, put.get_json()
        shown = api.get("/jobs/feeds/1").get_json()
        assert (shown["kind"], shown["options"]) == ("record", {"to": "mine"})
        job = api.store.get("feeds", "1")
        assert (job.kind, job.options) == ("record", {"to": "mine"})
        assert api.put("/jobs/feeds/2?interval=60").status_code == 201
        assert "kind" not in api.get("/jobs/feeds/2").get_json()  # Dalga's job JSON as it was


@pytest.mark.parametrize(
    ("query", "parameter", "says"),
    [
        ("kind=Record", "kind", "is not a callback kind's name"),
        ("kind=" + "k" * 33, "kind", "is not a callback kind's name"),
        ("kind=nosuch", "kind", "no callback kind 'nosuch'"),
        ("kind=task", "task", "the task kind needs a task"),
        ("kind=record&options=x", "options", "is not JSON"),
        ("kind=record&options=[1]", "options", "must be a JSON object"),
        ("kind=record&options=NaN", "options", "is not JSON"),
        ('kind=record&options={"to": NaN}', "options", "is not JSON"),
        ("kind=record&options=" + "[" * 5000, "options", "is not JSON"),
        ("kind=record&options=" + "{}" * 4100, "options", "longer than 8192 characters"),
        ('kind=record&options={"to": 1}', "options", '{"to": <a list name>}'),
        ('options={"method": "GET"}', "options", "the http kind takes no options"),
        ("kind=http&task=app.refresh", "kind", "cannot be combined with task"),
    ],
)
def test_a_bad_kind_or_options_is_a_400_naming_it_and_writes_nothing(
    record, mariadb_url, query, parameter, says
):
    with api_client(mariadb_url) as api:
        answer = api.put(f"/jobs/feeds/1?interval=60&{query}")
        assert answer.status_code == 400, answer.get_data(as_text=True)
        error = answer.get_json()
        assert error["parameter"] == parameter and says in error["error"]
        assert api.get("/jobs/feeds/1").status_code == 404


def test_a_kinds_name_must_fit_its_column():
    class Long(Record):
        name = "k" * 33

    with pytest.raises(ValueError, match="name must match"):
        kinds.register(Long())
    assert "k" * 33 not in kinds.registry


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("task=app.refresh%0A", "is not a dotted Celery task name"),
        ("exchange=jobs%0A", "is not an AMQP exchange"),
        ("kind=http%0A", "is not a callback kind's name"),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(mariadb_url, query, says):
    with api_client(mariadb_url) as api:
        answer = api.put(f"/jobs/feeds/1?interval=60&{query}")
        assert answer.status_code == 400 and says in answer.get_json()["error"]
        assert api.get("/jobs/feeds/1").status_code == 404
