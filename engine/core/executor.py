"""The replay executor: history events in, the workflow's next actions out.

A `WorkflowExecution` owns one live run of a workflow generator. It is fed history in two modes:
- `replay(events)`: events already in history; the code re-runs, and every action it takes must
  match the event that recorded it (otherwise `NonDeterminismError` fails the instance);
- `step(new_events)`: events that are new to this run; the actions the code takes in response are
  returned as a `TurnResult`, and the caller records them in history.
Kept alive between turns (sticky execution), a new event costs one step of the generator. After a
restart or an eviction, a fresh execution replays the history and reaches the same state: both
paths return the same actions. No I/O, clock or randomness: time comes from `WorkflowStarted`.
"""

from __future__ import annotations

import dataclasses
import inspect
import uuid
from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..errors import NonDeterminismError, PayloadDecodeError, SerializationError, UnknownWorkflowError
from . import events as ev
from .actions import Action, CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask
from .apps import check_app_id
from .context import DaprWorkflowContext
from .ids import check_id
from .retry import RetryPolicy
from .serializer import call_with_input, from_json, to_json
from .tasks import (
    ActivityTask,
    ChildWorkflowTask,
    CompletableTask,
    ExternalEventTask,
    Task,
    TaskFailedError,
    TimerTask,
)
from .values import FailureDetails, RuntimeStatus

__all__ = ["TurnResult", "WorkflowExecution", "WorkflowResolver", "WorkflowVersions",
           "call_with_optional_input", "execute"]

WorkflowResolver = Callable[[str], Callable[..., Any] | None]


class WorkflowVersions(Protocol):
    """Named versions of workflows (Dapr 1.17 `versioned_workflow`; `engine.sdk.registry.Registry`)."""

    def latest_version(self, name: str) -> str | None:
        """The version new instances of `name` run; None for a workflow without versions."""

    def get_workflow_version(self, name: str, version: str) -> Callable[..., Any] | None:
        """The function of one version; None when this process does not have it."""

_UUID_NAMESPACE = uuid.UUID("6f1e0c4e-9a57-5b39-8d0b-6865616472ac")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Events that a paused instance still takes in at once; all others wait for the resume.
_NEVER_BUFFERED = (
    ev.ExecutionResumed,
    ev.ExecutionTerminated,
    ev.WorkflowStarted,
    ev.WorkflowCompleted,
    ev.TaskScheduled,
    ev.TimerCreated,
    ev.ChildWorkflowCreated,
    ev.ExecutionCompleted,
    ev.ContinuedAsNew,
    ev.ExecutionStarted,
)


# Events that record what the code did. They are matched against the code even after it finished:
# steps it took before finishing are in history, and a step it no longer takes is non-determinism.
_RECORDING = (
    ev.TaskScheduled,
    ev.TimerCreated,
    ev.ChildWorkflowCreated,
    ev.ExecutionCompleted,
    ev.ContinuedAsNew,
)


@dataclass(frozen=True, slots=True, init=False)
class TurnResult:
    """What one turn of the workflow code asks for."""

    actions: tuple[Action, ...]
    custom_status: str | None
    #: Patches the code found applied for the first time in this turn (recorded on its `WorkflowStarted`).
    patches: tuple[str, ...]
    #: Why this code cannot continue the history (a patch mismatch), or None: the turn is not
    #: recorded, and the instance waits (STALLED) for an engine whose code matches.
    stalled: str | None

    # Spelled out so that mypyc compiles it: docs/performance.md, "The compiled build".
    def __init__(self, actions: tuple[Action, ...], custom_status: str | None, patches: tuple[str, ...] = (),
                 stalled: str | None = None) -> None:
        object.__setattr__(self, "actions", actions)
        object.__setattr__(self, "custom_status", custom_status)
        object.__setattr__(self, "patches", patches)
        object.__setattr__(self, "stalled", stalled)

    @property
    def completion(self) -> CompleteWorkflow | None:
        last = self.actions[-1] if self.actions else None
        return last if isinstance(last, CompleteWorkflow) else None


