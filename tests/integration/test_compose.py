"""docker-compose.yml is valid for the Compose tool and wires the services the README promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"


def _compose_command() -> list[str] | None:
    # `docker compose` (v2 plugin) when present; else Debian's standalone docker-compose, which
    # parses and validates without a Docker engine.
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_tool_accepts_the_file():
    command = _compose_command()
    if command is None:
        message = "no Compose tool (docker compose or docker-compose); `ops/dev test` installs it"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "-q"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_and_ports():
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    services = spec["services"]
    assert set(services) >= {"kafka", "engine", "worker", "api"}
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name in ("engine", "worker", "api"):
        assert services[name]["build"] == "."
        assert services[name]["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert "3500:3500" in services["api"]["ports"]


def test_engines_and_workers_scale_with_compose():
    # `docker compose up --scale worker=N --scale engine=M` needs services that claim nothing one
    # replica alone can have: no fixed container name, no published port, no per-replica identity.
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name in ("engine", "worker"):
        service = services[name]
        assert "container_name" not in service, name
        assert "ports" not in service, name
        assert "hostname" not in service, name
        assert not any(key.endswith("TRANSACTIONAL_ID") for key in service["environment"]), name


def test_dockerfile_copies_what_the_services_import():
    dockerfile = (ROOT / "Dockerfile").read_text()
    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    for name in ("engine", "worker"):
        app = spec["services"][name]["command"][-1]
        package = app.split(".", 1)[0]
        assert (ROOT / package).is_dir()
        assert f"COPY {package} ./{package}" in dockerfile


def test_compose_kafka_version_matches_local_broker():
    from ops.kafka.paths import DEFAULT_KAFKA_VERSION

    spec = yaml.safe_load(COMPOSE_FILE.read_text())
    assert spec["services"]["kafka"]["image"] == f"apache/kafka:{DEFAULT_KAFKA_VERSION}"
