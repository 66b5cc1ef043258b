"""celery_dalga.Scheduler: a Celery beat scheduler that claims due jobs from the table."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import beat
from sqlalchemy.exc import SQLAlchemyError

from celery_dalga import messages, metrics
from celery_dalga.config import settings_for
from celery_dalga.instances import Instance
from celery_dalga.jobs import Run
from celery_dalga.process import instance_for, store_for
from celery_dalga.store import Store

log = logging.getLogger(__name__)
PRUNE_EVERY = 60.0  # seconds between two prunings of the history


class Scheduler(beat.Scheduler):
    """Each tick claims a batch of due rows and publishes them as callback tasks, one run per
    task while the batch is small and up to `runs_per_task` runs per task under load.

    It keeps no jobs in memory; the table is the schedule. With lazy=True it
    touches no database until the first tick.
    """

    def __init__(self, app: Any, *args: Any, **kwargs: Any):
        self.settings = settings_for(app)
        self.store: Store | None = None
        self.instance: Instance | None = None
        self.pruned_at = 0.0
        kwargs["max_interval"] = kwargs.get("max_interval") or self.settings.max_interval
        super().__init__(app, *args, **kwargs)

    def setup_schedule(self) -> None:
        self.store = store_for(self.settings)
        self.store.create_table()
        self.instance = instance_for(self.settings, "beat")
        metrics.serve(self.settings.metrics_port, self.settings.host)

    def close(self) -> None:
        """Deregister this beat's instance as beat stops."""
        if self.instance is not None:
            self.instance.stop()
        super().close()

    def install_default_entries(self, data: Any) -> None:
        """No built-in periodic tasks: this scheduler serves only the jobs table."""

    @property
    def schedule(self) -> dict:
        return {}

    @property
    def info(self) -> str:
        return f"table {self.settings.table!r}, batch {self.settings.batch_size}"

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Claim and publish one batch; return seconds to sleep: 0 after a full batch, else
        until the next due run, but at least batch_window (so that runs due close together
        travel in one claim and share tasks) and at most max_interval."""
        if self.store is None:
            self.setup_schedule()
        assert self.store is not None
        batch = self.settings.batch_size
        try:
            self.prune_history()
            started = time.monotonic()
            runs = self.store.claim(batch, self.instance.id if self.instance else None)
            metrics.claimed(len(runs), time.monotonic() - started)
            self.publish(runs)
            if len(runs) == batch:
                return 0.0
            wait = self.store.seconds_until_due()
        except SQLAlchemyError as exc:
            log.error("database unavailable, claimed runs wait for their lease: %s", exc)
            return self.max_interval
        if wait is None:
            return self.max_interval
        return min(max(wait, self.settings.batch_window), self.max_interval)

    def prune_history(self) -> None:
        """Forget attempts (and load rows) older than history_ttl, a chunk at most every
        PRUNE_EVERY."""
        if self.store and time.monotonic() - self.pruned_at > PRUNE_EVERY:
            self.pruned_at = time.monotonic()
            if self.settings.history_runs and (pruned := self.store.prune_history()):
                log.info("forgot %d attempts older than the history's ttl", pruned)
            if pruned := self.store.prune_load():
                log.info("forgot %d load rows older than the history's ttl", pruned)

    def publish(self, runs: list[Run]) -> None:
        """Publish the runs as callback tasks, in one broker round trip where the broker allows
        (celery_dalga.messages). A run left unsent is dispatched again when its lease ends."""
        if not runs:
            return
        tasks = messages.tasks(runs, self.settings.runs_per_task)
        try:
            messages.publish(self.app, self.app.amqp.queues[self.settings.queue], tasks)
        except Exception as exc:  # broker errors come in many kinds; the lease covers them all
            metrics.PUBLISH_FAILURES.inc()
            log.error("publishing failed, runs will be re-dispatched after the lease: %s", exc)
            return
        metrics.dispatched((run.sched for run in runs), datetime.now(UTC))
        if log.isEnabledFor(logging.DEBUG):
            for run in runs:
                log.debug("dispatched path=%s sched=%s", run.path, run.sched.isoformat())
        log.info(
            "dispatched %d runs in %d tasks, first path=%s", len(runs), len(tasks), runs[0].path
        )
