"""Where jars are cached and where running brokers keep their state.

Both live outside the repository: the jar cache survives fresh clones (so a second start downloads
nothing), and the state directory lets `down` in one process find the pids `up` wrote in another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

# 4.4.0 since issue 17: on 4.1.2, with several transactional producers writing several partitions
# each (an engine's partition owners), about one transaction in fifty became readable to a
# read_committed consumer 50-450 ms after its commit returned, with aiokafka and librdkafka
# consumers alike (docs/performance.md); 4.4.0 showed none over 50 ms in the same probe, with
# chain-5 and constant-30 as on 4.1.2. aiokafka 0.14 runs the whole suite and the chaos runs on it.
DEFAULT_KAFKA_VERSION = "4.4.0"


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
