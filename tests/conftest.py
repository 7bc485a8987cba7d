"""Shared fixtures: a real Kafka for the session, and fresh topic names for every test.

Where the broker comes from (ops.kafka.select_bootstrap decides):
  1. KAFKA_BOOTSTRAP_SERVERS, when set: a broker someone already runs; nothing is started.
  2. testcontainers' Kafka module, when a Docker engine answers.
  3. A local Apache Kafka from Maven Central jars (ops.kafka), on free ports, with its state in a
     temporary directory; stopped and wiped when the session ends, even if tests fail.
The choice is printed when it is made and summarised at the end of the run.
"""

from __future__ import annotations

import os
import re
import socket
import sys
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from ops.kafka import BootstrapChoice, LocalKafka, docker_engine_answers, select_bootstrap
from ops.kafka.errors import ToolMissing
from ops.kafka.java import JavaRuntime, find_java


@dataclass
class _KafkaReport:
    choice: BootstrapChoice | None = None
    detail: str = ""
    outcomes: dict[str, int] = field(default_factory=dict)


_REPORT_KEY = pytest.StashKey[_KafkaReport]()


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _require_java() -> JavaRuntime:
    # In CI a missing Java must fail loudly: a skipped broker test proves nothing.
    try:
        return find_java()
    except ToolMissing as exc:
        if in_ci():
            pytest.fail(str(exc), pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def java_runtime() -> JavaRuntime:
    """Java 17+ for tests that start their own brokers; fails in CI, skips elsewhere, if absent."""
    return _require_java()


def _announce(config: pytest.Config, line: str) -> None:
    # Session fixtures run under output capture; write around it so the choice shows inline.
    capture = config.pluginmanager.getplugin("capturemanager")
    reporter = config.pluginmanager.getplugin("terminalreporter")
    if capture is None or reporter is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    # testcontainers' Kafka module drives Confluent's image; cp-kafka 7.9 is Apache Kafka 3.9.
    image = os.environ.get("HEADRACE_TC_KAFKA_IMAGE", "confluentinc/cp-kafka:7.9.0")
    with KafkaContainer(image).with_kraft() as kafka:
        yield str(kafka.get_bootstrap_server())


@pytest.fixture(scope="session")
def kafka_bootstrap(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker shared by the whole session."""
    report = pytestconfig.stash[_REPORT_KEY]

    @contextmanager
    def start_local() -> Iterator[str]:
        _require_java()
        state_dir = tmp_path_factory.mktemp("kafka-state") / "kafka"
        local = LocalKafka(
            state_dir, log=lambda msg: _announce(pytestconfig, msg), die_with_parent=True
        )
        result = local.up(nodes=1, port=None)
        pids = ", ".join(str(s.pid) for s in local.status())
        report.detail = (
            f"Apache Kafka {result.manifest.version}, pid {pids}, started in "
            f"{result.jars_s + result.format_s + result.ready_s:.1f}s "
            f"(jars {'downloaded' if result.downloaded else 'cached'})"
        )
        try:
            yield result.manifest.bootstrap
        finally:
            # Only this broker: it lives in this session's own state directory.
            local.down(wipe=True, grace_s=15.0)

    with select_bootstrap(
        os.environ,
        docker_available=docker_engine_answers,
        start_container=_container,
        start_local=start_local,
    ) as choice:
        report.choice = choice
        source = {
            "env": "KAFKA_BOOTSTRAP_SERVERS",
            "testcontainers": "testcontainers (Docker)",
            "local": "local broker from Maven Central jars",
        }[choice.source]
        detail = f" [{report.detail}]" if report.detail else ""
        _announce(pytestconfig, f"\nkafka_bootstrap: {choice.servers} via {source}{detail}")
        yield choice.servers


@pytest.fixture
def topic_prefix(request: pytest.FixtureRequest) -> str:
    """A prefix no other test (in this run or any earlier one) uses: 't.<test>.<random>.'."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"t.{slug}.{uuid.uuid4().hex[:12]}."


@pytest.fixture
def unique_topic(topic_prefix: str) -> Callable[..., str]:
    """unique_topic() or unique_topic('results'): a topic name private to this test."""

    def make(suffix: str = "main") -> str:
        return f"{topic_prefix}{suffix}"

    return make


@pytest.fixture
def unique_group(topic_prefix: str) -> Callable[..., str]:
    """Consumer group ids private to this test, so committed offsets never leak between tests."""

    def make(suffix: str = "group") -> str:
        return f"g.{topic_prefix}{suffix}"

    return make


class _KafkaSummary:
    """Counts broker and cluster test outcomes and prints them with the broker that served them."""

    name = "headrace-kafka-summary"

    def __init__(self) -> None:
        self.report = _KafkaReport()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        kind = "cluster" if "cluster" in report.keywords else "kafka"
        if kind not in report.keywords:
            return
        # Count each test once: its call phase, or its setup when it never got to run.
        if report.when == "call" or (report.when == "setup" and not report.passed):
            key = f"{kind}:{report.outcome}"
            self.report.outcomes[key] = self.report.outcomes.get(key, 0) + 1

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        report = self.report
        if not report.outcomes:
            return
        terminalreporter.section("real Kafka")
        for kind, label in (("kafka", "broker tests"), ("cluster", "3-node cluster tests")):
            counts = [
                report.outcomes.get(f"{kind}:{o}", 0) for o in ("passed", "failed", "skipped")
            ]
            if not any(counts):
                continue
            if kind == "cluster":
                where = "each against its own local 3-node KRaft cluster"
            elif report.choice is not None:
                where = f"against {report.choice.servers} ({report.choice.source})"
                where += f", {report.detail}" if report.detail else ""
            else:
                where = "without a broker"
            terminalreporter.write_line(
                f"{label} {where}: {counts[0]} passed / {counts[1]} failed / {counts[2]} skipped"
            )


class _SocketOrigins:
    """Where a socket the garbage collector closes was made, added to pytest's report of it.

    An unclosed socket (or the asyncio transport holding it) is reported by pytest as an unraisable
    ResourceWarning in whatever test the collector happens to run in, not in the one that dropped
    it; pyproject.toml lets a known one through. Until it is collected its file descriptor is still
    its own, so the last socket made on that descriptor is the one reported: its creation stack is
    attached to the warning as a note (PEP 678), which pytest prints with the warning."""

    name = "headrace-socket-origins"
    _FD = re.compile(r"\bfd=(\d+)")
    _PLUMBING = re.compile(r"[/\\](_pytest|pluggy)[/\\]")

    def __init__(self) -> None:
        self.origins: dict[int, list[traceback.FrameSummary]] = {}
        self._init = socket.socket.__init__

    def pytest_sessionstart(self) -> None:
        # After every plugin's pytest_configure: pytest's own unraisable hook is in place to wrap.
        origins, init = self.origins, self._init

        def remembered(sock: socket.socket, *args: object, **kwargs: object) -> None:
            init(sock, *args, **kwargs)  # type: ignore[arg-type]
            # Lines are read only if the socket is ever reported; pytest's own frames say nothing.
            frames = traceback.StackSummary.extract(traceback.walk_stack(None), limit=48, lookup_lines=False)
            origins[sock.fileno()] = [f for f in reversed(frames[1:]) if not self._PLUMBING.search(f.filename)]

        socket.socket.__init__ = remembered  # type: ignore[method-assign]
        report = sys.unraisablehook

        def told(unraisable: sys.UnraisableHookArgs) -> None:
            try:
                exc = unraisable.exc_value
                found = self._FD.search(f"{exc} {unraisable.object!r}")
                stack = origins.get(int(found.group(1))) if found else None
                if exc is not None and stack is not None:
                    made = "".join(traceback.format_list(stack))
                    exc.add_note(f"the socket on that descriptor was made at:\n{made}")
            finally:
                report(unraisable)

        sys.unraisablehook = told

    def pytest_sessionfinish(self) -> None:
        socket.socket.__init__ = self._init  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    # The Kafka clients of the tests' own process speak through the codec every Headrace process
    # installs (`engine.runtime.eventloop`), so the suites against the broker exercise it too.
    from engine.runtime import kafka_protocol

    kafka_protocol.install()
    summary = _KafkaSummary()
    config.stash[_REPORT_KEY] = summary.report
    config.pluginmanager.register(summary, _KafkaSummary.name)
    config.pluginmanager.register(_SocketOrigins(), _SocketOrigins.name)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    native = _native_build()
    # A test using the shared broker without the marker would escape `-m "not kafka"` and the
    # summary; mark it instead of trusting every author to remember.
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()) and "kafka" not in item.keywords:
            item.add_marker(pytest.mark.kafka)
        if native and "pure_python" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="patches what the native build binds at compile time; "
                                                    "runs on the pure-Python build"))


def _native_build() -> bool:
    """Whether the engine's listed modules run compiled (`ops.native`). Under `python -m ops.native
    test` they must: a copy that quietly fell back to Python would pass without testing the build."""
    from ops.native import NATIVE_ENV, compiled

    found = compiled()
    if os.environ.get(NATIVE_ENV) == "1":
        missing = [name for name, native in found.items() if not native]
        if missing:
            raise pytest.UsageError(f"{NATIVE_ENV}=1 but these modules are not compiled: {', '.join(missing)}")
        return True
    return bool(found) and all(found.values())
