"""The standalone Celery app, for `celery -A celery_dalga worker|beat`: built on first use
from the environment (and DALGA_CONFIG's file), so that importing this module reads nothing
and `dalga run --config` builds its own from its settings."""

from __future__ import annotations

from functools import cache
from typing import Any

from celery import Celery

from celery_dalga.config import Settings, as_celery_conf, load_settings
from celery_dalga.store import private_sqlite_file


def make_app(settings: Settings) -> Celery:
    """A Celery app whose broker and dalga_* keys come from settings; settings_for(app) gives
    these settings back without reading the environment again. The embedded broker's SQLite
    file is made private to its owner (its messages carry job bodies)."""
    private_sqlite_file(settings.broker_url)
    app = Celery("celery_dalga", broker=settings.broker_url, include=["celery_dalga.tasks"])
    app.conf.update(
        beat_scheduler="celery_dalga.Scheduler",
        task_default_queue=settings.queue,
        beat_max_loop_interval=settings.max_interval,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=True,
        **as_celery_conf(settings),
    )
    app._dalga_settings = settings
    return app


@cache
def _default_app() -> Celery:
    return make_app(load_settings())


def __getattr__(name: str) -> Any:
    """`app`: the environment's app, made when Celery first asks for it."""
    if name == "app":
        return _default_app()
    raise AttributeError(name)
