"""Settings precedence: defaults < INI file < DALGA_* environment < Celery dalga_* keys."""

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
    with pytest.raises(ConfigError, match="lease"):  # 200 runs, 100 at a time: two timeouts
        Settings(lease=20, callback_timeout=10, runs_per_task=200, callback_concurrency=100)
    assert Settings(lease=21, callback_timeout=10, runs_per_task=200).lease == 21
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
