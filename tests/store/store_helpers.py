"""Helpers of the store's tests: a job spec by keyword, one run's answer, a hand-moved clock."""

from datetime import UTC, datetime, timedelta

from celery_dalga.runs import Attempt
from celery_dalga.spec import parse_spec


def spec(path="feeds", body="1", **params):
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
