"""What the benchmark measures: a broker (local or given) and engine and worker processes.

Each scenario gets fresh engine and worker processes on a fresh topic prefix, so its CPU, RSS and
record counts are its own; the broker lives for the whole run.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

from api.settings import ApiSettings
from engine.settings import Settings
from engine.topics import Topics
from ops.errors import OpsError
from ops.process import Child, ChildError, free_ports

from .procstats import listener_pid

__all__ = ["BenchError", "Broker", "Deployment", "OffsetCounter", "RequestCounter", "Service", "new_run_id"]

ROOT = Path(__file__).resolve().parents[2]
APP = "ops.bench.apps:runtime"
#: Role -> the log line that says the process is ready.
READY = {"engine": "engine ready", "worker": "activity worker started", "api": "Uvicorn running",
         "grpc": "serving TaskHubSidecarService", "app": "bench app started"}
#: With `--via grpc`: the benchmark's workflows and activity run in connected Dapr SDK apps
#: (`ops.bench.grpc_app`), whose turns and items `headrace grpc` hands out.
REMOTE_WORKFLOWS = ("bench_chain", "bench_fan_out", "bench_timer")
REMOTE_ACTIVITIES = ("bench_echo",)
#: Internal topics every deployment on a broker writes to (offsets and transaction state).
INTERNAL_TOPICS = ("__consumer_offsets", "__transaction_state")


def new_run_id() -> str:
    """A run's ID: when it started, and four hex digits so that two runs started in the same second
    on one broker (a `bench` and a `bench scale`) never share topics (`bench.<run ID>.`)."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


class BenchError(OpsError):
    """A benchmark could not run (a process did not start, a scenario stalled)."""


@dataclass
class Broker:
    bootstrap: str
    pid: int | None
    source: str
    version: str | None = None
    _local: object | None = None

    @classmethod
    def start_local(cls) -> Broker:
        from ops.kafka import LocalKafka

        state_dir = Path(tempfile.mkdtemp(prefix="headrace-bench-")) / "kafka"
        local = LocalKafka(state_dir, die_with_parent=True)
        result = local.up(nodes=1, port=None)
        pids = [s.pid for s in local.status() if s.pid is not None]
        return cls(
            result.manifest.bootstrap,
            pids[0] if pids else None,
            "local",
            result.manifest.version,
            local,
        )

    @classmethod
    def given(cls, bootstrap: str) -> Broker:
        # The broker's CPU and RSS are only known when it listens on this machine.
        first = bootstrap.split(",")[0]
        host, _, port = first.rpartition(":")
        pid = None
        if host in ("localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0") and port.isdigit():  # noqa: S104
            pid = listener_pid(int(port))
        return cls(bootstrap, pid, "given")

    async def forget_run(self, prefix: str) -> tuple[list[str], dict[str, str]]:
        """Delete the topics named `prefix...` from a given broker: a run's topics (every topic a
        bench run creates starts with `bench.<run ID>.`), so a long-lived development broker does
        not gather those of every run (one had 1,118, and every client that asks for the metadata
        of all topics pays for each). A private broker is wiped by `stop` instead. The run's
        consumer groups are left to expire (`offsets.retention.minutes` after they empty): aiokafka
        has no DeleteGroups. Returns the topics deleted and those the broker refused, with why."""
        if self._local is not None:
            return [], {}
        admin = AIOKafkaAdminClient(**Settings.from_env(bootstrap_servers=self.bootstrap).client_kwargs())
        await admin.start()
        try:
            doomed = sorted(t for t in await admin.list_topics() if t.startswith(prefix))
            if not doomed:
                return [], {}
            # aiokafka hands back the response as it came: each topic's error is for the caller.
            response = await admin.delete_topics(doomed)
            refused = {topic: for_code(code).__name__ for topic, code in response.topic_error_codes if code}
            return [t for t in doomed if t not in refused], refused
        finally:
            await admin.close()

    async def close(self, run_id: str, *, keep_topics: bool, note: Callable[[str], None]) -> None:
        """End a run on this broker: its topics deleted from a given broker unless `keep_topics`,
        and a private broker stopped and wiped. A failure to delete is said, never raised: the
        run's figures, written after this, are what it is for."""
        if not keep_topics:
            prefix = f"bench.{run_id}."
            try:
                deleted, refused = await self.forget_run(prefix)
            except Exception as exc:  # clean-up only: say it and go on
                note(f"could not delete the run's topics ({prefix}*): {exc!r}")
            else:
                if deleted:
                    note(f"deleted the run's {len(deleted)} topics ({prefix}*; --keep-topics keeps them)")
                if refused:
                    note(f"the broker refused to delete {len(refused)} of the run's topics: "
                         + ", ".join(f"{topic} ({why})" for topic, why in sorted(refused.items())))
        await asyncio.to_thread(self.stop)

    def stop(self) -> None:
        from ops.kafka import LocalKafka

        if isinstance(self._local, LocalKafka):
            self._local.down(wipe=True, grace_s=15.0)
            self._local = None


