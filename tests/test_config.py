"""Settings precedence: defaults < INI file < DALGA_* environment < Celery dalga_* keys."""

import re

import pytest
from celery import Celery

from celery_dalga.config import ConfigError, Settings, load_settings, settings_for


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
