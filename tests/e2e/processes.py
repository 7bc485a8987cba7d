"""Engine and worker processes of their own, for tests that kill them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class Process:
    def __init__(self, role: str, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None,
                 app: str = "tests.e2e.apps:runtime") -> None:
        self.role = role
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "HEADRACE_TOPIC_PREFIX": settings.topic_prefix,
            "HEADRACE_PARTITIONS": str(settings.partitions),
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{role}-{os.getpid()}-{id(self)}.log"
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ops", role, "--app", app], cwd=ROOT, env=env,
            stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill(self) -> None:
        """kill -9: no shutdown code runs, as in a crash."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)
        self._log.close()

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        self._log.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
