"""The http_callback task: POST the job's body to its endpoint and record the outcome."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from typing import Any

import requests
from celery import Task, shared_task
from celery.signals import worker_process_init

from celery_dalga import schedules
from celery_dalga.config import Settings, settings_for
from celery_dalga.store import Run, store_for

log = logging.getLogger(__name__)
_local = threading.local()

LEASE_SPARE = 5.0  # seconds of lease left over after a POST that takes the whole timeout


class CallbackFailed(Exception):
    """The endpoint did not answer 200 or 204 (or could not be reached)."""


def _session() -> requests.Session:
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session


def callback_url(base_url: str, path: str) -> str:
    """<base_url><path>, with exactly one slash between them."""
    return base_url.rstrip("/") + "/" + path.lstrip("/")


def post(settings: Settings, run: Run) -> tuple[int | None, str]:
    """POST the body; return (status code or None, error text)."""
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Dalga-Sched": run.sched.isoformat().replace("+00:00", "Z"),
        "Idempotency-Key": run.idempotency_key,
    }
    try:
        response = _session().post(
            callback_url(settings.base_url, run.path),
            data=run.body.encode(),
            headers=headers,
            timeout=settings.callback_timeout,
        )
    except requests.RequestException as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return response.status_code, f"HTTP {response.status_code}"


@shared_task(bind=True, name="celery_dalga.http_callback", ignore_result=True, max_retries=None)
def http_callback(
    self: Task,
    path: str,
    body: str,
    sched: str,
    job_id: int,
    key: str,
    token: str,
    manual: bool = False,
) -> str:
    """Deliver one run. 200: done; 204: done, delete the job; else retry with backoff."""
    settings = settings_for(self.app)
    store = store_for(settings)
    run = Run(job_id, key, path, body, datetime.fromisoformat(sched), token, manual)
    if not store.begin(run, settings.lease, keep=settings.callback_timeout + LEASE_SPARE):
        log.info("dropped stale delivery path=%s body=%s sched=%s", path, body, sched)
        return "stale"
    started = time.monotonic()
    status, error = post(settings, run)
    duration = time.monotonic() - started
    if status in (200, 204):
        outcome = store.complete(run, delete_job=status == 204, duration=duration)
        log.info(
            "callback %s path=%s body=%s sched=%s outcome=%s", status, path, body, sched, outcome
        )
        return outcome
    delay = schedules.retry_delay(
        self.request.retries,
        settings.retry_interval,
        settings.retry_multiplier,
        settings.retry_max_interval,
        settings.retry_jitter,
    )
    verdict = store.fail(run, error, retry_in=delay, lease=settings.lease)
    log.warning(
        "callback failed path=%s body=%s sched=%s error=%s attempt=%d next=%s",
        path,
        body,
        sched,
        error,
        self.request.retries + 1,
        f"retry in {delay:.1f}s" if verdict == "retry" else verdict,
    )
    if verdict != "retry":
        return verdict
    raise self.retry(exc=CallbackFailed(error), countdown=delay)


@worker_process_init.connect(weak=False)
def _reset_after_fork(**_: Any) -> None:
    """A forked pool child must not reuse the parent's database connections."""
    store_for.cache_clear()
