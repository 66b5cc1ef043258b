"""Settings precedence: defaults < INI file < DALGA_* environment < Celery dalga_* keys."""

import re

import pytest
from celery import Celery

from celery_dalga.config import ConfigError, Settings, load_settings, settings_for
from celery_dalga.retry import RetryPolicy
from celery_dalga.runs import Policy


def test_defaults_are_the_embedded_sqlite_setup():
    settings = load_settings(env={})
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert (settings.host, settings.port, settings.table) == ("127.0.0.1", 34006, "dalga")
    assert settings.lease <= 60 and settings.max_interval <= 1


def test_file_then_env_then_overrides(tmp_path):
    ini = tmp_path / "dalga.ini"
    ini.write_text(
        "[dalga]\nport = 4000\ntable = from_file\nfixed_intervals = yes\nbase_url = http://file/\n"
    )
    env = {
        "DALGA_PORT": "5000",
        "DALGA_BASE_URL": "http://env/",
        "DALGA_CONFIG": str(ini),
        "UNRELATED": "x",
    }
    settings = load_settings(env=env, overrides={"base_url": "http://override/"})
    assert settings.table == "from_file"
    assert settings.fixed_intervals is True
    assert settings.port == 5000
    assert settings.base_url == "http://override/"


def test_bad_values_and_unknown_keys_are_named(tmp_path):
    with pytest.raises(ConfigError, match="port"):
        load_settings(env={"DALGA_PORT": "eighty"})
    ini = tmp_path / "bad.ini"
    ini.write_text("[dalga]\nportt = 1\n")
    with pytest.raises(ConfigError, match="portt"):
        load_settings(str(ini), env={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(str(tmp_path / "missing.ini"), env={})
    with pytest.raises(ConfigError, match="lease"):
        Settings(lease=5, callback_timeout=10)
    with pytest.raises(ConfigError, match="lease"):  # no room to start a call
        Settings(lease=12, callback_timeout=10)
    assert Settings(lease=13, callback_timeout=10, runs_per_task=200).lease == 13
    with pytest.raises(ConfigError, match="callback_initial_limit"):
        Settings(callback_initial_limit=101)
    for name in ("runs_per_task", "callback_concurrency"):
        with pytest.raises(ConfigError, match=name):
            Settings(**{name: 0})
    with pytest.raises(ConfigError, match="batch_window"):
        Settings(batch_window=2, max_interval=1)


def test_the_settings_policy_carries_every_run_and_retry_setting():
    settings = Settings(
        lease=30,
        fixed_intervals=True,
        epsilon=5,
        randomization_factor=0.2,
        history_runs=3,
        history_ttl=60,
        min_interval=2,
        retry_interval=4,
        retry_multiplier=3,
        retry_max_interval=90,
        retry_stop_after=3600,
        retry_jitter=True,
    )
    assert settings.policy() == Policy(
        lease=30,
        fixed_intervals=True,
        epsilon=5,
        randomization_factor=0.2,
        history_runs=3,
        history_ttl=60,
        min_interval=2,
        retry=RetryPolicy(interval=4, multiplier=3, max_interval=90, stop_after=3600, jitter=True),
    )
    assert Settings().policy() == Policy()  # the same defaults


def test_existing_celery_app_sets_dalga_keys():
    app = Celery("existing", set_as_current=False)
    app.conf.dalga_table = "from_celery"
    app.conf.dalga_retry_stop_after = "3600"
    settings = settings_for(app)
    assert settings.table == "from_celery"
    assert settings.retry_stop_after == 3600.0


# Dalga v1.0.0's sample config, verbatim as data (github.com/cenkalti/dalga, dalga.ini at
# commit 9b88a945).
DALGA_SAMPLE_INI = """# Example config file

[jobs]
# Next run time of periodic jobs are randomized on each run by this factor.
# Must be a number between 0 and 1.
randomizationFactor = 0

[mysql]
host = 127.0.0.1
port = 3306
db = test
table = dalga
user = root
password =

[listen]
host = 127.0.0.1
port = 34006

[endpoint]
baseurl = http://127.0.0.1:5000/
timeout = 10

# Uncomment following section to enable Redis lock.
# This prevents multiple instances of Dalga to run at the same time.
#
# [redis]
# host = 127.0.0.1
# port = 6379
"""

# The dalga.toml of Dalga's koanf era (v3/v4), as data (same repository, commit 3c745bbb),
# with the keys v4.0.1 added.
DALGA_TOML = """
[jobs]
randomizationFactor = 0.25
retryInterval = "1m30s"
retryMultiplier = 2
retryMaxInterval = "10m"
retryStopAfter = "1h"
fixedIntervals = true
scanFrequency = "500ms"
maxRunning = 50

[mysql]
host = "db.internal"
port = 3307
db = "jobs"
table = "dalga"
user = "app"
password = "s3cr#t"
maxOpenConns = 50
skipLocked = true

[listen]
host = "0.0.0.0"
port = 34007
shutdownTimeout = "10s"

[endpoint]
baseURL = "http://api.internal/callbacks/"
timeout = "5s"
"""


def test_dalgas_sample_dalga_ini_is_read_unchanged(tmp_path):
    ini = tmp_path / "dalga.ini"
    ini.write_text(DALGA_SAMPLE_INI)
    settings = load_settings(str(ini), env={})
    assert settings.database_url == "mysql://root:@127.0.0.1:3306/test"
    assert (settings.table, settings.host, settings.port) == ("dalga", "127.0.0.1", 34006)
    assert (settings.base_url, settings.callback_timeout) == ("http://127.0.0.1:5000/", 10)
    assert settings.randomization_factor == 0


def test_dalgas_toml_with_go_durations(tmp_path):
    toml = tmp_path / "dalga.toml"
    toml.write_text(DALGA_TOML)
    settings = load_settings(str(toml), env={})
    assert settings.database_url == "mysql://app:s3cr%23t@db.internal:3307/jobs"
    assert (settings.host, settings.port) == ("0.0.0.0", 34007)
    assert (settings.retry_interval, settings.retry_max_interval) == (90, 600)
    assert (settings.retry_stop_after, settings.retry_multiplier) == (3600, 2)
    assert (settings.fixed_intervals, settings.randomization_factor) == (True, 0.25)
    assert (settings.max_interval, settings.callback_concurrency) == (0.5, 50)
    assert (settings.base_url, settings.callback_timeout) == ("http://api.internal/callbacks/", 5)


def test_dalgas_environment_names(tmp_path):
    env = {
        "DALGA_MYSQL_HOST": "db",
        "DALGA_MYSQL_PASSWORD": "p@ss",
        "DALGA_JOBS_RETRYINTERVAL": "PT2M",
        "DALGA_ENDPOINT_BASEURL": "http://x/",
        "DALGA_LISTEN_PORT": "9000",
        "DALGA_PORT": "9001",  # celery-dalga's own name wins
    }
    settings = load_settings(env=env)
    assert settings.database_url == "mysql://root:p%40ss@db:3306/test"
    assert (settings.retry_interval, settings.base_url, settings.port) == (120, "http://x/", 9001)


def test_the_rabbitmq_era_sections_turn_on_the_exchange_mode(tmp_path):
    ini = tmp_path / "dalga.ini"
    ini.write_text(
        "[mysql]\nuser = root\npassword = \nport = 3306\ndb = test\ntable = dalga\n\n"
        "[rabbitmq]\nuser = guest\npassword = guest\nhost = localhost\nport = 5672\n"
        "vhost = /\nexchange = \n\n[http]\nhost = 0.0.0.0\nport = 17500\n"
    )
    settings = load_settings(str(ini), env={})
    assert settings.publish_url == "amqp://guest:guest@localhost:5672/%2F"
    assert settings.publish_exchange == "amq.default"
    assert (settings.host, settings.port) == ("0.0.0.0", 17500)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[mysqll]\nhost = x\n", "[mysqll]"),
        ("[mysql]\nhots = x\n", "'hots'"),
        ("[jobs]\nretryInterval = soon\n", "retryInterval"),
        ("[jobs]\nrandomizationFactor = 2\n", "randomization_factor"),
        ("[listen]\nport = http\n", "port"),
        ("[dalga]\nportt = 1\n", "portt"),
        ("not an ini file\n", "cannot read"),
    ],
)
def test_an_unknown_section_or_key_or_a_bad_value_is_a_clear_error(tmp_path, text, named):
    ini = tmp_path / "dalga.ini"
    ini.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(str(ini), env={})


