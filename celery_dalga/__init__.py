"""celery-dalga: a MySQL-backed job scheduler with Dalga's HTTP interface, built into Celery."""

from celery_dalga.scheduler import Scheduler

__all__ = ["Scheduler"]
