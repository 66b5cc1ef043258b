"""The callback tasks' messages for a claimed batch of runs, and publishing them in one go.

A batch is cut into tasks (split): a task of one run is an `http_callback` whose arguments are
the run, a task of several runs an `http_callbacks` that carries them as named columns (a
field's values, one per run; fields at their defaults left out); Flower shows each task's
runs. Every message is an ordinary Celery protocol-2 task. Celery builds one
message per task name and batch (create_task_message, as send_task would); each task copies
it with its own task id, keyword arguments and the argument repr Flower shows. On a Redis
broker the batch is written with pipelined multi-value LPUSHes, each message the envelope
kombu's Redis transport would write (encoded once per batch, with slots for what differs per
task); on any other broker it goes through kombu's Producer (batched where the transport can
batch). Publishing every message through send_task and kombu's per-message layers cost more
than all the rest of beat's work (bench/README.md).
"""

from __future__ import annotations

import json
import re
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring_ascii as encode_string
from typing import Any
from uuid import uuid4

from celery import Celery, signals
from celery.app.amqp import task_message
from kombu import Queue

from celery_dalga.jobs import Run, job_key

TASK_NAME = "celery_dalga.http_callback"
BATCH_TASK_NAME = "celery_dalga.http_callbacks"
LPUSH_BYTES = 8 << 20  # the most one LPUSH carries (the envelopes are ASCII JSON)
SPREAD = 4  # a batch is cut into at least this many tasks, so that every worker gets some
SHOWN = 3  # runs a batch task's repr names
# a Run's optional fields, in its order, with their defaults: a message carries those that differ
OPTIONAL: dict[str, Any] = {
    "manual": False,
    "exchange": None,
    "expires": None,
    "task": None,
    "location": "UTC",
    "kind": None,
    "options": None,
}
POSITIONAL = ("exchange", "expires", "task", "location")  # after manual, in earlier versions' lists


@dataclass(frozen=True)
class Task:
    """One task message: the task's name, id, keyword arguments and the repr Flower shows."""

    name: str
    id: str
    kwargs: dict[str, Any]
    kwargsrepr: str


