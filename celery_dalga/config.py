"""One Settings object, read from defaults < config file < DALGA_* environment < Celery keys.

The config file is celery-dalga's INI (a [dalga] section) or Dalga's own dalga.ini,
dalga.toml or dalga.yaml (celery_dalga.dalga_config); Dalga's DALGA_<SECTION>_<KEY>
variables are read too.
"""

from __future__ import annotations

import configparser
import dataclasses
import logging
import os
import tomllib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import yaml

from celery_dalga import dalga_config
from celery_dalga.dalga_config import DalgaConfigError, sections_from_env, settings_from_sections
from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import Policy
from celery_dalga.values import parse_bool

ENV_PREFIX = "DALGA_"
CONF_PREFIX = "dalga_"
DEFAULT_FILE = "dalga.toml"  # Dalga v3/v4's -config default, in the working directory
log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A setting has a value of the wrong kind, or a name that does not exist."""


@dataclass(frozen=True)
class Settings:
    """Everything celery-dalga can be told; see the settings table in docs/settings.md."""

    database_url: str = "sqlite:///dalga.sqlite3"
    broker_url: str = "sqla+sqlite:///dalga-broker.sqlite3"
    base_url: str = "http://127.0.0.1:5000/"
    host: str = "127.0.0.1"
    port: int = 34006
    table: str = "dalga"
    queue: str = "celery"
    callback_timeout: float = 10.0
    lease: float = 60.0
    retry_interval: float = 1.0
    retry_multiplier: float = 2.0
    retry_max_interval: float = 600.0
    retry_stop_after: float = 0.0
    retry_jitter: bool = False
    randomization_factor: float = 0.0
    fixed_intervals: bool = False
    epsilon: float = 0.0
    batch_size: int = 500
    runs_per_task: int = 100
    callback_concurrency: int = 100  # the most calls in flight per destination per process
    callback_initial_limit: int = 1  # where the adaptive per-destination limit starts
    batch_window: float = 0.1
    max_interval: float = 1.0
    max_body: int = 65535
    bulk_max_jobs: int = 10000  # the most jobs one PUT /jobs request may write
    bulk_max_bytes: int = 8 * 1024 * 1024  # the largest PUT /jobs request body
    publish_url: str = ""
    publish_exchange: str = ""
    history_runs: int = 10
    history_ttl: float = 7 * 86400.0
    min_interval: float = 1.0
    api_tokens: str = ""
    api_open: str = "/status,/metrics"
    metrics_port: int = 0
    allowed_hosts: str = ""  # Host names the web app answers besides its bind address
    trusted_proxies: int = 0  # proxies in front of the web app whose X-Forwarded-* to trust
    session_secret: str = ""  # signs the UI's session cookie (random per process when empty)
    allowed_tasks: str = ""  # Celery tasks a task= job may call (comma-separated; empty: none)
    allowed_exchanges: str = ""  # AMQP exchanges an exchange= job may use (empty: none)
    allowed_remote_hosts: str = ""  # hosts a remote job may call (empty: base_url's only)
    local_jobs: bool = False  # whether local jobs (commands run by the worker) are allowed

    def __post_init__(self) -> None:
        if self.lease <= self.callback_timeout + 2:
            raise ConfigError(
                "lease must be more than callback_timeout + 2 seconds (a call starts only "
                "while its lease outlasts the timeout)"
            )
        if not 1 <= self.callback_initial_limit <= self.callback_concurrency:
            raise ConfigError("callback_initial_limit must be between 1 and callback_concurrency")
        if self.bulk_max_jobs < 1 or self.bulk_max_bytes < 1:
            raise ConfigError("bulk_max_jobs and bulk_max_bytes must be at least 1")
        if self.batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        if self.runs_per_task < 1 or self.callback_concurrency < 1:
            raise ConfigError("runs_per_task and callback_concurrency must be at least 1")
        if not 0 <= self.batch_window <= self.max_interval:
            raise ConfigError("batch_window must be between 0 and max_interval")
        if self.retry_multiplier < 1:
            raise ConfigError("retry_multiplier must be at least 1")
        if self.history_runs < 0 or self.history_ttl <= 0:
            raise ConfigError("history_runs must be 0 or more, history_ttl more than 0")
        if self.min_interval < 0:
            raise ConfigError("min_interval must be 0 or more")
        if self.metrics_port < 0:
            raise ConfigError("metrics_port must be a port number, or 0 for none")
        if not 0 <= self.randomization_factor <= 1:
            raise ConfigError("randomization_factor must be between 0 and 1")

    def policy(self) -> Policy:
        """The run protocol's policy these settings describe, with the retry policy."""
        return Policy(
            lease=self.lease,
            fixed_intervals=self.fixed_intervals,
            epsilon=self.epsilon,
            randomization_factor=self.randomization_factor,
            history_runs=self.history_runs,
            history_ttl=self.history_ttl,
            min_interval=self.min_interval,
            retry=RetryPolicy(
                interval=self.retry_interval,
                multiplier=self.retry_multiplier,
                max_interval=self.retry_max_interval,
                stop_after=self.retry_stop_after,
                jitter=self.retry_jitter,
            ),
        )


def _convert(name: str, kind: type, value: Any) -> Any:
    if not isinstance(value, str | int | float):  # bool is an int
        raise ConfigError(f"setting {name}: {value!r} is not a text, number or boolean")
    try:
        if kind is bool and isinstance(value, str):
            return parse_bool(value)
        return kind(value)
    except ValueError as exc:
        raise ConfigError(f"setting {name}: {exc}") from None


