"""Between the jobs table's rows and celery_dalga's values: Job and JobSpec."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from celery_dalga.jobs import Job, naive, new_job_columns
from celery_dalga.spec import JobSpec


def stored(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as the tables store them (instants as naive UTC)."""
    return {k: naive(v) if isinstance(v, datetime) else v for k, v in values.items()}


def new_row(spec: JobSpec, first_sched: datetime | None, now: datetime) -> dict[str, Any]:
    """The columns a PUT writes for spec (celery_dalga.jobs.new_job_columns), with the
    callback kind and its options (a JSON object)."""
    row = new_job_columns(spec, first_sched, now)
    row["kind"] = spec.kind
    row["options"] = None if spec.options is None else json.dumps(spec.options)
    return row


def job_of(row: Mapping[Any, Any]) -> Job:
    """The Job a row of the jobs table (all its columns) holds."""
    job = Job.from_mapping(row)
    if row["kind"] is None and row["options"] is None:
        return job
    options = None if row["options"] is None else json.loads(row["options"])
    return replace(job, kind=row["kind"], options=options)