class WorkflowExecution:
    """One live run of a workflow instance's code (see the module docstring)."""

    def __init__(self, instance_id: str, resolve: WorkflowResolver,
                 versions: WorkflowVersions | None = None) -> None:
        self.instance_id = instance_id
        self.current_utc_datetime = _EPOCH
        self.is_replaying = False
        self.custom_status: str | None = None
        #: History the caller handed on, from `ExecutionStarted` (JSON text; `engine.core.propagation`).
        self.propagated_history: str | None = None
        self._resolve = resolve
        self._versions = versions
        #: Patches recorded in history so far, and the answers `is_patched` gave in this run; a
        #: name asked again gets the same answer (durabletask's `_is_patched`).
        self._history_patches: set[str] = set()
        self._patch_answers: dict[str, bool] = {}
        self._new_patches: list[str] = []
        #: The patches history recorded, in order, and those this run's code found applied, in the
        #: order it first asked: the first must be a prefix of the second (`_patch_mismatch`).
        self._recorded_patches: list[str] = []
        self._encountered_patches: list[str] = []
        self._context = DaprWorkflowContext(self)
        self._name = ""
        self._version: str | None = None
        #: The function that made `_generator` when its code is fixed (`_makes_fixed_code`, found
        #: once at the start: `runs_current_code` asks every turn), else None.
        self._sticky_function: Callable[..., Any] | None = None
        self._sequence = 0
        self._uuid_counter = 0
        self._pending_actions: dict[int, Action] = {}
        self._tasks: dict[int, CompletableTask[Any]] = {}
        self._retry_timers: dict[int, ActivityTask[Any]] = {}
        self._event_timeouts: dict[int, ExternalEventTask[Any]] = {}
        self._waiters: dict[str, deque[ExternalEventTask[Any]]] = {}
        # Events nobody waited for yet, by name, each with its arrival number: the events a live
        # run receives are not numbered yet (seq -1), so `seq` cannot order them.
        self._inbox: dict[str, deque[tuple[int, ev.EventRaised]]] = {}
        self._arrivals = 0
        self._suspended = False
        self._suspended_buffer: list[ev.HistoryEvent] = []
        self._generator: Generator[Any, Any, Any] | None = None
        self._current: Task[Any] | None = None
        self._completion: CompleteWorkflow | None = None
        self._completion_recorded = False
        self._save_events = False
        self._diverged = False

    # -- driving ---------------------------------------------------------------------------

    @property
    def is_complete(self) -> bool:
        return self._completion is not None

    def replay(self, events: Iterable[ev.HistoryEvent]) -> None:
        """Re-run the code over events that history already holds."""
        self.is_replaying = True
        try:
            for event in events:
                self._process(event)
        finally:
            self.is_replaying = False

    def step(self, new_events: Iterable[ev.HistoryEvent]) -> TurnResult:
        """Apply events new to this run; return the actions to record (they are then forgotten here)."""
        self.is_replaying = False
        for event in new_events:
            self._process(event)
        actions = [self._pending_actions[i] for i in sorted(self._pending_actions)]
        self._pending_actions.clear()
        if self._completion is not None and not self._completion_recorded:
            actions.append(self._completion)
            self._completion_recorded = True
        patches, self._new_patches = tuple(self._new_patches), []
        self._recorded_patches.extend(patches)
        return TurnResult(tuple(actions), self.custom_status, patches, self._patch_mismatch())

    # -- what the context asks for ---------------------------------------------------------

    def call_activity(
        self, name: str, input: Any, retry_policy: RetryPolicy | None, propagation: str = "",
        app_id: str | None = None,
    ) -> Task[Any]:
        payload = to_json(input)
        task: ActivityTask[Any] = ActivityTask(name, payload, retry_policy, self.current_utc_datetime, propagation,
                                               _app(app_id))
        self._schedule(task)
        return task

    def call_child_workflow(
        self, name: str, input: Any, instance_id: str | None, retry_policy: RetryPolicy | None, propagation: str = "",
        app_id: str | None = None,
    ) -> Task[Any]:
        payload = to_json(input)
        # A child ID becomes a Kafka key: one the engine would refuse fails here, in the code that chose it.
        # The default is Dapr's `{parent}:{action ID as 4 hex digits}`, whose action IDs count from 1
        # where ours count from 0 (kept, so recorded histories still replay): hence the + 1.
        child_id = check_id(instance_id, "child instance ID") if instance_id else \
            f"{self.instance_id}:{self._sequence + 1:04x}"
        task: ChildWorkflowTask[Any] = ChildWorkflowTask(
            name, payload, retry_policy, self.current_utc_datetime, child_id, propagation, _app(app_id)
        )
        self._schedule(task)
        return task

    def create_timer(self, fire_at: datetime | timedelta, origin: str = "timer") -> TimerTask:
        due = self._due(fire_at)
        task = TimerTask(due)
        task_id = self._next_id()
        self._pending_actions[task_id] = CreateTimer(id=task_id, fire_at=due, origin=origin)
        self._tasks[task_id] = task
        return task

    def wait_for_external_event(self, name: str, timeout: datetime | timedelta | None) -> Task[Any]:
        key = name.casefold()
        task: ExternalEventTask[Any] = ExternalEventTask(name)
        inbox = self._inbox.get(key)
        if inbox:
            _deliver(task, inbox.popleft()[1].input)
            return task
        if timeout is not None and not (isinstance(timeout, timedelta) and timeout < timedelta(0)):
            due = self._due(timeout)
            if due <= self.current_utc_datetime:
                task.fail(TimeoutError(f"timed out waiting for external event '{name}'"))
                return task
            timer_id = self._next_id()
            self._pending_actions[timer_id] = CreateTimer(id=timer_id, fire_at=due, origin="external_event")
            self._event_timeouts[timer_id] = task
        self._waiters.setdefault(key, deque()).append(task)
        return task

    def continue_as_new(self, new_input: Any, save_events: bool) -> None:
        if self._completion is not None:
            return
        carryover: tuple[ev.EventRaised, ...] = ()
        self._save_events = save_events
        if save_events:
            pending = sorted(item for inbox in self._inbox.values() for item in inbox)
            carryover = tuple(event for _, event in pending)
        self._complete(RuntimeStatus.CONTINUED_AS_NEW, result=to_json(new_input), carryover=carryover)

    def is_patched(self, name: str) -> bool:
        """Dapr 1.17 patching, as durabletask's `_RuntimeOrchestrationContext.is_patched`
        (github.com/dapr/durabletask-python, durabletask/worker.py): True when history records the
        patch; on replay of a history without it, False (the run took the old branch there); on
        new execution, True, and recorded on this turn's `WorkflowStarted` so replays agree."""
        answer = self._patch_answers.get(name)
        if answer is None:
            answer = name in self._history_patches or not self.is_replaying
            self._patch_answers[name] = answer
            if answer:
                self._encountered_patches.append(name)
            if answer and name not in self._history_patches:
                self._history_patches.add(name)
                self._new_patches.append(name)
        return answer

    def _patch_mismatch(self) -> str | None:
        """Dapr's patch-mismatch rule (github.com/dapr/dapr,
        `pkg/actors/targets/workflow/orchestrator/stalled.go`, `hasPatchMismatch`):
        the patches history recorded must be an exact prefix of those the code now finds applied, in
        order. Otherwise the code no longer asks a patch the history took (or asks them in another
        order): its replay cannot be trusted to follow the history, so the turn must not be recorded
        and the instance stalls until an engine with matching code holds it."""
        recorded, encountered = self._recorded_patches, self._encountered_patches
        if not recorded or encountered[:len(recorded)] == recorded:
            return None
        return (f"patch mismatch: history patches [{', '.join(recorded)}], "
                f"current code's patches [{', '.join(encountered)}]")

    def new_uuid(self) -> str:
        name = f"{self.instance_id}|{self.current_utc_datetime.isoformat()}|{self._uuid_counter}"
        self._uuid_counter += 1
        return str(uuid.uuid5(_UUID_NAMESPACE, name))

    # -- event processing ------------------------------------------------------------------

    def _process(self, event: ev.HistoryEvent) -> None:
        if self._suspended and not isinstance(event, _NEVER_BUFFERED):
            self._suspended_buffer.append(event)
            return
        try:
            self._dispatch(event)
        except NonDeterminismError as exc:
            if self._completion is not None and not (self._completion_recorded or self._diverged):
                # The ending the code reached is not in history: report the mismatch instead.
                self._completion = None
            self._diverged = True
            self._fail(exc)

    def _dispatch(self, event: ev.HistoryEvent) -> None:
        if isinstance(event, ev.WorkflowStarted):
            self.current_utc_datetime = event.timestamp
            self._history_patches.update(event.patches)
            self._recorded_patches.extend(event.patches)
        elif isinstance(event, ev.ExecutionStarted):
            self._start(event)
        elif self._completion is not None and not isinstance(event, _RECORDING):
            self._carry(event)
            return  # the code has finished; later inputs change nothing
        elif isinstance(event, ev.TaskScheduled):
            self._match(event, ScheduleTask, event.name, f"call_activity('{event.name}')")
        elif isinstance(event, ev.TimerCreated):
            self._match(event, CreateTimer, None, "create_timer(…)")
        elif isinstance(event, ev.ChildWorkflowCreated):
            self._match(event, CreateChildWorkflow, event.name, f"call_child_workflow('{event.name}')")
        elif isinstance(event, ev.TaskCompleted):
            self._settle_result(event.task_scheduled_id, event.result)
        elif isinstance(event, ev.TaskFailed):
            self._settle(event.task_scheduled_id, None, event.failure)
        elif isinstance(event, ev.ChildWorkflowCompleted):
            self._settle_result(event.task_scheduled_id, event.result)
        elif isinstance(event, ev.ChildWorkflowFailed):
            self._settle(event.task_scheduled_id, None, event.failure)
        elif isinstance(event, ev.TimerFired):
            self._timer_fired(event.timer_id)
        elif isinstance(event, ev.EventRaised):
            self._event_raised(event)
        elif isinstance(event, ev.ExecutionSuspended):
            self._suspended = True
        elif isinstance(event, ev.ExecutionResumed):
            self._suspended = False
            buffered, self._suspended_buffer = self._suspended_buffer, []
            for held in buffered:
                self._process(held)
        elif isinstance(event, ev.ExecutionTerminated):
            self._complete(RuntimeStatus.TERMINATED, result=event.output)
        elif isinstance(event, (ev.ExecutionCompleted, ev.ContinuedAsNew)):
            self._match_completion(event)
        self._resume()

    def _carry(self, event: ev.HistoryEvent) -> None:
        """An event applied after `continue_as_new(save_events=True)` in the same turn joins the
        carried events, as durabletask's SDK gathers them when the turn ends (`get_actions` in
        github.com/microsoft/durabletask-python); replay applies the same events in the same order."""
        completion = self._completion
        if (isinstance(event, ev.EventRaised) and completion is not None and self._save_events
                and not self._completion_recorded and completion.status is RuntimeStatus.CONTINUED_AS_NEW):
            self._completion = dataclasses.replace(completion, carryover_events=(*completion.carryover_events, event))

    def _start(self, event: ev.ExecutionStarted) -> None:
        self._name = event.name
        self._version = event.workflow_version
        self.propagated_history = event.propagated_history
        fn = self._code()
        self._sticky_function = fn if fn is not None and _makes_fixed_code(fn) else None
        if fn is None:
            self._fail(UnknownWorkflowError(f"no workflow named '{event.name}' is registered with this engine"))
            return
        try:
            result = call_with_optional_input(fn, self._context, event.input)
        except Exception as exc:
            self._fail(exc)
            return
        if inspect.isgenerator(result):
            self._generator = result
            self._advance(next, result)
        else:
            self._finish(result)

    def _code(self) -> Callable[..., Any] | None:
        """The function this run's workflow (and recorded version) resolves to now."""
        if self._version is not None and self._versions is not None:
            return self._versions.get_workflow_version(self._name, self._version)
        return self._resolve(self._name)

    def runs_current_code(self) -> bool:
        """Whether this live run may take the next turn (sticky execution): the registry still
        gives the function that made its generator, and that function is a generator function,
        whose code is fixed. A plain function that returns a generator (a wrapper that picks the
        code, as dapr/python-sdk's `examples/workflow/versioning.py` does) may pick other code at
        each call, which Dapr's SDK sees because it replays every turn; such a run is replayed
        too. A deploy replaces processes, whose caches start empty, so this only matters for code
        swapped inside one process (re-registration, a wrapper reading a global)."""
        fn = self._sticky_function
        return fn is not None and self._code() is fn

    def _match(self, event: ev.HistoryEvent, kind: type[Action], name: str | None, recorded: str) -> None:
        action = self._pending_actions.pop(event.event_id, None)
        ending = self._completion
        if action is None and ending is not None and ending.id == event.event_id:
            action = ending  # the code now ends where history says it took a step
        if action is None:
            raise NonDeterminismError(
                f"workflow '{self._name}' (instance '{self.instance_id}') is not deterministic: history step "
                f"#{event.event_id} is {recorded}, but the code did not take step #{event.event_id}. "
                "Was the workflow changed while this instance was running?"
            )
        actual_name = getattr(action, "name", None)
        if not isinstance(action, kind) or (name is not None and actual_name != name):
            raise NonDeterminismError(
                f"workflow '{self._name}' (instance '{self.instance_id}') is not deterministic: history step "
                f"#{event.event_id} is {recorded}, but the code now takes {_describe(action)} at that step. "
                "Was the workflow changed while this instance was running?"
            )

    def _match_completion(self, event: ev.ExecutionCompleted | ev.ContinuedAsNew) -> None:
        expected = event.status if isinstance(event, ev.ExecutionCompleted) else RuntimeStatus.CONTINUED_AS_NEW
        if self._completion is None or self._completion.status != expected:
            actual = "kept running" if self._completion is None else f"ended {self._completion.status.value}"
            raise NonDeterminismError(
                f"workflow '{self._name}' (instance '{self.instance_id}') is not deterministic: history says "
                f"it ended {expected.value}, but the code {actual}"
            )
        self._completion_recorded = True

    def _settle_result(self, task_id: int, text: str | None) -> None:
        # A result that is not JSON text (a worker in another language that forgot to encode it)
        # fails its task, which the code may catch; it must never stop the engine.
        try:
            value = from_json(text)
        except PayloadDecodeError as exc:
            self._settle(task_id, None, FailureDetails(error_type=type(exc).__name__, message=str(exc),
                                                       non_retriable=True))
            return
        self._settle(task_id, value, None)

    def _settle(self, task_id: int, result: Any, failure: FailureDetails | None) -> None:
        task = self._tasks.pop(task_id, None)
        if task is None:
            return  # a result for a task this run no longer waits for (e.g. delivered twice)
        if failure is None:
            task.complete(result)
            return
        if isinstance(task, ActivityTask) and task.retry_policy is not None and not failure.non_retriable:
            delay = task.retry_policy.next_delay(
                attempt=task.attempt, first_attempt_at=task.first_attempt_at, now=self.current_utc_datetime
            )
            if delay is not None:
                timer_id = self._next_id()
                fire_at = self.current_utc_datetime + delay
                self._pending_actions[timer_id] = CreateTimer(id=timer_id, fire_at=fire_at, origin="retry")
                self._retry_timers[timer_id] = task
                return
        kind = "Child workflow" if isinstance(task, ChildWorkflowTask) else "Activity"
        what = f"'{task.name}' " if isinstance(task, ActivityTask) else ""
        task.fail(TaskFailedError(f"{kind} task {what}#{task_id} failed: {failure.message}", failure))

    def _timer_fired(self, timer_id: int) -> None:
        retried = self._retry_timers.pop(timer_id, None)
        if retried is not None:
            retried.attempt += 1
            self._schedule(retried)
            return
        waiting = self._event_timeouts.pop(timer_id, None)
        if waiting is not None:
            if not waiting.is_complete:
                self._waiters[waiting.name.casefold()].remove(waiting)
                waiting.fail(TimeoutError(f"timed out waiting for external event '{waiting.name}'"))
            return
        timer = self._tasks.pop(timer_id, None)
        if timer is not None:
            timer.complete(None)

    def _event_raised(self, event: ev.EventRaised) -> None:
        key = event.name.casefold()
        waiters = self._waiters.get(key)
        if waiters:
            _deliver(waiters.popleft(), event.input)
        else:
            self._inbox.setdefault(key, deque()).append((self._arrivals, event))
            self._arrivals += 1

    # -- the generator -----------------------------------------------------------------------

    def _resume(self) -> None:
        while self._completion is None and self._current is not None and self._current.is_complete:
            task, gen = self._current, self._generator
            assert gen is not None
            if task.is_failed:
                self._advance(gen.throw, task.get_exception())
            else:
                self._advance(gen.send, task._result)

    def _advance(self, send: Callable[..., Any], *args: Any) -> None:
        self._current = None
        try:
            yielded = send(*args)
        except StopIteration as stop:
            self._finish(stop.value)
            self._close()  # ended: forget it, also when continue_as_new ended the run first
            return
        except Exception as exc:
            self._fail(exc)
            self._close()
            return
        if self._completion is not None:
            self._close()
            return
        if not isinstance(yielded, Task):
            self._fail(TypeError(f"a workflow may only yield tasks, not {type(yielded).__name__}"))
            return
        self._current = yielded

    def _finish(self, value: Any) -> None:
        if self._completion is not None:
            return  # continue_as_new already ended this generation
        try:
            payload = to_json(value)
        except SerializationError as exc:
            self._fail(exc)
            return
        self._complete(RuntimeStatus.COMPLETED, result=payload)

    def _fail(self, exc: BaseException) -> None:
        self._complete(RuntimeStatus.FAILED, failure=FailureDetails.from_exception(exc))

    def _complete(
        self,
        status: RuntimeStatus,
        *,
        result: str | None = None,
        failure: FailureDetails | None = None,
        carryover: tuple[ev.EventRaised, ...] = (),
    ) -> None:
        if self._completion is not None:
            return
        self._completion = CompleteWorkflow(
            id=self._next_id(), status=status, result=result, failure=failure, carryover_events=carryover
        )
        self._close()

    def _close(self) -> None:
        gen = self._generator
        if gen is not None and inspect.getgeneratorstate(gen) == inspect.GEN_RUNNING:
            # Called from inside the workflow code (continue_as_new): a running generator cannot be
            # closed, so `_advance` closes it when the code next yields or returns.
            return
        self._generator, self._current = None, None
        if gen is not None:
            gen.close()

    # -- helpers -------------------------------------------------------------------------------

    def _schedule(self, task: ActivityTask[Any]) -> None:
        task_id = self._next_id()
        action: Action
        if isinstance(task, ChildWorkflowTask):
            action = CreateChildWorkflow(id=task_id, instance_id=task.instance_id, name=task.name, input=task.input,
                                         propagation=task.propagation, app_id=task.app_id)
        else:
            action = ScheduleTask(id=task_id, name=task.name, input=task.input, propagation=task.propagation,
                                  app_id=task.app_id)
        self._pending_actions[task_id] = action
        self._tasks[task_id] = task

    def _next_id(self) -> int:
        task_id = self._sequence
        self._sequence += 1
        return task_id

    def _due(self, when: datetime | timedelta) -> datetime:
        if isinstance(when, timedelta):
            return self.current_utc_datetime + when
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def execute(
    instance_id: str,
    resolve: WorkflowResolver,
    past: Iterable[ev.HistoryEvent],
    new: Iterable[ev.HistoryEvent],
) -> tuple[WorkflowExecution, TurnResult]:
    """Replay from scratch: a fresh execution over `past`, then one step over `new`."""
    execution = WorkflowExecution(instance_id, resolve)
    execution.replay(past)
    return execution, execution.step(new)


