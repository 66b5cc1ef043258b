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
