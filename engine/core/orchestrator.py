"""One message in, one instance's turn out: the engine's per-instance logic, with no I/O.

`Orchestrator.handle` takes an instance's state, one message addressed to it and the time, and
returns a `TurnOutcome`: the new state, the history events to append, and the effects to flush
(activity work items, timers, messages to other instances). Effects are buffered in the outcome and
written by `effects.apply_outcome` into a backend's sink in one go, so a backend (in-memory for
tests, Kafka in production) only moves bytes. The same message handled twice yields no second
effect: stale or repeated results are dropped by checking what the instance still waits for, and
commands by their IDs; an input that changes nothing says why with a typed `Disposition`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import Enum
from types import MappingProxyType
from typing import Any

from ..errors import InvalidAnswerError, NonDeterminismError, UnknownWorkflowError, children_running_message
from . import commands as cmd
from . import events as ev
from .actions import Action, CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask, SendEvent
from .apps import AppMessage, other_app
from .cache import ExecutionCache
from .executor import WorkflowExecution, WorkflowResolver, WorkflowVersions
from .frozen import evolved
from .payload import DEFAULT_MAX_PAYLOAD_BYTES
from .preconditions import early_event_refusal
from .propagation import build_propagated_history
from .remote import WorkflowAnswer, WorkflowWorkItem, check_answer
from .state import RECENT_COMMANDS, InstanceState, RemoteTurn, fold_all
from .timers import CodeWait, DurableTimer, ScheduledStart, Timer
from .unknown_code import DEFAULT_TIMEOUT, RECHECK, CodeCheck, next_check
from .values import FailureDetails, ParentInstance, RuntimeStatus

__all__ = [
    "ClosedExecution",
    "Disposition",
    "HistoryLoader",
    "Orchestrator",
    "StateWrite",
    "TurnOutcome",
    "Unapplied",
    "scheduled_start_command",
]

HistoryLoader = Callable[[], Sequence[ev.HistoryEvent]]

_GENERATION_NS = uuid.UUID("0b6e7f4a-4a39-5c1e-9d55-6865616472ad")


class Disposition(Enum):
    """Why an input changed nothing, for code to branch on (`Unapplied.reason` is for people)."""

    #: Applied already: a repeated command or start, a result or firing that is no longer pending.
    DUPLICATE = "duplicate"
    #: Addressed to an earlier execution of the instance.
    STALE = "stale"
    #: Moot in the instance's state: it has finished or not started yet, is (not) suspended already.
    MOOT = "moot"
    #: No instance with the ID exists.
    NOT_FOUND = "not_found"
    #: Invalid for the instance's state: a start over an active run, a purge of a running instance.
    REFUSED = "refused"


@dataclass(frozen=True, slots=True)
class Unapplied:
    disposition: Disposition
    #: Said to people: in logs, dead letters and the test environment's `ignored`.
    reason: str


class StateWrite(Enum):
    """What the turn does to the instance's stored state."""

    KEEP = "keep"
    #: Write the new state (every turn with events does).
    SAVE = "save"
    #: Remove the instance, its state and its history.
    PURGE = "purge"


@dataclass(frozen=True, slots=True)
class ClosedExecution:
    """An execution that ended in the turn (continue-as-new) and its last events, for the audit log."""

    execution_id: str
    events: list[ev.HistoryEvent]


@dataclass(slots=True, init=False)
class TurnOutcome:
    """What handling one message did; `effects.apply_outcome` writes it. `state` is None when the
    instance is (or stays) absent."""

    state: InstanceState | None
    events: list[ev.HistoryEvent]
    write: StateWrite
    #: Executions that ended in this turn before the one `events` belong to.
    closed: list[ClosedExecution]
    work_items: list[cmd.ActivityWorkItem]
    #: Durable timers created, and a start scheduled for later.
    timers: list[Timer]
    messages: list[cmd.InstanceMessage]
    #: Messages for instances of other apps (`engine.core.apps`), after `messages`.
    app_messages: list[AppMessage]
    #: Turns of remote workflows handed out to connected apps (`engine.core.remote`).
    workflow_items: list[WorkflowWorkItem]
    #: Why the message changed nothing, or could not apply; None when it applied.
    unapplied: Unapplied | None

    # Spelled out so that mypyc compiles it (a dataclass's generated `__init__` stays interpreted,
    # its default factories called one by one): docs/performance.md, "The compiled build".
    def __init__(self, state: InstanceState | None, events: list[ev.HistoryEvent] | None = None,
                 write: StateWrite = StateWrite.KEEP, closed: list[ClosedExecution] | None = None,
                 work_items: list[cmd.ActivityWorkItem] | None = None, timers: list[Timer] | None = None,
                 messages: list[cmd.InstanceMessage] | None = None, app_messages: list[AppMessage] | None = None,
                 workflow_items: list[WorkflowWorkItem] | None = None, unapplied: Unapplied | None = None) -> None:
        self.state = state
        self.events = [] if events is None else events
        self.write = write
        self.closed = [] if closed is None else closed
        self.work_items = [] if work_items is None else work_items
        self.timers = [] if timers is None else timers
        self.messages = [] if messages is None else messages
        self.app_messages = [] if app_messages is None else app_messages
        self.workflow_items = [] if workflow_items is None else workflow_items
        self.unapplied = unapplied

    def send(self, message: cmd.InstanceMessage, app_id: str | None = None) -> None:
        """A message to an instance of this app, or of app `app_id` when that is another one."""
        if app_id is None:
            self.messages.append(message)
        else:
            self.app_messages.append(AppMessage(app_id, message))

    @property
    def changed(self) -> bool:
        return self.write is not StateWrite.KEEP

    @property
    def history_reset(self) -> bool:
        """The history restarts with `events` (a start, or continue-as-new) instead of growing."""
        events = self.events
        return len(events) > 1 and type(events[1]) is ev.ExecutionStarted


