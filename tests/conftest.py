"""Fixtures that talk to the real thing: MariaDB, PostgreSQL, Redis, a Celery worker, HTTP.

A missing service skips its tests on a developer machine and fails them under CI=true.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from endpoint_server import Endpoint
from helpers import settings_on, unique_table
from sqlalchemy import create_engine, text

from celery_dalga.config import Settings
from celery_dalga.store import Store, make_engine

RUN_ID = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
MARIADB_SERVER = os.environ.get("DALGA_TEST_MARIADB", "mysql://root@127.0.0.1:3306")
POSTGRES_SERVER = os.environ.get(
    "DALGA_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432"
)
REDIS_DB = int(os.environ.get("DALGA_TEST_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def require(name: str, port: int) -> None:
    """Skip when a service is down, except under CI=true, where that is a failure."""
    if _reachable(port):
        return
    message = f"{name} is not running on 127.0.0.1:{port}"
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI=true: services are required)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    require("MariaDB", 3306)
    name = f"cdalga_{RUN_ID}"
    server = create_engine(MARIADB_SERVER)
    with server.begin() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    yield f"{MARIADB_SERVER}/{name}"
    with server.begin() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    server.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    require("PostgreSQL", 5432)
    name = f"cdalga_{RUN_ID}"
    server = create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield f"{POSTGRES_SERVER}/{name}"
    with server.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    server.dispose()


@pytest.fixture(scope="session")
def redis_url() -> str:
    require("Redis", 6379)
    return REDIS_URL


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    require("RabbitMQ", 5672)
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def make_store():
    """make_store(url, **settings) -> a Store on a fresh table, dropped afterwards."""
    made: list[Store] = []

    def make(url: str, **options) -> Store:
        store = Store(make_engine(url), unique_table(), **options)
        store.create_table()
        made.append(store)
        return store

    yield make
    for store in made:
        store.drop_table()
        store.engine.dispose()


@pytest.fixture(params=["mariadb", "postgres", "sqlite"])
def any_db_url(request, tmp_path) -> str:
    """Each store test runs on MariaDB, PostgreSQL and SQLite."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.sqlite3"
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    """A recording callback endpoint on 127.0.0.1 (tests/endpoint_server.py)."""
    recorder = Endpoint()
    yield recorder
    recorder.down()


@dataclass
class Stack:
    """A running celery-dalga: beat loop, Celery worker, API client, on MariaDB and Redis."""

    app: object
    settings: Settings
    store: Store
    api: object
    endpoint: Endpoint


@pytest.fixture
def make_stack(mariadb_url, redis_url, endpoint):
    """make_stack(broker=..., beat=True, **settings) starts a real worker (threads pool) and a
    beat Service thread (unless beat=False), on Redis unless another broker URL is given."""
    from celery import Celery
    from celery.beat import Service
    from celery.contrib.testing.worker import start_worker

    from celery_dalga.config import as_celery_conf
    from celery_dalga.process import store_for
    from celery_dalga.scheduler import Scheduler
    from webapi import create_app

    stops = []

    def make(broker: str = redis_url, beat: bool = True, **extra) -> Stack:
        queue = f"dalga-test-{uuid.uuid4().hex[:8]}"
        extra.setdefault("base_url", endpoint.base_url)
        settings = settings_on(mariadb_url, unique_table(), queue=queue, **extra)
        app = Celery(
            "dalga-test", broker=broker, include=["celery_dalga.tasks"], set_as_current=False
        )
        app.conf.update(
            task_default_queue=queue,
            broker_connection_retry_on_startup=True,
            task_ignore_result=True,
            **as_celery_conf(settings),
        )
        store = store_for(settings)
        store.create_table()
        worker = start_worker(  # a worker on RabbitMQ once took over 10 s to stop in CI
            app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=30
        )
        worker.__enter__()
        service = Service(app, scheduler_cls=Scheduler, max_interval=settings.max_interval)
        thread = threading.Thread(target=service.start, daemon=True)
        if beat:
            thread.start()

        def stop():
            if beat:
                service.stop()
                thread.join(5)
            worker.__exit__(None, None, None)
            with app.connection_for_write() as conn:
                app.amqp.queues[queue].bind(conn.default_channel).delete()
            store.drop_table()

        stops.append(stop)
        return Stack(app, settings, store, create_app(settings, store).test_client(), endpoint)

    yield make
    for stop in stops:
        stop()
