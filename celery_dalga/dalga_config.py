"""Dalga's own configuration, read into celery-dalga's settings: the sections of Dalga's
dalga.ini (v1, v2: gcfg) and dalga.toml / dalga.yaml (v3, v4), Dalga's DALGA_<SECTION>_<KEY>
environment and the RabbitMQ era's command-line flags. Section and key names are
case-insensitive, as in Dalga. A key Dalga knows but celery-dalga has no use for is accepted
and has no effect; any other key is an error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import durationpy

from celery_dalga import schedules
from celery_dalga.values import parse_bool

MYSQL_DEFAULTS = {"host": "127.0.0.1", "port": "3306", "db": "test", "user": "root", "password": ""}
RABBITMQ_DEFAULTS = {"host": "localhost", "port": "5672", "user": "guest", "password": "guest"}
NO_EFFECT = "no effect"  # a key Dalga knows that celery-dalga does not need
LONGEST = 10 * 365 * 86400.0  # the longest duration a setting takes: ten years
# Dalga v4's DefaultConfig where it differs from celery-dalga's defaults: a Dalga config file
# starts from these (v2 retried every 60 s as well).
DEFAULTS = {
    "database_url": "mysql://root:@127.0.0.1:3306/test",
    "retry_interval": 60.0,
    "retry_multiplier": 1.0,
    "retry_max_interval": 60.0,
}


class DalgaConfigError(ValueError):
    """A section or key that Dalga does not know, or a value of the wrong kind."""


def seconds(value: Any) -> float:
    """A duration in seconds from what Dalga's configs hold: whole seconds (dalga.ini), Go
    duration text such as "10s" or "1m30s" (dalga.toml), or an ISO 8601 duration ("PT1M").
    A bare number in TOML or YAML other than 0 is refused: Dalga v4 reads it as nanoseconds,
    which no working setup means, and reading it as seconds would change what the file does."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value != 0:
        raise ValueError(
            f"{value!r} without a unit is nanoseconds to Dalga; write it with one, "
            f'"{value}s" for seconds'
        )
    text = str(value).strip()
    if text.replace(".", "", 1).isdigit():
        found = float(text)
    elif text.upper().startswith("P"):
        duration = schedules.parse_duration(text)
        if duration.is_calendar:
            raise ValueError(f"{text[:40]!r} has days, months or years")
        found = duration.elapsed.total_seconds()
    else:
        parsed = durationpy.from_str(text)
        if not isinstance(parsed, timedelta):
            raise ValueError(f"{text[:40]!r} is not a duration")
        found = parsed.total_seconds()
    if not 0 <= found <= LONGEST:
        raise ValueError(f"{text[:40]!r} is not between 0 and {LONGEST:.0f} seconds")
    return found


def _as(kind: type) -> Callable[[Any], Any]:
    if kind is bool:
        return lambda v: v if isinstance(v, bool) else parse_bool(str(v))
    return lambda v: kind(str(v).strip()) if kind is not str else str(v)


# section -> key (lower case) -> (setting, converter); setting None: a part of a URL; NO_EFFECT
KEYS: dict[str, dict[str, tuple[str | None, Callable[[Any], Any] | None]]] = {
    "jobs": {
        "randomizationfactor": ("randomization_factor", _as(float)),
        "retryinterval": ("retry_interval", seconds),
        "retrymultiplier": ("retry_multiplier", _as(float)),
        "retrymaxinterval": ("retry_max_interval", seconds),
        "retrystopafter": ("retry_stop_after", seconds),
        "fixedintervals": ("fixed_intervals", _as(bool)),
        "scanfrequency": ("max_interval", seconds),
        "maxrunning": ("callback_concurrency", _as(int)),
    },
    "mysql": {
        **dict.fromkeys(MYSQL_DEFAULTS, (None, None)),
        "table": ("table", _as(str)),
        **dict.fromkeys(
            [
                "maxopenconns",
                "skiplocked",
                "transactionisolationparamname",
                "dialtimeout",
                "readtimeout",
                "writetimeout",
            ],
            (NO_EFFECT, None),
        ),
    },
    "listen": {
        "host": ("host", _as(str)),
        "port": ("port", lambda v: _port(str(v))),
        **dict.fromkeys(
            ["shutdowntimeout", "idletimeout", "readtimeout", "writetimeout"], (NO_EFFECT, None)
        ),
    },
    "endpoint": {"baseurl": ("base_url", _as(str)), "timeout": ("callback_timeout", seconds)},
    "redis": dict.fromkeys(["host", "port", "db"], (NO_EFFECT, None)),  # v1's one-instance lock
    "rabbitmq": {  # the RabbitMQ-era Dalga: every job publishes to an exchange
        **dict.fromkeys([*RABBITMQ_DEFAULTS, "vhost"], (None, None)),
        "uri": ("publish_url", _as(str)),
        "exchange": ("publish_exchange", _as(str)),
    },
    "http": {"host": ("host", _as(str)), "port": ("port", lambda v: _port(str(v)))},
}