async def set_broker_config(bootstrap: str, config: dict[str, str]) -> None:
    """Dynamic configs on every broker of the cluster (they stay set: a given broker keeps them)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(**Settings.from_env(bootstrap_servers=bootstrap).client_kwargs())
    await admin.start()
    try:
        ids = sorted(broker["node_id"] for broker in (await admin.describe_cluster())["brokers"])
        resources = [ConfigResource(ConfigResourceType.BROKER, str(i), configs=config) for i in ids]
        responses = await admin.alter_configs(resources)
    finally:
        await admin.close()
    for response in responses:
        for error_code, message, *_ in response.resources:
            if error_code:
                raise BenchError(f"broker config {config} refused: error {error_code} {message}")


class Service:
    """One `headrace engine|worker|api` process with its log in a file."""

    def __init__(
        self,
        role: str,
        settings: Settings,
        log_dir: Path,
        index: int,
        extra_env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        code_root: Path = ROOT,
        metrics_url: str | None = None,
    ) -> None:
        self.role = role
        #: Its Prometheus endpoint, if it has one (`RequestCounter` reads its Kafka requests there).
        self.metrics_url = metrics_url
        env = {
            **os.environ,
            **settings.to_env("bootstrap_servers", "topic_prefix", "partitions"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(code_root), os.environ.get("PYTHONPATH")])),
            **(extra_env or {}),
        }
        self.log_path = log_dir / f"{role}-{index}.log"
        self.child = Child(
            # The API takes --app too (and ignores it): one command line for every Headrace role.
            argv or [sys.executable, "-m", "ops", role, "--app", APP],
            self.log_path,
            cwd=code_root,
            env=env,
            # If the harness dies, its engines and workers must not keep loading the machine.
            die_with_parent=True,
            label=role,
        )
        self.child.start()

    @property
    def pid(self) -> int:
        return self.child.pid

    def log_text(self) -> str:
        return self.child.log_text()

    def problems(self) -> list[str]:
        """Log lines at WARNING or above (aborted transactions, restores, crashes)."""
        return [
            line for line in self.log_text().splitlines() if re.search(r" (WARNING|ERROR|CRITICAL) |Traceback", line)
        ]

    async def wait_ready(self, deadline: float) -> float:
        try:
            return await self.child.wait_ready_async(READY[self.role], deadline - time.monotonic(), 0.05)
        except ChildError as exc:
            raise BenchError(str(exc)) from None

    def stop(self, timeout: float = 20.0) -> None:
        self.child.stop(timeout)


class Deployment:
    """Engines, workers and (when the load goes through HTTP) API processes of one scenario; with
    `grpc_apps`, a `headrace grpc` front end and that many connected Dapr SDK apps run the
    workflows instead of the engine (remote workflows)."""

    def __init__(
        self,
        settings: Settings,
        engines: int,
        workers: int,
        log_dir: Path,
        apis: int = 0,
        grpc_apps: int = 0,
        code_root: Path = ROOT,
    ) -> None:
        self.settings = settings
        self.code_root = code_root
        remote = {"HEADRACE_REMOTE_WORKFLOWS": ",".join(REMOTE_WORKFLOWS)} if grpc_apps else {}
        self.services = [self._with_metrics("engine", settings, log_dir, i, remote, code_root)
                         for i in range(engines)]
        self.services += [self._with_metrics("worker", settings, log_dir, i, {}, code_root) for i in range(workers)]
        if grpc_apps:
            self._start_grpc(settings, log_dir, grpc_apps)
        self.api_urls: list[str] = []
        for i, port in enumerate(free_ports(apis)):
            env = ApiSettings(host="127.0.0.1", port=port, log_level="info").to_env("host", "port", "log_level")
            url = f"http://127.0.0.1:{port}"
            self.services.append(Service("api", settings, log_dir, i, env, code_root=code_root,
                                         metrics_url=f"{url}/metrics"))
            self.api_urls.append(url)

    @staticmethod
    def _with_metrics(role: str, settings: Settings, log_dir: Path, index: int, env: dict[str, str],
                      code_root: Path) -> Service:
        """An engine or worker serving /metrics on a port of its own."""
        (port,) = free_ports(1)
        return Service(role, settings, log_dir, index, {**env, "HEADRACE_METRICS_PORT": str(port)},
                       code_root=code_root, metrics_url=f"http://127.0.0.1:{port}/metrics")

    def _start_grpc(self, settings: Settings, log_dir: Path, apps: int) -> None:
        from ops.dapr_sdk import sdk_python

        python = sdk_python()
        port = free_ports(1)[0]
        served = [a for name in REMOTE_ACTIVITIES for a in ("--activity", name)]
        served += [a for name in REMOTE_WORKFLOWS for a in ("--workflow", name)]
        self.services.append(Service("grpc", settings, log_dir, 0, argv=[
            sys.executable, "-m", "ops", "grpc", "--port", str(port), *served], code_root=self.code_root))
        # The app is Dapr's, configured as on daprd: the sidecar's address only.
        app_env = {"DAPR_GRPC_ENDPOINT": f"127.0.0.1:{port}"}
        for i in range(apps):
            self.services.append(Service("app", settings, log_dir, i, app_env, argv=[
                str(python), "-W", "ignore", str(Path(__file__).with_name("grpc_app.py"))]))

    async def wait_ready(self, timeout_s: float = 120.0) -> float:
        t0 = time.monotonic()
        deadline = t0 + timeout_s
        await asyncio.gather(*(s.wait_ready(deadline) for s in self.services))
        return time.monotonic() - t0

    def pids(self, role: str) -> list[int]:
        return [s.pid for s in self.services if s.role == role]

    def problems(self) -> dict[str, list[str]]:
        return {s.log_path.name: p for s in self.services if (p := s.problems())}

    def metrics_urls(self) -> dict[str, list[str]]:
        """The Prometheus endpoints of its processes, by role."""
        out: dict[str, list[str]] = {}
        for service in self.services:
            if service.metrics_url is not None:
                out.setdefault(service.role, []).append(service.metrics_url)
        return out

    def stop(self) -> None:
        # Signal all first, then wait: they shut down side by side, not in turn.
        for service in self.services:
            service.child.signal(signal.SIGTERM)
        for service in self.services:
            service.stop()


class RequestCounter:
    """The Kafka requests each process sent so far, by kind of process and request type: read from
    the processes' `headrace_kafka_requests_total` and, for this process, counted here."""

    def __init__(self, urls: dict[str, list[str]], own_kind: str) -> None:
        self.urls = urls
        self.own_kind = own_kind

    async def read(self) -> dict[str, dict[str, int]]:
        from engine.runtime import kafka_protocol

        out: dict[str, dict[str, int]] = {self.own_kind: kafka_protocol.requests_sent()}
        scraped = await asyncio.gather(*(asyncio.to_thread(_scrape_requests, url)
                                         for urls in self.urls.values() for url in urls))
        found = iter(scraped)
        for kind, urls in self.urls.items():
            totals = out.setdefault(kind, {})
            for _ in urls:
                for request, count in next(found).items():
                    totals[request] = totals.get(request, 0) + count
        return out


