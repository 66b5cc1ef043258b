"""A job request as Dalga's parameters describe it, checked against Dalga's rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

from celery_dalga import schedules
from celery_dalga.schedules import Schedule, ScheduleError
from celery_dalga.values import parse_bool

PARAMETERS = (
    "interval",
    "cron",
    "schedule",
    "first-run",
    "one-off",
    "immediate",
    "location",
    "exchange",
)
EXCHANGE = re.compile(r"^[A-Za-z0-9._:-]{1,255}$")
MAX_PATH = 255
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


class InvalidParameter(ValueError):
    """A request parameter that is missing, malformed or in conflict; names the parameter."""

    def __init__(self, parameter: str, message: str):
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

    def first_sched(self, now: datetime) -> datetime:
        """When the first run is due, given the current time."""
        if self.immediate:
            return now
        if self.first_run is not None:
            return self.first_run
        try:
            return self.schedule.first(now)
        except OverflowError:
            raise InvalidParameter("interval", "the first run would be past year 9999") from None
        except ScheduleError as exc:
            raise InvalidParameter("schedule", str(exc)) from None


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
    """Check Dalga's parameters (query string or form) and return the JobSpec they describe."""
    check_key(path, body, max_body)
    params = dict(params)
    exchange = params.pop("exchange", None)
    if exchange is not None and not EXCHANGE.match(exchange):
        raise InvalidParameter("exchange", "an AMQP exchange name: letters, digits, . _ : -")
    schedule, first_run, immediate = _parse_params(tuple(sorted(params.items())))
    return JobSpec(path, body, schedule, first_run, immediate, exchange)


@lru_cache(maxsize=4096)
def _parse_params(items: tuple[tuple[str, str], ...]) -> tuple[Schedule, datetime | None, bool]:
    """The schedule, first run and immediacy that parameters describe. Cached: a bulk import
    repeats a few parameter sets a million times."""
    params = dict(items)
    for name in params:
        if name not in PARAMETERS:
            raise InvalidParameter(name, f"unknown parameter (known: {', '.join(PARAMETERS)})")
    location = _field(params, "location", schedules.parse_location) or schedules.parse_location(
        "UTC"
    )
    interval = _field(params, "interval", schedules.parse_duration)
    cron = _field(params, "cron", schedules.parse_cron)
    repeat = _field(params, "schedule", lambda t: schedules.parse_repeat(t, location))
    first_run = _field(params, "first-run", lambda t: schedules.parse_instant(t, location))
    one_off = bool(_field(params, "one-off", parse_bool))
    immediate = bool(_field(params, "immediate", parse_bool))

    given = [n for n, v in (("interval", interval), ("cron", cron), ("schedule", repeat)) if v]
    if len(given) > 1:
        raise InvalidParameter(given[1], f"cannot be combined with {given[0]}")
    if first_run is not None and not EARLIEST <= first_run <= LATEST:
        raise InvalidParameter("first-run", "must be between 1970 and 9000")
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
    return schedule, first_run, immediate
