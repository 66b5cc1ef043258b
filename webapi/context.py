"""What the views take from the app: the Client, the instance they answer as, the Guard and
the table's metric gauges, set by create_app in app.extensions["dalga"]."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from prometheus_client import CollectorRegistry

from celery_dalga.client import Client
from celery_dalga.instances import Instance
from webapi.auth import Guard


@dataclass(frozen=True)
class Dalga:
    """The app's dependencies, one per app."""

    client: Client
    instance: Instance
    guard: Guard
    gauges: CollectorRegistry  # the jobs table's, for /metrics


def dalga() -> Dalga:
    """The current app's dependencies."""
    return current_app.extensions["dalga"]
