"""What every part of the store works on: the engine, the tables of one name, the run policy,
and the one clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine

from celery_dalga.load import Tally
from celery_dalga.runs import Policy
from celery_dalga.store import dialects, load
from celery_dalga.store.engine import rerun_transient
from celery_dalga.store.schema import (
    make_history_table,
    make_instances_table,
    make_links_table,
    make_load_table,
    make_table,
)

CLOCK_SAMPLE_SECONDS = 5.0


class Database:
    """The jobs table `table` (with its instances, history, links and load tables) on
    `engine`; `tally` counts the runs this process settles for the load table."""

    def __init__(self, engine: Engine, table: str = "dalga", policy: Policy | None = None):
        self.engine = engine
        metadata = MetaData()
        self.table = make_table(metadata, table)
        self.instances = make_instances_table(metadata, table)
        self.history = make_history_table(metadata, table)
        self.links = make_links_table(metadata, table)
        self.loads = make_load_table(metadata, table)
        self.tally = Tally(lambda shard, rows: load.write(self, shard, rows))
        self.policy = policy or Policy()
        self.clock: Callable[[], datetime] | None = None  # tests set their own
        self._clock_sample: tuple[datetime, float] | None = None

    def now(self, conn: Connection | None = None) -> datetime:
        """The one "now": the database's clock (or self.clock, which tests may set). It is read
        at most every CLOCK_SAMPLE_SECONDS and carried forward by this process's monotonic
        clock in between, which saves a round trip per transaction."""
        if self.clock is not None:
            return self.clock()
        if not dialects.has_server_clock(self.engine.dialect):
            return datetime.now(UTC)
        sample = self._clock_sample
        if sample is None or time.monotonic() - sample[1] > CLOCK_SAMPLE_SECONDS:
            clock = dialects.read_clock(conn) if conn is not None else self._read_clock_alone()
            sample = self._clock_sample = (clock, time.monotonic())
        return sample[0] + timedelta(seconds=time.monotonic() - sample[1])

    @rerun_transient
    def _read_clock_alone(self) -> datetime:
        """The clock read on a connection of its own, read again on a fresh one if the pooled
        connection turns out dead (a restarted database)."""
        with self.engine.connect() as own:
            return dialects.read_clock(own)