def _scrape_requests(url: str) -> dict[str, int]:
    """`headrace_kafka_requests_total` of one process, by request type (empty if it is gone)."""
    from urllib.error import URLError
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urlopen(url, timeout=5) as response:  # noqa: S310 - a URL the bench made: http://127.0.0.1
            text = response.read().decode()
    except (URLError, OSError):
        return {}
    return {sample.labels["request"]: int(sample.value)
            for family in text_string_to_metric_families(text) if family.name == "headrace_kafka_requests"
            for sample in family.samples if sample.name == "headrace_kafka_requests_total"}


class OffsetCounter:
    """Log end offsets of a deployment's topics: records (and transaction markers) written."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        topics = Topics.for_settings(settings)
        self.topics = {
            name: getattr(topics, name)
            for name in (
                "commands",
                "results",
                "tasks",
                "status",
                "history",
                "history_store",
                "dead_letter",
            )
        }
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: dict[str, list[TopicPartition]] = {}

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(**self.settings.client_kwargs(), group_id=None, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        labels = {**self.topics, **{t: t for t in INTERNAL_TOPICS}}
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        await admin.start()
        try:
            # A topic not created yet is described with an error and no partitions: it counts 0.
            described = {t["topic"]: t["partitions"] for t in await admin.describe_topics(list(labels.values()))}
        finally:
            await admin.close()
        for label, topic in labels.items():
            parts = sorted(p["partition"] for p in described.get(topic, []))
            self._tps[label] = [TopicPartition(topic, p) for p in parts]

    async def read(self) -> dict[str, int]:
        """Per topic label: the sum of its partitions' end offsets."""
        assert self._consumer is not None
        every = [tp for tps in self._tps.values() for tp in tps]
        ends = await self._consumer.end_offsets(every) if every else {}
        return {label: sum(ends[tp] for tp in tps) for label, tps in self._tps.items()}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
