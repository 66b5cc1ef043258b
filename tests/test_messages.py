"""celery_dalga.messages: the pipelined Redis path writes what kombu would, and every path
delivers real callbacks through a real worker (Redis and RabbitMQ)."""

import base64
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
import redis
from celery import Celery, signals
from kombu import Queue

from celery_dalga import messages
from celery_dalga.jobs import Run, job_key


def runs(count: int) -> list[Run]:
    """Runs whose paths and bodies need escaping; run 2 is a manual trigger."""
    sched = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    return [
        Run(
            i,
            f"{i:064x}",
            f"feeds/{i}\"\\'q",
            f'body {i} é "\\\n😀 \x00kwargsrepr\x00',
            sched,
            "t" * 32,
            manual=i == 2,
        )
        for i in range(count)
    ]


@pytest.fixture
def redis_app(redis_url):
    queue = f"dalga-msg-{uuid.uuid4().hex[:8]}"
    app = Celery("msg-test", broker=redis_url, set_as_current=False)
    app.conf.task_default_queue = queue
    yield app, app.amqp.queues[queue]
    redis.Redis.from_url(redis_url).delete(queue)


def popped(app: Celery, queue: Queue, count: int) -> list[dict]:
    with app.connection_for_write() as conn:
        client = conn.default_channel.client
        assert client.llen(queue.name) == count
        return [json.loads(client.rpop(queue.name)) for _ in range(count)]


def test_pipelined_messages_are_the_ones_kombu_writes(redis_app):
    app, queue = redis_app
    with app.producer_or_acquire() as producer:
        assert messages.pipelined(app, producer, queue)
    tasks = [messages.run_task(run) for run in runs(3)] + [messages.batch_task(runs(5), 0)]
    messages.publish(app, queue, tasks)
    ours = popped(app, queue, 4)

    seen = []

    def hook(sender=None, headers=None, **_):
        seen.append(headers["id"])

    signals.before_task_publish.connect(hook)  # a receiver sends the batch through kombu
    try:
        messages.publish(app, queue, tasks)
    finally:
        signals.before_task_publish.disconnect(hook)
    kombus = popped(app, queue, 4)
    assert len(seen) == 4

    tags = [m["properties"]["delivery_tag"] for m in ours]
    assert len(set(tags)) == 4 and all(uuid.UUID(tag).version == 4 for tag in tags)
    for mine, theirs in zip(ours, kombus, strict=True):
        assert mine["properties"].pop("delivery_tag") != theirs["properties"].pop("delivery_tag")
        mine_body = json.loads(base64.b64decode(mine.pop("body")))
        assert mine_body == json.loads(base64.b64decode(theirs.pop("body")))
        assert mine == theirs
    assert ours[2]["headers"]["kwargsrepr"].endswith("'trigger': '2026-11-23T12:00:00+00:00'}")
    assert ours[3]["headers"]["task"] == "celery_dalga.http_callbacks"
    assert ours[3]["headers"]["kwargsrepr"].startswith("{'runs': 5, 'first': ['feeds/0")


def test_a_batch_task_carries_its_runs_whole():
    batch = [replace(run, key=job_key(run.path, run.body)) for run in runs(5)]
    task = messages.batch_task(batch, 3)
    assert task.id == f"dalga-{'t' * 32}-3"
    assert messages.runs_of(task.name, json.loads(json.dumps(task.kwargs))) == batch
    single = messages.run_task(batch[0])
    assert messages.runs_of(single.name, json.loads(json.dumps(single.kwargs))) == batch[:1]


@pytest.mark.parametrize(
    ("count", "per_task", "sizes"),
    [
        (0, 100, []),
        (1, 100, [1]),
        (4, 100, [1] * 4),  # light load: a task per run
        (6, 100, [2, 2, 1, 1]),
        (12, 100, [3, 3, 3, 3]),
        (500, 100, [100] * 5),
        (501, 100, [84, 84, 84, 83, 83, 83]),
        (1000, 50, [50] * 20),
        (1001, 50, [48] * 14 + [47] * 7),
    ],
)
def test_split_spreads_a_batch_over_tasks_of_at_most_runs_per_task(count, per_task, sizes):
    batch = runs(count)
    groups = messages.split(batch, per_task)
    assert [len(g) for g in groups] == sizes
    assert [run for group in groups for run in group] == batch


def test_a_batch_larger_than_one_lpush_arrives_whole_and_in_order(redis_app, monkeypatch):
    app, queue = redis_app
    monkeypatch.setattr(messages, "LPUSH_BYTES", 5000)  # an envelope is about 1.5 kB
    messages.publish(app, queue, [messages.run_task(run) for run in runs(20)])
    ids = [m["headers"]["id"] for m in popped(app, queue, 20)]
    assert ids == [run.task_id for run in runs(20)]


