"""Next-run arithmetic: intervals, cron, ISO 8601 repeats, randomized waits. Pure; no I/O.

Every instant given to or returned by this module is an aware UTC datetime.
Calendar parts of a duration (years, months, weeks, days) and cron fields are
evaluated on the wall clock of the job's location; hours, minutes and seconds
are elapsed time. So P1D keeps 09:00 across a DST change while PT24H does not.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import isodate
from croniter import CroniterBadDateError, croniter

from celery_dalga.values import shown

UTC_ZONE = ZoneInfo("UTC")
MAX_DURATION = timedelta(days=366 * 100)
MAX_DURATION_TEXT = 64  # the interval column's width
MAX_CRON_TEXT = 255  # the cron column's width
REPEAT = re.compile(r"^R(\d{0,10})/([^/]+)/([^/]+)$")


class ScheduleError(ValueError):
    """A schedule string that cannot be understood."""


@dataclass(frozen=True)
class Duration:
    """An ISO 8601 duration split into wall-clock (calendar) and elapsed parts."""

    years: int = 0
    months: int = 0
    days: int = 0
    elapsed: timedelta = timedelta(0)
    text: str = field(default="", compare=False)

    @property
    def is_calendar(self) -> bool:
        return bool(self.years or self.months or self.days)

    def approx(self) -> timedelta:
        """Length used for bounds checks only (a month counted as 31 days)."""
        return timedelta(days=self.years * 366 + self.months * 31 + self.days) + self.elapsed

    def average(self) -> timedelta:
        """Mean length (a Gregorian year, a twelfth of it a month), to estimate slot counts."""
        days = self.years * 365.2425 + self.months * 365.2425 / 12 + self.days
        return timedelta(days=days) + self.elapsed

    def whole_seconds(self) -> int | None:
        """The duration in seconds when it has no calendar part and is whole, else None."""
        if self.is_calendar or self.elapsed.microseconds:
            return None
        return int(self.elapsed.total_seconds())

    def __str__(self) -> str:
        return self.text


def parse_duration(text: str) -> Duration:
    """Integer seconds ("300") or an ISO 8601 duration ("PT5M", "P1M", "P2W"); must be > 0."""
    text = text.strip()
    if len(text) > MAX_DURATION_TEXT:
        raise ScheduleError(f"{shown(text)} is longer than {MAX_DURATION_TEXT} characters")
    if text.isdigit():
        if len(text) > 10:
            raise ScheduleError(f"{text!r} is longer than 100 years")
        duration = Duration(elapsed=timedelta(seconds=int(text)), text=text)
    else:
        # isodate reads P1D and PT24H alike, so the date and time halves are read apart.
        date_part, _, time_part = text.upper().partition("T")
        try:
            calendar = isodate.parse_duration(date_part) if date_part != "P" else timedelta(0)
            elapsed = isodate.parse_duration("PT" + time_part) if time_part else timedelta(0)
        except (isodate.ISO8601Error, ValueError, TypeError, OverflowError):
            raise ScheduleError(f"{text!r} is not whole seconds or an ISO 8601 duration") from None
        if not date_part.startswith("P") or isinstance(elapsed, isodate.Duration):
            raise ScheduleError(f"{text!r} is not whole seconds or an ISO 8601 duration")
        years = months = 0
        if isinstance(calendar, isodate.Duration):
            years, months, calendar = calendar.years, calendar.months, calendar.tdelta
        if (
            years != int(years)
            or months != int(months)
            or calendar.seconds
            or calendar.microseconds
        ):
            raise ScheduleError(f"{text!r}: years, months, weeks and days must be whole")
        duration = Duration(int(years), int(months), calendar.days, elapsed, text.upper())
    if duration.years < 0 or duration.months < 0 or duration.approx() <= timedelta(0):
        raise ScheduleError(f"{text!r} must be longer than zero")
    if duration.approx() > MAX_DURATION:
        raise ScheduleError(f"{text!r} is longer than 100 years")
    return duration


def parse_location(name: str) -> ZoneInfo:
    """An IANA time zone such as Europe/Istanbul."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"{shown(name)} is not an IANA time zone") from None


QUARTZ_WEEKDAY = re.compile(r"(?<![/#\d])([1-7])(?!\d)")


