"""celery-dalga: a MySQL-backed job scheduler with Dalga's HTTP interface, built into Celery."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("celery-dalga")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

from celery_dalga.client import Client, JobNotFound  # noqa: E402
from celery_dalga.scheduler import Scheduler  # noqa: E402
from celery_dalga.spec import InvalidParameter  # noqa: E402

__all__ = ["Client", "InvalidParameter", "JobNotFound", "Scheduler", "__version__"]
