"""A job request as Dalga's parameters describe it, checked against Dalga's rules, with
Kala's (parent, retries, retry-interval, epsilon) and go-quartz's (if-absent) besides."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from celery_dalga import schedules
from celery_dalga.schedules import UTC_ZONE, Schedule, ScheduleError
from celery_dalga.values import SHOWN, parse_bool, shown

SCHEDULE_PARAMETERS = ("interval", "cron", "schedule", "first-run", "one-off", "immediate")
JOB_PARAMETERS = (
    *("exchange", "task", "kind", "options", "parent"),
    *("retries", "retry-interval", "epsilon", "if-absent"),
)
PARAMETERS = (*SCHEDULE_PARAMETERS, "location", *JOB_PARAMETERS)
EXCHANGE = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
TASK = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
KIND = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
MAX_OPTIONS = 8192  # characters of a job's options (JSON)
MAX_RETRIES = 1000
MAX_PATH = 255
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class InvalidParameter(ValueError):
    """A request parameter that is missing, malformed or in conflict; names the parameter."""

    def __init__(self, parameter: str, message: str):
        parameter = parameter[:SHOWN]
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter


@dataclass(frozen=True)
class JobSpec:
    """A checked request to schedule job (path, body)."""

    path: str
    body: str
    schedule: Schedule
    first_run: datetime | None = None
    immediate: bool = False
    exchange: str | None = None  # publish to this AMQP exchange instead of calling HTTP
    task: str | None = None  # call this Celery task with the body instead of calling HTTP
    parent: tuple[str, str] | None = None  # (path, body): run after each success of that job
    retries: int | None = None  # this job's retries of a run (else retry until given up)
    retry_interval: float | None = None  # this job's first retry delay, seconds
    epsilon: float | None = None  # this job's epsilon, seconds
    if_absent: bool = False  # schedule only if no such job exists yet
    kind: str | None = None  # the callback kind's name (celery_dalga.kinds); None: chosen as before
    options: dict[str, Any] | None = None  # the kind's own settings, stored as JSON

    def first_sched(self, now: datetime) -> datetime | None:
        """When the first run is due, given the current time (None: a dependent job, due when
        its parent says)."""
        if self.parent is not None:
            return None
        if self.immediate:
            return now
        if self.first_run is not None:
            return self.first_run
        try:
            return self.schedule.first(now)
        except ScheduleError as exc:
            raise InvalidParameter(_schedule_name(self.schedule), str(exc)) from None


CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_key(path: str, body: str, max_body: int) -> None:
    """A job's path and body must be non-empty and within the size limits."""
    if not path.strip("/"):
        raise InvalidParameter("path", "must not be empty")
    if len(path) > MAX_PATH:
        raise InvalidParameter("path", f"longer than {MAX_PATH} characters")
    if not body:
        raise InvalidParameter("body", "must not be empty")
    for name, value in (("path", path), ("body", body)):
        if "\x00" in value:
            raise InvalidParameter(name, "must not contain NUL characters")
    if CONTROL.search(path):
        raise InvalidParameter("path", "must not contain control characters (CR, LF, tab...)")
    if any(segment in (".", "..") for segment in path.replace("\\", "/").split("/")):
        raise InvalidParameter("path", "must not have . or .. segments (it would leave base_url)")
    if len(body.encode()) > max_body:
        raise InvalidParameter("body", f"longer than {max_body} bytes")


def _field(params: Mapping[str, str], name: str, parse):
    if name not in params:
        return None
    try:
        return parse(params[name])
    except (ScheduleError, ValueError, OverflowError) as exc:
        raise InvalidParameter(name, str(exc)) from None


def parse_spec(path: str, body: str, params: Mapping[str, str], max_body: int = 65535) -> JobSpec:
    """Check the parameters (query string or form) and return the JobSpec they describe."""
    check_key(path, body, max_body)
    schedule_params = {k: v for k, v in params.items() if k not in JOB_PARAMETERS}
    job = {k: v for k, v in params.items() if k in JOB_PARAMETERS}
    parent = _field(job, "parent", lambda text: _parent(text, max_body))
    if parent is not None:
        given = sorted(set(schedule_params) & set(SCHEDULE_PARAMETERS))
        if given:
            raise InvalidParameter(given[0], "a dependent job runs after its parent, unscheduled")
        location = _field(schedule_params, "location", schedules.parse_location)
        schedule, first_run, immediate = Schedule(location=location or UTC_ZONE), None, False
        reject_unknown(schedule_params)
    else:
        items = tuple(sorted(schedule_params.items()))
        schedule, first_run, immediate = _parse_params(items)
    exchange = _field(job, "exchange", lambda text: _matching(EXCHANGE, text, "an AMQP exchange"))
    task = _field(job, "task", lambda text: _matching(TASK, text, "a dotted Celery task name"))
    if exchange and task:
        raise InvalidParameter("task", "cannot be combined with exchange")
    return JobSpec(
        path,
        body,
        schedule,
        first_run,
        immediate,
        exchange,
        task,
        parent,
        _field(job, "retries", _retries),
        _field(job, "retry-interval", _seconds),
        _field(job, "epsilon", _seconds),
        bool(_field(job, "if-absent", _boolean)),
        _field(job, "kind", lambda text: _matching(KIND, text, "a callback kind's name")),
        _field(job, "options", _options),
    )