def _typed(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    known = {f.name: f.type for f in fields(Settings)}
    kinds = {"str": str, "int": int, "float": float, "bool": bool}
    out = {}
    for name, value in raw.items():
        if name not in known:
            raise ConfigError(f"unknown setting {name!r} in {source}")
        out[name] = _convert(name, kinds[str(known[name])], value)
    return out


def load_settings(
    config_file: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    flags: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build Settings: defaults (Dalga's, when the file is Dalga's: it holds more than a
    [dalga] section, or nothing), then the config file (given, else DALGA_CONFIG, else
    ./dalga.toml if there is one), then Dalga's environment, then celery-dalga's DALGA_*
    environment, then Dalga's command-line flags as sections ({"mysql": {"host": ...}}),
    then overrides."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    config_file = config_file or env.get("DALGA_CONFIG") or _default_file()
    sections: dict[str, Any] = {}
    if config_file:
        sections = _read_file(config_file)
        log.info("config file %s", os.path.abspath(config_file))
        if {str(k).lower() for k in sections} != {"dalga"}:
            values.update(dalga_config.DEFAULTS)
    theirs = {k: v for k, v in sections.items() if str(k).lower() != "dalga"}
    values.update(_dalga(theirs, str(config_file)))
    for name, section in sections.items():
        if str(name).lower() == "dalga":
            if not isinstance(section, Mapping):
                raise ConfigError(f"[{name}] in {config_file} is not a section of keys")
            ours = {str(k).lower(): v for k, v in section.items()}
            values.update(_typed(ours, str(config_file)))
    from_dalga_env = sections_from_env(env)
    values.update(_dalga(from_dalga_env, "the environment", [theirs]))
    names = {f.name for f in fields(Settings)}
    from_env = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() in names
    }
    values.update(_typed(from_env, "environment"))
    values.update(_dalga(flags or {}, "the command line", [theirs, from_dalga_env]))
    values.update(_typed(dict(overrides or {}), "overrides"))
    return Settings(**values)


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (Go's yaml, which
    Dalga reads YAML with, refuses it too)."""


def _once_each(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    names = Counter(key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode))
    for name, count in names.items():
        if count > 1:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {name[:40]!r} given {count} times", node.start_mark
            )
    return loader.construct_mapping(node)


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _once_each)


def _default_file() -> str | None:
    """./dalga.toml when it exists, as Dalga reads it without -config (Dalga stops when it is
    missing; celery-dalga goes on with its own defaults)."""
    return DEFAULT_FILE if os.path.isfile(DEFAULT_FILE) else None


def _read_file(name: str) -> dict[str, Any]:
    """The sections of a config file: TOML when it is named *.toml, YAML when *.yaml or *.yml
    (as Dalga reads them), else INI (gcfg's dialect: ; and # comments, values optionally in
    double quotes)."""
    try:
        if name.endswith(".toml"):
            with open(name, "rb") as file:
                sections = tomllib.load(file)
        elif name.endswith((".yaml", ".yml")):
            with open(name, encoding="utf-8") as file:
                sections = yaml.load(file, Loader=_YamlLoader) or {}  # a SafeLoader
            if not isinstance(sections, dict):
                raise ConfigError(f"config file {name} is not a mapping of sections")
        else:
            parser = configparser.ConfigParser(
                interpolation=None, inline_comment_prefixes=(";", "#")
            )
            parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep the case
            if not parser.read(name):
                raise ConfigError(f"cannot read config file {name}")
            sections = {
                section: {k: _unquote(v) for k, v in parser[section].items()}
                for section in parser.sections()
            }
    except (
        OSError,
        UnicodeDecodeError,
        RecursionError,
        tomllib.TOMLDecodeError,
        yaml.YAMLError,
        configparser.Error,
    ) as exc:
        raise ConfigError(f"cannot read config file {name}: {exc}") from None
    return sections


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) > 1 and value[0] == value[-1] == '"' else value


def _dalga(
    sections: Mapping[str, Any], source: str, below: list[Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    try:
        return settings_from_sections(sections, source, below or [])
    except DalgaConfigError as exc:
        raise ConfigError(str(exc)) from None


def settings_for(app: Any) -> Settings:
    """Settings of a Celery app: load_settings() overlaid with its `dalga_*` config keys."""
    cached = getattr(app, "_dalga_settings", None)
    if cached is None:
        keys = {k[len(CONF_PREFIX) :]: v for k, v in app.conf.items() if k.startswith(CONF_PREFIX)}
        cached = load_settings(overrides=keys)
        app._dalga_settings = cached
    return cached


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings with every URL's password, the API tokens (their scopes stay) and the
    session secret hidden, for logs."""
    from kombu.utils.url import maybe_sanitize_url
    from sqlalchemy.engine import make_url

    values = dataclasses.asdict(settings)
    values["database_url"] = make_url(settings.database_url).render_as_string(hide_password=True)
    for name in ("broker_url", "publish_url"):
        values[name] = maybe_sanitize_url(values[name]) if values[name] else ""
    tokens = filter(None, (part.strip() for part in settings.api_tokens.split(",")))
    values["api_tokens"] = ",".join("***:" + token.rpartition(":")[2] for token in tokens)
    values["session_secret"] = "***" if settings.session_secret else ""
    return values


def as_celery_conf(settings: Settings) -> dict[str, Any]:
    """The `dalga_*` Celery config keys that reproduce these settings."""
    return {CONF_PREFIX + k: v for k, v in dataclasses.asdict(settings).items()}
