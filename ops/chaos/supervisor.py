"""The system under test: a 3-node Kafka cluster and the engine, worker and API processes on it.

Every process has its own log file (appended across restarts, each start after a `===== start`
line), dies with the harness (PR_SET_PDEATHSIG), and can be killed (SIGKILL), stopped (SIGTERM),
paused (SIGSTOP) and resumed (SIGCONT) by the fault injectors.

Broker operations block for seconds (a node's start waits until it is ready). They run on one
long-lived thread, so the load keeps flowing meanwhile, and because a broker started with
`die_with_parent` is killed when the *thread* that spawned it exits, not the process.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from api.settings import ApiSettings
from engine.runtime.membership import describe_group
from engine.settings import Settings
from engine.topics import Topics
from ops.errors import OpsError
from ops.kafka import LocalKafka
from ops.process import Child, ChildError, free_port

__all__ = ["APP", "APP_V2", "ChaosError", "Proc", "Supervisor", "on_broker_thread"]

ROOT = Path(__file__).resolve().parents[2]
APP = "ops.chaos.apps:runtime"
APP_V2 = "ops.chaos.apps_v2:runtime"
#: Log lines that say an engine or worker process is up.
READY_LINE = {"engine": "engine ready", "worker": "activity worker started"}
T = TypeVar("T")

_BROKER_THREAD = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-brokers")


class ChaosError(OpsError):
    """The system under test could not be brought up or back."""


async def on_broker_thread(fn: Callable[[], T]) -> T:
    """Run a blocking LocalKafka call on the long-lived broker thread (see the module docstring)."""
    return await asyncio.get_running_loop().run_in_executor(_BROKER_THREAD, fn)


class Proc:
    """One `headrace engine|worker` or `python -m api` process, restartable."""

    def __init__(self, role: str, index: int, env: Mapping[str, str], log_dir: Path, app: str = APP) -> None:
        self.role = role
        self.index = index
        self.name = f"{role}-{index}"
        self.env = dict(env)
        self.app = app
        self.log_path = log_dir / f"{self.name}.log"
        self.port = ApiSettings.from_env(env).port if role == "api" else 0
        # If the harness dies, nothing it started may keep loading a shared machine.
        self.child = Child([], self.log_path, cwd=ROOT, die_with_parent=True, label=self.name,
                           env={**os.environ, "PYTHONPATH": str(ROOT), **self.env})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def alive(self) -> bool:
        return self.child.alive

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    @property
    def starts(self) -> int:
        return self.child.starts

    def start(self, app: str | None = None) -> None:
        if self.alive:
            return
        self.app = app or self.app
        self.child.argv = (
            [sys.executable, "-m", "api"]
            if self.role == "api"
            else [sys.executable, "-m", "ops", self.role, "--app", self.app]
        )
        self.child.start()

    def signal(self, sig: signal.Signals) -> None:
        self.child.signal(sig)

    def kill(self) -> None:
        """kill -9: no shutdown code runs, as in a crash."""
        self.child.kill()

    def stop(self, grace_s: float = 20.0) -> None:
        self.child.stop(grace_s)

    def current_log(self) -> str:
        """The log of the current (latest) start."""
        return self.child.log_text()

    def log_tail(self, lines: int = 25) -> str:
        return self.child.log_tail(lines)

    async def wait_ready(self, timeout_s: float = 90.0) -> float:
        async with httpx.AsyncClient(timeout=2) as http:

            async def api_ready() -> bool:
                try:
                    return (await http.get(f"{self.url}/v1.0/healthz/ready")).status_code == 204
                except httpx.TransportError:
                    return False

            try:
                return await self.child.wait_ready_async(READY_LINE.get(self.role) or api_ready, timeout_s)
            except ChildError as exc:
                raise ChaosError(str(exc)) from None


@dataclass
class Supervisor:
    """The cluster and the processes of one chaos run."""

    kafka: LocalKafka
    settings: Settings
    log_dir: Path
    marks_dir: Path
    procs: list[Proc]

    @classmethod
    def create(
        cls,
        kafka: LocalKafka,
        settings: Settings,
        log_dir: Path,
        marks_dir: Path,
        *,
        engines: int = 2,
        workers: int = 2,
        apis: int = 2,
    ) -> Supervisor:
        security = kafka.security()
        base = {
            **settings.to_env(
                "bootstrap_servers", "topic_prefix", "partitions", "replication_factor", "max_payload_bytes"
            ),
            **(security.client_env() if security else {}),
            "HEADRACE_CHAOS_MARKS": str(marks_dir),
            **ApiSettings(log_level="info", probe_interval_s=0.5).to_env("log_level", "probe_interval_s"),
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        marks_dir.mkdir(parents=True, exist_ok=True)
        procs = [Proc("engine", i, base, log_dir) for i in range(engines)]
        procs += [Proc("worker", i, base, log_dir) for i in range(workers)]
        procs += [
            Proc("api", i, {**base, **ApiSettings(port=free_port()).to_env("port")}, log_dir) for i in range(apis)
        ]
        return cls(kafka, settings, log_dir, marks_dir, procs)

    def role(self, role: str) -> list[Proc]:
        return [p for p in self.procs if p.role == role]

    @property
    def api_urls(self) -> list[str]:
        return [p.url for p in self.role("api")]

    async def start(self, procs: list[Proc] | None = None, app: str | None = None, timeout_s: float = 120.0) -> None:
        chosen = self.procs if procs is None else procs
        for proc in chosen:
            proc.start(app if proc.role == "engine" else None)
        await asyncio.gather(*(p.wait_ready(timeout_s) for p in chosen))

    async def wait_groups_stable(self, timeout_s: float = 120.0) -> None:
        """Until the engine and worker groups are stable with every live member in them."""
        wanted = {
            self.settings.topic("engine"): sum(p.alive for p in self.role("engine")),
            self.settings.topic(f"workers.{self.settings.task_queue}"): sum(p.alive for p in self.role("worker")),
        }
        deadline = time.monotonic() + timeout_s
        last: object = None
        while time.monotonic() < deadline:
            try:
                last = await group_members(self.settings, list(wanted))
                if all(last.get(g) == ("Stable", n) for g, n in wanted.items()):
                    return
            except Exception as exc:  # the cluster may be settling; keep asking
                last = exc
            await asyncio.sleep(0.5)
        raise ChaosError(f"consumer groups not stable after {timeout_s:.0f}s: wanted {wanted}, last {last!r}")

    def stop_all(self, kill: bool = False) -> None:
        # Signal every process first, then wait, so they shut down side by side.
        for proc in self.procs:
            proc.signal(signal.SIGCONT)
            proc.signal(signal.SIGKILL if kill else signal.SIGTERM)
        for proc in self.procs:
            proc.kill() if kill else proc.stop()

    async def busiest_leader(self) -> int:
        """The broker that leads the partitions holding the most records of this deployment."""
        topics = Topics.for_settings(self.settings)
        names = [topics.commands, topics.results, topics.tasks, topics.status, topics.history]
        admin = AIOKafkaAdminClient(**self.settings.client_kwargs())
        await admin.start()
        try:
            described = await admin.describe_topics(names)
        finally:
            await admin.close()
        leaders = {(t["topic"], p["partition"]): p["leader"] for t in described for p in t["partitions"]}
        ends = await end_offsets(self.settings, list(leaders))
        load: dict[int, int] = {}
        for tp, leader in leaders.items():
            load[leader] = load.get(leader, 0) + ends.get(tp, 0) + 1
        return max(load, key=lambda node: load[node])


async def group_members(settings: Settings, groups: list[str]) -> dict[str, tuple[str, int]]:
    """Group → (state, member count), for the groups the coordinator could describe."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs(), request_timeout_ms=5000)
    await admin.start()
    try:
        found: dict[str, tuple[str, int]] = {}
        for group in groups:
            described = await describe_group(admin, group)
            if described is not None:
                found[group] = (described.state, len(described.client_ids))
        return found
    finally:
        await admin.close()


async def end_offsets(settings: Settings, tps: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = AIOKafkaConsumer(**settings.client_kwargs(), group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(t, p) for t, p in tps])
        return {(tp.topic, tp.partition): int(offset) for tp, offset in ends.items()}
    finally:
        await consumer.stop()


def client_settings(kafka: LocalKafka, **values: Any) -> Settings:
    """Settings for this harness's own Kafka clients (driver, follower, checker)."""
    manifest = kafka.manifest()
    assert manifest is not None
    security = kafka.security()
    env = security.client_env() if security is not None else {}
    return Settings.from_env(
        env, bootstrap_servers=manifest.bootstrap, replication_factor=len(manifest.nodes), **values
    )
