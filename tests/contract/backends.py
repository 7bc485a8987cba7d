"""One small driver interface over the two backends the contract suite holds to the same results.

`MemoryBackend` drives `engine.testing.WorkflowTestEnvironment` (a fake clock: waiting skips ahead to
the next timer); `KafkaBackend` drives the real engine and worker (`RuntimeHost`) on a real broker
through `DaprWorkflowClient` (real time: waits poll the status view against a deadline). Both
register the same `WorkflowRuntime`, and both replay every turn from history (cache size 0), so
workflow code that changes between turns is caught on both, as it is after a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from engine import DaprWorkflowClient, WorkflowRuntime, WorkflowState
from engine.settings import Settings
from engine.testing import WorkflowTestEnvironment
from ops.audit import read_history

#: How long any wait may take, in seconds (real time on Kafka, workflow time in memory).
WAIT = 30.0

Condition = Callable[[WorkflowState | None], bool]


class Backend(Protocol):
    name: str

    def schedule(self, workflow: Callable[..., Any] | str, *, input: Any = None, instance_id: str | None = None,
                 start_after: timedelta | None = None) -> str:
        """Start a workflow (`start_after`: at the backend's clock's now plus that)."""

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None: ...
    def suspend(self, instance_id: str) -> None: ...
    def resume(self, instance_id: str) -> None: ...
    def terminate(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None: ...
    def purge(self, instance_id: str, *, recursive: bool = True) -> None: ...
    def state(self, instance_id: str) -> WorkflowState | None: ...

    def wait_done(self, instance_id: str, timeout: float = WAIT) -> WorkflowState:
        """The instance's state once it finished (completed, failed or terminated)."""

    def wait_until(self, instance_id: str, condition: Condition, what: str,
                   timeout: float = WAIT) -> WorkflowState | None:
        """The instance's state once `condition` holds for it; fails naming `what` otherwise."""

    def executions(self, instance_id: str) -> list[list[str]]:
        """The type names of the instance's history events, one list per execution, oldest first."""


class MemoryBackend:
    """The in-memory backend: every call runs everything that is due at the fake clock's time."""

    name = "memory"

    def __init__(self, runtime: WorkflowRuntime) -> None:
        # As the Kafka backend (conftest.py): unknown names fail at once.
        self.env = WorkflowTestEnvironment(runtime, cache_size=0, unknown_code_timeout=timedelta(0))

    def schedule(self, workflow: Callable[..., Any] | str, *, input: Any = None, instance_id: str | None = None,
                 start_after: timedelta | None = None) -> str:
        start_at = None if start_after is None else self.env.clock.now + start_after
        iid = self.env.schedule_new_workflow(workflow, input=input, instance_id=instance_id, start_at=start_at)
        self.env.run()
        return iid

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        self.env.raise_workflow_event(instance_id, event_name, data=data)
        self.env.run()

    def suspend(self, instance_id: str) -> None:
        self.env.pause_workflow(instance_id)
        self.env.run()

    def resume(self, instance_id: str) -> None:
        self.env.resume_workflow(instance_id)
        self.env.run()

    def terminate(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self.env.terminate_workflow(instance_id, output=output, recursive=recursive)
        self.env.run()

    def purge(self, instance_id: str, *, recursive: bool = True) -> None:
        self.env.purge_workflow(instance_id, recursive=recursive)
        self.env.run()

    def state(self, instance_id: str) -> WorkflowState | None:
        return self.env.get_workflow_state(instance_id)

    def wait_done(self, instance_id: str, timeout: float = WAIT) -> WorkflowState:
        return self.env.wait_for_workflow_completion(instance_id, max_time=timedelta(seconds=timeout))

    def wait_until(self, instance_id: str, condition: Condition, what: str,
                   timeout: float = WAIT) -> WorkflowState | None:
        # Nothing happens in memory between calls: what does not hold now never will at this time.
        self.env.run()
        state = self.state(instance_id)
        assert condition(state), f"{instance_id}: {what} (state: {state})"
        return state

    def executions(self, instance_id: str) -> list[list[str]]:
        return _by_execution((execution, [type(event).__name__])
                             for iid, execution, event in self.env.audit if iid == instance_id)


class KafkaBackend:
    """The engine and worker on a real broker, steered through Dapr's client."""

    name = "kafka"

    def __init__(self, client: DaprWorkflowClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def schedule(self, workflow: Callable[..., Any] | str, *, input: Any = None, instance_id: str | None = None,
                 start_after: timedelta | None = None) -> str:
        start_at = None if start_after is None else datetime.now(UTC) + start_after
        return self.client.schedule_new_workflow(workflow, input=input, instance_id=instance_id, start_at=start_at)

    def raise_event(self, instance_id: str, event_name: str, data: Any = None) -> None:
        self.client.raise_workflow_event(instance_id, event_name, data=data)

    def suspend(self, instance_id: str) -> None:
        self.client.pause_workflow(instance_id)

    def resume(self, instance_id: str) -> None:
        self.client.resume_workflow(instance_id)

    def terminate(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self.client.terminate_workflow(instance_id, output=output, recursive=recursive)

    def purge(self, instance_id: str, *, recursive: bool = True) -> None:
        self.client.purge_workflow(instance_id, recursive=recursive)

    def state(self, instance_id: str) -> WorkflowState | None:
        return self.client.get_workflow_state(instance_id)

    def wait_done(self, instance_id: str, timeout: float = WAIT) -> WorkflowState:
        state = self.client.wait_for_workflow_completion(instance_id, timeout_in_seconds=int(timeout))
        assert state is not None, f"{instance_id} is gone"
        return state

    def wait_until(self, instance_id: str, condition: Condition, what: str,
                   timeout: float = WAIT) -> WorkflowState | None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.state(instance_id)
            if condition(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"{instance_id}: {what} not within {timeout}s (state: {state})")
            time.sleep(0.02)

    def executions(self, instance_id: str) -> list[list[str]]:
        # The history topic is written in the transaction that writes the status, so everything up
        # to the state the client saw is there.
        records = asyncio.run(read_history(self.settings))
        return _by_execution((execution, [type(e).__name__ for e in events])
                             for iid, execution, events in records if iid == instance_id)


def _by_execution(parts: Iterable[tuple[str, list[str]]]) -> list[list[str]]:
    executions: dict[str, list[str]] = {}
    for execution, names in parts:
        executions.setdefault(execution, []).extend(names)
    return list(executions.values())
