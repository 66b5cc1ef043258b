"""The jobs table and every SQL statement celery-dalga runs, one module per concern:

- schema: the tables; creating, upgrading in place, checking them
- engine: the engine; rerunning a transaction the database rolled back
- database: what every part works on (engine, tables, policy) and the one clock
- dialects: where MariaDB/MySQL, PostgreSQL and SQLite differ
- rows: between rows and Job/JobSpec
- scheduling: scheduling jobs (one, a batch) and their parents' checks
- jobs: a job's other operations (get, list, trigger, pause, delete)
- links: links between jobs beyond parent_key (many parents, on-failure jobs)
- runs: the run protocol's statements (claim, fence, settle)
- history: each job's last attempts
- instances: the processes' heartbeats
- status: the table's status (its counts, and what an index answers at once)
- load: runs due ahead, callbacks per minute (<table>_load, added to by each process's tally)
- spread: spreading the next runs of jobs under a path prefix over their interval

Store gathers them: each of its methods is one of those modules' functions.
"""

from __future__ import annotations

from celery_dalga.store import (
    history,
    instances,
    jobs,
    links,
    load,
    runs,
    scheduling,
    spread,
    status,
)
from celery_dalga.store.database import Database
from celery_dalga.store.engine import is_transient, make_engine, private_sqlite_file
from celery_dalga.store.scheduling import JobExists, JobRefused
from celery_dalga.store.schema import TableError, check_tables, create_tables

__all__ = [
    "JobExists",
    "JobRefused",
    "Store",
    "TableError",
    "is_transient",
    "make_engine",
    "private_sqlite_file",
]


class Store(Database):
    """The jobs table and the operations on it."""

    def create_table(self) -> None:
        """Create the tables, add the columns an earlier version's lack, adopt Dalga's."""
        create_tables(self.engine, self.table, self.instances)

    def check_table(self) -> None:
        """TableError unless the tables exist with every column this version writes."""
        check_tables(self.engine, self.table)

    def drop_table(self) -> None:
        """Drop the tables (tests and benchmarks clean up with it)."""
        self.table.metadata.drop_all(self.engine, checkfirst=True)

    put = scheduling.put
    put_many = scheduling.put_many
    get = jobs.get
    get_by_key = jobs.get_by_key
    page = jobs.page
    trigger = jobs.trigger
    set_enabled = jobs.set_enabled
    delete = jobs.delete
    delete_all = jobs.delete_all
    delete_path = jobs.delete_path
    link = links.link
    related = links.related

    claim = runs.claim
    seconds_until_due = runs.seconds_until_due
    fence = runs.fence
    settle = runs.settle

    history_of = history.read
    prune_history = history.prune

    heartbeat = instances.heartbeat
    forget_instance = instances.forget
    live_instances = instances.live

    counts = status.counts
    status = status.status

    prune_load = load.prune
    load = load.load
    spread = spread.spread

    def flush_load(self) -> int:
        """Write this process's tally of settled runs now (it is stopping; tests)."""
        return self.tally.flush()
