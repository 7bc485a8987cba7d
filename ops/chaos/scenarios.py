"""The chaos scenarios: one fault kind each (`mixed` cycles through the crash faults), with the
sizes of their short variant (the test suite) and the shape of a long run."""

from __future__ import annotations

from dataclasses import dataclass

from .versions import APP_V1, MIX_V1

__all__ = ["SCENARIOS", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    #: Fault kinds (ops/chaos/faults.py) drawn from at random, one per injection.
    faults: tuple[str, ...]
    #: The short variant: workflows and faults.
    workflows: int = 200
    fault_count: int = 1
    #: Seconds between faults (drawn uniformly), short variant.
    every_s: tuple[float, float] = (3.0, 6.0)
    #: Roughly how long one fault takes, so the load is paced to outlast the faults.
    span_s: float = 5.0
    #: The app the engines and workers start with (`--app`); None: ops/chaos/apps.py.
    app: str | None = None
    #: Kinds added to the load's mix (ops/chaos/load.py KINDS) with their weights.
    mix: tuple[tuple[str, int], ...] = ()
    #: The load lasts through the last fault too (the fault is what runs under load), not only until it begins.
    load_spans_fault: bool = False


_CRASHES = ("engine-kill", "worker-kill", "api-kill", "engine-pause", "broker-kill")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "engine-kill", "kill -9 of an engine process, restarted", ("engine-kill",), fault_count=2, span_s=12.0
        ),
        Scenario("worker-kill", "kill -9 of a worker mid-activity, restarted", ("worker-kill",), fault_count=2),
        Scenario("api-kill", "kill -9 of an API process mid-request, restarted", ("api-kill",), fault_count=2),
        Scenario(
            "engine-pause",
            "SIGSTOP of an engine past the session timeout, then SIGCONT (the zombie)",
            ("engine-pause",),
            span_s=22.0,
        ),
        Scenario(
            "broker-kill",
            "kill -9 of the broker leading the busiest partitions, restarted",
            ("broker-kill",),
            span_s=20.0,
        ),
        Scenario(
            "stack-restart",
            "every process and broker down mid-load, then all started again",
            ("stack-restart",),
            span_s=45.0,
        ),
        Scenario(
            "worker-burst", "workers stopped while work piles up, then started together", ("worker-burst",), span_s=20.0
        ),
        Scenario(
            "poison",
            "malformed, wrong-version, unknown-type, oversized and orphan records "
            "produced straight to the commands topic",
            ("poison",),
            fault_count=2,
            span_s=1.0,
        ),
        Scenario(
            "nondeterminism",
            "workflow code changed under running instances: they fail with a "
            "NonDeterminismError, the engines keep running",
            ("nondeterminism",),
            span_s=25.0,
        ),
        Scenario(
            "rolling-deploy",
            "v2 code (a new workflow and activity, a patch, a new named version) rolled into a "
            "v1 fleet one process at a time under load, then v1 removed: nothing fails for its code",
            ("rolling-deploy",),
            workflows=300,  # at the 4/s floor of the pace, the load lasts the ~70 s deploy
            span_s=70.0,
            load_spans_fault=True,
            app=APP_V1,
            mix=tuple(MIX_V1.items()),
        ),
        Scenario(
            "mixed", "a random crash fault each time: " + ", ".join(_CRASHES), _CRASHES, fault_count=3, span_s=12.0
        ),
    )
}
