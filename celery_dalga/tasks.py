"""The callback tasks: POST each run's body to its endpoint, all of a task's runs at once, and
record the outcomes. `http_callback` carries one run, `http_callbacks` many (messages.py)."""

from __future__ import annotations

import logging
import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from celery import Task, current_app, shared_task
from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from celery_dalga import http, metrics, process, publishing
from celery_dalga.config import Settings, settings_for
from celery_dalga.jobs import Run
from celery_dalga.messages import BATCH_TASK_NAME, TASK_NAME, runs_of
from celery_dalga.process import instance_for, store_for
from celery_dalga.runs import Attempt, Outcome
from celery_dalga.spec import allowed

log = logging.getLogger(__name__)

LEASE_SPARE = 1.0  # seconds of lease left over after a call that takes the whole timeout


def callback_url(base_url: str, path: str) -> str:
    """<base_url><path>, with exactly one slash between them, each of the path's segments
    percent-encoded: whatever a path holds (?, #, %2F, @, :, CR/LF, . or ..), the request goes
    to base_url's scheme, host and port, under its path."""
    segments = path.lstrip("/").split("/")
    return base_url.rstrip("/") + "/" + "/".join(_segment(s) for s in segments)


def _segment(segment: str) -> str:
    """A path segment percent-encoded but for RFC 3986's sub-delims, ":" and "@", which a
    segment may hold as they are. A dot segment is refused (PUT refuses it too): encoded or
    not, the endpoint's server may resolve it and climb out of base_url's path."""
    if any(piece in (".", "..") for piece in segment.split("\\")):
        raise ValueError(f"the path segment {segment!r} would leave base_url")
    return quote(segment, safe="!$&'()*+,;=:@")


def callback_post(settings: Settings, run: Run, instance_id: int) -> http.Post:
    """The POST of a run, with Dalga's headers as Dalga writes them (Content-Type, Dalga-Sched:
    the instant it serves, on the job's wall clock; Dalga-Instance: this process) and an
    Idempotency-Key."""
    return http.Post(
        callback_url(settings.base_url, run.path),
        http.destination(settings.base_url),
        run.body.encode(),
        (
            "Content-Type: text/plain",
            "Dalga-Sched: " + run.dalga_sched,
            f"Dalga-Instance: {instance_id}",
            "Idempotency-Key: " + run.idempotency_key,
        ),
    )