# Dalga v4.0.1's sample config.toml, verbatim (github.com/cenkalti/dalga, tag v4.0.1).
DALGA_V4_SAMPLE_TOML = """# Example config file

[jobs]
# Next run time of periodic jobs are randomized on each run by this factor.
# Must be a number between 0 and 1.
randomizationFactor = 0.0

# Failed jobs are retried after given duration in seconds.
retryInterval = "60s"

[mysql]
host = "127.0.0.1"
port = 3306
db = "test"
table = "dalga"
user = "root"
password = ""

[listen]
host = "127.0.0.1"
port = 34006

[endpoint]
baseurl = "http://127.0.0.1:5000/"
timeout = "10s"
"""

# The same, as Dalga reads it from a dalga.yaml.
DALGA_V4_SAMPLE_YAML = """# Example config file
jobs:
  randomizationFactor: 0.0
  retryInterval: 60s
mysql:
  host: 127.0.0.1
  port: 3306
  db: test
  table: dalga
  user: root
  password: ""
listen:
  host: 127.0.0.1
  port: 34006
endpoint:
  baseurl: http://127.0.0.1:5000/
  timeout: 10s
"""

DALGA_V4 = {
    "database_url": "mysql://root:@127.0.0.1:3306/test",
    "table": "dalga",
    "host": "127.0.0.1",
    "port": 34006,
    "base_url": "http://127.0.0.1:5000/",
    "callback_timeout": 10,
    "retry_interval": 60,
    "retry_multiplier": 1,  # Dalga v4's defaults for what the sample leaves out
    "retry_max_interval": 60,
    "randomization_factor": 0,
    "callback_concurrency": 100,
}


