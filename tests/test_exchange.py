"""The exchange mode on the machine's RabbitMQ: a job publishes its body to an AMQP exchange
(routing key = path, persistent, expiring after the interval) instead of calling HTTP, with
publisher confirms; a real consumer, real beats and a RabbitMQ restart lose nothing."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections import defaultdict
from datetime import timedelta

import pytest
from helpers import settings_on, unique_table
from kombu import Connection, Exchange, Queue
from kombu.mixins import ConsumerMixin
from processes import celery, dalga_env, start, stop
from waiting import wait_until

from celery_dalga.process import store_for
from celery_dalga.spec import parse_spec


class Consumer(ConsumerMixin):
    """A consumer in a thread, reconnecting by itself, recording every message it gets."""

    def __init__(self, url: str, queue: Queue):
        self.connection = Connection(url)
        self.queue = queue
        self.messages: list[tuple[str, str, dict, dict]] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def get_consumers(self, consumer_cls, channel):
        return [consumer_cls(queues=[self.queue], callbacks=[self.on_message], accept=None)]

    def on_message(self, body, message) -> None:
        with self.lock:
            self.messages.append(
                (
                    message.delivery_info["routing_key"],
                    body.decode() if isinstance(body, bytes) else body,
                    dict(message.properties),
                    dict(message.headers),
                )
            )
        message.ack()

    def got(self) -> list[tuple[str, str, dict, dict]]:
        with self.lock:
            return list(self.messages)

    def wait_for(self, count: int, timeout: float = 30) -> list:
        wait_until(
            lambda: len(self.got()) >= count,
            timeout,
            lambda: f"{len(self.got())} messages, wanted {count}",
        )
        return self.got()


@pytest.fixture
def exchange(rabbitmq_url):
    """A durable topic exchange with a durable queue bound to every routing key, consumed by
    a Consumer; both deleted afterwards."""
    name = f"dalga-x-{uuid.uuid4().hex[:8]}"
    topic = Exchange(name, "topic", durable=True)
    queue = Queue(f"{name}-q", topic, routing_key="#", durable=True)
    with Connection(rabbitmq_url) as conn:
        queue(conn.default_channel).declare()
    consumer = Consumer(rabbitmq_url, queue)
    consumer.thread.start()
    yield name, consumer
    consumer.should_stop = True
    consumer.thread.join(10)
    with Connection(rabbitmq_url) as conn:
        queue(conn.default_channel).delete()
        topic(conn.default_channel).delete()


def test_a_job_with_an_exchange_publishes_instead_of_calling(make_stack, rabbitmq_url, exchange):
    name, consumer = exchange
    stack = make_stack(publish_url=rabbitmq_url, allowed_exchanges=f"other,{name}")
    resp = stack.api.put(f"/jobs/feeds.rss/42?interval=2&immediate=true&exchange={name}")
    assert resp.status_code == 201 and resp.get_json()["exchange"] == name
    routing_key, body, properties, headers = consumer.wait_for(1)[0]
    assert (routing_key, body) == ("feeds.rss", "42")
    assert properties["delivery_mode"] == 2 and properties["expiration"] == "2000"
    assert properties["content_type"] == "application/octet-stream"
    assert headers["interval"] == 2.0 and headers["dalga-sched"] == resp.get_json()["next_sched"]
    consumer.wait_for(2, timeout=15)
    assert stack.endpoint.calls == []  # nothing went over HTTP
    job = stack.store.get("feeds.rss", "42")
    assert job.success_count >= 1 and job.error_count == 0
    confirmed = stack.api.get("/jobs/feeds.rss/42/runs").get_json()["runs"][-1]
    assert (confirmed["status"], confirmed["outcome"]) == (None, "done")  # a confirm, no 200


def test_the_global_exchange_publishes_as_a_jobs_own_exchange_does(
    make_stack, rabbitmq_url, exchange
):
    """DALGA_PUBLISH_EXCHANGE: every job publishes, expiring after its interval, with the
    `interval` header and `dalga-sched` as the callback has it (Dalga's RFC 3339)."""
    name, consumer = exchange
    stack = make_stack(publish_url=rabbitmq_url, publish_exchange=name)
    resp = stack.api.put("/jobs/feeds.atom/7?interval=2&immediate=true&location=Europe/Istanbul")
    routing_key, body, properties, headers = consumer.wait_for(1)[0]
    assert (routing_key, body) == ("feeds.atom", "7")
    assert properties["expiration"] == "2000" and headers["interval"] == 2.0
    assert headers["dalga-sched"] == resp.get_json()["next_sched"]
    assert headers["dalga-sched"].endswith("+03:00")
    assert stack.endpoint.calls == []


def test_a_message_no_queue_takes_is_retried_with_backoff(make_stack, rabbitmq_url, exchange):
    name, consumer = exchange
    stack = make_stack(publish_url=rabbitmq_url, publish_exchange="amq.default")
    stack.api.put("/jobs/nobody-listens/1?one-off=true&immediate=true")
    wait_until(lambda: stack.store.get("nobody-listens", "1").error_count >= 2, 20, every=0.1)
    job = stack.store.get("nobody-listens", "1")
    assert "Unroutable" in job.last_error and job.attempts >= 2
    assert consumer.got() == []


def test_an_exchange_needs_an_amqp_broker_to_publish_to(make_stack):
    stack = make_stack(allowed_exchanges="jobs")  # Redis broker, no DALGA_PUBLISH_URL
    resp = stack.api.put("/jobs/a/b?interval=60&exchange=jobs")
    assert resp.status_code == 400 and resp.get_json()["parameter"] == "exchange"
    assert "DALGA_PUBLISH_URL" in resp.get_json()["error"]
    bad = stack.api.put("/jobs/a/b?interval=60&exchange=no spaces")
    assert bad.status_code == 400 and bad.get_json()["parameter"] == "exchange"
    assert stack.store.get("a", "b") is None


def test_two_beats_and_a_rabbitmq_restart_lose_nothing(
    mariadb_url, redis_url, rabbitmq_url, exchange, tmp_path
):
    """Two beats and a worker (real processes, Redis as Celery's broker) publish 120 one-off
    and 10 interval jobs to RabbitMQ while it is restarted; every run reaches the consumer."""
    name, consumer = exchange
    settings = settings_on(
        mariadb_url,
        unique_table(),
        queue=f"exchange-{uuid.uuid4().hex[:8]}",
        publish_url=rabbitmq_url,
        publish_exchange=name,
        retry_interval=0.5,
        retry_max_interval=2.0,
        callback_timeout=3.0,
    )
    store = store_for(settings)
    store.create_table()
    env = dalga_env(settings, broker_url=redis_url)
    procs = [start(celery("worker", "--pool", "threads", "-c", "2"), env, tmp_path, "worker.log")]
    procs += [start(celery("beat"), env, tmp_path, f"beat{i}.log") for i in range(2)]
    try:
        begin = store.now() + timedelta(seconds=4)
        for i in range(120):
            first = (begin + timedelta(seconds=i * 0.15)).isoformat()
            store.put(parse_spec("once", str(i), {"one-off": "true", "first-run": first}))
        for i in range(10):
            store.put(
                parse_spec("every", str(i), {"interval": "2", "first-run": begin.isoformat()})
            )
        time.sleep(8)  # pacing: runs are flowing when RabbitMQ stops
        subprocess.run(["rabbitmqctl", "stop_app"], check=True, capture_output=True)
        time.sleep(3)  # pacing: RabbitMQ down for 3 s
        subprocess.run(["rabbitmqctl", "start_app"], check=True, capture_output=True)
        wait_until(
            lambda: (
                {b for k, b, _, _ in consumer.got() if k == "once"} == {str(i) for i in range(120)}
            ),
            60,
            "one-off runs missing after the restart",
            every=0.2,
        )
        for i in range(10):
            store.set_enabled("every", str(i), enabled=False)
    finally:
        subprocess.run(["rabbitmqctl", "start_app"], capture_output=True)  # whatever happened
        codes = [stop(p) for p in procs]
        store.drop_table()
    failures = procs[0].log_path.read_text().count("error=AMQP")
    by_run = defaultdict(set)
    for routing_key, body, properties, _ in consumer.got():
        by_run[(routing_key, body)].add(properties["message_id"])
    assert all(len(ids) == 1 for k, ids in by_run.items() if k[0] == "once")  # retries: same key
    assert {b for k, b in by_run if k == "every"} == {str(i) for i in range(10)}
    every = [(p, h) for k, _, p, h in consumer.got() if k == "every"]
    assert all(p["expiration"] == "2000" and h["interval"] == 2.0 for p, h in every)
    assert failures > 0  # the restart was felt, and the runs it failed were retried
    assert codes == [0, 0, 0]