def split(runs: list[Run], runs_per_task: int) -> list[list[Run]]:
    """The batch cut into tasks of near-equal size: at least SPREAD tasks (one run each while
    the batch is that small), at most runs_per_task runs each."""
    count = min(len(runs), max(SPREAD, -(-len(runs) // runs_per_task)))
    size, extra = divmod(len(runs), count) if runs else (0, 0)
    groups, at = [], 0
    for i in range(count):
        end = at + size + (i < extra)
        groups.append(runs[at:end])
        at = end
    return groups


def tasks(runs: list[Run], runs_per_task: int) -> list[Task]:
    """The tasks that carry a claimed batch of runs (all with the claim's token)."""
    return [
        run_task(group[0]) if len(group) == 1 else batch_task(group, index)
        for index, group in enumerate(split(runs, runs_per_task))
    ]


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def run_task(run: Run) -> Task:
    """An http_callback task: its keyword arguments are the run, path, body and time first;
    its id is stable for the run, so that a re-delivery shows in Flower as the same run."""
    kind = "trigger" if run.manual else "sched"
    return Task(
        TASK_NAME,
        run.task_id,
        {
            "path": run.path,
            "body": run.body,
            "sched": run.sched.isoformat(),
            "job_id": run.job_id,
            "key": run.key,
            "token": run.token,
            "manual": run.manual,
            **_optional(run),
        },
        f"{{'path': {run.path!r}, 'body': {_cut(run.body)!r}, "
        f"'{kind}': '{run.sched.isoformat()}'}}",
    )


def batch_task(runs: list[Run], index: int) -> Task:
    """An http_callbacks task: the claim's token and its runs as named columns (a list of
    values per field, a value per run: job_id, path, body, sched, and the optional fields
    that are not at their defaults in every run; the key is the path's and body's). Flower
    shows how many runs it carries and the first few."""
    token = runs[0].token
    shown = [f"{_cut(r.path, 60)} {_cut(r.body, 40)}" for r in runs[:SHOWN]]
    columns: dict[str, list[Any]] = {
        "job_id": [r.job_id for r in runs],
        "path": [r.path for r in runs],
        "body": [r.body for r in runs],
        "sched": [r.sched.isoformat() for r in runs],
    }
    for name, default in OPTIONAL.items():
        values = [getattr(r, name) for r in runs]
        if any(value != default for value in values):
            columns[name] = values
    return Task(
        BATCH_TASK_NAME,
        f"dalga-{token}-{index}",
        {"token": token, "runs": columns},
        f"{{'runs': {len(runs)}, 'first': {shown!r}, 'sched': '{runs[0].sched.isoformat()}'}}",
    )


def _optional(run: Run) -> dict[str, Any]:
    """The run's optional fields that are not at their defaults."""
    return {
        name: getattr(run, name)
        for name, default in OPTIONAL.items()
        if getattr(run, name) != default
    }


def runs_of(name: str, kwargs: dict[str, Any]) -> list[Run]:
    """The runs that a task named `name` with these keyword arguments carries; also those of
    earlier versions' messages (a batch's runs as lists: [job_id, path, body, sched, manual,
    *POSITIONAL], the trailing ones at their defaults left out)."""
    if name != BATCH_TASK_NAME:
        return [_run(kwargs, kwargs["key"], kwargs["token"])]
    token, runs = kwargs["token"], kwargs["runs"]
    if isinstance(runs, list):
        return [_run(_named(values), None, token) for values in runs]
    count = len(runs["job_id"])
    optional = [runs.get(name, [default] * count) for name, default in OPTIONAL.items()]
    return [
        Run(job_id, job_key(path, body), path, body, datetime.fromisoformat(sched), token, *rest)
        for job_id, path, body, sched, *rest in zip(
            runs["job_id"], runs["path"], runs["body"], runs["sched"], *optional, strict=True
        )
    ]


def _named(values: list[Any]) -> dict[str, Any]:
    """A run of an earlier version's batch, as named fields."""
    job_id, path, body, sched, manual, *optional = values
    named = {"job_id": job_id, "path": path, "body": body, "sched": sched, "manual": manual}
    return {**named, **dict(zip(POSITIONAL, optional, strict=False))}


def _run(fields: dict[str, Any], key: str | None, token: str) -> Run:
    """The Run of a message's fields (a batch's runs carry no key: it is their path's and
    body's)."""
    path, body = fields["path"], fields["body"]
    return Run(
        fields["job_id"],
        key or job_key(path, body),
        path,
        body,
        datetime.fromisoformat(fields["sched"]),
        token,
        **{name: fields.get(name, default) for name, default in OPTIONAL.items()},
    )


class TaskMessages:
    """A task name's message template for a batch, built once by Celery; message(task) fills
    in one task."""

    def __init__(self, app: Celery, name: str):
        self.headers, self.properties, body, self.sent_event = app.amqp.create_task_message(
            "",
            name,
            (),
            {},
            reply_to=app.thread_oid,
            create_sent_event=app.conf.task_send_sent_event,
            ignore_result=True,
            argsrepr="()",
            kwargsrepr="",
        )
        self.embed = body[2]

    def message(self, task: Task) -> task_message:
        """The template with this task's id, keyword arguments and repr."""
        task_id, kwargsrepr = task.id, task.kwargsrepr
        sent_event = None
        if self.sent_event:
            sent_event = {**self.sent_event, "uuid": task_id, "root_id": task_id}
            sent_event["kwargs"] = kwargsrepr
        return task_message(
            headers={**self.headers, "id": task_id, "root_id": task_id, "kwargsrepr": kwargsrepr},
            properties={**self.properties, "correlation_id": task_id},
            body=((), task.kwargs, self.embed),
            sent_event=sent_event,
        )


def publish(app: Celery, queue: Queue, tasks: list[Task]) -> None:
    """Publish the tasks to `queue`, as one broker round trip where the broker allows.
    Raises whatever the broker raises; nothing is retried here."""
    templates = {name: TaskMessages(app, name) for name in {task.name for task in tasks}}
    with app.producer_or_acquire() as producer:
        producer.maybe_declare(queue)
        if pipelined(app, producer, queue):
            publish_to_redis(producer, queue, templates, tasks)
            return
        send = app.amqp.send_task_message
        with producer.batch(len(tasks)):
            for task in tasks:
                send(
                    producer,
                    task.name,
                    templates[task.name].message(task),
                    queue=queue,
                    retry=False,
                )


def pipelined(app: Celery, producer: Any, queue: Queue) -> bool:
    """Whether the batch can go straight into a Redis pipeline: a Redis broker, the queue
    reached directly by name, JSON, and nothing that needs the per-message path (compression,
    queue expiry, sent events, before/after_task_publish receivers)."""
    return (
        producer.connection.transport.driver_type == "redis"
        and queue.exchange.type == "direct"
        and not getattr(queue, "expires", None)
        and app.conf.task_serializer == "json"
        and not app.conf.task_compression
        and not app.conf.task_send_sent_event
        and not signals.before_task_publish.receivers
        and not signals.after_task_publish.receivers
    )


def publish_to_redis(
    producer: Any, queue: Queue, templates: dict[str, TaskMessages], tasks: list[Task]
) -> None:
    """LPUSH each task's message as kombu's Redis transport writes it, many to a command (the
    list ends up as one LPUSH per task would leave it, so workers take the tasks in order), the
    commands in one pipeline. A command carries at most LPUSH_BYTES, so that a large batch of
    long bodies does not hold up Redis with one huge command."""
    envelopes = {name: RedisEnvelope(template, queue) for name, template in templates.items()}
    filled = []
    for task in tasks:
        body = json.dumps(((), task.kwargs, templates[task.name].embed))
        filled.append(
            envelopes[task.name].fill(
                body=b64encode(body.encode()).decode(),
                task_id=task.id,
                kwargsrepr=task.kwargsrepr,
                delivery_tag=str(uuid4()),
            )
        )
    with producer.channel.conn_or_acquire() as client, client.pipeline(False) as pipe:
        for chunk in size_chunks(filled, LPUSH_BYTES):
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

    def __init__(self, messages: TaskMessages, queue: Queue):
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