def croniter_form(expr: str) -> tuple[str, bool]:
    """A cron expression as croniter reads it, and whether its first field is seconds.

    Five fields are classic cron. Six or seven fields are Quartz's (go-quartz's) order,
    seconds first and an optional year last, with Quartz's weekdays 1-7 for SUN-SAT, which
    become croniter's 0-6 (croniter would read a sixth field as seconds at the end)."""
    fields = expr.split()
    if len(fields) < 6:
        return expr, False
    fields[5] = QUARTZ_WEEKDAY.sub(lambda m: str(int(m[1]) - 1), fields[5])
    return " ".join(fields), True


def parse_cron(expr: str) -> str:
    """A cron expression: five fields (classic), or six or seven with seconds first (Quartz),
    that matches some instant (not `0 0 30 2 *`)."""
    if len(expr) > MAX_CRON_TEXT:
        raise ScheduleError(f"{shown(expr)} is longer than {MAX_CRON_TEXT} characters")
    form, seconds_first = croniter_form(expr)
    if not croniter.is_valid(form, second_at_beginning=seconds_first):
        raise ScheduleError(f"{shown(expr)} is not a cron expression")
    try:
        croniter(form, datetime(2000, 1, 1), second_at_beginning=seconds_first).get_next(datetime)
    except CroniterBadDateError:
        raise ScheduleError(f"{shown(expr)} never matches") from None
    return expr


@dataclass(frozen=True)
class Repeat:
    """Kala's ISO 8601 repeating interval: R[n]/<start>/<duration>; count None = forever."""

    count: int | None
    start: datetime
    period: Duration


def parse_repeat(text: str, location: ZoneInfo = UTC_ZONE) -> Repeat:
    """Read "R5/2026-01-01T00:00:00Z/PT10S" ("R/..." repeats forever); a start without an
    offset is wall-clock time in location."""
    match = REPEAT.match(text.strip())
    if not match:
        raise ScheduleError(f"{shown(text)} is not R[n]/<start>/<duration> (n up to 10 digits)")
    count = int(match[1]) if match[1] else None
    if count == 0:
        raise ScheduleError(f"{shown(text)} repeats zero times")
    repeat = Repeat(count, parse_instant(match[2], location), parse_duration(match[3]))
    if count is not None:
        try:
            repeat_slot(repeat, count - 1, location)
        except OverflowError:
            raise ScheduleError(f"{shown(text)}: its last run would be past year 9999") from None
    return repeat


def parse_instant(text: str, location: ZoneInfo) -> datetime:
    """An ISO 8601 date-time; without an offset it is wall-clock time in location."""
    try:
        parsed = isodate.parse_datetime(text.strip())
    except (isodate.ISO8601Error, ValueError, TypeError, OverflowError):
        raise ScheduleError(f"{shown(text)} is not an ISO 8601 date-time") from None
    try:
        return localize(parsed, location) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:
        raise ScheduleError(f"{shown(text)} is out of range") from None


def localize(wall: datetime, location: ZoneInfo) -> datetime:
    """Wall-clock time in location to UTC. A time in a DST gap moves forward by the gap."""
    return wall.replace(tzinfo=location, fold=0).astimezone(UTC)


def add(instant: datetime, duration: Duration, location: ZoneInfo, times: int = 1) -> datetime:
    """instant + times x duration: calendar part on location's wall clock, then elapsed part.
    OverflowError when the result is out of datetime's range (years 1 to 9999)."""
    try:
        if duration.is_calendar:
            wall = instant.astimezone(location).replace(tzinfo=None)
            step = isodate.Duration(
                days=duration.days * times,
                months=duration.months * times,
                years=duration.years * times,
            )
            instant = localize(wall + step, location)
        return instant + duration.elapsed * times
    except (OverflowError, ValueError):  # isodate says "year 10000 is out of range"
        raise OverflowError("past year 9999") from None


def next_cron(expr: str, after: datetime, location: ZoneInfo) -> datetime:
    """The first cron slot strictly after `after`, on location's wall clock.

    Cron is read on the wall clock so that a slot in the repeated hour of a
    DST fall-back fires once, and a slot in the spring-forward gap fires at
    the first instant after the gap.
    """
    form, seconds_first = croniter_form(expr)
    wall = after.astimezone(location).replace(tzinfo=None)
    while True:
        try:
            wall = croniter(form, wall, second_at_beginning=seconds_first).get_next(datetime)
            candidate = localize(wall, location)
        except (CroniterBadDateError, OverflowError, ValueError):
            raise OverflowError("no cron slot before year 9999") from None
        if candidate > after:
            return candidate


def repeat_slot(repeat: Repeat, index: int, location: ZoneInfo) -> datetime:
    """The index-th (0-based) instant of a repeating interval."""
    return add(repeat.start, repeat.period, location, times=index)


