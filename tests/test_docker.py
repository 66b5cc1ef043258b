"""docker/Dockerfile and docker-compose.yml, checked by parsing (no Docker engine here)."""

import shutil
import subprocess
import sys
from pathlib import Path

import dockerfile
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_the_full_stack():
    services = compose()["services"]
    assert {"mysql", "redis", "web", "beat1", "beat2", "worker", "flower"} <= set(services)
    assert services["mysql"]["image"].startswith("mysql:8")
    beats = [s for s in services.values() if "beat" in s.get("command", [])]
    assert len(beats) == 2
    assert all("celery_dalga.Scheduler" in s["command"] for s in beats)
    assert "worker" in services["worker"]["command"]
    assert "flower" in services["flower"]["command"]


def test_compose_references_are_consistent():
    doc = compose()
    services = doc["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in doc.get("volumes", {}), volume
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()
        env = service.get("environment", {})
        if "DALGA_DATABASE_URL" in env:
            assert env["DALGA_DATABASE_URL"].startswith("mysql://")
            assert env["DALGA_BROKER_URL"].startswith("redis://redis")


def test_compose_commands_are_real_cli_commands():
    from celery_dalga.cli import parser

    for service in compose()["services"].values():
        command = service.get("command") or []
        if command[:1] == ["dalga"]:
            parser().parse_args(command[1:])


def test_dockerfile_parses_and_installs_the_project():
    commands = dockerfile.parse_file(str(ROOT / "docker" / "Dockerfile"))
    assert commands[0].cmd == "FROM" and commands[0].value[0].startswith("python:3.11")
    runs = " ".join(c.value[0] for c in commands if c.cmd == "RUN")
    assert "default-libmysqlclient-dev" in runs and "pip install" in runs
    assert [c.value[0] for c in commands if c.cmd == "USER"] != ["root"]


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, "docker/Dockerfile"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def env_example() -> dict[str, str]:
    lines = (ROOT / "docker" / "dalga.env.example").read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {name: value for name, value in pairs}


def test_compose_publishes_the_api_and_flower_on_localhost_only():
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every address"
    assert compose()["services"]["web"]["ports"] == ["127.0.0.1:34006:34006"]


def test_compose_takes_tokens_and_flower_auth_from_an_env_file():
    services = compose()["services"]
    for name in ("web", "flower", "worker", "beat1"):
        files = [f["path"] if isinstance(f, dict) else f for f in services[name]["env_file"]]
        assert files == ["docker/dalga.env"], name
        assert "DALGA_API_TOKENS" not in services[name].get("environment", {})
    assert "dalga.env" in (ROOT / "docker" / ".gitignore").read_text().split()  # no secrets in git


def test_the_env_example_sets_tokens_a_session_secret_and_flower_auth():
    from celery_dalga.config import load_settings
    from webapi.auth import parse_tokens

    env = env_example()
    assert set(parse_tokens(env["DALGA_API_TOKENS"]).values()) == {"read", "write"}
    user, _, password = env["FLOWER_BASIC_AUTH"].partition(":")
    assert user and password
    settings = load_settings(env={k: v for k, v in env.items() if k.startswith("DALGA_")})
    assert settings.session_secret and "web" in settings.allowed_hosts