def _app(app_id: str | None) -> str | None:
    """The app a call names, checked in the code that names it (an app ID becomes topic names)."""
    return None if app_id is None else check_app_id(app_id, "app_id")


def _deliver(task: CompletableTask[Any], text: str | None) -> None:
    """Complete an event task with its payload, or fail it if the payload is not JSON text."""
    try:
        value = from_json(text)
    except PayloadDecodeError as exc:
        task.fail(exc)
        return
    task.complete(value)


def call_with_optional_input(fn: Callable[..., Any], ctx: Any, payload: str | None) -> Any:
    """Call a workflow or activity the way Dapr does: with its input, as its declared type, when it takes one."""
    return call_with_input(fn, ctx, payload)


def _describe(action: Action) -> str:
    if isinstance(action, ScheduleTask):
        return f"call_activity('{action.name}')"
    if isinstance(action, CreateChildWorkflow):
        return f"call_child_workflow('{action.name}')"
    if isinstance(action, CreateTimer):
        return "create_timer(…)" if action.origin == "timer" else f"a {action.origin} timer"
    return f"completion ({action.status.value})" if isinstance(action, CompleteWorkflow) else type(action).__name__


def _makes_fixed_code(fn: Callable[..., Any]) -> bool:
    """Whether `fn` is a generator function, or a `functools.wraps` decorator of one (which calls
    what it wraps): then a generator it made runs the same code as one it would make now."""
    while not inspect.isgeneratorfunction(fn):
        wrapped = getattr(fn, "__wrapped__", None)
        if wrapped is None:
            return False
        fn = wrapped
    return True
