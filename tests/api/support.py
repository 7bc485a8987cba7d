"""Real API processes (`python -m api`) on free ports, and waiting on conditions with deadlines."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from engine.settings import Settings
from ops.process import Child, ChildError, free_port

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def eventually(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Call `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.TransportError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout}s; last: {last!r}")
        time.sleep(interval)


class ApiServer:
    """One `python -m api` process: the same entry point a deployment runs."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str = "api",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        inherited = {k: v for k, v in os.environ.items() if k != "DAPR_API_TOKEN"}
        self.env = {
            **inherited,
            # The audit mode too: engine and API must agree on it (docs/architecture.md).
            **settings.to_env("bootstrap_servers", "topic_prefix", "partitions", "audit"),
            "HEADRACE_API_PORT": str(self.port),
            "HEADRACE_API_PROBE_INTERVAL_S": "0.2",
            "HEADRACE_LOG_LEVEL": "info",
            # A command's answer waits this long for the engine to apply it, then is 202 anyway
            # (as daprd's); 5 s by default, which a loaded CI machine can exceed, and a test that
            # reads right after a command expects to see it applied.
            "HEADRACE_API_APPLY_WAIT_S": "60",
            # Likewise a read's wait for the status view to catch up (2 s, then a 500 "try again").
            "HEADRACE_API_CONSISTENCY_TIMEOUT_S": "60",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        }
        self.child = Child([sys.executable, "-m", "api"], self.log_path, cwd=ROOT, env=self.env, label=name)

    def start(self) -> ApiServer:
        self.child.start()
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready() -> bool:
            try:
                return httpx.get(f"{self.url}/v1.0/healthz/ready", timeout=2).status_code == 204
            except httpx.TransportError:
                return False

        try:
            self.child.wait_ready(ready, timeout)
        except ChildError as exc:
            raise AssertionError(str(exc)) from None

    def stop(self) -> None:
        self.child.stop(15)

    def log_tail(self, lines: int = 40) -> str:
        return self.child.log_tail(lines)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30, **kwargs})


@contextmanager
def two_replicas(settings: Settings, log_dir: Path, env: Mapping[str, str]) -> Iterator[tuple[ApiServer, ApiServer]]:
    """Two API processes on one deployment, ready, stopped at the end."""
    a = ApiServer(settings, log_dir, "api-a", env).start()
    b = ApiServer(settings, log_dir, "api-b", env).start()
    try:
        a.wait_ready()
        b.wait_ready()
        yield a, b
    finally:
        a.stop()
        b.stop()