def deliver(settings: Settings, runs: list[Run], app: Any = None) -> list[Outcome]:
    """Deliver runs: drop those whose rows no longer carry their tokens (one read, which
    renews a lease that has less than `keep` seconds left); make the others' calls at once
    (POST, or publish to an AMQP exchange, or call a Celery task of `app`), each started only
    while its lease still outlasts the call's timeout; and settle all the answers in one
    transaction."""
    store = store_for(settings)
    keep = max(settings.lease / 2, min(settings.lease, settings.callback_timeout + 5))
    ours = store.fence(runs, keep=keep)
    start_by = time.monotonic() + keep - settings.callback_timeout - LEASE_SPARE
    held = {run.job_id for run in ours}
    for run in runs:
        if run.job_id not in held:
            log.info("dropped stale delivery path=%s sched=%s", run.path, run.sched.isoformat())
    metrics.stale(len(runs) - len(ours))
    me = instance_for(settings).id
    answers: dict[Run, http.Answer] = {}
    for kind, call in (("http", post), ("amqp", publish), ("task", call_tasks)):
        group = [run for run in ours if _kind(run, settings) == kind]
        if group:
            answers.update(zip(group, call(settings, group, me, app, start_by), strict=True))
    attempts = [
        Attempt(run, a.status, a.error, a.seconds, a.ended, a.sent, a.wait)
        for run, a in ((run, answers[run]) for run in ours)
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


def _kind(run: Run, settings: Settings) -> str:
    if run.task:
        return "task"
    return "amqp" if run.exchange or settings.publish_exchange else "http"


def post(
    settings: Settings, runs: list[Run], instance_id: int, app: Any, start_by: float = math.inf
) -> list[http.Answer]:
    """POST the runs concurrently, within their destination's adaptive limit (http.py); a
    POST not started by `start_by` is not sent."""
    client = http.client(settings.callback_concurrency, settings.callback_initial_limit)
    posts, refused = [], {}
    for i, run in enumerate(runs):
        try:
            posts.append(callback_post(settings, run, instance_id))
        except ValueError as exc:  # a row older than PUT's checks
            refused[i] = http.Answer(None, str(exc), 0.0, time.monotonic())
    answers = iter(client.post_all(posts, settings.callback_timeout, start_by))
    return [refused[i] if i in refused else next(answers) for i in range(len(runs))]


def publish(
    settings: Settings, runs: list[Run], instance_id: int, app: Any, start_by: float = math.inf
) -> list[http.Answer]:
    """Publish runs to their AMQP exchanges (celery_dalga.publishing). A run whose own
    exchange is not in allowed_exchanges fails unpublished (publish_exchange, the operator's
    own, is trusted)."""
    url = publishing.publish_url(settings)
    if not url:
        error = "no AMQP broker to publish to: set DALGA_PUBLISH_URL"
        return [http.Answer(None, error, 0.0, time.monotonic()) for _ in runs]
    refused = {
        i: f"exchange {run.exchange!r} is not in the allowed_exchanges setting"
        for i, run in enumerate(runs)
        if run.exchange and not allowed(settings.allowed_exchanges, run.exchange)
    }
    sent = iter(
        publishing.publisher(url).publish_all(
            [run for i, run in enumerate(runs) if i not in refused],
            settings.publish_exchange,
            settings.callback_timeout,
            instance_id,
        )
    )
    return [
        http.Answer(None, refused[i], 0.0, time.monotonic()) if i in refused else next(sent)
        for i in range(len(runs))
    ]


def call_tasks(
    settings: Settings, runs: list[Run], instance_id: int, app: Any, start_by: float = math.inf
) -> list[http.Answer]:
    """Call each run's Celery task with its body, in this process (so the one-in-flight,
    retry and lease rules hold as for POSTs), at most callback_concurrency at once. A task
    that returns is a 200; one that raises, is not registered here, is not in allowed_tasks
    (then it is not called), or runs past callback_timeout is a failure (a task left running
    past the timeout goes on, as an endpoint that answers too late does)."""
    tasks = (app or current_app).tasks
    pool = _task_pool(settings.callback_concurrency)
    started = time.monotonic()

    def refusal(task: str) -> str:
        if not allowed(settings.allowed_tasks, task):
            return f"task {task!r} is not in the allowed_tasks setting"
        return "" if task in tasks else f"no task {task!r} is registered in this worker"

    refusals = [refusal(run.task or "") for run in runs]
    calls = [
        None if why else pool.submit(tasks[run.task], run.body)
        for run, why in zip(runs, refusals, strict=True)
    ]
    answers = []
    for call, why in zip(calls, refusals, strict=True):
        if call is None:
            answers.append(http.Answer(None, why, 0.0, time.monotonic()))
            continue
        try:
            call.result(timeout=max(0.0, started + settings.callback_timeout - time.monotonic()))
            status, error = 200, "returned"
        except TimeoutError:
            status, error = None, f"still running after {settings.callback_timeout} s"
        except Exception as exc:  # the task's own failure, whatever it is
            status, error = None, f"{type(exc).__name__}: {exc}"
        ended = time.monotonic()
        answers.append(http.Answer(status, error, ended - started, ended))
    return answers


def _task_pool(size: int) -> ThreadPoolExecutor:
    """This process's threads for task jobs."""
    return process.per_process(
        ("task pool", size), lambda: ThreadPoolExecutor(size, thread_name_prefix="dalga-task")
    )


def _log_attempt(attempt: Attempt, outcome: Outcome) -> None:
    run = attempt.run
    if attempt.delivered:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "callback %s path=%s body=%.200r sched=%s outcome=%s",
                attempt.status,
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
def http_callbacks(self: Task, token: str, runs: list[list[Any]]) -> dict[str, int]:
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
def http_callback(
    self: Task,
    path: str,
    body: str,
    sched: str,
    job_id: int,
    key: str,
    token: str,
    manual: bool = False,
    exchange: str | None = None,
    expires: float | None = None,
    task: str | None = None,
    location: str = "UTC",
) -> str:
    """Deliver one run (a task of one run, or a message queued by an earlier version)."""
    when = datetime.fromisoformat(sched)
    run = Run(job_id, key, path, body, when, token, manual, exchange, expires, task, location)
    (outcome,) = deliver(settings_for(self.app), [run], self.app)
    log.info("callback path=%s sched=%s outcome=%s", path, sched, outcome)
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