def test_size_chunks_keep_order_and_limit():
    texts = ["a" * 3, "b" * 3, "c" * 5, "d"]
    assert list(messages.size_chunks(texts, 6)) == [["aaa", "bbb"], ["ccccc", "d"]]
    assert list(messages.size_chunks(["x" * 9], 6)) == [["x" * 9]]
    assert list(messages.size_chunks([], 6)) == []


def test_pipelined_only_where_nothing_needs_the_per_message_path(redis_app, rabbitmq_url):
    app, queue = redis_app
    app.conf.task_compression = "gzip"
    with app.producer_or_acquire() as producer:
        assert not messages.pipelined(app, producer, queue)
    amqp = Celery("msg-test", broker=rabbitmq_url, set_as_current=False)
    with amqp.producer_or_acquire() as producer:
        assert not messages.pipelined(amqp, producer, queue)


def test_callbacks_arrive_through_rabbitmq(make_stack, rabbitmq_url):
    stack = make_stack(broker=rabbitmq_url)
    for i in range(5):
        assert stack.api.put(f"/jobs/rabbit/{i}?one-off=true&immediate=true").status_code == 201
    calls = stack.endpoint.wait_for("rabbit", 5)
    assert sorted(c.body for c in calls) == [str(i) for i in range(5)]


def test_a_run_carries_its_location_and_expires_and_fields_at_defaults_stay_out():
    """Optional fields travel only when they differ from the defaults: a UTC run without an
    exchange is the single-run message of earlier versions, and a batch carries named
    columns, an optional one only when some run needs it."""
    sched = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    plain = Run(1, job_key("feeds", "1"), "feeds", "1", sched, "t" * 32)
    old_keys = "path body sched job_id key token manual"
    assert sorted(messages.run_task(plain).kwargs) == sorted(old_keys.split())
    located = replace(plain, expires=300.0, location="Europe/Istanbul")
    for task in (messages.run_task(located), messages.batch_task([located, plain], 0)):
        decoded = messages.runs_of(task.name, json.loads(json.dumps(task.kwargs)))
        assert decoded[0] == located and decoded[0].dalga_sched == "2026-11-23T15:00:00+03:00"
    assert messages.batch_task([plain, plain], 0).kwargs["runs"] == {
        "job_id": [1, 1],
        "path": ["feeds", "feeds"],
        "body": ["1", "1"],
        "sched": ["2026-11-23T12:00:00.123456+00:00"] * 2,
    }
    columns = messages.batch_task([located, plain], 0).kwargs["runs"]
    assert columns["location"] == ["Europe/Istanbul", "UTC"] and "manual" not in columns


def test_a_run_of_a_named_kind_carries_its_kind_and_options():
    sched = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    run = Run(1, job_key("feeds", "1"), "feeds", "1", sched, "t" * 32, True)
    kala = replace(run, kind="kala", options={"method": "GET", "headers": {"X-A": "1"}})
    for task in (messages.run_task(kala), messages.batch_task([run, kala], 0)):
        decoded = messages.runs_of(task.name, json.loads(json.dumps(task.kwargs)))
        assert decoded[-1] == kala and decoded[-1].options == kala.options
    assert "kind" not in messages.run_task(run).kwargs


def test_an_http_callback_queued_by_an_earlier_version_still_decodes():
    sched = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    plain = Run(1, job_key("feeds", "1"), "feeds", "1", sched, "t" * 32)
    old_single = {  # an http_callback of an exchange job, as the version before wrote it
        "path": "feeds",
        "body": "1",
        "sched": "2026-11-23T12:00:00.123456+00:00",
        "job_id": 1,
        "key": plain.key,
        "token": "t" * 32,
        "manual": False,
        "exchange": "jobs",
        "expires": 60.0,
    }
    (run,) = messages.runs_of(messages.TASK_NAME, old_single)
    assert run == replace(plain, exchange="jobs", expires=60.0)
    assert run.dalga_sched == "2026-11-23T12:00:00Z"
    oldest = {k: v for k, v in old_single.items() if k not in ("manual", "exchange", "expires")}
    assert messages.runs_of(messages.TASK_NAME, oldest) == [plain]


def test_a_batch_of_positional_runs_queued_by_an_earlier_version_still_decodes():
    """[job_id, path, body, instant, manual] followed by [exchange, expires, task, location]
    up to the last one not at its default."""
    sched = datetime(2026, 11, 23, 12, 0, 0, 123456, tzinfo=UTC)
    plain = Run(1, job_key("feeds", "1"), "feeds", "1", sched, "t" * 32)
    at = "2026-11-23T12:00:00.123456+00:00"
    old_batch = {
        "token": "t" * 32,
        "runs": [
            [1, "feeds", "1", at, False],
            [1, "feeds", "1", at, True, "jobs", 60.0, None],
            [1, "feeds", "1", at, False, None, None, "app.refresh", "Europe/Istanbul"],
        ],
    }
    assert messages.runs_of(messages.BATCH_TASK_NAME, old_batch) == [
        plain,
        replace(plain, manual=True, exchange="jobs", expires=60.0),
        replace(plain, task="app.refresh", location="Europe/Istanbul"),
    ]
