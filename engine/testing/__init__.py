"""Unit-test workflows without Kafka: an in-memory backend with a fake clock.

    env = WorkflowTestEnvironment(runtime)
    iid = env.schedule_new_workflow(order_wf, input={"id": 1})
    env.run()                                  # until nothing more happens at the current time
    env.raise_workflow_event(iid, "approval", data=True)
    env.advance(timedelta(hours=1))            # timers due by then fire
    state = env.wait_for_workflow_completion(iid)   # runs, skipping ahead to timers as needed

It drives the same `Orchestrator` the Kafka engine uses, and writes its turns through the same
`engine.core.effects.apply_outcome`, so what passes here behaves the same there; activities run
inline, in the order they were scheduled.
"""

from __future__ import annotations

import asyncio
import heapq
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..client.memory import MemoryLookUp, MemorySend, run_now
from ..client.service import WorkflowCommands
from ..core import commands as cmd
from ..core import unknown_code
from ..core.apps import AppMessage
from ..core.cache import ExecutionCache
from ..core.codec import encode
from ..core.context import registered_name
from ..core.effects import apply_outcome, due_message
from ..core.events import HistoryEvent
from ..core.orchestrator import Orchestrator, Unapplied
from ..core.payload import DEFAULT_MAX_PAYLOAD_BYTES
from ..core.remote import WorkflowWorkItem
from ..core.retention import RetentionPolicy
from ..core.serializer import to_json
from ..core.state import InstanceState
from ..core.timers import Timer
from ..errors import WorkflowError
from ..sdk.activity import oversized_result, run_activity
from ..sdk.registry import Registry
from ..sdk.state import WorkflowState
from ..sdk.workflow_runtime import WorkflowRuntime

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
        max_payload_bytes: the payload limit the Kafka client and worker apply
            (`HEADRACE_MAX_PAYLOAD_BYTES`), applied here the same way so a test sees what production does.
        unknown_code_timeout: how long a workflow or activity name no registry here knows waits
            for its code before it fails (`HEADRACE_UNKNOWN_CODE_TIMEOUT`, `engine.core.unknown_code`);
            in fake time, so `wait_for_workflow_completion` skips over it.
        app_id: the app this environment plays (`HEADRACE_APP_ID`). Calls that name another app
            (`call_activity(..., app_id=)`, `call_child_workflow(..., app_id=)`) go to the
            environment `add_app` made for it, on the same clock; work for an app not added (yet)
            waits for it, as on Kafka it waits on that app's topics (`engine.core.apps`).
        retention: purge finished instances automatically, as the engine does with
            `HEADRACE_RETENTION_*` (`engine.core.retention`); in fake time. Default: keep them.
    """

    def __init__(
        self,
        runtime: WorkflowRuntime | Registry,
        *,
        start: datetime = DEFAULT_START,
        cache_size: int = 1000,
        ids: Callable[[], str] | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        unknown_code_timeout: timedelta = unknown_code.DEFAULT_TIMEOUT,
        app_id: str | None = None,
        retention: RetentionPolicy | None = None,
        _apps: _Apps | None = None,
    ) -> None:
        self.registry = runtime.registry if isinstance(runtime, WorkflowRuntime) else runtime
        self.app_id = app_id
        self._cache_size = cache_size
        #: The apps side by side in this memory (one clock), this one included.
        self._apps = _apps if _apps is not None else _Apps(FakeClock(start))
        self._apps.envs[app_id] = self
        self._new_id: Callable[[], str] = ids or _random_id
        self.clock = self._apps.clock
        self.orchestrator = Orchestrator(self.registry.get_workflow, ExecutionCache(cache_size),
                                         unknown_code_timeout=unknown_code_timeout, versions=self.registry,
                                         app_id=app_id)
        self.unknown_code_timeout = unknown_code_timeout
        self.retention = retention or RetentionPolicy()
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, list[HistoryEvent]] = {}
        #: Every history event ever written, as (instance ID, execution ID, event): the audit log.
        self.audit: list[tuple[str, str, HistoryEvent]] = []
        self.activity_runs: Counter[str] = Counter()
        # Commands apply before `send` returns (`_command`), so the service's waits never wait.
        self._commands = WorkflowCommands(MemoryLookUp(self.states), MemorySend(self._command), apply_timeout=0.0,
                                          new_instance_id=self._new_id, new_command_id=self._new_id,
                                          max_payload_bytes=max_payload_bytes)
        self.max_payload_bytes = max_payload_bytes
        self.ignored: list[tuple[cmd.InstanceMessage, str]] = []
        self._messages: deque[cmd.InstanceMessage] = deque()
        self._work: deque[cmd.ActivityWorkItem] = deque()
        self._timers: list[Timer] = []
        # Work items waiting for their activity's code: when each was first not known.
        self._unknown_since: dict[tuple[str, str, int], datetime] = {}
        self._sink = _MemorySink(self)

    def add_app(self, app_id: str, runtime: WorkflowRuntime | Registry) -> WorkflowTestEnvironment:
        """Another app beside this one, with its own workflows and activities, on the same clock:
        calls naming `app_id` run there, and `run`, `advance` and the waits drive every app."""
        if app_id in self._apps.envs:
            raise ValueError(f"app {app_id!r} is in this test environment already")
        env = WorkflowTestEnvironment(runtime, cache_size=self._cache_size, ids=self._new_id,
                                      max_payload_bytes=self.max_payload_bytes,
                                      unknown_code_timeout=self.unknown_code_timeout, app_id=app_id,
                                      retention=self.retention, _apps=self._apps)
        for held in self._apps.waiting.pop(app_id, []):  # sent before the app was added
            if isinstance(held, cmd.ActivityWorkItem):
                env._work.append(held)
            else:
                env._messages.append(held)
        return env

    # -- the client API (Dapr's DaprWorkflowClient names) -----------------------------------

    def schedule_new_workflow(
        self, workflow: Callable[..., Any] | str, *, input: Any = None, instance_id: str | None = None,
        start_at: datetime | None = None,
    ) -> str:
        # The same service as the Kafka client and the REST API (`engine.client.WorkflowCommands`).
        return run_now(self._commands.start(registered_name(workflow), input=to_json(input), instance_id=instance_id,
                                            start_at=start_at))

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        run_now(self._commands.raise_event(instance_id, event_name, to_json(data)))

    def pause_workflow(self, instance_id: str) -> None:
        run_now(self._commands.suspend(instance_id))

    def resume_workflow(self, instance_id: str) -> None:
        run_now(self._commands.resume(instance_id))

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        run_now(self._commands.terminate(instance_id, to_json(output), recursive=recursive))

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        run_now(self._commands.purge(instance_id, recursive=recursive))

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
            due = self._apps.next_due()
            if due is None or due > deadline:
                raise WorkflowError(f"workflow '{instance_id}' cannot finish: it waits for something that "
                                    "never comes (an external event, a timer past max_time, or an app "
                                    "not added to the test environment)")
            self.clock.now = max(self.clock.now, due)

    # -- time and progress -------------------------------------------------------------------

    def advance(self, delta: timedelta) -> None:
        """Move the clock and run everything that becomes due, in due order."""
        target = self.clock.now + delta
        self.run()
        while (due := self._apps.next_due()) is not None and due <= target:
            self.clock.now = max(self.clock.now, due)
            self.run()
        self.clock.now = target
        self.run()

    def run(self) -> None:
        """Process messages, activities and due timers until nothing is left at the current time
        (in every app of the environment, `add_app`)."""
        while any([env._step() for env in list(self._apps.envs.values())]):
            pass

    def _step(self) -> bool:
        """One message, activity or due timer of this app; False when it has none."""
        if self._messages:
            self._handle(self._messages.popleft())
        elif self._work:
            self._run_activity(self._work.popleft())
        elif self._timers and self._timers[0].due <= self.clock.now:
            self._fire(heapq.heappop(self._timers))
        else:
            return False
        return True

    def history(self, instance_id: str) -> list[HistoryEvent]:
        return list(self.histories.get(instance_id, ()))

    # -- internals ---------------------------------------------------------------------------

    def _send(self, message: cmd.InstanceMessage) -> None:
        self._messages.append(message)

    def _fire(self, timer: Timer) -> None:
        if isinstance(timer, _HeldItem):
            self._work.append(timer.item)  # looked at again, as a worker would see it handed back
            self._unknown_since[_task_key(timer.item)] = timer.since
            return
        if isinstance(timer, _RetentionDue):
            # Only the finished run that was due: a restart of the ID (or a purge) since cancels it.
            state = self.states.get(timer.instance_id)
            if state is not None and self.retention.due(state) == timer.due:
                self._send(cmd.PurgeWorkflow(instance_id=timer.instance_id,
                                             command_id=self.retention.command_id(state)))
            return
        message = due_message(timer, self.states.get(timer.instance_id))
        if message is not None:
            self._send(message)

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
        apply_outcome(iid, outcome, self._sink, message)

    def _run_activity(self, item: cmd.ActivityWorkItem) -> None:
        since = self._unknown_since.pop(_task_key(item), None)
        if self.registry.get_activity(item.name) is None:
            # As the Kafka worker hands an item on until a worker knows its activity (engine.core.unknown_code).
            since = since or self.clock.now
            recheck = unknown_code.next_check(since, self.clock.now, self.unknown_code_timeout)
            if recheck is not None:
                heapq.heappush(self._timers, _HeldItem(due=recheck, instance_id=item.instance_id, item=item,
                                                       since=since))
                return
        self.activity_runs[item.name] += 1
        result = asyncio.run(run_activity(self.registry, item))
        size = len(encode(result))
        if size > self.max_payload_bytes:
            result = oversized_result(item, size, self.max_payload_bytes)
        # The answer goes to the app whose workflow asked (another app's, for a call across apps).
        self._apps.deliver(item.reply_app_id if item.reply_app_id != self.app_id else None, result, self)


@dataclass(frozen=True, slots=True, kw_only=True)
class _HeldItem(Timer):
    """A work item whose activity no registry here knows, to be looked at again when due."""

    item: cmd.ActivityWorkItem
    since: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class _RetentionDue(Timer):
    """When a finished instance's retention ends (the engine keeps these beside its timers)."""


