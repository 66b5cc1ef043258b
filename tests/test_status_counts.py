"""/status and /metrics at any size: the table is counted at most once a period per process
(celery_dalga.snapshot), on MariaDB, PostgreSQL and SQLite; the counts are right within that
staleness, and a burst of readers counts once."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from helpers import Clock, api_client

from celery_dalga import snapshot
from celery_dalga.store import status as status_module


@pytest.fixture
def api(any_db_url):
    with api_client(any_db_url) as client:
        client.store.clock = Clock()
        yield client


@pytest.fixture
def counted(monkeypatch):
    """The count calls made (each slowed by `delay` seconds, 0 by default)."""
    calls: list[float] = []
    real = status_module.counts
    delay = {"seconds": 0.0}

    def count(*args, **kwargs):
        calls.append(time.monotonic())
        time.sleep(delay["seconds"])
        return real(*args, **kwargs)

    monkeypatch.setattr(status_module, "counts", count)
    count.calls, count.delay = calls, delay
    return count


@contextmanager
def logged(name: str) -> Iterator[list[logging.LogRecord]]:
    """The records that logger emits meanwhile, whatever earlier tests did to logging's
    configuration (pytest's caplog relies on propagation to the root logger)."""
    records: list[logging.LogRecord] = []
    logger, handler = logging.getLogger(name), logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    level, disabled = logger.level, logger.disabled
    logger.level, logger.disabled = logging.DEBUG, False  # a dictConfig may have disabled it
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.level, logger.disabled = level, disabled


def status_of(api) -> dict:
    return api.get("/status").get_json()


def cached(api):
    return api.application.extensions["dalga"].status


def test_counts_are_right_within_the_stated_staleness(api, counted):
    clock = api.store.clock
    api.put("/jobs/a/1?interval=60")
    api.put("/jobs/a/2?interval=60&immediate=true")
    first = status_of(api)
    assert (first["total_jobs"], first["pending_jobs"], first["counts_age_seconds"]) == (2, 1, 0)
    assert first["counted_at"] == first["now"] and len(counted.calls) == 1

    api.put("/jobs/a/3?interval=60")
    assert api.patch("/jobs/a/1?disable=true").status_code == 200
    clock.advance(0.5)  # within the period: the same counts, their age said
    again = status_of(api)
    assert (again["total_jobs"], again["disabled_jobs"]) == (2, 0)
    assert again["counts_age_seconds"] == 0.5 and again["counted_at"] == first["counted_at"]
    assert b"dalga_jobs 2.0" in api.get("/metrics").data and len(counted.calls) == 1

    cached(api).counts.took = 0.001  # as if counting were quick (it is, but timing is noisy)
    clock.advance(0.5)  # a period old: a quick count is redone in the request
    fresh = status_of(api)
    assert (fresh["total_jobs"], fresh["disabled_jobs"], fresh["counts_age_seconds"]) == (3, 1, 0)
    assert len(counted.calls) == 2

    counted.delay["seconds"] = snapshot.INLINE_UNDER  # a slow count (this one inline, then
    clock.advance(1)  # in the background) makes a longer period
    status_of(api)
    period = cached(api).counts.period
    assert period >= 20 * snapshot.INLINE_UNDER
    api.delete("/jobs/a/3")
    clock.advance(period + 0.001)
    stale = status_of(api)  # the previous counts, while the new ones are made
    assert stale["total_jobs"] == 3 and stale["counts_age_seconds"] == pytest.approx(
        period, abs=2e-3
    )
    cached(api).counts.wait(5)
    now = status_of(api)
    assert (now["total_jobs"], now["counts_age_seconds"]) == (2, 0)
    assert len(counted.calls) == 4


def test_the_lag_and_the_next_run_are_read_at_each_request(api, counted):
    clock = api.store.clock
    api.put("/jobs/a/1?interval=60&immediate=true")
    assert status_of(api)["lag_seconds"] == 0
    clock.advance(0.75)
    later = status_of(api)
    assert (later["lag_seconds"], later["lag"], later["pending_jobs"]) == (0.75, 0, 1)
    assert later["next_run"] == "2026-06-01T12:00:00+00:00" and len(counted.calls) == 1


def test_a_burst_of_readers_counts_once_a_period(api, counted):
    api.put("/jobs/a/1?interval=60")
    counted.delay["seconds"] = 0.2
    answers: list[dict] = []

    def burst() -> None:
        def read() -> None:
            answers.append(api.application.test_client().get("/status").get_json())

        threads = [threading.Thread(target=read) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    burst()  # no counts yet: one reader counts, the others wait for it
    assert len(counted.calls) == 1 and [a["total_jobs"] for a in answers] == [1] * 16
    api.put("/jobs/a/2?interval=60")
    answers.clear()
    api.store.clock.advance(cached(api).counts.period + 0.001)
    burst()  # a period later: one count in the background, nobody waits for it (a reader
    assert [a["total_jobs"] for a in answers] == [1] * 16  # that waited would have seen 2)
    cached(api).counts.wait(5)
    assert len(counted.calls) == 2 and status_of(api)["total_jobs"] == 2


def test_a_failed_background_count_keeps_the_last_counts(api, counted):
    api.put("/jobs/a/1?interval=60")
    status_of(api)
    counts = cached(api).counts
    counts.took = snapshot.INLINE_UNDER  # as if counting were slow
    counts.compute = lambda: 1 / 0
    api.store.clock.advance(counts.period + 0.001)
    with logged("celery_dalga.snapshot") as records:
        assert status_of(api)["total_jobs"] == 1
        counts.wait(5)
    assert status_of(api)["total_jobs"] == 1
    assert any("ZeroDivisionError" in record.getMessage() for record in records)
