"""http_callback task messages for a batch of runs, and publishing them in one go.

Every message is an ordinary Celery protocol-2 task. Celery builds one message per batch
(create_task_message, as send_task would); each run copies it with its own task id, keyword
arguments and the argument repr Flower shows. On a Redis broker the batch is written with
pipelined multi-value LPUSHes, each message the envelope kombu's Redis transport would write
(encoded once per batch, with slots for what differs per run); on any other broker it goes
through kombu's Producer (batched where the transport can batch).
Publishing every message through send_task and kombu's per-message layers cost more than all
the rest of beat's work (bench/README.md).
"""

from __future__ import annotations

import json
import re
from base64 import b64encode
from collections.abc import Iterator
from json.encoder import encode_basestring_ascii as encode_string
from typing import Any
from uuid import uuid4

from celery import Celery, signals
from celery.app.amqp import task_message
from kombu import Queue

from celery_dalga.store import Run

TASK_NAME = "celery_dalga.http_callback"
LPUSH_BYTES = 8 << 20  # the most one LPUSH carries (the envelopes are ASCII JSON)


def task_repr(run: Run) -> str:
    """What Flower shows as the task's arguments: path, body (cut at 200 chars), sched."""
    body = run.body if len(run.body) <= 200 else run.body[:200] + "..."
    kind = "trigger" if run.manual else "sched"
    return f"{{'path': {run.path!r}, 'body': {body!r}, '{kind}': '{run.sched.isoformat()}'}}"


def task_kwargs(run: Run) -> dict[str, Any]:
    """The task's keyword arguments, readable in Flower: path, body, scheduled time first."""
    return {
        "path": run.path,
        "body": run.body,
        "sched": run.sched.isoformat(),
        "job_id": run.job_id,
        "key": run.key,
        "token": run.token,
        "manual": run.manual,
    }


class RunMessages:
    """The batch's message template, built once by Celery; message(run) fills in one run."""

    def __init__(self, app: Celery):
        self.headers, self.properties, body, self.sent_event = app.amqp.create_task_message(
            "",
            TASK_NAME,
            (),
            {},
            reply_to=app.thread_oid,
            create_sent_event=app.conf.task_send_sent_event,
            ignore_result=True,
            argsrepr="()",
            kwargsrepr="",
        )
        self.embed = body[2]

    def message(self, run: Run) -> task_message:
        """The template with this run's task id, keyword arguments and repr."""
        task_id, kwargsrepr = run.task_id, task_repr(run)
        sent_event = None
        if self.sent_event:
            sent_event = {**self.sent_event, "uuid": task_id, "root_id": task_id}
            sent_event["kwargs"] = kwargsrepr
        return task_message(
            headers={**self.headers, "id": task_id, "root_id": task_id, "kwargsrepr": kwargsrepr},
            properties={**self.properties, "correlation_id": task_id},
            body=((), task_kwargs(run), self.embed),
            sent_event=sent_event,
        )


def publish(app: Celery, queue: Queue, runs: list[Run]) -> None:
    """Publish one http_callback task per run to `queue`, as one broker round trip where the
    broker allows. Raises whatever the broker raises; nothing is retried here."""
    messages = RunMessages(app)
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(queue)
        if pipelined(app, producer, queue):
            publish_to_redis(producer, queue, messages, runs)
            return
        send = app.amqp.send_task_message
        with producer.batch(len(runs)):
            for run in runs:
                send(producer, TASK_NAME, messages.message(run), queue=queue, retry=False)


def pipelined(app: Celery, producer: Any, queue: Queue) -> bool:
    """Whether the batch can go straight into a Redis pipeline: a Redis broker, the queue
    reached directly by name, JSON, and nothing that needs the per-message path (compression,
    queue expiry, sent events, before/after_task_publish receivers)."""
    return (
        producer.connection.transport.driver_type == "redis"
        and queue.exchange.type == "direct"
        and not queue.expires
        and app.conf.task_serializer == "json"
        and not app.conf.task_compression
        and not app.conf.task_send_sent_event
        and not signals.before_task_publish.receivers
        and not signals.after_task_publish.receivers
    )


def publish_to_redis(producer: Any, queue: Queue, messages: RunMessages, runs: list[Run]) -> None:
    """LPUSH each run's message as kombu's Redis transport writes it, many to a command (the
    list ends up as one LPUSH per run would leave it, so workers take the runs in order), the
    commands in one pipeline. A command carries at most LPUSH_BYTES, so that a large batch of
    long bodies does not hold up Redis with one huge command."""
    envelope = RedisEnvelope(messages, queue)
    envelopes = []
    for run in runs:
        task_id = run.task_id
        body = json.dumps(((), task_kwargs(run), messages.embed))
        envelopes.append(
            envelope.fill(
                body=b64encode(body.encode()).decode(),
                task_id=task_id,
                kwargsrepr=task_repr(run),
                delivery_tag=str(uuid4()),
            )
        )
    with producer.channel.conn_or_acquire() as client, client.pipeline(False) as pipe:
        for chunk in size_chunks(envelopes, LPUSH_BYTES):
            pipe.lpush(queue.name, *chunk)
        pipe.execute()


def size_chunks(texts: list[str], limit: int) -> Iterator[list[str]]:
    """`texts` in order, in runs of at most `limit` characters (or one text, if longer)."""
    chunk: list[str] = []
    size = 0
    for text in texts:
        if chunk and size + len(text) > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text)
    if chunk:
        yield chunk


class RedisEnvelope:
    """The batch's Redis envelope (kombu's layout) as JSON text cut at the values each run
    fills in: a message costs a join instead of encoding the whole envelope again."""

    SLOTS = ("body", "task_id", "kwargsrepr", "delivery_tag")

    def __init__(self, messages: RunMessages, queue: Queue):
        slot = {name: f"\0{name}-{uuid4().hex}\0" for name in self.SLOTS}  # nothing else matches
        envelope = {
            "body": slot["body"],
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                **messages.headers,
                "id": slot["task_id"],
                "root_id": slot["task_id"],
                "kwargsrepr": slot["kwargsrepr"],
            },
            "properties": {
                **messages.properties,
                "correlation_id": slot["task_id"],
                "delivery_mode": queue.exchange.delivery_mode or 2,
                "delivery_info": {"exchange": "", "routing_key": queue.name},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": slot["delivery_tag"],
            },
        }
        by_text = {json.dumps(marker): name for name, marker in slot.items()}
        pieces = re.split("(" + "|".join(map(re.escape, by_text)) + ")", json.dumps(envelope))
        self.texts = pieces[0::2]
        self.slots = [by_text[piece] for piece in pieces[1::2]]

    def fill(self, **values: str) -> str:
        """The envelope with each slot holding its value, JSON-encoded."""
        out = [self.texts[0]]
        for name, text in zip(self.slots, self.texts[1:], strict=True):
            out += (encode_string(values[name]), text)
        return "".join(out)
