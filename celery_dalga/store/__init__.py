"""SQLAlchemy Core table and every SQL statement celery-dalga runs.

Run protocol (docs/design.md): claim() gives due rows a fresh token and a lease
(next_run = now + lease); fence() and settle() act on a task's runs only while the rows still
carry the runs' tokens, each in one statement or transaction for the whole task. What to write
is decided in celery_dalga.runs; this module only reads and writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.schema import CreateColumn
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from celery_dalga import adopt
from celery_dalga import runs as protocol
from celery_dalga.config import Settings
from celery_dalga.jobs import Job, Run, aware, job_key, naive, new_job_columns
from celery_dalga.runs import RETRY_WAIT, Attempt, Change, Outcome, Policy
from celery_dalga.spec import InvalidParameter, JobSpec
from celery_dalga.values import shown

log = logging.getLogger(__name__)

CLOCK_SAMPLE_SECONDS = 5.0
STALE = timedelta(minutes=1)  # an instance not heard of for this long is gone (as in Dalga)
MAX_DEPTH = 100  # the most ancestors a dependent job may have

Instant = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Id = BigInteger().with_variant(Integer(), "sqlite")
# a job_key (hex) as MariaDB and MySQL compare it fastest: bytes, not utf8mb4 characters
Key = String(64).with_variant(
    mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb"
)


def make_table(metadata: MetaData, name: str) -> Table:
    """The jobs table; `next_run` is indexed for the claim's WHERE and ORDER BY."""
    return Table(
        name,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        Column("job_key", String(64), nullable=False, unique=True),
        Column("path", String(255), nullable=False),
        Column("body", Text, nullable=False),
        Column("interval", String(64)),
        Column("cron", String(255)),
        Column("repeat", String(255)),
        Column("location", String(64), nullable=False, default="UTC"),
        Column("one_off", Boolean, nullable=False, default=False),
        Column("exchange", String(255)),
        Column("task", String(255)),
        Column("parent_key", String(64), index=True),
        Column("retries", Integer),
        Column("retry_interval", Float),
        Column("epsilon", Float),
        Column("enabled", Boolean, nullable=False, default=True),
        Column("next_run", Instant, index=True),
        Column("next_sched", Instant),
        Column("triggered_at", Instant),
        Column("token", String(32)),
        Column("instance_id", BigInteger),
        Column("attempts", Integer, nullable=False, default=0, server_default="0"),
        Column("success_count", Integer, nullable=False, default=0),
        Column("error_count", Integer, nullable=False, default=0),
        Column("last_success", Instant),
        Column("last_attempt", Instant),
        Column("last_error", Text),
        Column("last_duration", Float),
        Column("created_at", Instant),
        Index(f"ix_{name}_path_id", "path", "id"),
    )


def make_instances_table(metadata: MetaData, name: str) -> Table:
    """The processes serving a jobs table, each with its last heartbeat (Dalga's
    <table>_instances, with what each process is)."""
    return Table(
        f"{name}_instances",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=False),
        Column("kind", String(16), nullable=False),
        Column("host", String(255), nullable=False),
        Column("pid", Integer, nullable=False),
        Column("started_at", Instant, nullable=False),
        Column("updated_at", Instant, nullable=False, index=True),
    )


class TableError(RuntimeError):
    """The table exists but is not a celery-dalga jobs table."""


def make_history_table(metadata: MetaData, name: str) -> Table:
    """Each job's last attempts: a ring of slots per job key (so a one-off job's history
    outlives the job), pruned by age."""
    return Table(
        f"{name}_runs",
        metadata,
        Column("job_key", Key, primary_key=True),
        Column("slot", Integer, primary_key=True, autoincrement=False),
        Column("sched", Instant, nullable=False),
        Column("manual", Boolean, nullable=False),
        Column("finished", Instant, nullable=False, index=True),
        Column("status", Integer),
        Column("error", Text),
        Column("duration", Float, nullable=False),
        Column("instance_id", BigInteger),
        Column("outcome", String(16), nullable=False),
    )


HISTORY_COLUMNS = (
    "job_key",
    "slot",
    "sched",
    "manual",
    "finished",
    "status",
    "error",
    "duration",
    "instance_id",
    "outcome",
)


class JobExists(Exception):
    """An insert-if-absent PUT found the job already scheduled."""

    def __init__(self, job: Job):
        super().__init__("job already scheduled")
        self.job = job


class JobRefused(InvalidParameter):
    """A job the table refuses (its parent is missing or it would depend on itself, or it has
    no first run); `key` names the job among a batch's."""

    def __init__(self, key: str, parameter: str, message: str):
        super().__init__(parameter, message)
        self.key = key


