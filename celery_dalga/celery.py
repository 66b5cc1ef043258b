"""The standalone Celery app, for `celery -A celery_dalga worker|beat`."""

from __future__ import annotations

from celery import Celery

from celery_dalga.config import Settings, as_celery_conf, load_settings


def make_app(settings: Settings) -> Celery:
    """A Celery app whose broker and dalga_* keys come from settings."""
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
    return app


app = make_app(load_settings())