def settings_from_sections(
    sections: Mapping[str, Any], source: str, below: Sequence[Mapping[str, Any]] = ()
) -> dict:
    """Settings values from Dalga's sections (names in any case); raises DalgaConfigError
    naming an unknown section or key, or a bad value. A database or AMQP URL is made of the
    parts these sections give over those of the layers `below` (lowest first, read already),
    over Dalga's defaults, as Dalga merges its file and environment key by key."""
    values, parts = _read(sections, source)
    for layer in reversed(below):
        for name, lower in _read(layer, source)[1].items():
            if parts[name]:
                parts[name] = {**lower, **parts[name]}
    try:
        if parts["mysql"]:
            values["database_url"] = _mysql_url({**MYSQL_DEFAULTS, **parts["mysql"]})
        if "rabbitmq" in {str(name).lower() for name in sections}:
            values.setdefault("publish_exchange", "")
            if parts["rabbitmq"] and "publish_url" not in values:
                values["publish_url"] = _amqp_url({**RABBITMQ_DEFAULTS, **parts["rabbitmq"]})
            values["publish_exchange"] = values["publish_exchange"].strip('"') or "amq.default"
    except ValueError as exc:
        raise DalgaConfigError(f"{source}: {exc}") from None
    return values


def _read(
    sections: Mapping[str, Any], source: str
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """The settings that sections give, and their URL parts by section."""
    values: dict[str, Any] = {}
    parts: dict[str, dict[str, str]] = {"mysql": {}, "rabbitmq": {}}
    for section, keys in sections.items():
        known = KEYS.get(str(section).lower())
        if known is None:
            names = ", ".join(["dalga", *KEYS])
            raise DalgaConfigError(f"unknown section [{section}] in {source} (known: {names})")
        if not isinstance(keys, Mapping | None):
            raise DalgaConfigError(f"[{section}] in {source} is not a section of keys")
        for key, value in (keys or {}).items():
            setting, convert = known.get(str(key).lower().replace("_", ""), ("?", None))
            if setting == "?":
                names = ", ".join(sorted(known))
                raise DalgaConfigError(
                    f"unknown key {key!r} in [{section}] of {source} (known: {names})"
                )
            if not isinstance(value, str | int | float | None):  # bool is an int
                raise DalgaConfigError(
                    f"[{section}] {key} in {source}: not a text, number or boolean"
                )
            if setting is None:
                parts[str(section).lower()][str(key).lower()] = "" if value is None else str(value)
            elif setting != NO_EFFECT and convert is not None:
                try:
                    values[setting] = convert(value)
                except (ValueError, TypeError, OverflowError) as exc:
                    raise DalgaConfigError(f"[{section}] {key} in {source}: {exc}") from None
    return values, parts


def sections_from_env(env: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """Dalga's environment: DALGA_MYSQL_HOST is [mysql] host, DALGA_JOBS_RETRYINTERVAL is
    [jobs] retryInterval, and so on."""
    found: dict[str, dict[str, str]] = {}
    for name, value in env.items():
        section, _, key = name.removeprefix("DALGA_").partition("_")
        if name.startswith("DALGA_") and section.lower() in KEYS and key:
            found.setdefault(section.lower(), {})[key.lower()] = value
    return found


def _port(text: str) -> int:
    """A TCP port number; ValueError naming anything else."""
    if not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"port {text[:20]!r} is not a port number (1-65535)")
    return int(text)


def _mysql_url(parts: dict[str, str]) -> str:
    user, password = quote(parts["user"], safe=""), quote(parts["password"], safe="")
    return f"mysql://{user}:{password}@{parts['host']}:{_port(parts['port'])}/{parts['db']}"


def _amqp_url(parts: dict[str, str]) -> str:
    user, password = quote(parts["user"], safe=""), quote(parts["password"], safe="")
    vhost = quote(parts.get("vhost", "/"), safe="")
    return f"amqp://{user}:{password}@{parts['host']}:{_port(parts['port'])}/{vhost}"