def next_repeat(repeat: Repeat, after: datetime, location: ZoneInfo) -> datetime | None:
    """The first slot of the repeat strictly after `after`, or None when the repeats are used up.

    The slot's index is estimated by division (exact for elapsed periods; for calendar ones by
    the period's mean length), then corrected by a few steps."""
    index = 0
    if after >= repeat.start:
        index = int((after - repeat.start) / repeat.period.average())
        if repeat.count is not None:
            index = min(index, repeat.count)
        while index > 0 and repeat_slot(repeat, index - 1, location) > after:
            index -= 1
    while repeat_slot(repeat, index, location) <= after:
        index += 1
    if repeat.count is not None and index >= repeat.count:
        return None
    return repeat_slot(repeat, index, location)


@dataclass(frozen=True)
class Schedule:
    """How a job repeats: exactly one of interval, cron or repeat, or none for a one-off."""

    interval: Duration | None = None
    cron: str | None = None
    repeat: Repeat | None = None
    location: ZoneInfo = ZoneInfo("UTC")
    one_off: bool = False

    def first(self, now: datetime) -> datetime:
        """The first scheduled instant when no first-run is given (ScheduleError if none is
        before year 9999)."""
        try:
            return self._first(now)
        except OverflowError:
            raise ScheduleError("its first run would be past year 9999") from None

    def _first(self, now: datetime) -> datetime:
        if self.repeat is not None:
            first = next_repeat(self.repeat, now - timedelta(microseconds=1), self.location)
            if first is None:
                raise ScheduleError("the repeat has no runs left")
            return first
        if self.cron is not None:
            return next_cron(self.cron, now, self.location)
        if self.interval is not None:
            return add(now, self.interval, self.location)
        raise ScheduleError("a one-off job needs an interval or a first run")

    def next(self, sched: datetime, now: datetime, fixed_rate: bool = False) -> datetime | None:
        """The slot after the run scheduled at `sched`, completed at `now`; None means done.

        Missed slots are skipped: a calendar schedule resumes at its first slot
        after now. Intervals are fixed-delay (now + interval) unless fixed_rate,
        which keeps the grid sched + k x interval. No slot before year 9999 is done too.
        """
        try:
            return None if self.one_off else self._next(sched, now, fixed_rate)
        except OverflowError:
            return None

    def _next(self, sched: datetime, now: datetime, fixed_rate: bool) -> datetime | None:
        if self.repeat is not None:
            return next_repeat(self.repeat, max(sched, now), self.location)
        if self.cron is not None:
            return next_cron(self.cron, max(sched, now), self.location)
        assert self.interval is not None
        if not fixed_rate:
            return add(now, self.interval, self.location)
        slot = add(sched, self.interval, self.location)
        if slot <= now and not self.interval.is_calendar:
            skipped = int((now - slot) / self.interval.elapsed) + 1
            slot = add(slot, self.interval, self.location, times=skipped)
        while slot <= now:
            slot = add(slot, self.interval, self.location)
        return slot

    def shortest_gap(self, now: datetime, samples: int = 16) -> float | None:
        """Seconds between two runs at the closest: an interval's length, or the least gap
        among the next `samples` slots of a cron or repeat (None for a one-off)."""
        if self.one_off:
            return None
        if self.interval is not None:
            return self.interval.approx().total_seconds()
        slots = [self.first(now)]
        while len(slots) < samples and (slot := self.next(slots[-1], slots[-1])) is not None:
            slots.append(slot)
        gaps = [(b - a).total_seconds() for a, b in zip(slots, slots[1:], strict=False)]
        return min(gaps) if gaps else None


def randomized(now: datetime, nxt: datetime, factor: float) -> datetime:
    """Dalga's randomizationFactor: the wait from now to nxt, moved uniformly within
    ±factor of itself (so a million jobs that ran together drift apart)."""
    wait = nxt - now
    return now + wait * random.uniform(1 - factor, 1 + factor) if factor else nxt


def spread_span(interval: Duration) -> timedelta | None:
    """The span a job of this interval is spread over once (POST /spread): its length;
    None for years or months, which have no one length."""
    if interval.years or interval.months:
        return None
    return interval.approx()


def spread_at(start: datetime, span: timedelta, position: int, count: int) -> datetime:
    """The position-th (from 0) of `count` instants evenly spaced in [start, start + span)."""
    return start + span * (position % count) / count
