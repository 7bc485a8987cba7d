"""`headrace kafka up/down/status` as a user runs them, and what they say when tools are absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from ops.process import pids_mentioning, read_pidfile

JAVA_HOME = Path("/usr/lib/jvm/java-17-openjdk-amd64")


def headrace(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "ops", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else os.environ.copy(),
        check=False,
    )


@pytest.mark.timeout(180)
async def test_up_serves_admin_calls_and_down_leaves_no_process(tmp_path, java_runtime):
    state = tmp_path / "state"
    up = headrace("kafka", "--state-dir", str(state), "up", "--free-port")
    assert up.returncode == 0, up.stderr
    bootstrap = up.stdout.strip()
    assert bootstrap.startswith("127.0.0.1:")
    assert "ready in" in up.stderr
    assert f"--state-dir {state} down" in up.stderr
    pid = read_pidfile(state / "node-1" / "pid")
    try:
        assert pid is not None
        # The broker outlives the command that started it.
        assert pids_mentioning(str(state)) == [pid.pid]

        status = headrace("kafka", "--state-dir", str(state), "status")
        assert status.returncode == 0
        assert f"node 1: running, pid {pid.pid}" in status.stdout

        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic("cli-check", 1, 1)])
            assert "cli-check" in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        down = headrace("kafka", "--state-dir", str(state), "down", "--wipe")
    assert down.returncode == 0, down.stderr
    assert f"Stopped Kafka (pids {pid.pid})" in down.stderr
    assert pids_mentioning(str(state)) == []
    assert not (state / "node-1").exists()

    again = headrace("kafka", "--state-dir", str(state), "down")
    assert again.returncode == 0
    assert "No Kafka was running" in again.stderr
    assert headrace("kafka", "--state-dir", str(state), "status").returncode == 3


def _assert_clean_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("headrace: error: ")
    for needle in needles:
        assert needle in result.stderr


def test_missing_java_is_a_message_not_a_traceback(tmp_path):
    env = {
        "PATH": str(tmp_path / "empty-bin"),
        "JAVA_HOME": str(tmp_path / "no-jdk"),
        "HOME": str(tmp_path),
    }
    result = headrace("kafka", "--state-dir", str(tmp_path / "s"), "up", "--free-port", env=env)
    _assert_clean_error(result, "Java 17+ not found", "JAVA_HOME", "openjdk-17")


def test_old_java_is_refused_with_its_version(tmp_path):
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    fake.chmod(0o755)
    env = {"PATH": str(tmp_path / "empty-bin"), "JAVA_HOME": str(fake.parent.parent)}
    result = headrace("kafka", "--state-dir", str(tmp_path / "s"), "up", "--free-port", env=env)
    _assert_clean_error(result, "is Java 11.0.22")


def test_missing_maven_on_a_cold_cache_is_a_message(tmp_path, java_runtime):
    env = {
        "PATH": str(tmp_path / "empty-bin"),
        "JAVA_HOME": str(java_runtime.executable.resolve().parent.parent),
        "HEADRACE_CACHE_DIR": str(tmp_path / "cold-cache"),
        "HOME": str(tmp_path),
    }
    result = headrace("kafka", "--state-dir", str(tmp_path / "s"), "up", "--free-port", env=env)
    _assert_clean_error(result, "Maven not found", "apt-get install maven")
    assert pids_mentioning(str(tmp_path)) == []


def test_warm_cache_needs_no_maven(tmp_path, java_runtime):
    from ops.kafka.jars import resolve_jars
    from ops.kafka.paths import kafka_version

    resolve_jars(kafka_version(), java_runtime)  # warm the cache the way `up` would
    env = os.environ.copy()
    # No Maven anywhere: a warm start must not need it, so it cannot download anything.
    env["PATH"] = str(tmp_path / "empty-bin")
    env["JAVA_HOME"] = str(java_runtime.executable.resolve().parent.parent)
    env.pop("MAVEN_HOME", None)
    result = headrace("kafka", "jars", env=env)
    assert result.returncode == 0, result.stderr
    assert "already cached" in result.stderr
    assert Path(result.stdout.strip(), f"kafka_2.13-{kafka_version()}.jar").is_file()


def test_busy_port_is_reported(tmp_path, java_runtime):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = headrace("kafka", "--state-dir", str(tmp_path / "s"), "up", "--port", str(port))
    _assert_clean_error(result, f"port(s) {port}", "--free-port")
