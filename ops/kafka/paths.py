"""Where jars are cached and where running brokers keep their state.

Both live outside the repository: the jar cache survives fresh clones (so a second start downloads
nothing), and the state directory lets `down` in one process find the pids `up` wrote in another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# Kafka 4.1 is the newest line checked against aiokafka 0.14 here.
DEFAULT_KAFKA_VERSION = "4.1.2"


def kafka_version(env: Mapping[str, str] = os.environ) -> str:
    return env.get("HEADRACE_KAFKA_VERSION", "").strip() or DEFAULT_KAFKA_VERSION


def cache_root(env: Mapping[str, str] = os.environ) -> Path:
    if explicit := env.get("HEADRACE_CACHE_DIR", "").strip():
        return Path(explicit).expanduser()
    base = env.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(base).expanduser() / "headrace"


def state_root(env: Mapping[str, str] = os.environ) -> Path:
    if explicit := env.get("HEADRACE_STATE_DIR", "").strip():
        return Path(explicit).expanduser()
    base = env.get("XDG_STATE_HOME", "").strip() or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "headrace"


def kafka_state_dir(env: Mapping[str, str] = os.environ) -> Path:
    return state_root(env) / "kafka"