def _unchanged(state: InstanceState | None, disposition: Disposition, reason: str) -> TurnOutcome:
    return TurnOutcome(state, unapplied=Unapplied(disposition, reason))


class Orchestrator:
    """Applies messages to instances and runs their code (see the module docstring)."""

    def __init__(self, resolve: WorkflowResolver, cache: ExecutionCache | None = None,
                 unknown_code_timeout: timedelta = DEFAULT_TIMEOUT,
                 versions: WorkflowVersions | None = None,
                 max_early_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES, app_id: str | None = None,
                 remote: Callable[[str], bool] | None = None) -> None:
        self._resolve = resolve
        #: Which workflows run in connected apps (`engine.core.remote`): their turns are handed out.
        self._remote: Callable[[str], bool] = remote if remote is not None else _nothing_remote
        #: The app this engine serves: calls that name another app go there (`engine.core.apps`).
        self.app_id = app_id
        #: Named workflow versions (Dapr 1.17): a new run records the latest; a run whose recorded
        #: version this engine lacks waits for its code (STALLED), as an unknown workflow does.
        self._versions = versions
        self.cache = cache if cache is not None else ExecutionCache()
        #: How long a start of a workflow this engine does not know waits (`engine.core.unknown_code`).
        self.unknown_code_timeout = unknown_code_timeout
        #: Most bytes of event payloads a PENDING instance holds for its start: with its own input
        #: (at most one payload) the status record stays within the topics' record limit.
        self.max_early_bytes = max_early_bytes

    def handle(
        self,
        state: InstanceState | None,
        message: cmd.InstanceMessage,
        now: datetime,
        load_history: HistoryLoader,
    ) -> TurnOutcome:
        iid = message.instance_id
        if isinstance(message, cmd.StartWorkflow):
            return self._start(state, message, now)
        if state is None:
            return _unchanged(None, Disposition.NOT_FOUND, f"no workflow instance '{iid}' exists")
        if isinstance(message, cmd.PurgeWorkflow):
            return self._purge(state, message, load_history)
        if isinstance(message, cmd.ChildResult) and state.is_terminal:
            return self._late_child_result(state, message)
        if state.is_terminal:
            return _unchanged(state, Disposition.MOOT, f"instance '{iid}' is {state.status.value}")
        if isinstance(message, cmd.Command) and message.command_id in state.recent_commands:
            return _unchanged(state, Disposition.DUPLICATE, f"command {message.command_id} was applied already")
        if state.status is RuntimeStatus.PENDING:
            return self._before_start(state, message, now)
        if isinstance(message, CodeCheck):
            return self._code_check(state, message, now, load_history)
        if isinstance(message, WorkflowAnswer):
            return self._remote_answer(state, message, now, load_history)
        if isinstance(message, cmd.RaiseEvent):
            return self._run(state, [ev.EventRaised(timestamp=now, name=message.name, input=message.input,
                                              command_id=message.command_id)], now,
                              load_history)
        if isinstance(message, cmd.SuspendWorkflow):
            if state.status is RuntimeStatus.SUSPENDED:
                return _unchanged(state, Disposition.MOOT, "already suspended")
            return self._run(state, [ev.ExecutionSuspended(timestamp=now, reason=message.reason,
                                                                   command_id=message.command_id)], now, load_history)
        if isinstance(message, cmd.ResumeWorkflow):
            if state.status is not RuntimeStatus.SUSPENDED:
                return _unchanged(state, Disposition.MOOT, "not suspended")
            return self._run(state, [ev.ExecutionResumed(timestamp=now, reason=message.reason,
                                                                 command_id=message.command_id)], now, load_history)
        if isinstance(message, cmd.TerminateWorkflow):
            children = list(state.pending_children.values()) if message.recursive else []
            terminated = ev.ExecutionTerminated(timestamp=now, output=message.output, recurse=message.recursive,
                                                command_id=message.command_id)
            outcome = self._run(state, [terminated], now, load_history)
            for child in children:
                outcome.send(cmd.TerminateWorkflow(instance_id=child, command_id=f"{message.command_id}:{child}",
                                                   output=message.output), self._child_app(state, child))
            return outcome
        unapplied = self._stale(state, message)
        if unapplied is not None:
            return TurnOutcome(state, unapplied=unapplied)
        return self._run(state, [self._result_event(message, now)], now, load_history)

    def together(self, state: InstanceState | None, results: Sequence[cmd.TaskResult]) -> list[cmd.TaskResult]:
        """Of `results` (in arrival order), those `handle_results` takes in one turn: each a pending
        task's first result (an activity's or a child workflow's), for a RUNNING instance whose
        code runs here (not a remote app's, not one waiting for its code). The others are for
        `handle`, one at a time (it drops them, or they meet a state that is not running)."""
        if state is None or state.status is not RuntimeStatus.RUNNING or state.waiting_for_code is not None \
                or self._remote(state.name) or not self._has_code(state):
            return []
        taken: dict[int, cmd.TaskResult] = {}
        for result in results:
            if result.task_id not in taken and self._stale(state, result) is None:
                taken[result.task_id] = result
        return list(taken.values())

    def handle_results(self, state: InstanceState, results: Sequence[cmd.TaskResult], now: datetime,
                       load_history: HistoryLoader) -> TurnOutcome:
        """Results of several of a running instance's tasks that arrived together, applied in
        one turn: the events `handle` would record for each, with one run of the code over all of
        them, as daprd hands a workflow every new event in one work item (a fan-in's results cost
        one turn instead of one each). `results` must be what `together` took."""
        return self._run(state, [self._result_event(result, now) for result in results], now, load_history)

    def fail(self, state: InstanceState | None, failure: FailureDetails, now: datetime,
             start: cmd.StartWorkflow | None = None) -> TurnOutcome:
        """End an instance FAILED without running its code, for `failure` (an engine-side reason).

        Used when the engine cannot apply an input to the instance at all (the turn it produced
        cannot be written, or applying it raised): the instance fails alone, with the reason, and
        its parent hears of it as of any failure. When the input was `start`, the instance is
        started and failed in one turn, so whoever started it sees why.
        """
        if start is not None and (state is None or not state.is_running):
            state = InstanceState(instance_id=start.instance_id)
            opening: list[ev.HistoryEvent] = [
                ev.WorkflowStarted(timestamp=now, seq=0),
                ev.ExecutionStarted(timestamp=now, seq=1, name=start.name, instance_id=start.instance_id,
                                    execution_id=start.command_id, input=start.input, parent=start.parent,
                                    scheduled_start=start.scheduled_start),
            ]
        elif state is None or not state.is_running:
            iid = start.instance_id if state is None and start is not None else getattr(state, "instance_id", "")
            return _unchanged(state, Disposition.MOOT, f"instance '{iid}' is not running")
        else:
            opening = [ev.WorkflowStarted(timestamp=now, seq=state.history_length)]
        iid = state.instance_id
        self.cache.discard(iid)
        first = state.history_length if start is None or state.is_running else 0
        seq = first + len(opening)
        events: list[ev.HistoryEvent] = [
            *opening,
            ev.WorkflowCompleted(timestamp=now, seq=seq, custom_status=state.custom_status),
            ev.ExecutionCompleted(timestamp=now, seq=seq + 1, status=RuntimeStatus.FAILED, failure=failure),
        ]
        new_state = fold_all(state, events)
        outcome = TurnOutcome(new_state, events=events, write=StateWrite.SAVE)
        if new_state.parent is not None:
            outcome.send(self._child_result(new_state), _parent_app(new_state))
        return outcome

    # -- starting and purging ----------------------------------------------------------------

    def _start(self, state: InstanceState | None, message: cmd.StartWorkflow, now: datetime) -> TurnOutcome:
        iid = message.instance_id
        due = message.scheduled_start is None or message.scheduled_start <= now
        if state is not None and state.run_id == message.command_id:
            if not (due and state.status is RuntimeStatus.PENDING):
                return _unchanged(state, Disposition.DUPLICATE, "this start was applied already")
        elif state is not None and not (state.is_terminal or state.status is RuntimeStatus.PENDING):
            return self._refuse(state, message, f"an active workflow with ID '{iid}' already exists")
        elif state is not None and state.is_terminal and state.unfinished_children:
            # daprd reuses an ID only once the old run's children have finished: a child still
            # running would report to the new run.
            child = state.unfinished_children[min(state.unfinished_children)]
            return self._refuse(state, message, children_running_message(iid, child))
        if not due:
            # Dapr's start_at: the instance exists (PENDING) from now, and starts when due.
            pending = InstanceState(
                instance_id=iid, name=message.name, input=message.input, run_id=message.command_id,
                created_at=now, last_updated_at=now, parent=message.parent, scheduled_start=message.scheduled_start,
                propagated_history=message.propagated_history,
            )
            assert message.scheduled_start is not None
            return TurnOutcome(pending, write=StateWrite.SAVE,
                               timers=[ScheduledStart(due=message.scheduled_start, instance_id=iid)])
        waiting = self._wait_for_code(state, message, now)
        if waiting is not None:
            return waiting
        self.cache.discard(iid)
        fresh = InstanceState(instance_id=iid)
        early = _early_inputs(state, now) if state is not None and state.run_id == message.command_id else []
        started = ev.ExecutionStarted(
            timestamp=now,
            name=message.name,
            instance_id=iid,
            execution_id=message.command_id,
            input=message.input,
            parent=message.parent,
            scheduled_start=message.scheduled_start,
            propagated_history=message.propagated_history,
            workflow_version=self._latest(message.name),
        )
        return self._turn(fresh, [started, *early], now, _no_history, new_history=True)

    def _wait_for_code(self, state: InstanceState | None, message: cmd.StartWorkflow,
                       now: datetime) -> TurnOutcome | None:
        """A due start of a workflow this engine does not know stays PENDING, marked as waiting for
        code, and is looked at again later (a `ScheduledStart`, rebuilt at once by a new owner of the
        partition), until an engine that knows it holds it or `unknown_code_timeout` has passed;
        None when the start may run (known code, or the wait is over: it then fails with
        `UnknownWorkflowError`). Only the state, the registry and `now` decide."""
        if self._resolve(message.name) is not None or self._remote(message.name):
            return None
        iid = message.instance_id
        same_run = state is not None and state.run_id == message.command_id
        since = state.waiting_for_code if same_run and state is not None else None
        recheck = next_check(since or now, now, self.unknown_code_timeout)
        if recheck is None:
            return None
        timer = ScheduledStart(due=recheck, instance_id=iid)
        if since is not None and state is not None:
            return TurnOutcome(state, timers=[timer])  # still waiting: nothing new to write
        created = state.created_at if same_run and state is not None else now
        pending = InstanceState(
            instance_id=iid, name=message.name, input=message.input, run_id=message.command_id,
            created_at=created, last_updated_at=now, parent=message.parent,
            scheduled_start=message.scheduled_start, waiting_for_code=now,
            propagated_history=message.propagated_history,
        )
        if same_run and state is not None:  # what was sent to it while scheduled waits with it
            pending = replace(pending, early_events=state.early_events, starts_suspended=state.starts_suspended,
                              recent_commands=state.recent_commands)
        return TurnOutcome(pending, write=StateWrite.SAVE, timers=[timer])

    def _before_start(self, state: InstanceState, message: cmd.InstanceMessage, now: datetime) -> TurnOutcome:
        """Commands to an instance that has not started yet (scheduled for later, or waiting for
        its code) are kept for its start, or end it before it starts: nothing sent to it is lost,
        as durabletask's backends keep such messages in the instance's inbox."""
        if isinstance(message, cmd.RaiseEvent):
            refused = early_event_refusal(state, message.name, message.input, message.command_id,
                                          self.max_early_bytes)
            if refused is not None:
                return _unchanged(state, Disposition.REFUSED, f"instance '{state.instance_id}' has not started: "
                                  f"{refused}")
            early = ev.EventRaised(timestamp=now, name=message.name, input=message.input,
                                   command_id=message.command_id)
            return _kept(state, message, now, early_events=(*state.early_events, early))
        if isinstance(message, cmd.SuspendWorkflow):
            return _kept(state, message, now, starts_suspended=True)
        if isinstance(message, cmd.ResumeWorkflow):
            return _kept(state, message, now, starts_suspended=False)
        if isinstance(message, cmd.TerminateWorkflow):
            return self._terminate_before_start(state, message, now)
        return _unchanged(state, Disposition.MOOT, f"instance '{state.instance_id}' is {state.status.value}")

    def _terminate_before_start(self, state: InstanceState, message: cmd.TerminateWorkflow,
                                now: datetime) -> TurnOutcome:
        """The run starts and ends TERMINATED in one turn without its code (which this engine may
        not even have): its history says what happened, as a terminated running instance's does."""
        self.cache.discard(state.instance_id)
        events: list[ev.HistoryEvent] = [
            ev.WorkflowStarted(timestamp=now, seq=0),
            ev.ExecutionStarted(timestamp=now, seq=1, name=state.name, instance_id=state.instance_id,
                                execution_id=state.run_id, input=state.input, parent=state.parent,
                                scheduled_start=state.scheduled_start),
        ]
        first = len(events)  # not inside the generator: `extend` grows `events` as it consumes it
        events.extend(_with_seq(e, first + i) for i, e in enumerate(state.early_events))
        events.append(ev.ExecutionTerminated(timestamp=now, seq=len(events), output=message.output,
                                             recurse=message.recursive, command_id=message.command_id))
        events.append(ev.WorkflowCompleted(timestamp=now, seq=len(events)))
        events.append(ev.ExecutionCompleted(timestamp=now, seq=len(events), status=RuntimeStatus.TERMINATED,
                                            result=message.output))
        ended = fold_all(InstanceState(instance_id=state.instance_id), events)
        outcome = TurnOutcome(replace(ended, created_at=state.created_at or now), events=events,
                              write=StateWrite.SAVE)
        if ended.parent is not None:
            outcome.send(self._child_result(ended), _parent_app(ended))
        return outcome

    def _refuse(self, state: InstanceState, message: cmd.StartWorkflow, why: str) -> TurnOutcome:
        """Refuse a start, and record its command ID in the instance's recent commands, so the
        status view shows whoever sent it that it was refused (its own run was not started)."""
        recorded = message.command_id in state.recent_commands
        if not recorded:
            recent = (*state.recent_commands, message.command_id)[-RECENT_COMMANDS:]
            state = replace(state, recent_commands=recent)
        outcome = TurnOutcome(state, write=StateWrite.KEEP if recorded else StateWrite.SAVE,
                              unapplied=Unapplied(Disposition.REFUSED, why))
        if message.parent is not None:
            outcome.send(self._child_refused(message, why), message.parent.app_id)
        return outcome

    def _child_refused(self, message: cmd.StartWorkflow, why: str) -> cmd.ChildResult:
        parent = message.parent
        assert parent is not None
        return cmd.ChildResult(
            instance_id=parent.instance_id,
            execution_id=parent.execution_id,
            task_id=parent.task_scheduled_id,
            child_instance_id=message.instance_id,
            failure=FailureDetails(error_type="WorkflowAlreadyExistsError", message=why),
        )

    def _purge(self, state: InstanceState, message: cmd.PurgeWorkflow, load_history: HistoryLoader) -> TurnOutcome:
        if not state.is_terminal:
            return _unchanged(
                state,
                Disposition.REFUSED,
                f"instance '{state.instance_id}' is {state.status.value}; only COMPLETED, FAILED or "
                "TERMINATED instances can be purged",
            )
        self.cache.discard(state.instance_id)
        outcome = TurnOutcome(None, write=StateWrite.PURGE)
        if message.recursive:
            for child in dict.fromkeys(state.children):
                outcome.send(cmd.PurgeWorkflow(instance_id=child, command_id=f"{message.command_id}:{child}"),
                             self._child_app(state, child))
        return outcome

    # -- results ---------------------------------------------------------------------------------

    @staticmethod
    def _late_child_result(state: InstanceState, message: cmd.ChildResult) -> TurnOutcome:
        """A child that outlived its finished parent has ended: the parent's ID is free again."""
        if message.execution_id != state.execution_id or message.task_id not in state.unfinished_children:
            return _unchanged(state, Disposition.MOOT, f"instance '{state.instance_id}' is {state.status.value}")
        unfinished = {k: v for k, v in state.unfinished_children.items() if k != message.task_id}
        return TurnOutcome(replace(state, unfinished_children=MappingProxyType(unfinished)), write=StateWrite.SAVE)

    @staticmethod
    def _stale(state: InstanceState, message: cmd.InstanceMessage) -> Unapplied | None:
        execution_id = getattr(message, "execution_id", None)
        if execution_id != state.execution_id:
            return Unapplied(Disposition.STALE, "addressed to an earlier execution of the instance")
        if isinstance(message, cmd.ActivityResult) and message.task_id not in state.pending_tasks:
            return Unapplied(Disposition.DUPLICATE,
                             f"activity task #{message.task_id} is not pending (a repeated or late result)")
        if isinstance(message, cmd.TimerFiring) and message.timer_id not in state.pending_timers:
            return Unapplied(Disposition.DUPLICATE, f"timer #{message.timer_id} is not pending (fired already)")
        if isinstance(message, cmd.ChildResult) and message.task_id not in state.pending_children:
            return Unapplied(Disposition.DUPLICATE,
                             f"child workflow task #{message.task_id} is not pending (a repeated or late result)")
        return None

    @staticmethod
    def _result_event(message: cmd.InstanceMessage, now: datetime) -> ev.HistoryEvent:
        if isinstance(message, cmd.ActivityResult):
            if message.failure is not None:
                return ev.TaskFailed(timestamp=now, task_scheduled_id=message.task_id, failure=message.failure)
            return ev.TaskCompleted(timestamp=now, task_scheduled_id=message.task_id, result=message.result)
        if isinstance(message, cmd.TimerFiring):
            return ev.TimerFired(timestamp=now, timer_id=message.timer_id, fire_at=message.fire_at)
        if isinstance(message, cmd.ChildResult):
            if message.failure is not None:
                return ev.ChildWorkflowFailed(timestamp=now, task_scheduled_id=message.task_id, failure=message.failure)
            return ev.ChildWorkflowCompleted(timestamp=now, task_scheduled_id=message.task_id, result=message.result)
        raise TypeError(f"unexpected message {type(message).__name__}")

    # -- code this engine does not know (engine.core.unknown_code) --------------------------------

    def _run(self, state: InstanceState, inputs: list[ev.HistoryEvent], now: datetime,
             load_history: HistoryLoader) -> TurnOutcome:
        """A turn of the code over `inputs`, or, when this engine does not know the instance's
        workflow, the inputs recorded without running code, to wait for an engine that knows it."""
        if self._has_code(state):
            return self._turn(state, inputs, now, load_history)
        return self._hold(state, inputs, now)

    def _hold(self, state: InstanceState, inputs: list[ev.HistoryEvent], now: datetime) -> TurnOutcome:
        """Record `inputs` without running code, to wait (STALLED) for an engine whose code can
        continue this history; a terminate needs no code and ends the instance here."""
        since = state.waiting_for_code or now
        recheck = self._next_check(state, since, now)
        if recheck is None:
            return self._code_never_came(state, now)
        self.cache.discard(state.instance_id)
        start = state.history_length
        numbered: list[ev.HistoryEvent] = [ev.WorkflowStarted(timestamp=now, seq=start)]
        numbered.extend(_with_seq(e, start + 1 + i) for i, e in enumerate(inputs))
        numbered.append(ev.WorkflowCompleted(timestamp=now, seq=start + len(numbered),
                                             custom_status=state.custom_status))
        terminated = next((e for e in inputs if isinstance(e, ev.ExecutionTerminated)), None)
        if terminated is not None:
            # Ending it needs no code: replayed with the code later, the run ends TERMINATED as here.
            numbered.append(ev.ExecutionCompleted(timestamp=now, seq=start + len(numbered),
                                                  status=RuntimeStatus.TERMINATED, result=terminated.output))
        new_state = fold_all(replace(state, waiting_for_code=None), numbered)
        outcome = TurnOutcome(new_state, events=numbered, write=StateWrite.SAVE)
        if new_state.is_terminal:
            if new_state.parent is not None:
                outcome.send(self._child_result(new_state), _parent_app(new_state))
            return outcome
        outcome.state = replace(new_state, waiting_for_code=since)
        if state.waiting_for_code is None:  # the first input held starts the checks; each check schedules the next
            outcome.timers.append(CodeWait(due=recheck, instance_id=state.instance_id,
                                           execution_id=state.execution_id))
        return outcome

    def _code_check(self, state: InstanceState, message: CodeCheck, now: datetime,
                    load_history: HistoryLoader) -> TurnOutcome:
        """Look again: run the code over the inputs held for it, fail the instance once the wait is
        over, or schedule the next look."""
        if message.execution_id != state.execution_id or state.waiting_for_code is None:
            return _unchanged(state, Disposition.DUPLICATE, "the instance does not wait for its code")
        if self._has_code(state):
            return self._turn(state, [], now, load_history)
        recheck = self._next_check(state, state.waiting_for_code, now)
        if recheck is None:
            return self._code_never_came(state, now)
        return TurnOutcome(state, timers=[CodeWait(due=recheck, instance_id=state.instance_id,
                                                   execution_id=state.execution_id)])

    def _next_check(self, state: InstanceState, since: datetime, now: datetime) -> datetime | None:
        """When to look again; None once an unknown workflow has waited its timeout. An instance of
        a workflow this engine knows, stalled for a version or patches its code lacks, waits with no
        deadline, as Dapr keeps it STALLED until code that matches arrives (dapr/dapr,
        `pkg/actors/targets/workflow/orchestrator/stalled.go`): its history proves the workflow
        exists, so only a deploy can resolve it (or a terminate), never failing it."""
        if self._resolve(state.name) is not None:
            return now + RECHECK
        return next_check(since, now, self.unknown_code_timeout)

    def _stalled(self, state: InstanceState, inputs: list[ev.HistoryEvent], now: datetime) -> TurnOutcome:
        """The code ran but cannot continue this history (a patch mismatch): what it did is
        dropped and the inputs are held for code that matches, as for missing code."""
        if not inputs and state.waiting_for_code is not None:  # a re-check: still not the code
            return TurnOutcome(state, timers=[CodeWait(due=now + RECHECK, instance_id=state.instance_id,
                                                       execution_id=state.execution_id)])
        return self._hold(state, inputs, now)

    def _latest(self, name: str) -> str | None:
        return self._versions.latest_version(name) if self._versions is not None else None

    def _has_code(self, state: InstanceState) -> bool:
        """Whether this engine can run the instance: it knows the workflow and, for a run that
        recorded a named version, has that version. A remote workflow's code is the app's."""
        if self._remote(state.name):
            return True
        version = state.workflow_version
        if version is not None:
            return self._versions is not None and self._versions.get_workflow_version(state.name, version) is not None
        return self._resolve(state.name) is not None

    def _code_never_came(self, state: InstanceState, now: datetime) -> TurnOutcome:
        what = f"workflow '{state.name}'" if state.workflow_version is None else \
            f"version '{state.workflow_version}' of workflow '{state.name}'"
        error = UnknownWorkflowError(f"no {what} is registered with this engine "
                                     f"(waited {self.unknown_code_timeout} for an engine that knows it)")
        return self.fail(replace(state, waiting_for_code=None), FailureDetails.from_exception(error), now)

    # -- a turn of the code ----------------------------------------------------------------------

    def _turn(
        self,
        state: InstanceState,
        inputs: list[ev.HistoryEvent],
        now: datetime,
        load_history: HistoryLoader,
        *,
        new_history: bool = False,
    ) -> TurnOutcome:
        iid = state.instance_id
        started = inputs[0] if new_history else None
        if self._remote(started.name if isinstance(started, ev.ExecutionStarted) else state.name):
            return self._remote_inputs(state, inputs, now, load_history, new_history=new_history)
        execution = None if new_history else self.cache.take(iid)
        if execution is not None and not execution.runs_current_code():
            execution = None  # code swapped in this process: replay the history with the current code
        if execution is None:
            execution = WorkflowExecution(iid, self._resolve, self._versions)
            if not new_history:
                execution.replay(load_history())
        start = 0 if new_history else state.history_length
        # Events are numbered as they are made: a `replace` per event was a visible cost per turn.
        marker = ev.WorkflowStarted(timestamp=now, seq=start)
        numbered: list[ev.HistoryEvent] = [marker, *(_with_seq(e, start + 1 + i) for i, e in enumerate(inputs))]
        result = execution.step(numbered)
        if result.stalled is not None:
            return self._stalled(state, inputs, now)  # the execution is not put back in the cache
        if result.patches:
            numbered[0] = replace(marker, patches=result.patches)
        outcome = self._record_turn(state, numbered, result.actions, result.custom_status, now, load_history)
        if not any(isinstance(a, CompleteWorkflow) for a in result.actions):
            self.cache.put(iid, execution)
        return outcome

    def _record_turn(self, state: InstanceState, numbered: list[ev.HistoryEvent], actions: Sequence[Action],
                     custom_status: str | None, now: datetime, load_history: HistoryLoader) -> TurnOutcome:
        """Record what a turn's code decided (here, or in a connected app: `_remote_answer`) after
        `numbered` (its `WorkflowStarted` and inputs), with the effects of its actions."""
        start = numbered[0].seq
        outcome = TurnOutcome(state, write=StateWrite.SAVE)
        completion: CompleteWorkflow | None = None
        for action in actions:
            seq = start + len(numbered)
            if isinstance(action, ScheduleTask):
                numbered.append(ev.TaskScheduled(timestamp=now, seq=seq, event_id=action.id, name=action.name,
                                                 input=action.input, app_id=action.app_id,
                                                 task_execution_id=action.task_execution_id))
            elif isinstance(action, CreateTimer):
                numbered.append(ev.TimerCreated(timestamp=now, seq=seq, event_id=action.id, fire_at=action.fire_at,
                                                origin=action.origin))
            elif isinstance(action, CreateChildWorkflow):
                numbered.append(ev.ChildWorkflowCreated(timestamp=now, seq=seq, event_id=action.id,
                                                        instance_id=action.instance_id, name=action.name,
                                                        input=action.input, app_id=action.app_id))
            elif isinstance(action, SendEvent):
                numbered.append(ev.EventSent(timestamp=now, seq=seq, event_id=action.id, instance_id=action.instance_id,
                                             name=action.name, input=action.input))
            elif isinstance(action, CompleteWorkflow):
                completion = action
        numbered.append(ev.WorkflowCompleted(timestamp=now, seq=start + len(numbered),
                                             custom_status=custom_status))
        seq = start + len(numbered)
        if completion is None:
            pass
        elif completion.status is RuntimeStatus.CONTINUED_AS_NEW:
            numbered.append(ev.ContinuedAsNew(timestamp=now, seq=seq, input=completion.result,
                                              carryover_events=len(completion.carryover_events)))
        else:
            numbered.append(ev.ExecutionCompleted(timestamp=now, seq=seq, event_id=completion.id,
                                                  status=completion.status, result=completion.result,
                                                  failure=completion.failure))
        new_state = fold_all(state, numbered)
        if new_state.waiting_for_code is not None:
            new_state = replace(new_state, waiting_for_code=None)  # the code is here: it ran what waited
        if new_state.unfinished_children:
            # Children created in the turn that ends the run are never started (`_effects`).
            unstarted = {a.id for a in actions if isinstance(a, CreateChildWorkflow)}
            if unstarted:
                new_state = replace(new_state, unfinished_children=MappingProxyType(
                    {k: v for k, v in new_state.unfinished_children.items() if k not in unstarted}))
        outcome.state = new_state
        outcome.events = numbered
        self._effects(new_state, actions, outcome, lambda: [*load_history(), *numbered])
        if completion is not None and completion.status is RuntimeStatus.CONTINUED_AS_NEW:
            return self._continue_as_new(new_state, completion, now, outcome)
        if completion is not None and new_state.parent is not None:
            outcome.send(self._child_result(new_state), _parent_app(new_state))
        return outcome

    # -- workflows whose code runs in a connected app (engine.core.remote) --------------------------

    def _remote_inputs(self, state: InstanceState, inputs: list[ev.HistoryEvent], now: datetime,
                       load_history: HistoryLoader, *, new_history: bool) -> TurnOutcome:
        """Record `inputs` without running code, and hand the app a turn if none is out."""
        start = 0 if new_history else state.history_length
        numbered: list[ev.HistoryEvent] = [ev.WorkflowStarted(timestamp=now, seq=start)]
        numbered.extend(_with_seq(e, start + 1 + i) for i, e in enumerate(inputs))
        numbered.append(ev.WorkflowCompleted(timestamp=now, seq=start + len(numbered),
                                             custom_status=state.custom_status))
        terminated = next((e for e in inputs if isinstance(e, ev.ExecutionTerminated)), None)
        if terminated is not None:  # ending it needs no code, as for code this engine does not know
            numbered.append(ev.ExecutionCompleted(timestamp=now, seq=start + len(numbered),
                                                  status=RuntimeStatus.TERMINATED, result=terminated.output))
        new_state = fold_all(state, numbered)
        outcome = TurnOutcome(new_state, events=numbered, write=StateWrite.SAVE)
        if new_state.is_terminal:
            outcome.state = replace(new_state, remote=None)  # a turn still out is moot now
            if new_state.parent is not None:
                outcome.send(self._child_result(new_state), _parent_app(new_state))
            return outcome
        turn = RemoteTurn() if new_history or state.remote is None else state.remote
        self._hand_out(new_state, turn, outcome, now,
                       numbered if new_history else lambda: [*load_history(), *numbered])
        return outcome

    @staticmethod
    def _hand_out(state: InstanceState, turn: RemoteTurn, outcome: TurnOutcome, now: datetime,
                  history: Sequence[ev.HistoryEvent] | Callable[[], Sequence[ev.HistoryEvent]]) -> None:
        """Hand the app the instance's next turn, unless one is out or the instance is suspended
        (then the turn follows the answer, or the resume)."""
        if turn.out or state.status is not RuntimeStatus.RUNNING:
            outcome.state = replace(state, remote=replace(turn, due=True))
            return
        events = history() if callable(history) else history
        outcome.workflow_items.append(WorkflowWorkItem(
            instance_id=state.instance_id, execution_id=state.execution_id, name=state.name,
            turn=state.history_length, new_from=turn.seen, events=tuple(events),
            workflow_version=state.workflow_version,
        ))
        outcome.state = replace(state, remote=RemoteTurn(seen=state.history_length, out=True, since=now))

    def _remote_answer(self, state: InstanceState, answer: WorkflowAnswer, now: datetime,
                       load_history: HistoryLoader) -> TurnOutcome:
        """Record the app's answer to the turn that is out, as a turn of code recorded here is."""
        turn = state.remote
        if answer.execution_id != state.execution_id:
            return _unchanged(state, Disposition.STALE, "addressed to an earlier execution of the instance")
        if turn is None or not turn.out or turn.seen != answer.turn:
            return _unchanged(state, Disposition.DUPLICATE,
                              f"turn {answer.turn} of '{state.instance_id}' is not out (a repeated or late answer)")
        actions: list[Action] = list(answer.actions)
        ids = [a.id for a in actions]
        reused = set(ids) & {*state.pending_tasks, *state.pending_timers, *state.pending_children}
        if reused or len(set(ids)) != len(ids):
            error = NonDeterminismError(f"the app's turn {answer.turn} reused action IDs "
                                        f"{sorted(reused) or sorted(ids)} of steps still pending")
            return self.fail(replace(state, remote=None), FailureDetails.from_exception(error), now)
        try:  # what a later step would refuse (or a topic name that breaks the partition's transaction)
            check_answer(answer)
        except InvalidAnswerError as bad:
            return self.fail(replace(state, remote=None), FailureDetails.from_exception(bad), now)
        if answer.completion is not None:
            actions.append(answer.completion)
        numbered: list[ev.HistoryEvent] = [ev.WorkflowStarted(timestamp=now, seq=state.history_length,
                                                              patches=answer.patches)]
        answered = replace(state, remote=RemoteTurn(seen=turn.seen),
                           workflow_version=state.workflow_version or answer.workflow_version)
        outcome = self._record_turn(answered, numbered, actions, answer.custom_status, now, load_history)
        recorded = outcome.state
        if recorded is None or recorded.is_terminal or recorded.execution_id != state.execution_id:
            return outcome  # ended, or continued as new (whose first turn is out already)
        if turn.due:
            self._hand_out(recorded, RemoteTurn(seen=turn.seen), outcome, now,
                           lambda: [*load_history(), *numbered])
        return outcome

    def _effects(self, state: InstanceState, actions: Sequence[object], outcome: TurnOutcome,
                 history: Callable[[], Sequence[ev.HistoryEvent]]) -> None:
        for sent in actions:  # sent by the turn that ends the run too, as durabletask sends them
            if isinstance(sent, SendEvent):
                outcome.send(cmd.RaiseEvent(instance_id=sent.instance_id, name=sent.name, input=sent.input,
                                            command_id=f"{state.execution_id}:{sent.id}"))
        if state.is_terminal or state.status is RuntimeStatus.CONTINUED_AS_NEW:
            return  # work for a finished generation would only produce results nobody wants

        def handed_on(scope: str) -> str | None:  # history propagation: only built when asked for
            return build_propagated_history(scope, state.instance_id, state.name, history()) if scope else None

        for action in actions:
            if isinstance(action, ScheduleTask):
                # Work for another app names it, and names this app for the answer (`engine.core.apps`).
                target = other_app(action.app_id, self.app_id)
                outcome.work_items.append(cmd.ActivityWorkItem(
                    instance_id=state.instance_id, execution_id=state.execution_id, task_id=action.id,
                    name=action.name, input=action.input, propagated_history=handed_on(action.propagation),
                    app_id=target, reply_app_id=self.app_id if target is not None else None,
                    task_execution_id=action.task_execution_id,
                ))
            elif isinstance(action, CreateTimer):
                outcome.timers.append(DurableTimer(due=action.fire_at, instance_id=state.instance_id,
                                                   execution_id=state.execution_id, timer_id=action.id))
            elif isinstance(action, CreateChildWorkflow):
                target = other_app(action.app_id, self.app_id)
                outcome.send(cmd.StartWorkflow(
                    instance_id=action.instance_id,
                    command_id=f"{state.execution_id}:{action.id}",
                    name=action.name,
                    input=action.input,
                    parent=ParentInstance(instance_id=state.instance_id, name=state.name,
                                          task_scheduled_id=action.id, execution_id=state.execution_id,
                                          app_id=self.app_id if target is not None else None),
                    propagated_history=handed_on(action.propagation),
                ), target)

    def _continue_as_new(
        self, state: InstanceState, completion: CompleteWorkflow, now: datetime, previous: TurnOutcome
    ) -> TurnOutcome:
        execution_id = str(uuid.uuid5(_GENERATION_NS, f"{state.execution_id}:{state.generation + 1}"))
        started = ev.ExecutionStarted(
            timestamp=now, name=state.name, instance_id=state.instance_id, execution_id=execution_id,
            input=completion.result, parent=state.parent, workflow_version=self._latest(state.name),
        )
        carried = [ev.EventRaised(timestamp=now, name=e.name, input=e.input) for e in completion.carryover_events]
        outcome = self._turn(state, [started, *carried], now, _no_history, new_history=True)
        outcome.closed = [*previous.closed, ClosedExecution(state.execution_id, previous.events), *outcome.closed]
        outcome.messages = previous.messages + outcome.messages
        outcome.app_messages = previous.app_messages + outcome.app_messages
        return outcome

    def _child_app(self, state: InstanceState, child_id: str) -> str | None:
        """The app a recursive command reaches child `child_id` in (None: this app)."""
        return other_app(state.child_app(child_id), self.app_id)

    @staticmethod
    def _child_result(state: InstanceState) -> cmd.ChildResult:
        parent = state.parent
        assert parent is not None
        failure = state.failure
        if state.status is RuntimeStatus.TERMINATED and failure is None:
            failure = FailureDetails(error_type="WorkflowTerminatedError",
                                     message=f"child workflow '{state.instance_id}' was terminated")
        return cmd.ChildResult(
            instance_id=parent.instance_id,
            execution_id=parent.execution_id,
            task_id=parent.task_scheduled_id,
            child_instance_id=state.instance_id,
            result=state.output if failure is None else None,
            failure=failure,
        )


