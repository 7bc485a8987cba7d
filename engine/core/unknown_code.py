"""Unknown code waits: a workflow or activity name the process holding it does not know.

Two apps on one broker, or one app in the middle of a rolling deploy that adds a workflow or an
activity, have processes that know different names. The process that happens to hold an instance
(its partition's engine) or a work item (the worker that fetched it) may simply be the old one, so
not knowing a name is no reason to fail: the instance or item waits, is looked at again every
`RECHECK` and as soon as another process takes it over, and fails with today's clear
`UnknownWorkflowError`/`UnknownActivityError` only once it has waited `timeout`. Temporal treats
an unregistered workflow type the same way: a failed workflow *task* that is retried, never a
failed workflow (docs.temporal.io, "Workflow Task Failures").

A running instance whose code is unknown (its partition moved to an engine of the old version)
has its inputs recorded in history as they arrive, without running code, and waits the same way;
the first turn with the code replays them and records what the code does in response.

The rule is a pure function of when the wait began, the time passed in and the timeout, so the
engine's decision is deterministic from the stored state, the registry and the turn's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .commands import InstanceMessage

__all__ = ["DEFAULT_TIMEOUT", "RECHECK", "CodeCheck", "next_check", "waiting_reason"]

#: How long unknown code waits before it fails. Ten minutes is Kubernetes' default
#: `progressDeadlineSeconds` (600 s) for a Deployment rollout
#: (kubernetes.io/docs/concepts/workloads/controllers/deployment/#progress-deadline-seconds):
#: the time a rolling deploy may take before the platform itself calls it stuck. A deploy that
#: finishes within it loses nothing; a name that no process ever learns fails in bounded time.
DEFAULT_TIMEOUT: timedelta = timedelta(minutes=10)  # annotated: inside an import cycle mypy (so mypyc) may not infer it

#: How often a waiting instance or work item is looked at again by the process holding it.
RECHECK = timedelta(seconds=5)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeCheck(InstanceMessage):
    """Made by the engine when a running instance's `CodeWait` timer comes due, never written to a
    topic: look again whether this engine knows the instance's workflow, and if so run the code
    over the inputs recorded while it waited."""

    execution_id: str


def next_check(since: datetime, now: datetime, timeout: timedelta) -> datetime | None:
    """When to look again at something that has waited for its code since `since`; None once the
    wait is over (then it fails). A zero timeout never waits (today's immediate failure)."""
    deadline = since + timeout
    if now >= deadline:
        return None
    return min(now + RECHECK, deadline)


def waiting_reason(kind: str, name: str, since: datetime) -> str:
    """Said to people (status property, logs): what waits, for which name, since when."""
    return (f"waiting for code: no process that held it knows {kind} '{name}' "
            f"(waiting since {since.isoformat()})")