MYSQL_TRANSIENT = {1213, 1205}  # deadlock found; lock wait timeout
SQLSTATE_TRANSIENT = {"40001", "40P01"}  # serialization failure; deadlock detected


def is_transient(exc: BaseException) -> bool:
    """A deadlock or serialization failure (the database rolled the transaction back), or a
    connection found dead (the pool has dropped it and its peers; a rerun reconnects)."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if exc.orig is None:
        return False
    args = getattr(exc.orig, "args", ())
    code = args[0] if args else None
    return code in MYSQL_TRANSIENT or getattr(exc.orig, "sqlstate", None) in SQLSTATE_TRANSIENT


def _log_rerun(state) -> None:
    log.warning("transaction rolled back (%s), running it again", state.outcome.exception())


rerun_transient = retry(
    retry=retry_if_exception(is_transient),
    stop=stop_after_attempt(6),
    wait=wait_random_exponential(multiplier=0.01, max=0.3),
    before_sleep=_log_rerun,
    reraise=True,
)


def private_sqlite_file(url: str) -> None:
    """Create the file of a SQLite URL (the jobs' sqlite:///, or the embedded broker's
    sqla+sqlite:///) readable and writable by its owner only, unless it exists: it holds job
    bodies. SQLite gives its -wal and -shm files the database file's mode."""
    parsed = make_url(url.removeprefix("sqla+"))
    path = parsed.database
    if parsed.get_backend_name() != "sqlite" or not path or path == ":memory:":
        return
    if not path.startswith("file:"):
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite in WAL mode with immediate transactions. Connections are
    not pinged on checkout: a dead one fails its statement, the pool drops all connections
    of that age, and rerun_transient runs the transaction again on a fresh one."""
    if url.startswith("sqlite"):
        private_sqlite_file(url)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA busy_timeout=30000")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    options: dict[str, Any] = {"pool_recycle": 3600}
    if url.startswith(("mysql", "mariadb")):
        options.update(isolation_level="READ COMMITTED", connect_args={"charset": "utf8mb4"})
    return create_engine(url, **options)


class Store:
    """The jobs table and the operations on it."""

    def __init__(self, engine: Engine, table: str = "dalga", policy: Policy | None = None):
        self.engine = engine
        metadata = MetaData()
        self.table = make_table(metadata, table)
        self.instances = make_instances_table(metadata, table)
        self.history = make_history_table(metadata, table)
        self.policy = policy or Policy()
        self.clock: Callable[[], datetime] | None = None
        self._clock_sample: tuple[datetime, float] | None = None

    # -- time and transactions ------------------------------------------------

    def now(self, conn: Connection | None = None) -> datetime:
        """The one "now": the database's clock (or self.clock, which tests may set). It is read
        at most every CLOCK_SAMPLE_SECONDS and carried forward by this process's monotonic
        clock in between, which saves a round trip per transaction."""
        if self.clock is not None:
            return self.clock()
        if self.engine.dialect.name == "sqlite":
            return datetime.now(UTC)
        sample = self._clock_sample
        if sample is None or time.monotonic() - sample[1] > CLOCK_SAMPLE_SECONDS:
            clock = self._database_clock(conn) if conn is not None else self._database_clock_alone()
            sample = self._clock_sample = (clock, time.monotonic())
        return sample[0] + timedelta(seconds=time.monotonic() - sample[1])

    def _database_clock(self, conn: Connection) -> datetime:
        query = (
            "SELECT clock_timestamp() AT TIME ZONE 'UTC'"
            if self.engine.dialect.name == "postgresql"
            else "SELECT UTC_TIMESTAMP(6)"
        )
        return aware(conn.execute(text(query)).scalar_one())

    @rerun_transient
    def _database_clock_alone(self) -> datetime:
        """The clock read on a connection of its own, read again on a fresh one if the pooled
        connection turns out dead (a restarted database)."""
        with self.engine.connect() as own:
            return self._database_clock(own)

    def create_table(self) -> None:
        """Create the tables (jobs and instances) and their indexes if they are missing, and
        add the columns that a jobs table made by an earlier version lacks; adopt Dalga's own
        table (celery_dalga.adopt)."""
        inspector = inspect(self.engine)
        if inspector.has_table(self.table.name):
            columns = {c["name"]: c for c in inspector.get_columns(self.table.name)}
            if adopt.is_dalgas(columns):
                if self.engine.dialect.name not in ("mysql", "mariadb"):
                    raise TableError(
                        f"table {self.table.name!r} is Dalga's: it can be adopted on MariaDB "
                        "or MySQL only"
                    )
                adopt.adopt(self.engine, self.table, self.instances)
            elif "job_key" not in columns:
                raise TableError(
                    f"table {self.table.name!r} is not a celery-dalga jobs table (it has no "
                    "job_key column); give DALGA_TABLE another name"
                )
        self.table.metadata.create_all(self.engine, checkfirst=True)
        present = {c["name"] for c in inspect(self.engine).get_columns(self.table.name)}
        missing = [c for c in self.table.columns if c.name not in present]
        with self.engine.begin() as conn:
            for column in missing:
                added = CreateColumn(column).compile(dialect=self.engine.dialect)
                conn.execute(text(f"ALTER TABLE {self.table.name} ADD COLUMN {added}"))

    def check_table(self) -> None:
        """TableError unless the tables exist with every column this version writes."""
        inspector = inspect(self.engine)
        name = self.table.name
        if inspector.has_table(name) and adopt.is_dalgas(
            {c["name"]: c for c in inspector.get_columns(name)}
        ):
            raise TableError(
                f"table {name!r} is Dalga's own (or its adoption was cut short): "
                "run `dalga create-table` to adopt it"
            )
        for table in self.table.metadata.sorted_tables:
            if not inspector.has_table(table.name):
                raise TableError(f"table {table.name!r} does not exist: run `dalga create-table`")
            present = {c["name"] for c in inspector.get_columns(table.name)}
            if any(c.name not in present for c in table.columns):
                raise TableError(
                    f"table {table.name!r} lacks columns of this version: run `dalga create-table`"
                )

    def drop_table(self) -> None:
        """Drop the tables (tests and benchmarks clean up with it)."""
        self.table.metadata.drop_all(self.engine, checkfirst=True)

    # -- the HTTP interface ---------------------------------------------------

    def _job(self, conn: Connection, key: str) -> Job:
        """The job with this key, which the transaction has just written."""
        row = self._select_key(conn, key)
        assert row is not None, key
        return Job.from_mapping(row._mapping)

    def _select_key(self, conn: Connection, key: str, lock: bool = False) -> Row | None:
        query = select(self.table).where(self.table.c.job_key == key)
        if lock:
            query = query.with_for_update()
        return conn.execute(query).first()

    @rerun_transient
    def put(self, spec: JobSpec) -> Job:
        """Schedule or reschedule (path, body). A run in flight keeps its lease; no second call.
        With spec.if_absent an existing job is left as it is: JobExists."""
        now = self.now()
        first = spec.first_sched(now)
        row = new_job_columns(spec, first, now)
        with self.engine.begin() as conn:
            if spec.if_absent:
                found = self._select_key(conn, row["job_key"])
                if found is not None:
                    raise JobExists(Job.from_mapping(found._mapping))
                conn.execute(insert(self.table), [row])
            else:
                conn.execute(self._upsert(), [row])
            self._check_parents(conn, [spec])
            return self._job(conn, row["job_key"])

    @rerun_transient
    def put_many(self, specs: list[JobSpec]) -> int:
        """Schedule or reschedule many jobs in one transaction (the bulk path), as put() does
        each (an if_absent job that exists is left as it is); returns len. A job put() would
        refuse is a JobRefused naming it, and the batch is not written.

        On MariaDB and MySQL the batch travels as one JSON document that the server unpacks
        with JSON_TABLE: escaping a million rows value by value in the client cost more than
        the server's work. Elsewhere it is one executemany. Rows go in job_key order, so
        the unique index is walked once and concurrent batches lock rows in one order."""
        if not specs:
            return 0
        now = self.now()
        rows: list[dict[str, Any]] = []
        absent: list[dict[str, Any]] = []
        for spec in specs:
            try:
                row = new_job_columns(spec, spec.first_sched(now), now)
            except InvalidParameter as exc:
                key = job_key(spec.path, spec.body)
                raise JobRefused(key, exc.parameter, str(exc).partition(": ")[2]) from None
            (absent if spec.if_absent else rows).append(row)
        rows.sort(key=itemgetter("job_key"))
        with self.engine.begin() as conn:
            if rows and self._json_table():
                document = json.dumps([list(row.values()) for row in rows], default=_json_datetime)
                conn.execute(self._upsert(self._json_rows(document, list(rows[0]))))
            elif rows:
                conn.execute(self._upsert(), rows)
            if absent:
                conn.execute(self._insert_absent(), sorted(absent, key=itemgetter("job_key")))
            self._check_parents(conn, specs)
        return len(specs)

    def _insert_absent(self) -> Any:
        """INSERT that leaves a row with the same job_key as it is."""
        t, name = self.table, self.engine.dialect.name
        if name in ("mysql", "mariadb"):
            stmt = mysql.insert(t)
            return stmt.on_duplicate_key_update(job_key=t.c.job_key)
        stmt = (postgresql if name == "postgresql" else sqlite).insert(t)
        return stmt.on_conflict_do_nothing(index_elements=[t.c.job_key])

    def _check_parents(self, conn: Connection, specs: list[JobSpec]) -> None:
        """JobRefused unless each dependent job's parent exists and the job is not among its
        ancestors (up to MAX_DEPTH of them). Run after the jobs are written, in the same
        transaction: the ancestors' rows are locked, so two PUTs that would close a loop
        wait for each other (or deadlock, and the rerun sees the other's commit)."""
        t = self.table
        named = {job_key(s.path, s.body): s.parent for s in specs if s.parent}
        at = {own: job_key(*parent) for own, parent in named.items()}  # job -> its ancestor
        for depth in range(MAX_DEPTH):
            if not at:
                return
            found = dict(
                conn.execute(
                    select(t.c.job_key, t.c.parent_key)
                    .where(t.c.job_key.in_(sorted(set(at.values()))))
                    .with_for_update()
                ).all()
            )
            above = {}
            for own, key in at.items():
                if key == own:
                    raise JobRefused(own, "parent", "the job would depend on itself")
                if key not in found and depth == 0:
                    raise JobRefused(own, "parent", f"no job {shown('/'.join(named[own]))}")
                if found.get(key) is not None:
                    above[own] = found[key]
            at = above
        if at:
            raise JobRefused(next(iter(at)), "parent", f"more than {MAX_DEPTH} ancestors")

    def _json_table(self) -> bool:
        """Whether the server has JSON_TABLE (MariaDB 10.6+, MySQL 8.0.4+)."""
        dialect = self.engine.dialect
        if dialect.name not in ("mysql", "mariadb") or dialect.server_version_info is None:
            return False
        return dialect.server_version_info >= (
            (10, 6) if getattr(dialect, "is_mariadb", False) else (8, 0, 4)
        )

    def _json_rows(self, document: str | None, names: list[str], t: Table | None = None) -> Any:
        """The rows of a JSON document (lists of the `names` columns' values of table `t`, the
        jobs by default), as a SELECT; JSON_TABLE gives each value its column's own type."""
        dialect, t = self.engine.dialect, self.table if t is None else t
        columns = ", ".join(
            f"`{name}` {t.c[name].type.compile(dialect=dialect)} PATH '$[{i}]'"
            for i, name in enumerate(names)
        )
        source = text(f"JSON_TABLE(:document, '$[*]' COLUMNS ({columns})) AS j")
        return select(*(literal_column(f"j.`{name}`").label(name) for name in names)).select_from(
            source.bindparams(document=document)
        )

    def _upsert(self, source: Any = None) -> Any:
        """INSERT-or-UPDATE on job_key, one atomic statement, of the given rows or of `source`
        (a SELECT whose columns are named after the table's). An update replaces the schedule
        columns, and next_run too unless a run holds the row (then it keeps its lease) or a
        trigger is pending (then the trigger's run comes first)."""
        t = self.table
        stmt: Any
        if self.engine.dialect.name in ("mysql", "mariadb"):
            stmt = mysql.insert(t)
            new = stmt.inserted
        else:
            dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(t)
            new = stmt.excluded
        if source is not None:
            stmt = stmt.from_select(list(source.selected_columns.keys()), source)
        changes: dict[str, Any] = {name: new[name] for name in SCHEDULE_COLUMNS}
        changes["next_run"] = case(
            (t.c.token.is_not(None), t.c.next_run),
            (t.c.triggered_at < new.next_run, t.c.triggered_at),
            else_=new.next_run,
        )
        if self.engine.dialect.name in ("mysql", "mariadb"):
            return stmt.on_duplicate_key_update(**changes)
        return stmt.on_conflict_do_update(index_elements=[t.c.job_key], set_=changes)

    def get(self, path: str, body: str) -> Job | None:
        return self.get_by_key(job_key(path, body))

    @rerun_transient
    def get_by_key(self, key: str | None) -> Job | None:
        """The job with this job_key, or None."""
        if key is None:
            return None
        with self.engine.connect() as conn:
            row = self._select_key(conn, key)
        return Job.from_mapping(row._mapping) if row else None

    @rerun_transient
    def delete(self, path: str, body: str) -> bool:
        """Cancel the job, and its dependent jobs with theirs (Kala: a child without its parent
        goes too); an in-flight run finds its token gone and stops."""
        t = self.table
        with self.engine.begin() as conn:
            keys = {job_key(path, body)}
            if not conn.execute(select(t.c.id).where(t.c.job_key.in_(keys))).first():
                return False
            frontier = keys
            while frontier:  # each job once: a loop in the table (written by hand) ends too
                children = conn.execute(
                    select(t.c.job_key).where(t.c.parent_key.in_(sorted(frontier)))
                ).scalars()
                frontier = set(children) - keys
                keys |= frontier
            conn.execute(delete(t).where(t.c.job_key.in_(sorted(keys))))
        return True

    def delete_all(self, chunk: int = 10_000) -> int:
        """Delete every job, `chunk` rows a transaction (a million rows in one would hold the
        table); returns how many."""
        deleted = 0
        while gone := self._delete_some(chunk):
            deleted += gone
        return deleted

    @rerun_transient
    def _delete_some(self, chunk: int) -> int:
        t = self.table
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(t.c.id).order_by(t.c.id).limit(chunk)).scalars())
            return conn.execute(delete(t).where(t.c.id.in_(ids))).rowcount if ids else 0

    @rerun_transient
    def history_of(self, path: str, body: str, limit: int = 1000) -> list[dict[str, Any]]:
        """The job's kept attempts, newest first (also after a one-off job is gone)."""
        h = self.history
        query = (
            select(h)
            .where(h.c.job_key == job_key(path, body))
            .order_by(h.c.finished.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [
                {
                    **row._mapping,
                    **{k: aware(row._mapping[k]) for k in ("sched", "finished")},
                    "started": aware(row.finished) - timedelta(seconds=row.duration),
                    "manual": bool(row.manual),
                }
                for row in conn.execute(query)
            ]

    @rerun_transient
    def prune_history(self, chunk: int = 10_000) -> int:
        """Forget up to `chunk` attempts older than history_ttl; returns how many."""
        h = self.history
        cutoff = naive(self.now() - timedelta(seconds=self.policy.history_ttl))
        with self.engine.begin() as conn:
            old = conn.execute(
                select(h.c.job_key, h.c.slot).where(h.c.finished < cutoff).limit(chunk)
            ).all()
            if not old:
                return 0
            pairs = tuple_(h.c.job_key, h.c.slot).in_([tuple(row) for row in old])
            return conn.execute(delete(h).where(pairs)).rowcount

    @rerun_transient
    def trigger(self, path: str, body: str) -> Job | None:
        """Run the job once, now, leaving its schedule as it is."""
        t, key = self.table, job_key(path, body)
        with self.engine.begin() as conn:
            now = naive(self.now(conn))
            found = conn.execute(
                update(t)
                .where(t.c.job_key == key)
                .values(
                    triggered_at=now,
                    next_run=func.coalesce(_if_running(t, t.c.next_run), now),
                )
            ).rowcount
            return self._job(conn, key) if found else None

    @rerun_transient
    def set_enabled(self, path: str, body: str, enabled: bool) -> Job | None:
        """Pause or resume (runs.on_enabled decides what that changes)."""
        key = job_key(path, body)
        with self.engine.begin() as conn:
            row = self._select_key(conn, key, lock=True)
            if row is None:
                return None
            job = Job.from_mapping(row._mapping)
            values = _stored(protocol.on_enabled(job, enabled, self.now(conn), self.policy))
            conn.execute(update(self.table).where(self.table.c.id == job.id).values(values))
            return self._job(conn, key)

    @rerun_transient
    def page(
        self,
        path: str | None = None,
        sort_by: str = "insert-order",
        reverse: bool = False,
        after: tuple[Any, ...] | None = None,
        limit: int = 100,
        path_prefix: str | None = None,
        parent_key: str | None = None,
    ) -> list[Job]:
        """A page of jobs, optionally only those with this path (or path prefix, or parent),
        in insert order (by id) or in next-sched order (by next_sched, then id), after the
        keyset `after`: the last job's (id,) or (next_sched, id) on the page before."""
        t = self.table
        keys = (t.c.id,) if sort_by == "insert-order" else (t.c.next_sched, t.c.id)
        query = select(t).order_by(*(k.desc() if reverse else k for k in keys)).limit(limit)
        if path is not None:
            query = query.where(t.c.path == path)
        if path_prefix:
            escaped = path_prefix.replace("!", "!!").replace("%", "!%").replace("_", "!_")
            query = query.where(t.c.path.like(escaped + "%", escape="!"))
        if parent_key is not None:
            query = query.where(t.c.parent_key == parent_key)
        if after is not None:
            last = tuple(naive(v) if isinstance(v, datetime) else v for v in after)
            row = tuple_(*keys)
            query = query.where(row < last if reverse else row > last)
        with self.engine.connect() as conn:
            return [Job.from_mapping(r._mapping) for r in conn.execute(query)]

    @rerun_transient
    def status(self, instance_id: int | None = None) -> dict[str, Any]:
        """Dalga's status (totals, runs in flight, due runs, live instances, the lag of the
        oldest due run in whole seconds) and celery-dalga's (paused jobs, the lag exactly)."""
        t, now = self.table, self.now()
        in_flight = (t.c.token.is_not(None), t.c.token != RETRY_WAIT, t.c.next_run > naive(now))
        mine = t.c.instance_id == instance_id
        with self.engine.connect() as conn:
            total, disabled, successes, errors, last_attempt = conn.execute(
                select(
                    func.count(),
                    func.coalesce(func.sum(_int(~t.c.enabled)), 0),
                    func.coalesce(func.sum(t.c.success_count), 0),
                    func.coalesce(func.sum(t.c.error_count), 0),
                    func.max(t.c.last_attempt),
                )
            ).one()
            next_run = conn.execute(select(func.min(t.c.next_run))).scalar()
            running, running_here = conn.execute(
                select(func.count(), func.coalesce(func.sum(_int(mine)), 0)).where(*in_flight)
            ).one()
            pending, oldest = conn.execute(
                select(func.count(), func.min(t.c.next_run)).where(t.c.next_run <= naive(now))
            ).one()
            instances = conn.execute(
                select(func.count()).where(self.instances.c.updated_at >= naive(now - STALE))
            ).scalar_one()
        lag = (now - aware(oldest)).total_seconds() if oldest else 0.0
        return {
            "instance_id": instance_id,
            "instance_running_jobs": int(running_here),
            "running_jobs": running,
            "total_jobs": total,
            "pending_jobs": pending,
            "total_instances": instances,
            "lag": int(lag),
            "disabled_jobs": int(disabled),
            "lag_seconds": round(lag, 3),
            "success_count": int(successes),
            "error_count": int(errors),
            "next_run": aware(next_run).isoformat() if next_run else None,
            "last_attempt": aware(last_attempt).isoformat() if last_attempt else None,
            "now": now.isoformat(),
        }

    @rerun_transient
    def heartbeat(self, instance_id: int, kind: str, host: str, pid: int) -> None:
        """Say that this instance is alive, and forget those not heard of for STALE. The
        stale rows are found by a plain read and deleted by id in a transaction of their own:
        a range DELETE in every heartbeat took gap locks that deadlocked the heartbeats of
        concurrent processes."""
        t, now = self.instances, naive(self.now())
        row = {"id": instance_id, "kind": kind, "host": host, "pid": pid}
        with self.engine.begin() as conn:
            found = conn.execute(
                update(t).where(t.c.id == instance_id).values(updated_at=now)
            ).rowcount
            if not found:
                conn.execute(insert(t).values(**row, started_at=now, updated_at=now))
        with self.engine.connect() as conn:
            stale = list(conn.execute(select(t.c.id).where(t.c.updated_at < now - STALE)).scalars())
        if stale:
            with self.engine.begin() as conn:
                conn.execute(delete(t).where(t.c.id.in_(stale), t.c.updated_at < now - STALE))

    @rerun_transient
    def forget_instance(self, instance_id: int) -> None:
        """This instance is stopping."""
        with self.engine.begin() as conn:
            conn.execute(delete(self.instances).where(self.instances.c.id == instance_id))

    @rerun_transient
    def live_instances(self) -> list[dict[str, Any]]:
        """The instances heard of within STALE, oldest first."""
        t = self.instances
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t)
                .where(t.c.updated_at >= naive(self.now() - STALE))
                .order_by(t.c.started_at)
            )
            return [
                {
                    **row._mapping,
                    "started_at": aware(row.started_at),
                    "updated_at": aware(row.updated_at),
                }
                for row in rows
            ]

    # -- the run protocol -----------------------------------------------------

    @rerun_transient
    def claim(self, limit: int, instance_id: int | None = None) -> list[Run]:
        """Take up to `limit` due rows, give those to send one fresh token, a lease and the
        claiming instance, settle the others (runs.on_due); return the runs to send."""
        t = self.table
        with self.engine.begin() as conn:
            now = self.now(conn)
            rows = conn.execute(
                select(t)
                .where(t.c.next_run <= naive(now))
                .order_by(t.c.next_run)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            token = uuid.uuid4().hex
            sent, changes = [], []
            for row in rows:
                decision = protocol.on_due(Job.from_mapping(row._mapping), token, now, self.policy)
                if isinstance(decision, Run):
                    sent.append(decision)
                else:
                    changes.append((row.id, decision))
                    log.log(
                        logging.WARNING if decision.outcome is Outcome.SKIPPED else logging.INFO,
                        "%s due run path=%s sched=%s",
                        decision.outcome,
                        row.path,
                        aware(row.next_sched),
                    )
            if sent:
                conn.execute(
                    update(t)
                    .where(t.c.id.in_([r.job_id for r in sent]))
                    .values(
                        token=token,
                        instance_id=instance_id,
                        next_run=naive(now + timedelta(seconds=self.policy.lease)),
                    )
                )
            self._apply(conn, changes)
        return sent

    @rerun_transient
    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest next_run (0 if due now); None when nothing is scheduled."""
        with self.engine.connect() as conn:
            now = self.now(conn)
            earliest = conn.execute(select(func.min(self.table.c.next_run))).scalar_one()
        if earliest is None:
            return None
        return max(0.0, (aware(earliest) - now).total_seconds())

    @rerun_transient
    def fence(self, runs: list[Run], keep: float) -> list[Run]:
        """The runs whose rows still carry their tokens, in one read. A run whose lease has
        less than `keep` seconds left has it renewed first (a run that cannot be renewed is
        no longer ours)."""
        if not runs:
            return []
        t = self.table
        with self.engine.connect() as conn:
            held = {
                row.id: row
                for row in conn.execute(
                    select(t.c.id, t.c.token, t.c.next_run).where(
                        t.c.id.in_([r.job_id for r in runs])
                    )
                )
            }
            ours = [r for r in runs if r.job_id in held and held[r.job_id].token == r.token]
            now = self.now(conn)
            short = [
                r for r in ours if aware(held[r.job_id].next_run) - now < timedelta(seconds=keep)
            ]
            if not short:
                return ours
            pairs = tuple_(t.c.id, t.c.token).in_([(r.job_id, r.token) for r in short])
            lease_end = naive(now + timedelta(seconds=self.policy.lease))
            conn.execute(update(t).where(pairs).values(next_run=lease_end))
            renewed = set(conn.execute(select(t.c.id).where(pairs)).scalars())
            conn.commit()
        lost = {r.job_id for r in short} - renewed
        return [r for r in ours if r.job_id not in lost]

    @rerun_transient
    def settle(self, attempts: list[Attempt], instance_id: int | None = None) -> list[Outcome]:
        """Apply the answers of a task's POSTs (runs.on_answer) in one transaction: the rows
        are locked, and only those still carrying the runs' tokens change; each attempt goes
        into the jobs' history, and the dependent jobs the answers make due become due."""
        if not attempts:
            return []
        t = self.table
        with self.engine.begin() as conn:
            rows = conn.execute(
                select(t).where(t.c.id.in_([a.run.job_id for a in attempts])).with_for_update()
            )
            jobs = {row.id: Job.from_mapping(row._mapping) for row in rows}
            now, clock = self.now(conn), time.monotonic()
            ended = [a.ended_at(now, clock) for a in attempts]
            changes = [
                protocol.on_answer(jobs.get(a.run.job_id), a, at, self.policy)
                for a, at in zip(attempts, ended, strict=True)
            ]
            settled = [
                (a, c, at)
                for a, c, at in zip(attempts, changes, ended, strict=True)
                if c.outcome is not Outcome.STALE
            ]
            self._apply(conn, [(a.run.job_id, c) for a, c, _ in settled])
            if self.policy.history_runs and settled:
                policy = self.policy
                self._write_history(
                    conn,
                    [
                        protocol.record(jobs[a.run.job_id], a, c, at, policy, instance_id)
                        for a, c, at in settled
                    ],
                )
            self._wake(conn, [c for _, c, _ in settled], now)
        return [c.outcome for c in changes]

    def _apply(self, conn: Connection, changes: list[tuple[int, Change]]) -> None:
        """Write the changes: one DELETE for the rows to delete, and one UPDATE for each set
        of columns the others change."""
        t = self.table
        gone = [job_id for job_id, change in changes if change.delete]
        if gone:
            conn.execute(delete(t).where(t.c.id.in_(gone)))
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for job_id, change in changes:
            if change.values and not change.delete:
                values = _stored(change.values)
                by_columns[tuple(sorted(values))].append({"id": job_id, **values})
        for columns, rows in by_columns.items():
            self._update_rows(conn, list(columns), rows)

    def _write_history(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Upsert the attempts into their slots, in one statement, in key order (as put_many:
        one walk of the primary key, and concurrent settles lock slots in one order). On
        MariaDB and MySQL the rows travel as one JSON document, through a statement built
        once: compiling it and escaping each value cost more than the server's insert."""
        rows = sorted(rows, key=itemgetter("job_key", "slot"))
        if self._json_table():
            document = json.dumps(
                [[_json_value(row[name]) for name in HISTORY_COLUMNS] for row in rows]
            )
            conn.execute(self._history_upsert, {"document": document})
            return
        conn.execute(self._history_upsert, [_stored(row) for row in rows])

    @cached_property
    def _history_upsert(self) -> Any:
        """INSERT-or-UPDATE of attempts into their (job_key, slot), of the executed rows or
        (with JSON_TABLE) of the JSON document bound as `document`."""
        h, name = self.history, self.engine.dialect.name
        if name in ("mysql", "mariadb"):
            stmt = mysql.insert(h)
            if self._json_table():
                source = self._json_rows(None, list(HISTORY_COLUMNS), h)
                stmt = stmt.from_select(list(HISTORY_COLUMNS), source)
            changed = {c: stmt.inserted[c] for c in HISTORY_COLUMNS[2:]}
            return stmt.on_duplicate_key_update(**changed)
        stmt = (postgresql if name == "postgresql" else sqlite).insert(h)
        changed = {c: stmt.excluded[c] for c in HISTORY_COLUMNS[2:]}
        return stmt.on_conflict_do_update(index_elements=["job_key", "slot"], set_=changed)

    def _wake(self, conn: Connection, changes: list[Change], now: datetime) -> None:
        """Make due the dependent jobs the changes name: each parent's first enabled child,
        and the enabled sibling after each dependent run that ended (one SELECT when none).
        One attempted less than min_interval ago is due min_interval from now: a loop of
        parents left in the table by an older version cannot run hot."""
        t = self.table
        parents = [c.children_of for c in changes if c.children_of]
        woken: list[int] = []
        if parents:
            woken += conn.execute(
                select(func.min(t.c.id))
                .where(t.c.parent_key.in_(parents), t.c.enabled)
                .group_by(t.c.parent_key)
            ).scalars()
        for parent, after in (c.sibling_after for c in changes if c.sibling_after):
            found = conn.execute(
                select(func.min(t.c.id)).where(
                    t.c.parent_key == parent, t.c.id > after, t.c.enabled
                )
            ).scalar()
            if found is not None:
                woken.append(found)
        if not woken:
            return
        spacing = timedelta(seconds=self.policy.min_interval)
        recent = set(
            conn.execute(
                select(t.c.id).where(t.c.id.in_(woken), t.c.last_attempt > naive(now - spacing))
            ).scalars()
        )
        for ids, at in ((set(woken) - recent, now), (recent, now + spacing)):
            if ids:
                conn.execute(
                    update(t)
                    .where(t.c.id.in_(sorted(ids)))
                    .values(
                        triggered_at=naive(at),
                        next_run=func.coalesce(_if_running(t, t.c.next_run), naive(at)),
                    )
                )

    def _update_rows(
        self, conn: Connection, columns: list[str], rows: list[dict[str, Any]]
    ) -> None:
        """Set `columns` of each row (by id), in one statement. On MariaDB and MySQL the rows
        travel as one JSON document joined with JSON_TABLE (mysqlclient would send one UPDATE
        per row); elsewhere one executemany (PostgreSQL's driver pipelines it; SQLite is local)."""
        t = self.table
        if self._json_table():
            names = ["id", *columns]
            document = json.dumps([[row[n] for n in names] for row in rows], default=_json_datetime)
            source = self._json_rows(document, names).subquery("changes")
            conn.execute(  # the IN keeps InnoDB on those rows: on a small table it would
                update(t)  # rather scan (and lock) every row for the join
                .where(t.c.id.in_([row["id"] for row in rows]), t.c.id == source.c.id)
                .values({t.c[name]: source.c[name] for name in columns})
            )
            return
        conn.execute(
            update(t)
            .where(t.c.id == bindparam("row_id"))
            .values({c: bindparam(c) for c in columns}),
            [{"row_id": row["id"], **{c: row[c] for c in columns}} for row in rows],
        )


SCHEDULE_COLUMNS = (
    "interval",
    "cron",
    "repeat",
    "location",
    "one_off",
    "exchange",
    "task",
    "parent_key",
    "retries",
    "retry_interval",
    "epsilon",
    "enabled",
    "next_sched",
)


def _stored(values: dict[str, Any]) -> dict[str, Any]:
    """Column values as the table stores them (instants as naive UTC)."""
    return {k: naive(v) if isinstance(v, datetime) else v for k, v in values.items()}


def _json_value(value: Any) -> Any:
    """A column value as JSON_TABLE reads it (instants as naive UTC text)."""
    return naive(value).isoformat(sep=" ") if isinstance(value, datetime) else value


def _json_datetime(value: datetime) -> str:
    """A datetime as JSON_TABLE reads it back into a DATETIME column (json.dumps' default hook;
    JSON true and false become the BOOL columns' 1 and 0 on the server)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _if_running(t: Table, value: Any) -> Any:
    """`value` while a run holds the row (token set), else NULL."""
    return case((t.c.token.is_not(None), value), else_=None)


def _int(condition: Any) -> Any:
    return case((condition, 1), else_=0)


@lru_cache(maxsize=8)
def store_for(settings: Settings) -> Store:
    """The process's Store for these settings (one engine and pool per process)."""
    return Store(make_engine(settings.database_url), settings.table, Policy.from_settings(settings))
