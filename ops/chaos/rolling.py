"""The rolling-deploy scenario (issue 12): new code rolled into a running fleet, one process at a time.

A v1 fleet (2 engines, 2 workers, one app) runs the chaos load plus two workflows that v2 changes.
v2 processes join one at a time while the load runs (Kubernetes' rolling update with a surge: the
new pod is ready before an old one goes, kubernetes.io/docs/concepts/workloads/controllers/deployment/
#rolling-update-deployment), then the v1 processes are removed one at a time. Every join and leave
rebalances the consumer groups, so instances and work items move between v1 and v2 processes.
The first v2 engine also crashes once (kill -9) and is restarted, so the partitions it held go
back to v1 engines for a while: the instances there that took v2's patch or version stall.

v2 brings each kind of change Dapr 1.17 supports (docs.dapr.io, "Workflow versioning"):
- a new workflow (`chaos_new`) and a new activity (`chaos_triple`): a v1 engine or worker holding
  them waits (`engine.core.unknown_code`) instead of failing them;
- a patch (`chaos_patched`, `ctx.is_patched("triple-after-event")`): the branch a run took is
  recorded in its history; a v1 engine replaying a history that took the patch stalls;
- a new named version (`chaos_named`, `versioned_workflow`): new runs take the latest version an
  engine knows; a run of v2 held by a v1 engine stalls until a v2 engine holds it.

Each of these workflows returns the branch it took (`{"path": ..., "value": ...}`); the checker
(`check_paths`) compares it with the branch its history asks for: the recorded version, or
whether the history recorded the patch. The load starts `chaos_new` only once the first v2 process
is up, as a client deployed with v2 would.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime
from engine.core import events as ev
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import DecodeError
from engine.wire.records import decode_state

from . import apps
from .load import Start
from .records import TopicRecord
from .supervisor import Proc
from .versions import APP_V1, APP_V2, MIX_V1, MIX_V2

if TYPE_CHECKING:  # faults.py imports this module (through the checker)
    from .faults import Fault, FaultContext

__all__ = ["APP_V1", "APP_V2", "KINDS", "MIX_V1", "MIX_V2", "PATCH", "RollingFigures", "check_paths", "deploy",
           "expected", "expected_for", "path_taken", "v1", "v2"]

#: The patch v2 adds to `chaos_patched`.
PATCH = "triple-after-event"
#: Every kind whose right output depends on the branch its history took.
KINDS = frozenset({*MIX_V1, *MIX_V2})


def _base() -> WorkflowRuntime:
    """A runtime with every workflow and activity of the chaos app (ops/chaos/apps.py)."""
    runtime = WorkflowRuntime()
    for name, fn in apps.runtime.registry.activities.items():
        runtime.register_activity(fn, name=name)
    for name, fn in apps.runtime.registry.workflows.items():
        runtime.register_workflow(fn, name=name)
    return runtime


# -- v1 -------------------------------------------------------------------------------------------

v1 = _base()


@v1.workflow(name="chaos_patched")
def patched_v1(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    first = yield ctx.call_activity(apps.add, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    value = yield ctx.call_activity(apps.add, input=first + int(got["v"]))
    return {"path": "unpatched", "value": value}


def named_v1(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    first = yield ctx.call_activity(apps.add, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    return {"path": "v1", "value": first + int(got["v"])}


v1.register_versioned_workflow(named_v1, name="chaos_named", version_name="v1", is_latest=True)


# -- v2: the same app with each kind of change --------------------------------------------------------

v2 = _base()


@v2.activity(name="chaos_triple")
def triple(ctx: WorkflowActivityContext, value: int) -> int:
    apps.mark("S", ctx)
    apps.mark("E", ctx)
    return value * 3


@v2.workflow(name="chaos_patched")
def patched_v2(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    first = yield ctx.call_activity(apps.add, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    if ctx.is_patched(PATCH):
        value = yield ctx.call_activity(triple, input=first + int(got["v"]))
        return {"path": "patched", "value": value}
    value = yield ctx.call_activity(apps.add, input=first + int(got["v"]))
    return {"path": "unpatched", "value": value}


def named_v2(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    first = yield ctx.call_activity(apps.double, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    return {"path": "v2", "value": first + int(got["v"])}


v2.register_versioned_workflow(named_v1, name="chaos_named", version_name="v1", is_latest=False)
v2.register_versioned_workflow(named_v2, name="chaos_named", version_name="v2", is_latest=True)


@v2.workflow(name="chaos_new")
def new(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    tripled = yield ctx.call_activity(triple, input=int(args["x"]))
    value = yield ctx.call_activity(apps.add, input=tripled)
    return {"path": "new", "value": value}


# -- what the checker expects ------------------------------------------------------------------------


def path_taken(kind: str, events: Sequence[ev.HistoryEvent]) -> str:
    """The branch the history of one execution asks for: its recorded version, or its patch."""
    if kind == "named":
        started = next((e for e in events if isinstance(e, ev.ExecutionStarted)), None)
        return (started.workflow_version if started is not None else None) or "v1"
    if kind == "patched":
        recorded = any(PATCH in e.patches for e in events if isinstance(e, ev.WorkflowStarted))
        return "patched" if recorded else "unpatched"
    return kind


def expected(kind: str, args: dict[str, Any], event: int | None, path: str) -> dict[str, Any]:
    """The output of a rolling-deploy workflow that took `path`."""
    x, got = int(args["x"]), int(event or 0)
    if kind == "patched":
        return {"path": path, "value": (x + 1 + got) * 3 if path == "patched" else x + 1 + got + 1}
    if kind == "named":
        return {"path": path, "value": 2 * x + got if path == "v2" else x + 1 + got}
    if kind == "new":
        return {"path": "new", "value": 3 * x + 1}
    raise ValueError(f"not a rolling-deploy kind: {kind!r}")


def expected_for(start: Start, events: Sequence[ev.HistoryEvent]) -> dict[str, Any]:
    """The output `start` must end with, given the history of its run."""
    return expected(start.kind, start.args, start.event, path_taken(start.kind, events))


@dataclass
class RollingFigures:
    """What the rolling deploy did to the instances, from history and the status log."""

    #: Instances per kind and path ("patched/patched", "named/v2", ...).
    paths: dict[str, int] = field(default_factory=dict)
    #: Instances that were STALLED at some point (running, waiting for code that matches), per kind.
    stalled: dict[str, int] = field(default_factory=dict)
    #: Starts that waited for their workflow's code (PENDING on an engine without it), per kind.
    starts_waited: dict[str, int] = field(default_factory=dict)
    #: Instances FAILED for unknown code or non-determinism (must be 0).
    failed_for_code: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"paths": self.paths, "stalled": self.stalled, "starts_waited": self.starts_waited,
                "failed_for_code": self.failed_for_code}


_CODE_ERRORS = ("UnknownWorkflowError", "UnknownActivityError", "NonDeterminismError")


def check_paths(
    starts: dict[str, Start], history: list[tuple[str, str, list[ev.HistoryEvent]]], status_log: list[TopicRecord]
) -> tuple[list[str], RollingFigures]:
    """Violations: any instance FAILED for its code (the base checker also counts it a wrong
    output; here the reason is named); and the figures of the run: the branches taken, how many
    instances stalled and how many starts waited for their code."""
    figures = RollingFigures()
    violations: list[str] = []
    events_of: dict[str, list[ev.HistoryEvent]] = {}
    for iid, _execution, events in history:
        events_of.setdefault(iid, []).extend(events)
    latest: dict[str, InstanceState] = {}
    stalled: set[str] = set()
    waited: set[str] = set()
    for record in status_log:
        if record.key is None or record.value is None:
            continue
        try:
            state = decode_state(record.value)
        except DecodeError:
            continue  # the base checker reports unreadable records
        iid = record.key.decode()
        latest[iid] = state
        if state.waiting_for_code is not None:
            (waited if state.status is RuntimeStatus.PENDING else stalled).add(iid)

    def by_kind(iids: set[str]) -> dict[str, int]:
        return dict(sorted(Counter(starts[i].kind if i in starts else "child" for i in iids).items()))

    figures.stalled, figures.starts_waited = by_kind(stalled), by_kind(waited)
    paths: Counter[str] = Counter()
    for iid, state in latest.items():
        failure = state.failure
        if state.status is RuntimeStatus.FAILED and failure is not None and (
                failure.error_type in _CODE_ERRORS or any(e in failure.message for e in _CODE_ERRORS)):
            figures.failed_for_code += 1
            violations.append(f"{iid}: FAILED for its code: {failure.error_type}: {failure.message[:200]}")
    for iid, start in starts.items():
        final = latest.get(iid)
        if start.kind in KINDS and start.acked and final is not None and final.status is RuntimeStatus.COMPLETED:
            paths[f"{start.kind}/{path_taken(start.kind, events_of.get(iid, []))}"] += 1
    figures.paths = dict(sorted(paths.items()))
    return violations, figures


# -- the deploy ----------------------------------------------------------------------------------------


async def deploy(ctx: FaultContext) -> Fault:
    """Roll v2 in (engine, worker, engine, worker, each once the groups are stable again), then take
    the v1 processes out the same way."""
    sup = ctx.sup
    fault = ctx.fault("rolling-deploy", "fleet")
    old = [p for p in sup.procs if p.role in ("engine", "worker")]
    steps: list[str] = []
    t = time.monotonic()
    for step, role in enumerate(("engine", "worker", "engine", "worker")):
        template = next(p for p in old if p.role == role)
        index = len(sup.role(role))
        proc = Proc(role, index, template.env, sup.log_dir, app=APP_V2)
        sup.procs.append(proc)
        await sup.start([proc])
        ctx.driver.weights.update(MIX_V2)  # clients deployed with v2 start its new workflow
        await sup.wait_groups_stable()
        steps.append(f"+{proc.name}(v2) {time.monotonic() - t:.0f}s")
        await asyncio.sleep(ctx.rng.uniform(0.5, 1.5))
        if step == 1:
            steps.append(await _crash_first_new_engine(ctx, t))
    for proc in sorted(old, key=lambda p: (p.index, p.role)):
        proc.stop()  # SIGTERM: a graceful leave, as a rollout removes a pod
        sup.procs.remove(proc)  # gone on purpose: not a process that exited on its own
        await sup.wait_groups_stable()
        steps.append(f"-{proc.name}(v1) {time.monotonic() - t:.0f}s")
        await asyncio.sleep(ctx.rng.uniform(0.5, 1.5))
    return ctx.done(fault, "; ".join(steps))


async def _crash_first_new_engine(ctx: FaultContext, t: float) -> str:
    """The first v2 engine dies (kill -9) and is restarted, as a new pod that crashes once during a
    rollout is: its partitions go back to the v1 engines meanwhile, so instances whose history
    took v2's patch or version are held by engines without that code, and must stall, not fail."""
    crashed = next(p for p in ctx.sup.role("engine") if p.app == APP_V2)
    crashed.kill()
    await ctx.sup.wait_groups_stable()  # after the session timeout: only v1 engines hold partitions
    await asyncio.sleep(ctx.rng.uniform(1.0, 3.0))
    await ctx.sup.start([crashed])
    await ctx.sup.wait_groups_stable()
    return f"kill -9 {crashed.name}(v2), restarted {time.monotonic() - t:.0f}s"
