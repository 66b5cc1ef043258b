"""Dalga's parameter rules, and every way a request can be wrong."""

from datetime import UTC, datetime, timedelta

import pytest

from celery_dalga.spec import InvalidParameter, parse_spec

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def first(params: dict) -> datetime:
    return parse_spec("check_feed", "1234", params).first_sched(NOW)


def test_periodic_first_run_defaults_to_now_plus_interval():
    assert first({"interval": "60"}) == NOW + timedelta(seconds=60)


def test_periodic_with_first_run_and_immediate():
    assert first({"interval": "60", "first-run": "2026-06-02T00:00:00Z"}) == datetime(
        2026, 6, 2, tzinfo=UTC
    )
    assert first({"interval": "60", "immediate": "true"}) == NOW


def test_one_off_variants():
    assert first({"one-off": "true", "immediate": "yes"}) == NOW
    assert first({"one-off": "1", "interval": "30"}) == NOW + timedelta(seconds=30)
    assert first({"one-off": "on", "first-run": "2026-06-01T13:00:00Z"}) == NOW + timedelta(hours=1)


def test_repeat_start_without_offset_is_wall_clock_in_location():
    params = {"schedule": "R2/2026-07-01T09:00:00/PT1H", "location": "Europe/Istanbul"}
    assert first(params) == datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def test_cron_and_schedule_stand_in_for_interval():
    assert first({"cron": "0 * * * *"}) == NOW + timedelta(hours=1)
    assert first({"schedule": "R2/2026-06-01T12:30:00Z/PT1H"}) == NOW + timedelta(minutes=30)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({}, "interval"),
        ({"interval": "abc"}, "interval"),
        ({"interval": "0"}, "interval"),
        ({"interval": "-5"}, "interval"),
        ({"interval": "60", "cron": "* * * * *"}, "cron"),
        ({"cron": "99 * * * *"}, "cron"),
        ({"schedule": "R3/x/PT1S"}, "schedule"),
        ({"interval": "60", "location": "Nowhere/City"}, "location"),
        ({"interval": "60", "first-run": "tomorrow"}, "first-run"),
        ({"interval": "60", "first-run": "1900-01-01T00:00:00Z"}, "first-run"),
        ({"interval": "60", "immediate": "maybe"}, "immediate"),
        ({"interval": "60", "immediate": "true", "first-run": "2026-06-02T00:00:00Z"}, "first-run"),
        ({"one-off": "true", "immediate": "true", "interval": "60"}, "interval"),
        (
            {"one-off": "true", "immediate": "true", "first-run": "2026-06-02T00:00:00Z"},
            "first-run",
        ),
        ({"one-off": "true"}, "interval"),
        ({"one-off": "true", "interval": "5", "first-run": "2026-06-02T00:00:00Z"}, "interval"),
        ({"one-off": "true", "cron": "* * * * *"}, "one-off"),
        (
            {"schedule": "R/2026-01-01T00:00:00Z/PT1S", "first-run": "2026-06-02T00:00:00Z"},
            "first-run",
        ),
        ({"intervall": "60"}, "intervall"),
        ({"schedule": "R3/2020-01-01T00:00:00Z/PT1H"}, "schedule"),
    ],
)
def test_bad_parameters_name_the_parameter(params, parameter):
    with pytest.raises(InvalidParameter) as caught:
        parse_spec("check_feed", "1234", params).first_sched(NOW)
    assert caught.value.parameter == parameter


@pytest.mark.parametrize(
    ("path", "body", "parameter"),
    [
        ("", "1", "path"),
        ("/", "1", "path"),
        ("p", "", "body"),
        ("p" * 256, "1", "path"),
        ("p", "x" * 65536, "body"),
        ("p", "é" * 40000, "body"),
    ],
)
def test_bad_path_or_body(path, body, parameter):
    with pytest.raises(InvalidParameter) as caught:
        parse_spec(path, body, {"interval": "60"})
    assert caught.value.parameter == parameter


@pytest.mark.parametrize("word", ["1", "t", "T", "TRUE", "true", "True", "yes", "On", " true "])
def test_booleans_take_every_spelling_of_gos_parse_bool(word):
    assert first({"one-off": word, "immediate": "1"}) == NOW


@pytest.mark.parametrize("word", ["0", "f", "F", "FALSE", "false", "False", "no", "off"])
def test_false_spellings(word):
    assert parse_spec("p", "b", {"one-off": word, "interval": "60"}).schedule.one_off is False


@pytest.mark.parametrize("word", ["", "maybe", "2", "tru"])
def test_an_empty_or_unknown_boolean_is_an_error_naming_the_parameter(word):
    with pytest.raises(InvalidParameter) as caught:
        parse_spec("p", "b", {"immediate": word, "interval": "60"})
    assert caught.value.parameter == "immediate"
