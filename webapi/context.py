"""What the views take from the app: the Client, the instance they answer as, the Guard,
the table's metric gauges and its cached status, set by create_app in app.extensions["dalga"]."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from prometheus_client import CollectorRegistry

from celery_dalga.client import Client
from celery_dalga.instances import Instance
from celery_dalga.store.status import CachedStatus
from webapi.auth import Guard


@dataclass(frozen=True)
class Dalga:
    """The app's dependencies, one per app."""

    client: Client
    instance: Instance
    guard: Guard
    gauges: CollectorRegistry  # the jobs table's, for /metrics
    status: CachedStatus  # the table's status, its counts cached


def dalga() -> Dalga:
    """The current app's dependencies."""
    return current_app.extensions["dalga"]