def _matching(pattern: re.Pattern, text: str, what: str) -> str:
    if not pattern.fullmatch(text) or len(text) > 255:
        raise ValueError(f"{shown(text)} is not {what}")
    return text


def _options(text: str) -> dict[str, Any]:
    """A job's options for its kind: a JSON object."""
    if len(text) > MAX_OPTIONS:
        raise ValueError(f"longer than {MAX_OPTIONS} characters")
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise ValueError(f"{shown(text)} is not JSON") from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def allowed(listing: str, name: str) -> bool:
    """Whether name is one of a setting's comma-separated names (allowed_tasks,
    allowed_exchanges); an empty setting allows none."""
    return name in _names(listing)


@lru_cache(maxsize=16)
def _names(listing: str) -> frozenset[str]:
    return frozenset(part.strip() for part in listing.split(",") if part.strip())


def _schedule_name(schedule: Schedule) -> str:
    """The parameter that gave a schedule."""
    return "cron" if schedule.cron else "schedule" if schedule.repeat else "interval"


def _parent(text: str, max_body: int) -> tuple[str, str]:
    """<path>/<body> of the parent job."""
    path, _, body = text.rpartition("/")
    if not path or not body:
        raise ValueError(f"{shown(text)} is not <path>/<body> of a job")
    check_key(path, body, max_body)
    return path, body


def _boolean(text: str) -> bool:
    """parse_bool on a prefix: no boolean is long, and the error quotes no more than that."""
    return parse_bool(text[:SHOWN])


def _retries(text: str) -> int:
    if not text.strip().isdigit() or len(text) > SHOWN:
        raise ValueError(f"{shown(text)} is not a whole number")
    count = int(text)
    if not 0 <= count <= MAX_RETRIES:
        raise ValueError(f"must be between 0 and {MAX_RETRIES}")
    return count


def _seconds(text: str) -> float:
    """Seconds or an ISO 8601 duration without days, months or years."""
    duration = schedules.parse_duration(text)
    if duration.is_calendar:
        raise ValueError(f"{shown(text)} has days, months or years")
    return duration.elapsed.total_seconds()


def reject_unknown(names: Iterable[str], known: Iterable[str] = PARAMETERS) -> None:
    """An InvalidParameter for the first of names that is not a known parameter."""
    known = list(known)
    for name in sorted(names):
        if name not in known:
            raise InvalidParameter(name, f"unknown parameter (known: {', '.join(known)})")


@lru_cache(maxsize=4096)
def _parse_params(items: tuple[tuple[str, str], ...]) -> tuple[Schedule, datetime | None, bool]:
    """The schedule, first run and immediacy that parameters describe. Cached: a bulk import
    repeats a few parameter sets a million times."""
    params = dict(items)
    reject_unknown(params)
    location = _field(params, "location", schedules.parse_location) or schedules.parse_location(
        "UTC"
    )
    interval = _field(params, "interval", schedules.parse_duration)
    cron = _field(params, "cron", schedules.parse_cron)
    repeat = _field(params, "schedule", lambda t: schedules.parse_repeat(t, location))
    first_run = _field(params, "first-run", lambda t: schedules.parse_instant(t, location))
    one_off = bool(_field(params, "one-off", _boolean))
    immediate = bool(_field(params, "immediate", _boolean))

    given = [n for n, v in (("interval", interval), ("cron", cron), ("schedule", repeat)) if v]
    if len(given) > 1:
        raise InvalidParameter(given[1], f"cannot be combined with {given[0]}")
    if first_run is not None and not EARLIEST <= first_run <= LATEST:
        raise InvalidParameter("first-run", "must be between 1970 and 9000")
    if repeat and not EARLIEST <= repeat.start <= LATEST:
        raise InvalidParameter("schedule", "must start between 1970 and 9000")
    if one_off and (cron or repeat):
        raise InvalidParameter("one-off", f"cannot be combined with {given[0]}")
    if one_off and immediate and (interval or first_run):
        raise InvalidParameter(
            "interval" if interval else "first-run", "not allowed with one-off and immediate"
        )
    if one_off and not immediate and (interval is None) == (first_run is None):
        raise InvalidParameter("interval", "one-off needs exactly one of interval or first-run")
    if not one_off and not given:
        raise InvalidParameter("interval", "a periodic job needs interval, cron or schedule")
    if immediate and first_run is not None:
        raise InvalidParameter("first-run", "cannot be combined with immediate")
    if repeat and first_run is not None:
        raise InvalidParameter("first-run", "schedule carries its own start")

    schedule = Schedule(
        interval=interval, cron=cron, repeat=repeat, location=location, one_off=one_off
    )
    if first_run is not None and not one_off and schedule.next(first_run, first_run) is None:
        raise InvalidParameter("first-run", "the run after it would be past year 9999")
    return schedule, first_run, immediate
