"""Runs published to an AMQP exchange instead of called over HTTP, as the RabbitMQ-era Dalga
did: routing key = the job's path, body = its body, persistent, expiring after the job's
interval. Every message waits for the broker's publisher confirm and is published mandatory,
so a message the broker did not take (nacked, unroutable, connection lost) is a failure that
is retried with the usual backoff; one that was confirmed is delivered. One connection per
thread, opened again after any error.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from kombu import Connection, Exchange

from celery_dalga import process
from celery_dalga.http import Answer
from celery_dalga.jobs import Run

DEFAULT_EXCHANGE = "amq.default"  # RabbitMQ's name for the nameless default exchange


class Unroutable(Exception):
    """The broker returned a mandatory message: no queue is bound for its routing key."""


class Publisher:
    """Publishes runs over one connection to one broker."""

    def __init__(self, url: str):
        self.url = url
        self.connection: Connection | None = None
        self.producer: Any = None
        self.returned: list[Any] = []

    def publish_all(
        self, runs: list[Run], exchange: str, timeout: float, instance_id: int
    ) -> list[Answer]:
        """Publish each run to its exchange (or `exchange`); the answers in the order of runs:
        200 for a confirmed message, None with the error otherwise."""
        answers = []
        for run in runs:
            started = time.monotonic()
            try:
                self._publish(run, run.exchange or exchange, timeout, instance_id)
                status, error = 200, "published"
            except Exception as exc:  # a broker fails in many kinds; each is a retry
                self.close()
                status, error = None, f"AMQP {type(exc).__name__}: {exc}"
            ended = time.monotonic()
            answers.append(Answer(status, error, ended - started, ended))
        return answers

    def _publish(self, run: Run, exchange: str, timeout: float, instance_id: int) -> None:
        if self.producer is None:
            self.connection = Connection(
                self.url,
                connect_timeout=timeout,
                transport_options={"confirm_publish": True},
            )
            self.producer = self.connection.Producer(
                on_return=lambda *returned: self.returned.append(returned)
            )
        self.returned.clear()
        name = "" if exchange == DEFAULT_EXCHANGE else exchange
        self.producer.publish(
            run.body.encode(),
            exchange=Exchange(name) if name else "",
            routing_key=run.path,
            mandatory=True,
            delivery_mode=2,
            expiration=run.expires,
            content_type="application/octet-stream",
            content_encoding="binary",
            message_id=run.idempotency_key,
            headers={
                "interval": run.expires,
                "published_at": datetime.now(UTC).isoformat(),
                "dalga-sched": run.dalga_sched,
                "dalga-instance": instance_id,
            },
            declare=[],
            retry=False,
            timeout=timeout,
        )
        if self.returned:
            raise Unroutable(f"no queue is bound to {exchange!r} for {run.path!r}")

    def close(self) -> None:
        """Drop the connection (it is opened again for the next message)."""
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001 (a connection that broke may fail to close too)
                pass
        self.connection = self.producer = None


def publish_url(settings: Any) -> str:
    """Where runs are published: DALGA_PUBLISH_URL, else the Celery broker if it speaks
    AMQP; empty when neither does."""
    if settings.publish_url:
        return settings.publish_url
    broker = settings.broker_url
    return broker if broker.startswith(("amqp://", "amqps://", "pyamqp://")) else ""


def publisher(url: str) -> Publisher:
    """This thread's Publisher for url (celery_dalga.process keeps it)."""
    return process.per_thread(("amqp publisher", url), lambda: Publisher(url))
