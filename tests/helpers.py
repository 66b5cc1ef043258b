"""Helpers shared by the test modules (importable, unlike conftest)."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from celery_dalga.config import Settings
from celery_dalga.runs import Attempt
from celery_dalga.spec import parse_spec


def unique_table() -> str:
    return f"t_{uuid.uuid4().hex[:10]}"


def settings_on(url: str, table: str, base_url: str = "http://127.0.0.1:1/", **extra) -> Settings:
    """Test settings: fast retries and a short beat loop."""
    values = dict(
        database_url=url,
        table=table,
        base_url=base_url,
        callback_timeout=2.0,
        lease=10.0,
        retry_interval=0.3,
        retry_max_interval=5.0,
        max_interval=0.2,
    )
    values.update(extra)
    return Settings(**values)


@contextmanager
def api_client(url: str) -> Iterator[Any]:
    """A Flask test client of the API on a fresh table of `url` (its Store as .store); the
    table is dropped and the instances stopped afterwards."""
    from celery_dalga import process
    from celery_dalga.process import store_for
    from webapi import create_app

    settings = settings_on(url, unique_table())
    store = store_for(settings)
    store.create_table()
    client = create_app(settings, store).test_client()
    client.store = store
    try:
        yield client
    finally:
        process.stop()
        store.drop_table()


def spec(path="feeds", body="1", **params):
    """A checked JobSpec from Dalga's parameters given as keywords (retry_interval=...)."""
    return parse_spec(path, body, {k.replace("_", "-"): v for k, v in params.items()})


def answer(store, run, status, duration=0.0):
    """Settle one run with this answer (None: no answer came)."""
    error = f"HTTP {status}" if status else "curl error 7: refused"
    return store.settle([Attempt(run, status, error, duration)])[0]


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start=datetime(2026, 6, 1, 12, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += timedelta(seconds=seconds)
