"""Engine and worker processes of their own, for tests that kill them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.settings import Settings
from ops.process import Child

ROOT = Path(__file__).resolve().parents[2]


class Process(Child):
    """`headrace engine|worker --app APP` on the test's settings, started at once (ops.process.Child)."""

    def __init__(self, role: str, settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None,
                 app: str = "tests.e2e.apps:runtime") -> None:
        self.role = role
        env = {
            **os.environ,
            **settings.to_env("bootstrap_servers", "topic_prefix", "partitions"),
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        super().__init__([sys.executable, "-m", "ops", role, "--app", app],
                         log_dir / f"{role}-{os.getpid()}-{id(self)}.log", cwd=ROOT, env=env, label=role)
        self.start()

    def stop(self, grace_s: float = 30) -> bool:
        return super().stop(grace_s)