class _Apps:
    """The apps of one in-memory environment, by app ID, on one clock; and what was sent to an
    app not added yet, held until `add_app` adds it."""

    __slots__ = ("clock", "envs", "waiting")

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.envs: dict[str | None, WorkflowTestEnvironment] = {}
        self.waiting: dict[str, list[cmd.ActivityWorkItem | cmd.InstanceMessage]] = {}

    def deliver(self, app_id: str | None, sent: cmd.ActivityWorkItem | cmd.InstanceMessage,
                sender: WorkflowTestEnvironment) -> None:
        """`sent` to app `app_id` (None: `sender`'s own), or held for it until it is added."""
        env = sender if app_id is None else self.envs.get(app_id)
        if env is None:
            self.waiting.setdefault(app_id or "", []).append(sent)
        elif isinstance(sent, cmd.ActivityWorkItem):
            env._work.append(sent)
        else:
            env._messages.append(sent)

    def next_due(self) -> datetime | None:
        dues = [env._timers[0].due for env in self.envs.values() if env._timers]
        return min(dues) if dues else None


def _task_key(item: cmd.ActivityWorkItem) -> tuple[str, str, int]:
    return item.instance_id, item.execution_id, item.task_id


class _MemorySink:
    """The environment as an `engine.core.effects.EffectSink`: every effect lands in its memory."""

    __slots__ = ("env",)

    def __init__(self, env: WorkflowTestEnvironment) -> None:
        self.env = env

    def close_execution(self, instance_id: str, execution_id: str, events: Sequence[HistoryEvent]) -> None:
        self.env.audit.extend((instance_id, execution_id, e) for e in events)

    def remove_instance(self, instance_id: str) -> None:
        self.env.states.pop(instance_id, None)
        self.env.histories.pop(instance_id, None)

    def append_history(self, state: InstanceState, events: Sequence[HistoryEvent], *, reset: bool) -> None:
        # Unlike the engine's history store, finished histories stay: tests read them (`history`).
        histories = self.env.histories
        iid = state.instance_id
        if reset:
            histories[iid] = []
        histories.setdefault(iid, []).extend(events)
        self.env.audit.extend((iid, state.execution_id, e) for e in events)

    def put_state(self, state: InstanceState) -> None:
        self.env.states[state.instance_id] = state
        due = self.env.retention.due(state) if self.env.retention.enabled else None
        if due is not None:
            heapq.heappush(self.env._timers, _RetentionDue(due=due, instance_id=state.instance_id))

    def send_task(self, item: cmd.ActivityWorkItem) -> None:
        self.env._apps.deliver(item.app_id, item, self.env)

    def send_workflow_item(self, item: WorkflowWorkItem) -> None:
        # The environment runs workflows in process; its orchestrator declares none remote.
        raise NotImplementedError(f"workflow '{item.name}' runs in a connected app (`headrace grpc`)")

    def schedule_timer(self, timer: Timer) -> None:
        heapq.heappush(self.env._timers, timer)

    def send_message(self, message: cmd.InstanceMessage) -> None:
        self.env._messages.append(message)

    def send_to_app(self, sent: AppMessage) -> None:
        self.env._apps.deliver(sent.app_id if sent.app_id != self.env.app_id else None, sent.message, self.env)

    def ignore(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        if message is not None:
            self.env.ignored.append((message, unapplied.reason))

    def refuse(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        self.ignore(message, unapplied)
