"""The named scenarios (Dapr's perf-suite shapes) and their full and tiny sizes.

A scenario is a workflow plus a load shape:
- closed: `concurrency` workflows in flight; each completion starts the next (Dapr's constant VUs).
- open: starts at a fixed `rate`, whatever the completions do (clean latency, no coordinated
  omission from waiting on the system under test).
- batch: `workflows` starts as fast as they go, then wait for all (the timer scenario).
Closed and open runs warm up for `warmup_s`, then measure for `duration_s` or, when `workflows` is
set, until that many workflows started after the warm-up have completed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Literal

__all__ = ["SCENARIO_NAMES", "Scenario", "broker_warmup", "override", "select"]

Shape = Literal["closed", "open", "batch"]

KB = 1024


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    workflow: str
    #: Activities each workflow runs (activities/s = workflows/s times this).
    activities: int
    shape: Shape
    concurrency: int = 0
    rate: float = 0.0
    #: Workflows to measure (after the warm-up); 0 means measure for `duration_s` instead.
    workflows: int = 0
    duration_s: float = 0.0
    warmup_s: float = 0.0
    payload_bytes: int = 0
    #: Timer delays are drawn uniformly from this range (timers scenario only).
    timer_s: tuple[float, float] = (0.0, 0.0)

    def workflow_input(self, rng: random.Random) -> Any:
        if self.workflow == "bench_timer":
            return round(rng.uniform(*self.timer_s), 3)
        if self.workflow == "bench_fan_out":
            return self.activities
        if self.payload_bytes:
            return {"steps": self.activities, "payload": "x" * self.payload_bytes}
        return {"steps": self.activities}

    @property
    def load(self) -> str:
        """The load shape in words, for the table."""
        what = {
            "closed": f"{self.concurrency} in flight",
            "open": f"{self.rate:g} wf/s",
            "batch": f"{self.workflows} at once",
        }[self.shape]
        if self.shape == "batch":
            return what
        size = f"{self.workflows} wf" if self.workflows else f"{self.duration_s:g} s"
        return f"{what}, {size} after {self.warmup_s:g} s warm-up"


def _chain(name: str, description: str, steps: int, **shape: Any) -> Scenario:
    return Scenario(name, description, "bench_chain", steps, **shape)


# Full size: what the targets are stated against (2 cores, everything on one machine).
# Throughput scenarios keep 1,000 workflows in flight: the engine's throughput is bound by its
# per-hop latency, not its CPU, so fewer in flight measure the latency (Little's law), not the
# capacity (chain-5 on 2 cores: 300 in flight gave ~165 wf/s at 1.2 cores, 1,000 gave ~450).
_FULL: tuple[Scenario, ...] = (
    _chain(
        "chain-5",
        "5 chained activities",
        5,
        shape="closed",
        concurrency=1000,
        duration_s=60,
        warmup_s=10,
    ),
    Scenario(
        "parallel-5",
        "fan-out/fan-in of 5 activities",
        "bench_fan_out",
        5,
        shape="closed",
        concurrency=1000,
        duration_s=60,
        warmup_s=10,
    ),
    _chain(
        "constant-30",
        "chain-5 from 30 clients, each starting the next on completion",
        5,
        shape="closed",
        concurrency=30,
        duration_s=60,
        warmup_s=10,
    ),
    Scenario(
        "timers",
        "each workflow sleeps on one durable timer of 5-30 s",
        "bench_timer",
        0,
        shape="batch",
        workflows=10_000,
        timer_s=(5.0, 30.0),
    ),
    _chain(
        "chain-1-latency",
        "1 activity at a low fixed rate",
        1,
        shape="open",
        rate=10,
        duration_s=60,
        warmup_s=5,
    ),
    _chain(
        "payload-1k",
        "chain-5 with a 1 KB input passed through every activity",
        5,
        shape="closed",
        concurrency=10,
        duration_s=30,
        warmup_s=5,
        payload_bytes=KB,
    ),
    _chain(
        "payload-50k",
        "chain-5 with a 50 KB input passed through every activity",
        5,
        shape="closed",
        concurrency=10,
        duration_s=30,
        warmup_s=5,
        payload_bytes=50 * KB,
    ),
    _chain(
        "payload-500k",
        "chain-5 with a 500 KB input passed through every activity",
        5,
        shape="closed",
        concurrency=10,
        duration_s=30,
        warmup_s=5,
        payload_bytes=500 * KB,
    ),
    _chain(
        "memory",
        "chain-1 until 200,000 have completed; engine RSS over time",
        1,
        shape="closed",
        concurrency=1000,
        # Twice the target's 100,000: growth is judged over the second half, once the engine's
        # bounded keep of recently finished states (per partition) has had time to fill.
        workflows=200_000,
    ),
)

# Tiny: tens of workflows each, for CI (asserts completion, never speed).
_TINY: dict[str, dict[str, Any]] = {
    "chain-5": {"concurrency": 10, "workflows": 30, "warmup_s": 0},
    "parallel-5": {"concurrency": 10, "workflows": 30, "warmup_s": 0},
    "constant-30": {"workflows": 60, "warmup_s": 0},
    "timers": {"workflows": 30, "timer_s": (1.0, 3.0)},
    "chain-1-latency": {"workflows": 20, "warmup_s": 0},
    "payload-1k": {"concurrency": 2, "workflows": 6, "warmup_s": 0},
    "payload-50k": {"concurrency": 2, "workflows": 6, "warmup_s": 0},
    "payload-500k": {"concurrency": 2, "workflows": 6, "warmup_s": 0},
    "memory": {"concurrency": 20, "workflows": 200},
}

SCENARIO_NAMES: tuple[str, ...] = tuple(s.name for s in _FULL)
#: Names that select several scenarios at once.
GROUPS: dict[str, tuple[str, ...]] = {
    "payload": ("payload-1k", "payload-50k", "payload-500k"),
    "all": SCENARIO_NAMES,
}


def broker_warmup(seconds: float) -> Scenario:
    """The unmeasured load a fresh broker gets before the first figure (`--broker-warmup`).

    A broker that has just started runs a transactional load at well under its later speed while
    the JVM compiles the paths it takes (transaction coordinator, markers, fetches): on the 2-core
    machine, 200 transactions of three records took 27 ms each at p50 on a fresh broker and
    3-4 ms from the next 200 on; `constant-30` (20 s after 5 s) gave 101-122 wf/s as the first
    load after the start, 126 wf/s after 30 s of this warm-up and 157 after 90 s, as on a broker
    that had been up for an hour (153-164). A production broker has been up for days, so the
    bench measures a warm one: chain-5 with 100 in flight on topics of their own, then nothing
    of it is kept but the count.
    """
    return _chain("broker-warm-up", "chain-5 with 100 in flight, not measured", 5, shape="closed",
                  concurrency=100, duration_s=seconds, warmup_s=0.0)


def select(names: list[str], *, tiny: bool = False) -> list[Scenario]:
    """Scenarios by name (or group name), in the suite's order."""
    wanted: set[str] = set()
    for name in names or ["all"]:
        if name in GROUPS:
            wanted.update(GROUPS[name])
        elif name in SCENARIO_NAMES:
            wanted.add(name)
        else:
            known = ", ".join([*SCENARIO_NAMES, *GROUPS])
            raise ValueError(f"unknown scenario {name!r} (known: {known})")
    chosen = [s for s in _FULL if s.name in wanted]
    if tiny:
        chosen = [replace(s, duration_s=0, **_TINY[s.name]) for s in chosen]
    return chosen


def override(
    scenario: Scenario,
    *,
    workflows: int | None = None,
    duration_s: float | None = None,
    warmup_s: float | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
) -> Scenario:
    """Apply command-line sizes. A rate turns a closed loop into an open one."""
    changes: dict[str, Any] = {}
    if workflows is not None:
        changes.update(workflows=workflows, duration_s=0.0)
    if duration_s is not None and scenario.shape != "batch":
        changes.update(duration_s=duration_s, workflows=0)
    if warmup_s is not None and scenario.shape != "batch":
        changes["warmup_s"] = warmup_s
    if concurrency is not None and scenario.shape == "closed":
        changes["concurrency"] = concurrency
    if rate is not None and scenario.shape != "batch":
        changes.update(shape="open", rate=rate)
    return replace(scenario, **changes)
