"""celery-dalga: a MySQL-backed job scheduler with Dalga's HTTP interface, built into Celery.

The names below are imported when first used, so that importing a light module (say
celery_dalga.schedules) loads neither SQLAlchemy, Celery nor prometheus-client.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("celery-dalga")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

_HOMES = {
    "Client": "celery_dalga.client",
    "JobNotFound": "celery_dalga.client",
    "Scheduler": "celery_dalga.scheduler",
    "InvalidParameter": "celery_dalga.spec",
    "Reschedule": "celery_dalga.quartz",
    "Remove": "celery_dalga.quartz",
}

__all__ = [
    "Client",
    "InvalidParameter",
    "JobNotFound",
    "Remove",
    "Reschedule",
    "Scheduler",
    "__version__",
]


def __getattr__(name: str) -> Any:
    """Client, JobNotFound, Scheduler, InvalidParameter, Reschedule and Remove, from their
    modules."""
    if name not in _HOMES:
        raise AttributeError(f"module 'celery_dalga' has no attribute {name!r}")
    return getattr(import_module(_HOMES[name]), name)