def as_dalga(settings: Settings) -> dict:
    return {name: getattr(settings, name) for name in DALGA_V4}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("dalga.toml", DALGA_V4_SAMPLE_TOML),
        ("dalga.yaml", DALGA_V4_SAMPLE_YAML),
        ("dalga.yml", DALGA_V4_SAMPLE_YAML),
    ],
)
def test_dalga_v4s_sample_config_in_toml_and_yaml(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert as_dalga(load_settings(str(tmp_path / name), env={})) == DALGA_V4


def test_dalga_toml_in_the_working_directory_is_read_without_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_settings(env={}).database_url.startswith("sqlite:///")  # none: ours
    (tmp_path / "dalga.toml").write_text(DALGA_V4_SAMPLE_TOML)
    assert as_dalga(load_settings(env={})) == DALGA_V4
    ours = tmp_path / "ours.ini"
    ours.write_text("[dalga]\ntable = ours\n")
    for chosen in (
        load_settings(str(ours), env={}),
        load_settings(env={"DALGA_CONFIG": str(ours)}),
    ):
        assert (chosen.table, chosen.retry_interval) == ("ours", 1.0)  # not dalga.toml's


def test_a_dalga_file_starts_from_dalgas_defaults_and_ours_from_ours(tmp_path):
    """A file with only [listen] (or nothing: Dalga's Dockerfile touches an empty one) is
    Dalga's; a [dalga] section alone is celery-dalga's; Dalga's environment alone keeps ours."""
    listen = tmp_path / "dalga.toml"
    listen.write_text("[listen]\nport = 34100\n")
    dalga = load_settings(str(listen), env={})
    assert as_dalga(dalga) == {**DALGA_V4, "port": 34100, "callback_timeout": 10}
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert as_dalga(load_settings(str(empty), env={})) == DALGA_V4
    ours = tmp_path / "ours.ini"
    ours.write_text("[dalga]\nport = 34100\n")
    mine = load_settings(str(ours), env={})
    assert mine.database_url.startswith("sqlite:///")
    assert (mine.retry_interval, mine.retry_multiplier, mine.retry_max_interval) == (1, 2, 600)
    env_only = load_settings(env={"DALGA_LISTEN_PORT": "34100"})
    assert env_only.database_url.startswith("sqlite:///") and env_only.retry_interval == 1
    mixed = tmp_path / "mixed.ini"
    mixed.write_text("[listen]\nport = 34100\n[dalga]\nretry_interval = 5\n")
    both = load_settings(str(mixed), env={"DALGA_RETRY_MAX_INTERVAL": "30"})
    assert (both.retry_interval, both.retry_multiplier, both.retry_max_interval) == (5, 1, 30)


def test_dalgas_environment_completes_the_files_database_url_key_by_key(tmp_path):
    """As Dalga merges file and environment: the password from the environment, the rest of
    the URL from the file."""
    toml = tmp_path / "dalga.toml"
    toml.write_text('[mysql]\nhost = "db.internal"\ndb = "jobs"\n')
    settings = load_settings(str(toml), env={"DALGA_MYSQL_PASSWORD": "s3cr#t"})
    assert settings.database_url == "mysql://root:s3cr%23t@db.internal:3306/jobs"
    flags = {"mysql": {"port": "3307"}}
    over = load_settings(str(toml), env={"DALGA_MYSQL_USER": "app"}, flags=flags)
    assert over.database_url == "mysql://app:@db.internal:3307/jobs"


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("dalga.toml", "[jobs]\nretryInterval = 60\n"),
        ("dalga.toml", "[endpoint]\ntimeout = 10.5\n"),
        ("dalga.yaml", "endpoint:\n  timeout: 10\n"),
    ],
)
def test_a_bare_number_for_a_duration_is_refused_in_toml_and_yaml(tmp_path, name, text):
    """Dalga v4 reads it as nanoseconds; celery-dalga asks for a unit instead of guessing."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match="nanoseconds"):
        load_settings(str(tmp_path / name), env={})


def test_zero_and_durations_with_units_need_no_more(tmp_path):
    toml = tmp_path / "dalga.toml"
    toml.write_text('[jobs]\nretryStopAfter = 0\nretryInterval = "1m30s"\n')
    settings = load_settings(str(toml), env={"DALGA_JOBS_RETRYMAXINTERVAL": "120"})
    assert (settings.retry_stop_after, settings.retry_interval) == (0, 90)
    assert settings.retry_max_interval == 120  # the environment's text: seconds, as in dalga.ini


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("- jobs\n- mysql\n", "not a mapping of sections"),
        ("just text\n", "not a mapping of sections"),
        ("jobs: [1, 2]\n", "[jobs] in"),
        ("jobs: 5\n", "not a section of keys"),
        ("jobs:\n  retryInterval: [60s]\n", "not a text, number or boolean"),
        ("mysql:\n  host: {a: 1}\n", "not a text, number or boolean"),
        ("1: {}\n", "unknown section [1]"),
        ("jobs:\n  7: 1\n", "unknown key 7"),
        ("listen:\n  port: 99999999999999999999\n", "port"),
        ("mysql:\n  port: 99999999\n", "port number"),
        ("mysql:\n  port: x\n", "port number"),
        ("jobs:\n  retryInterval: 1s\n  retryInterval: 2s\n", "given 2 times"),
        ("jobs:\n  retryInterval: 1s\njobs: {}\n", "given 2 times"),
        ("jobs: {retryInterval: 1s\n", "cannot read"),
        ("dalga: 5\n", "not a section of keys"),
        ("dalga:\n  port: [1]\n", "not a text, number or boolean"),
        ("dalga:\n  portt: 1\n", "portt"),
        ("jobs:\n  retryInterval: " + "9" * 5000 + "h\n", "retryInterval"),
        ("jobs:\n  retryInterval: -5s\n", "between 0"),
        ("jobs:\n  retryStopAfter: 999999h\n", "between 0"),
        ("jobs:\n  retryStopAfter: 99999999999h\n", "out of range"),
        ("[" * 5000 + "\n", "cannot read"),
    ],
)
def test_a_bad_yaml_config_is_a_clear_error(tmp_path, text, named):
    yml = tmp_path / "dalga.yaml"
    yml.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(named)):
        load_settings(str(yml), env={})


def test_a_config_file_that_is_not_utf8_is_a_clear_error(tmp_path):
    for name in ("dalga.yaml", "dalga.toml", "dalga.ini"):
        (tmp_path / name).write_bytes(b"[jobs]\nretryInterval = \xff\xfe\n")
        with pytest.raises(ConfigError, match="cannot read"):
            load_settings(str(tmp_path / name), env={})


def test_the_rabbitmq_era_flags_as_sections(tmp_path):
    flags = {
        "mysql": {"host": "db", "port": "3307", "db": "jobs", "table": "t", "user": "u"},
        "rabbitmq": {"host": "mq", "vhost": "/", "exchange": "", "password": "p"},
        "http": {"host": "0.0.0.0", "port": "17500"},
    }
    settings = load_settings(env={}, flags=flags)
    assert (settings.database_url, settings.table) == ("mysql://u:@db:3307/jobs", "t")
    assert settings.publish_url == "amqp://guest:p@mq:5672/%2F"
    assert settings.publish_exchange == "amq.default"
    assert (settings.host, settings.port) == ("0.0.0.0", 17500)
    with pytest.raises(ConfigError, match=r"\[http\] port in the command line"):
        load_settings(env={}, flags={"http": {"port": "eighty"}})
