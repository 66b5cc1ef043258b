"""SQLAlchemy Core table and every SQL statement celery-dalga runs.

Run protocol (docs/design.md): claim() gives due rows a fresh token and a
lease (next_run = now + lease); begin(), complete() and fail() change a row
only while it still carries the caller's token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any
from zoneinfo import ZoneInfo

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
    case,
    create_engine,
    delete,
    event,
    func,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import DBAPIError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_random_exponential

from celery_dalga import schedules
from celery_dalga.config import Settings
from celery_dalga.schedules import Schedule
from celery_dalga.spec import JobSpec

log = logging.getLogger(__name__)

CLOCK_SAMPLE_SECONDS = 5.0

Instant = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
Id = BigInteger().with_variant(Integer(), "sqlite")


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
        Column("enabled", Boolean, nullable=False, default=True),
        Column("next_run", Instant, index=True),
        Column("next_sched", Instant),
        Column("triggered_at", Instant),
        Column("token", String(32)),
        Column("success_count", Integer, nullable=False, default=0),
        Column("error_count", Integer, nullable=False, default=0),
        Column("last_success", Instant),
        Column("last_attempt", Instant),
        Column("last_error", Text),
        Column("last_duration", Float),
        Column("created_at", Instant),
        Index(f"ix_{name}_path_id", "path", "id"),
    )


def job_key(path: str, body: str) -> str:
    """The unique key of a job: SHA-256 of (path, body)."""
    return hashlib.sha256(f"{path}\0{body}".encode()).hexdigest()


def _naive(instant: datetime) -> datetime:
    return instant.astimezone(UTC).replace(tzinfo=None)


def _aware(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Job:
    """A job as stored; instants are aware UTC."""

    id: int
    path: str
    body: str
    interval: str | None
    cron: str | None
    repeat: str | None
    location: str
    one_off: bool
    enabled: bool
    next_run: datetime | None
    next_sched: datetime | None
    triggered_at: datetime | None
    running: bool
    success_count: int
    error_count: int
    last_success: datetime | None
    last_attempt: datetime | None
    last_error: str | None
    last_duration: float | None

    @property
    def schedule(self) -> Schedule:
        return _schedule_of(self)

    @classmethod
    def from_row(cls, row: Row) -> Job:
        m = row._mapping
        return cls(
            id=m["id"],
            path=m["path"],
            body=m["body"],
            interval=m["interval"],
            cron=m["cron"],
            repeat=m["repeat"],
            location=m["location"],
            one_off=bool(m["one_off"]),
            enabled=bool(m["enabled"]),
            next_run=_aware(m["next_run"]),
            next_sched=_aware(m["next_sched"]),
            triggered_at=_aware(m["triggered_at"]),
            running=m["token"] is not None,
            success_count=m["success_count"],
            error_count=m["error_count"],
            last_success=_aware(m["last_success"]),
            last_attempt=_aware(m["last_attempt"]),
            last_error=m["last_error"],
            last_duration=m["last_duration"],
        )


@dataclass(frozen=True)
class Run:
    """One dispatch of a job: what the http_callback task carries."""

    job_id: int
    key: str
    path: str
    body: str
    sched: datetime
    token: str
    manual: bool = False

    @property
    def task_id(self) -> str:
        """Stable for (job, scheduled instant): a re-delivery shows as the same run."""
        kind = "trigger" if self.manual else "sched"
        return f"dalga-{self.key[:16]}-{kind}-{self.sched.strftime('%Y%m%dT%H%M%S.%fZ')}"

    @property
    def idempotency_key(self) -> str:
        return hashlib.sha256(f"{self.key}|{self.task_id}".encode()).hexdigest()[:32]


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


def make_engine(url: str) -> Engine:
    """An engine for the store; SQLite in WAL mode with immediate transactions. Connections are
    not pinged on checkout: a dead one fails its statement, the pool drops all connections
    of that age, and rerun_transient runs the transaction again on a fresh one."""
    if url.startswith("sqlite"):
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

    def __init__(
        self,
        engine: Engine,
        table: str = "dalga",
        *,
        fixed_intervals: bool = False,
        epsilon: float = 0.0,
        retry_stop_after: float = 0.0,
    ):
        self.engine = engine
        self.table = make_table(MetaData(), table)
        self.fixed_intervals = fixed_intervals
        self.epsilon = timedelta(seconds=epsilon)
        self.retry_stop_after = timedelta(seconds=retry_stop_after)
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
        return _aware(conn.execute(text(query)).scalar_one())

    @rerun_transient
    def _database_clock_alone(self) -> datetime:
        """The clock read on a connection of its own, read again on a fresh one if the pooled
        connection turns out dead (a restarted database)."""
        with self.engine.connect() as own:
            return self._database_clock(own)

    def create_table(self) -> None:
        """Create the table and its indexes if they are missing."""
        self.table.metadata.create_all(self.engine, checkfirst=True)

    def drop_table(self) -> None:
        """Drop the table (tests and benchmarks clean up with it)."""
        self.table.metadata.drop_all(self.engine, checkfirst=True)

    # -- the HTTP interface ---------------------------------------------------

    def _select_key(self, conn: Connection, key: str, lock: bool = False) -> Row | None:
        query = select(self.table).where(self.table.c.job_key == key)
        if lock:
            query = query.with_for_update()
        return conn.execute(query).first()

    @rerun_transient
    def put(self, spec: JobSpec) -> Job:
        """Schedule or reschedule (path, body). A run in flight keeps its lease; no second call."""
        with self.engine.begin() as conn:
            row = _row(spec, self.now(conn))
            conn.execute(self._upsert(), [row])
            return Job.from_row(self._select_key(conn, row["job_key"]))

    @rerun_transient
    def put_many(self, specs: list[JobSpec]) -> int:
        """Schedule or reschedule many jobs in one transaction (the bulk path); returns len.

        On MariaDB and MySQL the batch travels as one JSON document that the server unpacks
        with JSON_TABLE: escaping a million rows value by value in the client cost more than
        the server's work. Elsewhere it is one executemany. Rows go in job_key order, so
        the unique index is walked once and concurrent batches lock rows in one order."""
        if not specs:
            return 0
        with self.engine.begin() as conn:
            now = self.now(conn)
            rows = sorted((_row(spec, now) for spec in specs), key=itemgetter("job_key"))
            if self._json_table():
                document = json.dumps([list(row.values()) for row in rows], default=_json_datetime)
                conn.execute(self._upsert(self._json_rows(document, list(rows[0]))))
            else:
                conn.execute(self._upsert(), rows)
        return len(specs)

    def _json_table(self) -> bool:
        """Whether the server has JSON_TABLE (MariaDB 10.6+, MySQL 8.0.4+)."""
        dialect = self.engine.dialect
        if dialect.name not in ("mysql", "mariadb") or dialect.server_version_info is None:
            return False
        return dialect.server_version_info >= ((10, 6) if dialect.is_mariadb else (8, 0, 4))

    def _json_rows(self, document: str, names: list[str]) -> Any:
        """The rows of a JSON document (lists of the `names` columns' values), as a SELECT;
        JSON_TABLE gives each value its column's own type."""
        dialect, t = self.engine.dialect, self.table
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
        columns, and next_run too unless a run holds the row (then it keeps its lease)."""
        t = self.table
        if self.engine.dialect.name in ("mysql", "mariadb"):
            stmt = mysql.insert(t)
            new = stmt.inserted
        else:
            dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(t)
            new = stmt.excluded
        if source is not None:
            stmt = stmt.from_select(list(source.selected_columns.keys()), source)
        changes = {name: new[name] for name in SCHEDULE_COLUMNS}
        changes["next_run"] = case((t.c.token.is_not(None), t.c.next_run), else_=new.next_run)
        if self.engine.dialect.name in ("mysql", "mariadb"):
            return stmt.on_duplicate_key_update(**changes)
        return stmt.on_conflict_do_update(index_elements=[t.c.job_key], set_=changes)

    @rerun_transient
    def get(self, path: str, body: str) -> Job | None:
        with self.engine.connect() as conn:
            row = self._select_key(conn, job_key(path, body))
        return Job.from_row(row) if row else None

    @rerun_transient
    def delete(self, path: str, body: str) -> bool:
        """Cancel the job; an in-flight run finds its token gone and stops."""
        with self.engine.begin() as conn:
            gone = conn.execute(
                delete(self.table).where(self.table.c.job_key == job_key(path, body))
            ).rowcount
        return bool(gone)

    @rerun_transient
    def trigger(self, path: str, body: str) -> Job | None:
        """Run the job once, now, leaving its schedule as it is."""
        t, key = self.table, job_key(path, body)
        with self.engine.begin() as conn:
            now = _naive(self.now(conn))
            found = conn.execute(
                update(t)
                .where(t.c.job_key == key)
                .values(
                    triggered_at=now,
                    next_run=func.coalesce(_if_running(t, t.c.next_run), now),
                )
            ).rowcount
            return Job.from_row(self._select_key(conn, key)) if found else None

    @rerun_transient
    def set_enabled(self, path: str, body: str, enabled: bool) -> Job | None:
        """Pause or resume. Resuming an idle job schedules its next slot from now."""
        key = job_key(path, body)
        with self.engine.begin() as conn:
            row = self._select_key(conn, key, lock=True)
            if row is None:
                return None
            job = Job.from_row(row)
            values: dict[str, Any] = {"enabled": enabled}
            if not job.running:
                if not enabled:
                    values["next_run"] = _naive(job.triggered_at) if job.triggered_at else None
                elif not job.enabled:
                    now = self.now(conn)
                    nxt = job.next_sched
                    if nxt is None or nxt < now:
                        nxt = job.schedule.next(nxt or now, now, self.fixed_intervals)
                    if nxt is None:
                        nxt = now
                    values.update(
                        next_sched=_naive(nxt),
                        next_run=_naive(min(nxt, job.triggered_at) if job.triggered_at else nxt),
                    )
            conn.execute(update(self.table).where(self.table.c.id == job.id).values(**values))
            return Job.from_row(self._select_key(conn, key))

    @rerun_transient
    def list(self, path: str | None = None, after: int = 0, limit: int = 100) -> list[Job]:
        """Jobs in id order after the cursor `after`, optionally only those with this path."""
        t = self.table
        query = select(t).where(t.c.id > after).order_by(t.c.id).limit(limit)
        if path is not None:
            query = query.where(t.c.path == path)
        with self.engine.connect() as conn:
            return [Job.from_row(r) for r in conn.execute(query)]

    @rerun_transient
    def status(self) -> dict[str, Any]:
        """Totals, runs in flight, due runs waiting, and how late the oldest due run is."""
        t = self.table
        with self.engine.connect() as conn:
            now = self.now(conn)
            total, disabled = conn.execute(
                select(func.count(), func.coalesce(func.sum(_int(~t.c.enabled)), 0))
            ).one()
            running = conn.execute(
                select(func.count()).where(t.c.token.is_not(None), t.c.next_run > _naive(now))
            ).scalar_one()
            pending, oldest = conn.execute(
                select(func.count(), func.min(t.c.next_run)).where(t.c.next_run <= _naive(now))
            ).one()
        lag = (now - _aware(oldest)).total_seconds() if oldest else 0.0
        return {
            "total": total,
            "disabled": int(disabled),
            "running": running,
            "pending": pending,
            "lag": round(lag, 3),
            "now": now.isoformat(),
        }

    # -- the run protocol -----------------------------------------------------

    @rerun_transient
    def claim(self, limit: int, lease: float) -> list[Run]:
        """Take up to `limit` due rows, give them one fresh token and a lease; return the runs."""
        t = self.table
        with self.engine.begin() as conn:
            now = self.now(conn)
            rows = conn.execute(
                select(
                    t.c.id,
                    t.c.job_key,
                    t.c.path,
                    t.c.body,
                    t.c.next_sched,
                    t.c.triggered_at,
                    t.c.enabled,
                    t.c.one_off,
                    t.c.interval,
                    t.c.cron,
                    t.c.repeat,
                    t.c.location,
                    t.c.token,
                )
                .where(t.c.next_run <= _naive(now))
                .order_by(t.c.next_run)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            if not rows:
                return []
            token = uuid.uuid4().hex
            runs = []
            for row in rows:
                run = self._run_for(conn, row, token, now)
                if run is not None:
                    runs.append(run)
            if runs:
                conn.execute(
                    update(t)
                    .where(t.c.id.in_([r.job_id for r in runs]))
                    .values(token=token, next_run=_naive(now + timedelta(seconds=lease)))
                )
        return runs

    def _run_for(self, conn: Connection, row: Row, token: str, now: datetime) -> Run | None:
        """Decide what a due row means: a scheduled run, a triggered run, or nothing to send."""
        sched, triggered = _aware(row.next_sched), _aware(row.triggered_at)
        manual = triggered is not None and (not row.enabled or sched is None or sched > now)
        if manual:
            return Run(row.id, row.job_key, row.path, row.body, triggered, token, manual=True)
        if not row.enabled or sched is None:
            self._write(conn, row.id, token=None, next_run=None)
            return None
        if self.epsilon and not row.one_off and now - sched > self.epsilon:
            nxt = _schedule_of(row).next(sched, now, self.fixed_intervals)
            log.warning(
                "skipped run missed by more than epsilon path=%s body=%s sched=%s",
                row.path,
                row.body,
                sched.isoformat(),
            )
            if nxt is None:
                conn.execute(delete(self.table).where(self.table.c.id == row.id))
            else:
                self._write(conn, row.id, token=None, next_sched=_naive(nxt), next_run=_naive(nxt))
            return None
        return Run(row.id, row.job_key, row.path, row.body, sched, token)

    @rerun_transient
    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest next_run (0 if due now); None when nothing is scheduled."""
        with self.engine.connect() as conn:
            now = self.now(conn)
            earliest = conn.execute(select(func.min(self.table.c.next_run))).scalar_one()
        if earliest is None:
            return None
        return max(0.0, (_aware(earliest) - now).total_seconds())

    @rerun_transient
    def begin(self, run: Run, lease: float, keep: float) -> bool:
        """Fence a delivery: True only if the row still has run's token. The check is a plain
        read while at least `keep` seconds of the lease remain; otherwise the lease is renewed."""
        t = self.table
        ours = (t.c.id == run.job_id) & (t.c.token == run.token)
        with self.engine.connect() as conn:
            lease_end = conn.execute(select(t.c.next_run).where(ours)).scalar()
            if lease_end is None:
                return False
            now = self.now(conn)
            if _aware(lease_end) - now >= timedelta(seconds=keep):
                return True
            renewed = conn.execute(
                update(t).where(ours).values(next_run=_naive(now + timedelta(seconds=lease)))
            ).rowcount
            conn.commit()
            return bool(renewed)

    def _held(self, conn: Connection, run: Run) -> Row | None:
        t = self.table
        return conn.execute(
            select(t).where(t.c.id == run.job_id, t.c.token == run.token).with_for_update()
        ).first()

    def _write(self, conn: Connection, job_id: int, **values: Any) -> None:
        conn.execute(update(self.table).where(self.table.c.id == job_id).values(**values))

    @rerun_transient
    def complete(self, run: Run, delete_job: bool, duration: float) -> str:
        """Apply a success: delete, or release the token and set the next run. Token-guarded."""
        with self.engine.begin() as conn:
            row = self._held(conn, run)
            if row is None:
                return "stale"
            job = Job.from_row(row)
            now = self.now(conn)
            nxt = job.next_sched
            if not run.manual and job.next_sched == run.sched:
                nxt = job.schedule.next(run.sched, now, self.fixed_intervals)
            if delete_job or nxt is None:
                conn.execute(delete(self.table).where(self.table.c.id == job.id))
                return "deleted"
            pending_trigger = job.triggered_at
            if run.manual and job.triggered_at == run.sched:
                pending_trigger = None
            next_run = nxt if job.enabled else None
            if pending_trigger is not None:
                next_run = now
            self._write(
                conn,
                job.id,
                token=None,
                next_sched=_naive(nxt),
                next_run=_naive(next_run) if next_run else None,
                triggered_at=_naive(pending_trigger) if pending_trigger else None,
                success_count=job.success_count + 1,
                last_success=_naive(now),
                last_attempt=_naive(now),
                last_duration=duration,
            )
            return "done"

    @rerun_transient
    def fail(self, run: Run, error: str, retry_in: float, lease: float) -> str:
        """Record a failed attempt. "retry" extends the lease over the wait; "gave_up" disables
        the job (retry_stop_after passed); "stale"/"stopped" mean the run is no longer ours."""
        with self.engine.begin() as conn:
            row = self._held(conn, run)
            if row is None:
                return "stale"
            now = self.now(conn)
            counts = {
                "error_count": row.error_count + 1,
                "last_error": error[:2000],
                "last_attempt": _naive(now),
            }
            if not row.enabled and not run.manual:
                self._write(conn, row.id, token=None, next_run=None, **counts)
                return "stopped"
            if self.retry_stop_after and now - run.sched > self.retry_stop_after:
                self._write(
                    conn,
                    row.id,
                    token=None,
                    next_run=None,
                    enabled=False,
                    triggered_at=None,
                    **counts,
                )
                return "gave_up"
            self._write(
                conn, row.id, next_run=_naive(now + timedelta(seconds=retry_in + lease)), **counts
            )
            return "retry"


SCHEDULE_COLUMNS = (
    "interval",
    "cron",
    "repeat",
    "location",
    "one_off",
    "enabled",
    "next_sched",
    "triggered_at",
)


def _row(spec: JobSpec, now: datetime) -> dict[str, Any]:
    """The columns a PUT writes for spec, at now."""
    first = _naive(spec.first_sched(now))
    sched = spec.schedule
    repeat = None
    if sched.repeat:
        repeat = (
            f"R{sched.repeat.count or ''}/{sched.repeat.start.isoformat()}/{sched.repeat.period}"
        )
    return {
        "job_key": job_key(spec.path, spec.body),
        "path": spec.path,
        "body": spec.body,
        "interval": str(sched.interval) if sched.interval else None,
        "cron": sched.cron,
        "repeat": repeat,
        "location": sched.location.key,
        "one_off": sched.one_off,
        "enabled": True,
        "next_sched": first,
        "triggered_at": None,
        "next_run": first,
        "created_at": _naive(now),
        "success_count": 0,
        "error_count": 0,
    }


def _json_datetime(value: datetime) -> str:
    """A datetime as JSON_TABLE reads it back into a DATETIME column (json.dumps' default hook;
    JSON true and false become the BOOL columns' 1 and 0 on the server)."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


def _schedule_of(job: Any) -> Schedule:
    """The Schedule of a Job or a row with the schedule columns."""
    return Schedule(
        interval=schedules.parse_duration(job.interval) if job.interval else None,
        cron=job.cron,
        repeat=schedules.parse_repeat(job.repeat) if job.repeat else None,
        location=ZoneInfo(job.location),
        one_off=bool(job.one_off),
    )


def _if_running(t: Table, value: Any) -> Any:
    """`value` while a run holds the row (token set), else NULL."""
    return case((t.c.token.is_not(None), value), else_=None)


def _int(condition: Any) -> Any:
    return case((condition, 1), else_=0)


@lru_cache(maxsize=8)
def store_for(settings: Settings) -> Store:
    """The process's Store for these settings (one engine and pool per process)."""
    return Store(
        make_engine(settings.database_url),
        settings.table,
        fixed_intervals=settings.fixed_intervals,
        epsilon=settings.epsilon,
        retry_stop_after=settings.retry_stop_after,
    )
