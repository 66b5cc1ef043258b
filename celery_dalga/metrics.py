"""Prometheus metrics (prometheus-client): what beat dispatches and what workers deliver,
with the dispatch and delivery lateness (from each run's scheduled instant to its publish,
and to the endpoint's answer). `/metrics` on the web app serves them with the jobs table's
gauges (counted as for /status); beat and workers serve theirs on `metrics_port`
(DALGA_METRICS_PORT). A prefork worker's children count in files under
PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode), which the worker's exporter
adds up."""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from celery_dalga import process

log = logging.getLogger(__name__)

LATENESS_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)
BATCH_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)

RUNS_DISPATCHED = Counter("dalga_runs_dispatched", "Runs beat claimed and published")
CLAIM_SIZE = Histogram("dalga_claim_batch_size", "Runs per claim", buckets=BATCH_BUCKETS)
CLAIM_SECONDS = Histogram("dalga_claim_seconds", "Time of one claim transaction")
PUBLISH_FAILURES = Counter("dalga_publish_failures", "Claims whose publish to the broker failed")
DISPATCH_LATENESS = Histogram(
    "dalga_dispatch_lateness_seconds",
    "From a run's scheduled instant to its publish",
    buckets=LATENESS_BUCKETS,
)
CALLBACKS = Counter(
    "dalga_callbacks",
    "Callbacks made, by outcome (done, retry, not_sent, gave_up...) and HTTP status "
    "(none: no answer)",
    ["outcome", "status"],
)
RETRIES = Counter("dalga_retries", "Failed callbacks that will be tried again")
STALE_DROPS = Counter("dalga_stale_drops", "Deliveries dropped: the run's lease had passed on")
DELIVERY_LATENESS = Histogram(
    "dalga_delivery_lateness_seconds",
    "From a run's scheduled instant to the endpoint's answer",
    buckets=LATENESS_BUCKETS,
)
CALLBACK_SECONDS = Histogram("dalga_callback_seconds", "Duration of one callback")
DESTINATION_LIMIT = Gauge(
    "dalga_destination_limit",
    "Adaptive limit of calls in flight to a destination, summed over the worker's processes",
    ["destination"],
    multiprocess_mode="livesum",
)
DESTINATION_IN_FLIGHT = Gauge(
    "dalga_destination_in_flight",
    "Calls in flight to a destination, summed over the worker's processes",
    ["destination"],
    multiprocess_mode="livesum",
)


def claimed(count: int, seconds: float) -> None:
    CLAIM_SIZE.observe(count)
    CLAIM_SECONDS.observe(seconds)


def dispatched(scheds: Iterable[datetime], now: datetime) -> None:
    """Runs published at `now`."""
    count = 0
    for sched in scheds:
        count += 1
        DISPATCH_LATENESS.observe(max(0.0, (now - sched).total_seconds()))
    RUNS_DISPATCHED.inc(count)


def delivered(answers: Iterable[tuple[str, int | None, float, float]]) -> None:
    """A task's callbacks: (outcome, HTTP status or None, lateness of the answer, duration)
    each; the counters move once per kind, the histograms once per callback."""
    kinds: collections.Counter[tuple[str, str]] = collections.Counter()
    for outcome, code, lateness, seconds in answers:
        kinds[outcome, str(code) if code else "none"] += 1
        DELIVERY_LATENESS.observe(max(0.0, lateness))
        CALLBACK_SECONDS.observe(seconds)
    for (outcome, status), count in kinds.items():
        CALLBACKS.labels(outcome, status).inc(count)
        if outcome in ("retry", "not_sent"):
            RETRIES.inc(count)


def destinations(limits: Iterable[tuple[str, Any]]) -> None:
    """The current limit and calls in flight of each destination (celery_dalga.limit)."""
    for name, limit in limits:
        DESTINATION_LIMIT.labels(name).set(int(limit.limit))
        DESTINATION_IN_FLIGHT.labels(name).set(limit.in_flight)


def stale(count: int) -> None:
    STALE_DROPS.inc(count)


def registry() -> CollectorRegistry:
    """This process's metrics, or in multiprocess mode the sum over every process's files."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    summed = CollectorRegistry()
    multiprocess.MultiProcessCollector(summed)
    return summed


class TableCollector(Collector):
    """Gauges of the jobs table at each scrape: jobs, paused, due, running, lag, live
    instances and the counts' age (`status()` answers as GET /status: its counts are cached,
    webapi.app.cached_status)."""

    def __init__(self, status: Any):
        self.status = status

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self.status()
        for name, key, text in (
            ("dalga_jobs", "total_jobs", "Jobs in the table"),
            ("dalga_jobs_paused", "disabled_jobs", "Jobs paused"),
            ("dalga_jobs_due", "pending_jobs", "Jobs due and not yet claimed"),
            ("dalga_jobs_running", "running_jobs", "Runs leased and not yet settled"),
            ("dalga_lag_seconds", "lag_seconds", "Age of the oldest due run"),
            ("dalga_instances", "total_instances", "Live beat, worker and web instances"),
            ("dalga_successes", "success_count", "Delivered callbacks, summed over the jobs"),
            ("dalga_errors", "error_count", "Failed callbacks, summed over the jobs"),
            ("dalga_counts_age_seconds", "counts_age_seconds", "Age of the jobs' counts"),
        ):
            yield GaugeMetricFamily(name, text, value=now[key])


def serve(port: int, host: str) -> None:
    """Serve this process's metrics on host:port (beat and workers), once per process."""
    if not port:
        return

    def start() -> None:
        start_http_server(port, addr=host, registry=registry())
        log.info("metrics on http://%s:%d/metrics", host, port)

    process.serve_metrics_once(start)
