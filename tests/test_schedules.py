"""Next-run arithmetic: DST, calendar months and years, cron, ISO repeats."""

from datetime import UTC, datetime, timedelta

import pytest

from celery_dalga.schedules import (
    Schedule,
    ScheduleError,
    add,
    parse_cron,
    parse_duration,
    parse_instant,
    parse_location,
    parse_repeat,
)

LA = parse_location("America/Los_Angeles")
UTC_ZONE = parse_location("UTC")


def la(*args) -> datetime:
    """A wall-clock time in Los Angeles, as an aware UTC instant."""
    return datetime(*args, tzinfo=LA).astimezone(UTC)


def wall(instant: datetime) -> tuple:
    local = instant.astimezone(LA)
    return (
        local.month,
        local.day,
        local.hour,
        local.minute,
        local.utcoffset().total_seconds() / 3600,
    )


def test_daily_job_keeps_wall_clock_across_both_dst_changes():
    daily = Schedule(interval=parse_duration("P1D"), location=LA)
    spring = daily.next(la(2026, 3, 7, 9, 0), now=la(2026, 3, 7, 9, 0, 1), fixed_rate=True)
    assert wall(spring) == (3, 8, 9, 0, -7)
    assert spring - la(2026, 3, 7, 9, 0) == timedelta(hours=23)
    autumn = daily.next(la(2026, 10, 31, 9, 0), now=la(2026, 10, 31, 9, 0, 1), fixed_rate=True)
    assert wall(autumn) == (11, 1, 9, 0, -8)
    assert autumn - la(2026, 10, 31, 9, 0) == timedelta(hours=25)


def test_pt24h_is_elapsed_time_so_wall_clock_shifts_across_dst():
    start = la(2026, 3, 7, 9, 0)
    assert wall(add(start, parse_duration("PT24H"), LA)) == (3, 8, 10, 0, -7)
    start = la(2026, 10, 31, 9, 0)
    assert wall(add(start, parse_duration("PT24H"), LA)) == (11, 1, 8, 0, -8)


@pytest.mark.parametrize(
    ("start", "duration", "expected"),
    [
        (datetime(2026, 1, 31, 12, tzinfo=UTC), "P1M", datetime(2026, 2, 28, 12, tzinfo=UTC)),
        (datetime(2024, 1, 31, 12, tzinfo=UTC), "P1M", datetime(2024, 2, 29, 12, tzinfo=UTC)),
        (datetime(2024, 2, 29, 12, tzinfo=UTC), "P1Y", datetime(2025, 2, 28, 12, tzinfo=UTC)),
        (datetime(2024, 2, 29, 12, tzinfo=UTC), "P4Y", datetime(2028, 2, 29, 12, tzinfo=UTC)),
        (datetime(2026, 1, 1, tzinfo=UTC), "P2W", datetime(2026, 1, 15, tzinfo=UTC)),
    ],
)
def test_calendar_units(start, duration, expected):
    assert add(start, parse_duration(duration), UTC_ZONE) == expected


def test_cron_at_0230_on_spring_forward_day_fires_once_after_the_gap():
    cron = Schedule(cron=parse_cron("30 2 * * *"), location=LA)
    first = cron.next(la(2026, 3, 7, 2, 30), now=la(2026, 3, 7, 2, 30, 1))
    assert wall(first) == (3, 8, 3, 30, -7)
    second = cron.next(first, now=first + timedelta(seconds=1))
    assert wall(second) == (3, 9, 2, 30, -7)


def test_cron_in_the_repeated_hour_of_fall_back_fires_once():
    cron = Schedule(cron=parse_cron("30 1 * * *"), location=LA)
    first = cron.next(la(2026, 10, 31, 1, 30), now=la(2026, 10, 31, 1, 30, 1))
    assert wall(first) == (11, 1, 1, 30, -7)
    second = cron.next(first, now=first + timedelta(seconds=1))
    assert wall(second) == (11, 2, 1, 30, -8)


def test_r3_runs_exactly_three_times():
    repeat = Schedule(repeat=parse_repeat("R3/2026-01-01T00:00:00Z/PT10S"))
    sched = repeat.first(datetime(2025, 12, 31, tzinfo=UTC))
    runs = []
    while sched is not None:
        runs.append(sched)
        sched = repeat.next(sched, now=sched + timedelta(seconds=1))
    assert runs == [datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in (0, 10, 20)]


def test_r_without_count_repeats_forever_and_starts_at_the_next_slot():
    repeat = Schedule(repeat=parse_repeat("R/2026-01-01T00:00:00Z/PT1H"))
    now = datetime(2030, 6, 1, 12, 30, tzinfo=UTC)
    assert repeat.first(now) == datetime(2030, 6, 1, 13, 0, tzinfo=UTC)


def test_fixed_delay_counts_from_completion_and_fixed_rate_skips_missed_slots():
    every_minute = Schedule(interval=parse_duration("60"))
    sched = datetime(2026, 1, 1, tzinfo=UTC)
    done = sched + timedelta(seconds=150)
    assert every_minute.next(sched, done) == done + timedelta(seconds=60)
    assert every_minute.next(sched, done, fixed_rate=True) == sched + timedelta(seconds=180)


def test_cron_after_an_outage_resumes_at_the_next_slot_without_catch_up():
    cron = Schedule(cron=parse_cron("*/5 * * * *"))
    sched = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    late = datetime(2026, 1, 1, 1, 2, tzinfo=UTC)
    assert cron.next(sched, late) == datetime(2026, 1, 1, 1, 5, tzinfo=UTC)


def test_one_off_has_no_next_run():
    assert (
        Schedule(interval=parse_duration("10"), one_off=True).next(
            datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
        )
        is None
    )


def test_durations_read_as_dalga_and_iso_8601():
    assert parse_duration("300").whole_seconds() == 300
    assert parse_duration("PT5M").whole_seconds() == 300
    assert parse_duration("PT24H").whole_seconds() == 86400
    assert parse_duration("P1D").whole_seconds() is None
    assert str(parse_duration("p1m")) == "P1M"


@pytest.mark.parametrize("text", ["0", "-5", "PT0S", "P", "abc", "1.5", "-P1D", "P200Y", "P1.5M"])
def test_bad_durations_are_refused(text):
    with pytest.raises(ScheduleError):
        parse_duration(text)


@pytest.mark.parametrize(
    "parse,text",
    [
        (parse_cron, "61 * * * *"),
        (parse_cron, "not cron"),
        (parse_repeat, "R0/2026-01-01T00:00:00Z/PT1S"),
        (parse_repeat, "R3/yesterday/PT1S"),
        (parse_repeat, "R3/2026-01-01T00:00:00Z"),
        (parse_location, "Mars/Olympus"),
        (parse_location, "../etc/passwd"),
    ],
)
def test_bad_schedule_strings_are_refused(parse, text):
    with pytest.raises(ScheduleError):
        parse(text)


def test_instant_without_offset_is_wall_clock_in_location_and_gap_moves_forward():
    assert parse_instant("2026-07-01T09:00:00", LA) == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    assert wall(parse_instant("2026-03-08T02:30:00", LA)) == (3, 8, 3, 30, -7)
    assert parse_instant("2026-07-01T09:00:00+03:00", LA) == datetime(2026, 7, 1, 6, tzinfo=UTC)
