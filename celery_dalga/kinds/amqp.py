"""The amqp kind, the RabbitMQ-era Dalga's: publish the run's body to the job's exchange (or
publish_exchange, for every job) with routing key = its path (celery_dalga.publishing). The
broker's publisher confirm delivers; a nack, a message returned as unroutable, no such
exchange or a lost connection fails."""

from __future__ import annotations

import math
import time
from typing import Any

from celery_dalga import publishing
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds.base import Delivery, Kind, Result, register
from celery_dalga.spec import InvalidParameter, JobSpec, allowed
from celery_dalga.values import shown


class Amqp(Kind):
    """Publish to an AMQP exchange."""

    name = "amqp"

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        """A job's own exchange must be in allowed_exchanges, and there must be a broker to
        publish to (publish_exchange is the operator's own: trusted)."""
        super().validate(spec, settings)
        if not spec.exchange:
            if not settings.publish_exchange:
                raise InvalidParameter("exchange", "the amqp kind needs an exchange")
            return
        if not allowed(settings.allowed_exchanges, spec.exchange):
            raise InvalidParameter(
                "exchange",
                f"{shown(spec.exchange)} is not in the allowed_exchanges setting "
                "(DALGA_ALLOWED_EXCHANGES)",
            )
        if not publishing.publish_url(settings):
            raise InvalidParameter(
                "exchange", "publishing needs an AMQP broker: set DALGA_PUBLISH_URL"
            )

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """Publish the runs one after another over this thread's connection. A run whose own
        exchange is not in allowed_exchanges (a row older than PUT's checks, or a setting
        changed since) fails unpublished."""
        url = publishing.publish_url(settings)
        if not url:
            why = "no AMQP broker to publish to: set DALGA_PUBLISH_URL"
            return [Result.refused(why) for _ in runs]
        publisher = publishing.publisher(url)
        results = []
        for run in runs:
            if run.exchange and not allowed(settings.allowed_exchanges, run.exchange):
                why = f"exchange {run.exchange!r} is not in the allowed_exchanges setting"
                results.append(Result.refused(why))
                continue
            started = time.monotonic()
            try:
                exchange = run.exchange or settings.publish_exchange
                publisher.publish(run, exchange, settings.callback_timeout, instance_id)
                results.append(Result.since(started, Delivery.DELIVERED, "confirmed"))
            except Exception as exc:  # a broker fails in many kinds; each is a retry
                why = f"AMQP {type(exc).__name__}: {exc}"
                results.append(Result.since(started, Delivery.FAILED, why))
        return results


register(Amqp())
