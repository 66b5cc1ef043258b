"""celery_dalga.Scheduler in-process: lazy construction, no jobs in memory, tick timing."""

from datetime import timedelta

import pytest
from celery import Celery
from helpers import settings_on, unique_table

from celery_dalga.config import as_celery_conf
from celery_dalga.scheduler import Scheduler
from celery_dalga.spec import parse_spec


def app_for(settings, broker="memory://"):
    app = Celery("sched-test", broker=broker, set_as_current=False)
    app.conf.update(as_celery_conf(settings))
    return app


def test_lazy_construction_touches_no_database():
    settings = settings_on("mysql://nobody@127.0.0.1:1/nowhere", "t")
    scheduler = Scheduler(app_for(settings), lazy=True)
    assert scheduler.store is None
    assert scheduler.max_interval == settings.max_interval


@pytest.fixture
def scheduler(mariadb_url):
    settings = settings_on(mariadb_url, unique_table(), batch_size=50, max_interval=1.0)
    scheduler = Scheduler(app_for(settings))
    published = []
    scheduler.publish = published.extend
    scheduler.published = published
    yield scheduler
    scheduler.store.drop_table()


def put(store, body, **params):
    return store.put(parse_spec("p", str(body), params))


def test_tick_publishes_due_jobs_and_keeps_none_in_memory(scheduler):
    for i in range(120):
        put(scheduler.store, i, **{"one-off": "1", "immediate": "1"})
    assert scheduler.tick() == 0.0
    assert scheduler.tick() == 0.0
    assert scheduler.tick() <= 1.0
    assert len(scheduler.published) == 120
    assert len({r.job_id for r in scheduler.published}) == 120
    assert scheduler.schedule == {} and not scheduler.data


def test_tick_sleeps_until_the_next_due_job_bounded_by_max_interval(scheduler):
    assert scheduler.tick() == 1.0
    put(scheduler.store, "far", interval="3600")
    assert scheduler.tick() == 1.0
    job = put(scheduler.store, "soon", **{"first-run": "2000-01-01T00:00:00Z", "interval": "60"})
    scheduler.store.clock = lambda: job.next_sched - timedelta(seconds=0.25)
    assert scheduler.tick() == pytest.approx(0.25)


def test_database_outage_is_logged_and_beat_keeps_ticking(caplog):
    settings = settings_on("mysql://nobody@127.0.0.1:1/nowhere", "t")
    scheduler = Scheduler(app_for(settings), lazy=True)
    from celery_dalga.store import Store, make_engine

    scheduler.store = Store(make_engine(settings.database_url), "t")
    assert scheduler.tick() == settings.max_interval
    assert "database unavailable" in caplog.text