def scheduled_start_command(state: InstanceState) -> cmd.StartWorkflow:
    """The start a PENDING instance waits to apply (rebuilt from its state after a restart)."""
    return cmd.StartWorkflow(instance_id=state.instance_id, command_id=state.run_id, name=state.name,
                             input=state.input, scheduled_start=state.scheduled_start, parent=state.parent,
                             propagated_history=state.propagated_history)


def _early_inputs(state: InstanceState, now: datetime) -> list[ev.HistoryEvent]:
    """What was sent to a PENDING instance, to apply right after its start."""
    early: list[ev.HistoryEvent] = list(state.early_events)
    if state.starts_suspended:
        early.append(ev.ExecutionSuspended(timestamp=now))
    return early


def _kept(state: InstanceState, message: cmd.Command, now: datetime, **changes: Any) -> TurnOutcome:
    """A command to a PENDING instance, held in its state for the start (and remembered, so a
    second delivery changes nothing and its sender sees it taken)."""
    recent = (*state.recent_commands, message.command_id)[-RECENT_COMMANDS:]
    return TurnOutcome(replace(state, recent_commands=recent, last_updated_at=now, **changes),
                       write=StateWrite.SAVE)


def _parent_app(state: InstanceState) -> str | None:
    """Where a child's end goes: its parent's app, when the parent was in another one."""
    return state.parent.app_id if state.parent is not None else None


def _nothing_remote(name: str) -> bool:
    return False


def _no_history() -> Sequence[ev.HistoryEvent]:
    return ()


def _with_seq(event: ev.HistoryEvent, seq: int) -> ev.HistoryEvent:
    return evolved(event, {"seq": seq})
