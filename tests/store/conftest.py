"""The store's tests run on MariaDB, PostgreSQL and SQLite (any_db_url), on a fresh table."""

import pytest
from helpers import Clock

from celery_dalga.runs import Policy
from celery_dalga.store import Store


@pytest.fixture
def store(any_db_url, make_store) -> Store:
    return make_store(any_db_url, policy=Policy(lease=30))


@pytest.fixture
def clock(store) -> Clock:
    store.clock = Clock()
    return store.clock
