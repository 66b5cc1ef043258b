"""Fixtures of the fault suite: a cluster of real processes on MariaDB and Redis (the
`endpoint` fixture is tests/conftest.py's)."""

from __future__ import annotations

import uuid

import pytest
from harness import Cluster
from helpers import unique_table
from processes import free_port

from celery_dalga.config import Settings


@pytest.fixture
def make_cluster(tmp_path, endpoint, mariadb_url, redis_url):
    """make_cluster(database_url=..., broker_url=..., **settings) -> a Cluster; torn down after."""
    made = []

    def make(database_url: str | None = None, broker_url: str | None = None, **extra) -> Cluster:
        values = dict(
            database_url=database_url or mariadb_url,
            table=unique_table(),
            base_url=endpoint.base_url,
            queue=f"faults-{uuid.uuid4().hex[:8]}",
            lease=15.0,
            callback_timeout=5.0,
            batch_size=200,
            max_interval=1.0,
            port=free_port(),
        )
        values.update(extra)
        cluster = Cluster(tmp_path, Settings(**values), broker_url or redis_url)
        cluster.store.create_table()
        made.append(cluster)
        return cluster

    yield make
    for cluster in made:
        cluster.stop_all()
        try:
            cluster.store.drop_table()
        except Exception:  # a scenario's dedicated database may already be gone
            pass
