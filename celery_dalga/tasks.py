"""The callback tasks: deliver each run of a task by its kind (celery_dalga.kinds: POST,
publish, call a task...), all at once, and record the outcomes. `http_callback` carries one
run, `http_callbacks` many (messages.py)."""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from celery import Task, shared_task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from celery_dalga import kinds, metrics, process
from celery_dalga.config import Settings, settings_for
from celery_dalga.jobs import Run
from celery_dalga.messages import BATCH_TASK_NAME, TASK_NAME, runs_of
from celery_dalga.process import instance_for, store_for
from celery_dalga.runs import Attempt, Outcome

log = logging.getLogger(__name__)


def deliver(settings: Settings, runs: list[Run], app: Any = None) -> list[Outcome]:
    """Deliver runs: drop those whose rows no longer carry their tokens (one read, which
    renews a lease that has less than `keep` seconds left); hand the others to their kinds
    (celery_dalga.kinds: POST, publish, call a task...), which start each call only while
    its lease still outlasts the call's timeout; and settle all the results in one
    transaction."""
    store = store_for(settings)
    keep, start_within = store.policy.fence_window(settings.callback_timeout)
    ours = store.fence(runs, keep=keep)
    start_by = time.monotonic() + start_within
    held = {run.job_id for run in ours}
    for run in runs:
        if run.job_id not in held:
            log.info("dropped stale delivery path=%s sched=%s", run.path, run.sched.isoformat())
    metrics.stale(len(runs) - len(ours))
    me = instance_for(settings).id
    results = _results(settings, ours, me, app, start_by)
    attempts = [
        Attempt(
            run,
            r.status,
            r.detail,
            r.seconds,
            r.ended,
            sent=r.delivery is not kinds.Delivery.NOT_SENT,
            wait=r.wait,
            ok=r.delivery is kinds.Delivery.DELIVERED,
            asks=r.asks,
        )
        for run, r in zip(ours, results, strict=True)
    ]
    outcomes = store.settle(attempts, me)
    for attempt, outcome in zip(attempts, outcomes, strict=True):
        _log_attempt(attempt, outcome)
    now, clock = datetime.now(UTC).timestamp(), time.monotonic()
    metrics.delivered(
        (
            outcome,
            a.status,
            now - (clock - (a.ended or clock)) - a.run.sched.timestamp(),
            a.duration,
        )
        for a, outcome in zip(attempts, outcomes, strict=True)
    )
    return [Outcome.STALE] * (len(runs) - len(ours)) + outcomes


def _results(
    settings: Settings, runs: list[Run], instance_id: int, app: Any, start_by: float
) -> list[kinds.Result]:
    """Each run's result, in order: the runs go to their kinds, each kind's at once; a run of
    a kind this worker does not know fails."""
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(kinds.name_of(run, settings), []).append(i)
    results: dict[int, kinds.Result] = {}
    for indexes in groups.values():
        group = [runs[i] for i in indexes]
        try:
            kind = kinds.kind_of(group[0], settings)
        except kinds.UnknownKind as exc:
            found = [kinds.Result.refused(str(exc))] * len(group)
        else:
            found = kind.deliver(settings, group, instance_id, app, start_by)
        results.update(zip(indexes, found, strict=True))
    return [results[i] for i in range(len(runs))]


def _log_attempt(attempt: Attempt, outcome: Outcome) -> None:
    run = attempt.run
    if attempt.delivered:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "callback %s path=%s body=%.200r sched=%s outcome=%s",
                attempt.error if attempt.status is None else attempt.status,
                run.path,
                run.body,
                run.sched.isoformat(),
                outcome,
            )
        return
    log.warning(
        "callback failed path=%s sched=%s error=%s outcome=%s",
        run.path,
        run.sched.isoformat(),
        attempt.error,
        outcome,
    )


@shared_task(bind=True, name=BATCH_TASK_NAME, ignore_result=True)
def http_callbacks(self: Task, token: str, runs: list[Any]) -> dict[str, int]:
    """Deliver the runs of one claim; returns how many ended which way."""
    delivered = runs_of(BATCH_TASK_NAME, {"token": token, "runs": runs})
    counts = Counter(str(o) for o in deliver(settings_for(self.app), delivered, self.app))
    log.info(
        "delivered %d runs %s, first path=%s",
        len(delivered),
        dict(counts),
        delivered[0].path if delivered else None,
    )
    return dict(counts)


@shared_task(bind=True, name=TASK_NAME, ignore_result=True)
def http_callback(self: Task, **fields: Any) -> str:
    """Deliver one run, whose fields are the keyword arguments (messages.run_task; also a
    message queued by an earlier version)."""
    (run,) = runs_of(TASK_NAME, fields)
    (outcome,) = deliver(settings_for(self.app), [run], self.app)
    log.info("callback path=%s sched=%s outcome=%s", run.path, run.sched.isoformat(), outcome)
    return str(outcome)


@worker_process_init.connect(weak=False)
def _reset_after_fork(**_: Any) -> None:
    """A forked pool child must not reuse the parent's database connections, sockets or
    instance: it registers as an instance of its own when it first delivers."""
    process.reset_after_fork()


@worker_init.connect(weak=False)
def _serve_metrics(sender: Any = None, **_: Any) -> None:
    """The worker's exporter on metrics_port; a prefork pool's children count in
    PROMETHEUS_MULTIPROC_DIR's files, without which their metrics would be lost."""
    settings = settings_for(sender.app)
    if not settings.metrics_port:
        return
    pool = getattr(sender, "pool_cls", "")
    prefork = "prefork" in str(getattr(pool, "__module__", pool))
    if prefork and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # SystemExit, as Celery's signal dispatch logs an Exception and goes on
        raise SystemExit(
            "celery-dalga: metrics_port with a prefork pool needs PROMETHEUS_MULTIPROC_DIR, an "
            "empty directory where the pool's processes count (prometheus-client's "
            "multiprocess mode); or use the threads pool"
        )
    metrics.serve(settings.metrics_port, settings.host)


@worker_ready.connect(weak=False)
def _register_worker(sender: Any = None, **_: Any) -> None:
    """A worker is an instance from the moment it is ready, before its first delivery."""
    instance_for(settings_for(sender.app), "worker")


@worker_process_shutdown.connect(weak=False)
@worker_shutdown.connect(weak=False)
def _deregister(**_: Any) -> None:
    process.stop()
