"""Unit-test workflows without Kafka: an in-memory backend with a fake clock.

    env = WorkflowTestEnvironment(runtime)
    iid = env.schedule_new_workflow(order_wf, input={"id": 1})
    env.run()                                  # until nothing more happens at the current time
    env.raise_workflow_event(iid, "approval", data=True)
    env.advance(timedelta(hours=1))            # timers due by then fire
    state = env.wait_for_workflow_completion(iid)   # runs, skipping ahead to timers as needed

It drives the same `Orchestrator` the Kafka engine uses, so what passes here behaves the same there;
activities run inline, in the order they were scheduled.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import uuid
from collections import Counter, deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from ..core import commands as cmd
from ..core.cache import ExecutionCache
from ..core.context import registered_name
from ..core.events import HistoryEvent
from ..core.ids import check_id, check_new_instance_id
from ..core.orchestrator import Orchestrator, TurnOutcome
from ..core.serializer import to_json
from ..core.state import InstanceState
from ..errors import InstanceExistsError, InstanceNotFoundError, InstanceNotTerminalError, WorkflowError
from ..sdk.activity import run_activity
from ..sdk.registry import Registry
from ..sdk.runtime import WorkflowRuntime
from ..sdk.state import WorkflowState

__all__ = ["FakeClock", "WorkflowTestEnvironment"]

DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def _random_id() -> str:
    return uuid.uuid4().hex


class FakeClock:
    def __init__(self, start: datetime = DEFAULT_START) -> None:
        self.now = start

    def advance(self, delta: timedelta) -> None:
        if delta < timedelta(0):
            raise ValueError("time only moves forward")
        self.now += delta


class WorkflowTestEnvironment:
    """An in-memory engine for tests (see the module docstring).

    Args:
        runtime: the `WorkflowRuntime` (or bare `Registry`) with the workflows and activities.
        cache_size: live executions kept; 0 replays every turn from history (a good stress test).
        ids: makes the IDs the client would make at random (instance and command IDs, and so
            execution IDs); pass a counter to get the same histories on every run.
    """

    def __init__(
        self,
        runtime: WorkflowRuntime | Registry,
        *,
        start: datetime = DEFAULT_START,
        cache_size: int = 1000,
        ids: Callable[[], str] | None = None,
    ) -> None:
        self.registry = runtime.registry if isinstance(runtime, WorkflowRuntime) else runtime
        self._new_id: Callable[[], str] = ids or _random_id
        self.clock = FakeClock(start)
        self.orchestrator = Orchestrator(self.registry.get_workflow, ExecutionCache(cache_size))
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, list[HistoryEvent]] = {}
        #: Every history event ever written, as (instance ID, execution ID, event): the audit log.
        self.audit: list[tuple[str, str, HistoryEvent]] = []
        self.activity_runs: Counter[str] = Counter()
        self.ignored: list[tuple[cmd.InstanceMessage, str]] = []
        self._messages: deque[cmd.InstanceMessage] = deque()
        self._work: deque[cmd.ActivityWorkItem] = deque()
        self._timers: list[tuple[datetime, int, cmd.InstanceMessage]] = []
        self._order = itertools.count()

    # -- the client API (Dapr's DaprWorkflowClient names) -----------------------------------

    def schedule_new_workflow(
        self, workflow: Callable[..., Any] | str, *, input: Any = None, instance_id: str | None = None,
        start_at: datetime | None = None,
    ) -> str:
        # The same rules as the Kafka client: daprd's for a new ID, the engine's for the rest.
        iid = check_new_instance_id(instance_id) if instance_id else self._new_id()
        state = self.states.get(iid)
        if state is not None and not state.is_terminal:
            raise InstanceExistsError(iid)
        self._command(cmd.StartWorkflow(
            instance_id=iid, command_id=self._new_id(), name=registered_name(workflow), input=to_json(input),
            scheduled_start=start_at,
        ))
        return iid

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self._require(instance_id)
        self._command(cmd.RaiseEvent(instance_id=instance_id, command_id=self._new_id(), name=event_name,
                                  input=to_json(data)))

    def pause_workflow(self, instance_id: str) -> None:
        self._require(instance_id)
        self._command(cmd.SuspendWorkflow(instance_id=instance_id, command_id=self._new_id()))

    def resume_workflow(self, instance_id: str) -> None:
        self._require(instance_id)
        self._command(cmd.ResumeWorkflow(instance_id=instance_id, command_id=self._new_id()))

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self._require(instance_id)
        self._command(cmd.TerminateWorkflow(instance_id=instance_id, command_id=self._new_id(),
                                         output=to_json(output), recursive=recursive))

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        state = self._require(instance_id)
        if not state.is_terminal:
            raise InstanceNotTerminalError(instance_id, state.status.value)
        self._command(cmd.PurgeWorkflow(instance_id=instance_id, command_id=self._new_id(), recursive=recursive))

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        state = self.states.get(instance_id)
        return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)

    def wait_for_workflow_completion(self, instance_id: str, *, max_time: timedelta = timedelta(days=3650)
                                     ) -> WorkflowState:
        """Run, skipping ahead to each next timer, until the instance finishes."""
        deadline = self.clock.now + max_time
        while True:
            self.run()
            state = self.states.get(instance_id)
            if state is not None and state.is_terminal:
                return WorkflowState.from_instance(state)
            if not self._timers or self._timers[0][0] > deadline:
                raise WorkflowError(f"workflow '{instance_id}' cannot finish: it waits for something that "
                                    "never comes (an external event, or a timer past max_time)")
            self.clock.now = max(self.clock.now, self._timers[0][0])

    # -- time and progress -------------------------------------------------------------------

    def advance(self, delta: timedelta) -> None:
        """Move the clock and run everything that becomes due, in due order."""
        target = self.clock.now + delta
        self.run()
        while self._timers and self._timers[0][0] <= target:
            self.clock.now = max(self.clock.now, self._timers[0][0])
            self.run()
        self.clock.now = target
        self.run()

    def run(self) -> None:
        """Process messages, activities and due timers until nothing is left at the current time."""
        while True:
            if self._messages:
                self._handle(self._messages.popleft())
            elif self._work:
                self._run_activity(self._work.popleft())
            elif self._timers and self._timers[0][0] <= self.clock.now:
                self._send(heapq.heappop(self._timers)[2])
            else:
                return

    def history(self, instance_id: str) -> list[HistoryEvent]:
        return list(self.histories.get(instance_id, ()))

    # -- internals ---------------------------------------------------------------------------

    def _require(self, instance_id: str) -> InstanceState:
        check_id(instance_id)
        state = self.states.get(instance_id)
        if state is None:
            raise InstanceNotFoundError(instance_id)
        return state

    def _send(self, message: cmd.InstanceMessage) -> None:
        self._messages.append(message)

    def _command(self, message: cmd.Command) -> None:
        # A client call takes effect at once (as an accepted API request would), but activities
        # and timers wait for `run`, so a test decides what happens in between.
        self._send(message)
        while self._messages:
            self._handle(self._messages.popleft())

    def _handle(self, message: cmd.InstanceMessage) -> None:
        iid = message.instance_id
        outcome = self.orchestrator.handle(self.states.get(iid), message, self.clock.now,
                                           lambda: self.histories.get(iid, []))
        self._flush(iid, message, outcome)

    def _flush(self, iid: str, message: cmd.InstanceMessage, outcome: TurnOutcome) -> None:
        if outcome.ignored is not None:
            self.ignored.append((message, outcome.ignored))
        if outcome.purged:
            self.states.pop(iid, None)
            self.histories.pop(iid, None)
        for execution_id, closed in outcome.closed:
            self.audit.extend((iid, execution_id, e) for e in closed)
        if outcome.state is not None and outcome.events:
            if outcome.history_reset:
                self.histories[iid] = []
            self.histories.setdefault(iid, []).extend(outcome.events)
            self.audit.extend((iid, outcome.state.execution_id, e) for e in outcome.events)
        if outcome.state is not None:
            self.states[iid] = outcome.state
        self._work.extend(outcome.work_items)
        for timer in outcome.timers:
            heapq.heappush(self._timers, (timer.firing.fire_at, next(self._order), timer.firing))
        for start in outcome.scheduled_starts:
            assert start.scheduled_start is not None
            heapq.heappush(self._timers, (start.scheduled_start, next(self._order), start))
        self._messages.extend(outcome.messages)

    def _run_activity(self, item: cmd.ActivityWorkItem) -> None:
        self.activity_runs[item.name] += 1
        result = asyncio.run(run_activity(self.registry, item))
        self._send(result)
