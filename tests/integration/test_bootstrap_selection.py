"""Where the suite's Kafka comes from: env var first, then Docker, then the local broker."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pytest

from ops.kafka import BootstrapChoice, select_bootstrap

CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"


def _never(name: str):
    def call():
        raise AssertionError(f"{name} must not be called")

    return call


def _starter(address: str, log: list[str]):
    @contextmanager
    def start():
        log.append(f"start {address}")
        try:
            yield address
        finally:
            log.append(f"stop {address}")

    return start


def test_env_var_wins_and_nothing_is_probed_or_started():
    env = {"KAFKA_BOOTSTRAP_SERVERS": " broker-a:9092,broker-b:9092 "}
    with select_bootstrap(
        env,
        docker_available=_never("docker_available"),
        start_container=_never("start_container"),
        start_local=_never("start_local"),
    ) as choice:
        assert choice == BootstrapChoice("env", "broker-a:9092,broker-b:9092")


@pytest.mark.parametrize(
    ("docker", "expected"),
    [
        (True, BootstrapChoice("testcontainers", "container:1")),
        (False, BootstrapChoice("local", "local:2")),
    ],
)
def test_without_env_var_docker_then_local(docker, expected):
    log: list[str] = []
    with select_bootstrap(
        {"KAFKA_BOOTSTRAP_SERVERS": "  "},
        docker_available=lambda: docker,
        start_container=_starter("container:1", log),
        start_local=_starter("local:2", log),
    ) as choice:
        assert choice == expected
        assert log == [f"start {expected.servers}"]
    # Whatever the selection started, it stops when the session's `with` ends.
    assert log == [f"start {expected.servers}", f"stop {expected.servers}"]


def test_session_fixture_uses_env_var(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """The real kafka_bootstrap fixture, in a separate pytest run, yields the env var's address."""
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "example.invalid:19092")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        """
        def test_address(kafka_bootstrap):
            assert kafka_bootstrap == "example.invalid:19092"
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*kafka_bootstrap: example.invalid:19092 via KAFKA_BOOTSTRAP_SERVERS*"]
    )
