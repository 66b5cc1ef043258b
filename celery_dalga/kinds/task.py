"""The task kind, Kala's and go-quartz's local job: call a Celery task registered in the
worker with the run's body, in the worker's own process (so the one-in-flight, retry and lease
rules hold as for POSTs). A task that returns delivers; one that raises, is not registered,
is not in allowed_tasks (then it is not called) or runs past callback_timeout fails (a task
left running past the timeout goes on, as an endpoint that answers too late does). A task
that returns celery_dalga.Reschedule or Remove steers its job (celery_dalga.quartz)."""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from celery import current_app

from celery_dalga import process
from celery_dalga.config import Settings
from celery_dalga.jobs import Run
from celery_dalga.kinds.base import Delivery, Kind, Result, register
from celery_dalga.quartz import Remove, Reschedule
from celery_dalga.spec import InvalidParameter, JobSpec, allowed, check_key
from celery_dalga.values import shown

SHOWN_RETURN = 200  # characters of a task's return value that a result shows


class CeleryTask(Kind):
    """Call a Celery task with the body."""

    name = "task"

    def validate(self, spec: JobSpec, settings: Settings) -> None:
        """The job's task must be in allowed_tasks."""
        super().validate(spec, settings)
        if not spec.task:
            raise InvalidParameter("task", "the task kind needs a task")
        if not allowed(settings.allowed_tasks, spec.task):
            raise InvalidParameter(
                "task",
                f"{shown(spec.task)} is not in the allowed_tasks setting (DALGA_ALLOWED_TASKS)",
            )

    def deliver(
        self,
        settings: Settings,
        runs: list[Run],
        instance_id: int,
        app: Any,
        start_by: float = math.inf,
    ) -> list[Result]:
        """Call the runs' tasks (of `app`, else the current app) at once, at most
        callback_concurrency at a time, each within callback_timeout of the first's start."""
        tasks = (app or current_app).tasks
        pool = _pool(settings.callback_concurrency)
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
        results = []
        for run, call, why in zip(runs, calls, refusals, strict=True):
            if call is None:
                results.append(Result.refused(why))
                continue
            try:
                value = call.result(
                    timeout=max(0.0, started + settings.callback_timeout - time.monotonic())
                )
                results.append(_returned(started, value, run, settings))
            except TimeoutError:
                why = f"still running after {settings.callback_timeout} s"
                results.append(Result.since(started, Delivery.FAILED, why))
            except Exception as exc:  # the task's own failure, whatever it is
                why = f"{type(exc).__name__}: {exc}"
                results.append(Result.since(started, Delivery.FAILED, why))
        return results


def _returned(started: float, value: Any, run: Run, settings: Settings) -> Result:
    """A task's return: delivered, and a Reschedule or Remove asks that of the job; a
    Reschedule whose body could not be a job's fails."""
    returned = f"returned {value!r}"[:SHOWN_RETURN]
    if isinstance(value, Reschedule) and value.body is not None:
        try:
            check_key(run.path, value.body, settings.max_body)
        except InvalidParameter as exc:
            return Result.since(started, Delivery.FAILED, f"{returned}: {exc}"[:SHOWN_RETURN])
    asks = value if isinstance(value, Reschedule | Remove) else None
    return replace(Result.since(started, Delivery.DELIVERED, returned), asks=asks)


def _pool(size: int) -> ThreadPoolExecutor:
    """This process's threads for task jobs (celery_dalga.process keeps them)."""
    return process.per_process(
        ("task pool", size), lambda: ThreadPoolExecutor(size, thread_name_prefix="dalga-task")
    )


register(CeleryTask())
