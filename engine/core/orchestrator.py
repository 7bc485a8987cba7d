"""One message in, one instance's turn out: the engine's per-instance logic, with no I/O.

`Orchestrator.handle` takes an instance's state, one message addressed to it and the time, and
returns a `TurnOutcome`: the new state, the history events to append, and the effects to flush
(activity work items, timers, messages to other instances). Effects are buffered in the outcome and
flushed by the caller in one go, so a backend (in-memory for tests, Kafka in production) only moves
bytes. The same message handled twice yields no second effect: stale or repeated results are dropped
by checking what the instance still waits for, and commands by their IDs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from types import MappingProxyType

from ..errors import children_running_message
from . import commands as cmd
from . import events as ev
from .actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask
from .cache import ExecutionCache
from .executor import WorkflowExecution, WorkflowResolver
from .propagation import build_propagated_history
from .state import RECENT_COMMANDS, InstanceState, fold_all
from .values import FailureDetails, ParentInstance, RuntimeStatus

__all__ = ["HistoryLoader", "Orchestrator", "TimerRequest", "TurnOutcome", "scheduled_start_command"]

HistoryLoader = Callable[[], Sequence[ev.HistoryEvent]]

_GENERATION_NS = uuid.UUID("0b6e7f4a-4a39-5c1e-9d55-6865616472ad")


@dataclass(frozen=True, slots=True)
class TimerRequest:
    """Fire `firing` at `firing.fire_at`."""

    firing: cmd.TimerFiring


@dataclass(slots=True)
class TurnOutcome:
    """What handling one message did. `state` is None when the instance is (or stays) absent."""

    state: InstanceState | None
    events: list[ev.HistoryEvent] = field(default_factory=list)
    #: The history restarts with `events` (a new start, or continue-as-new) instead of growing.
    history_reset: bool = False
    #: Events that closed an earlier generation in this turn, as (execution ID, events): for the
    #: audit log only, since the live history restarts.
    closed: list[tuple[str, list[ev.HistoryEvent]]] = field(default_factory=list)
    work_items: list[cmd.ActivityWorkItem] = field(default_factory=list)
    timers: list[TimerRequest] = field(default_factory=list)
    messages: list[cmd.InstanceMessage] = field(default_factory=list)
    #: Why the message changed nothing (a duplicate, a stale result, a refused command), if so.
    ignored: str | None = None
    #: The message was refused as invalid for the instance's state (the API maps it to an error).
    rejected: bool = False
    purged: bool = False
    #: The state changed without history events (a start scheduled for later).
    state_changed: bool = False
    #: Starts to apply again at their `scheduled_start`.
    scheduled_starts: list[cmd.StartWorkflow] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.events) or self.purged or self.state_changed


class Orchestrator:
    """Applies messages to instances and runs their code (see the module docstring)."""

    def __init__(self, resolve: WorkflowResolver, cache: ExecutionCache | None = None) -> None:
        self._resolve = resolve
        self.cache = cache if cache is not None else ExecutionCache()

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
            return TurnOutcome(None, ignored=f"no workflow instance '{iid}' exists")
        if isinstance(message, cmd.PurgeWorkflow):
            return self._purge(state, message, load_history)
        if isinstance(message, cmd.ChildResult) and state.is_terminal:
            return self._late_child_result(state, message)
        if state.is_terminal or state.status is RuntimeStatus.PENDING:
            return TurnOutcome(state, ignored=f"instance '{iid}' is {state.status.value}")
        if isinstance(message, cmd.Command) and message.command_id in state.recent_commands:
            return TurnOutcome(state, ignored=f"command {message.command_id} was applied already")
        if isinstance(message, cmd.RaiseEvent):
            return self._turn(state, [ev.EventRaised(timestamp=now, name=message.name, input=message.input,
                                              command_id=message.command_id)], now,
                              load_history)
        if isinstance(message, cmd.SuspendWorkflow):
            if state.status is RuntimeStatus.SUSPENDED:
                return TurnOutcome(state, ignored="already suspended")
            return self._turn(state, [ev.ExecutionSuspended(timestamp=now, reason=message.reason,
                                                                   command_id=message.command_id)], now, load_history)
        if isinstance(message, cmd.ResumeWorkflow):
            if state.status is not RuntimeStatus.SUSPENDED:
                return TurnOutcome(state, ignored="not suspended")
            return self._turn(state, [ev.ExecutionResumed(timestamp=now, reason=message.reason,
                                                                 command_id=message.command_id)], now, load_history)
        if isinstance(message, cmd.TerminateWorkflow):
            children = list(state.pending_children.values()) if message.recursive else []
            terminated = ev.ExecutionTerminated(timestamp=now, output=message.output, recurse=message.recursive,
                                                command_id=message.command_id)
            outcome = self._turn(state, [terminated], now, load_history)
            outcome.messages.extend(
                cmd.TerminateWorkflow(
                    instance_id=child, command_id=f"{message.command_id}:{child}", output=message.output
                )
                for child in children
            )
            return outcome
        stale = self._stale(state, message)
        if stale is not None:
            return TurnOutcome(state, ignored=stale)
        return self._turn(state, [self._result_event(message, now)], now, load_history)

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
            return TurnOutcome(state, ignored=f"instance '{iid}' is not running")
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
        outcome = TurnOutcome(new_state, events=events, history_reset=len(opening) > 1)
        if new_state.parent is not None:
            outcome.messages.append(self._child_result(new_state))
        return outcome

    # -- starting and purging ----------------------------------------------------------------

    def _start(self, state: InstanceState | None, message: cmd.StartWorkflow, now: datetime) -> TurnOutcome:
        iid = message.instance_id
        due = message.scheduled_start is None or message.scheduled_start <= now
        if state is not None and state.run_id == message.command_id:
            if not (due and state.status is RuntimeStatus.PENDING):
                return TurnOutcome(state, ignored="this start was applied already")
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
            )
            return TurnOutcome(pending, state_changed=True, scheduled_starts=[message])
        self.cache.discard(iid)
        fresh = InstanceState(instance_id=iid)
        started = ev.ExecutionStarted(
            timestamp=now,
            name=message.name,
            instance_id=iid,
            execution_id=message.command_id,
            input=message.input,
            parent=message.parent,
            scheduled_start=message.scheduled_start,
            propagated_history=message.propagated_history,
        )
        outcome = self._turn(fresh, [started], now, _no_history, new_history=True)
        outcome.history_reset = True
        return outcome

    def _refuse(self, state: InstanceState, message: cmd.StartWorkflow, why: str) -> TurnOutcome:
        """Refuse a start, and record its command ID in the instance's recent commands, so the
        status view shows whoever sent it that it was refused (its own run was not started)."""
        recorded = message.command_id in state.recent_commands
        if not recorded:
            recent = (*state.recent_commands, message.command_id)[-RECENT_COMMANDS:]
            state = replace(state, recent_commands=recent)
        outcome = TurnOutcome(state, ignored=why, rejected=True, state_changed=not recorded)
        if message.parent is not None:
            outcome.messages.append(self._child_refused(message, why))
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
            return TurnOutcome(
                state,
                ignored=f"instance '{state.instance_id}' is {state.status.value}; only COMPLETED, FAILED or "
                "TERMINATED instances can be purged",
                rejected=True,
            )
        self.cache.discard(state.instance_id)
        outcome = TurnOutcome(None, purged=True)
        if message.recursive:
            children = state.children
            outcome.messages.extend(
                cmd.PurgeWorkflow(instance_id=child, command_id=f"{message.command_id}:{child}")
                for child in dict.fromkeys(children)
            )
        return outcome

    # -- results ---------------------------------------------------------------------------------

    @staticmethod
    def _late_child_result(state: InstanceState, message: cmd.ChildResult) -> TurnOutcome:
        """A child that outlived its finished parent has ended: the parent's ID is free again."""
        if message.execution_id != state.execution_id or message.task_id not in state.unfinished_children:
            return TurnOutcome(state, ignored=f"instance '{state.instance_id}' is {state.status.value}")
        unfinished = {k: v for k, v in state.unfinished_children.items() if k != message.task_id}
        return TurnOutcome(replace(state, unfinished_children=MappingProxyType(unfinished)), state_changed=True)

    @staticmethod
    def _stale(state: InstanceState, message: cmd.InstanceMessage) -> str | None:
        execution_id = getattr(message, "execution_id", None)
        if execution_id != state.execution_id:
            return "addressed to an earlier execution of the instance"
        if isinstance(message, cmd.ActivityResult) and message.task_id not in state.pending_tasks:
            return f"activity task #{message.task_id} is not pending (a repeated or late result)"
        if isinstance(message, cmd.TimerFiring) and message.timer_id not in state.pending_timers:
            return f"timer #{message.timer_id} is not pending (fired already)"
        if isinstance(message, cmd.ChildResult) and message.task_id not in state.pending_children:
            return f"child workflow task #{message.task_id} is not pending (a repeated or late result)"
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
        execution = None if new_history else self.cache.take(iid)
        if execution is None:
            execution = WorkflowExecution(iid, self._resolve)
            if not new_history:
                execution.replay(load_history())
        start = 0 if new_history else state.history_length
        # Events are numbered as they are made: a `replace` per event was a visible cost per turn.
        marker = ev.WorkflowStarted(timestamp=now, seq=start)
        numbered: list[ev.HistoryEvent] = [marker, *(_with_seq(e, start + 1 + i) for i, e in enumerate(inputs))]
        result = execution.step(numbered)
        outcome = TurnOutcome(state)
        completion: CompleteWorkflow | None = None
        for action in result.actions:
            seq = start + len(numbered)
            if isinstance(action, ScheduleTask):
                numbered.append(ev.TaskScheduled(timestamp=now, seq=seq, event_id=action.id, name=action.name,
                                                 input=action.input))
            elif isinstance(action, CreateTimer):
                numbered.append(ev.TimerCreated(timestamp=now, seq=seq, event_id=action.id, fire_at=action.fire_at,
                                                origin=action.origin))
            elif isinstance(action, CreateChildWorkflow):
                numbered.append(ev.ChildWorkflowCreated(timestamp=now, seq=seq, event_id=action.id,
                                                        instance_id=action.instance_id, name=action.name,
                                                        input=action.input))
            elif isinstance(action, CompleteWorkflow):
                completion = action
        numbered.append(ev.WorkflowCompleted(timestamp=now, seq=start + len(numbered),
                                             custom_status=result.custom_status))
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
        if new_state.unfinished_children:
            # Children created in the turn that ends the run are never started (`_effects`).
            unstarted = {a.id for a in result.actions if isinstance(a, CreateChildWorkflow)}
            if unstarted:
                new_state = replace(new_state, unfinished_children=MappingProxyType(
                    {k: v for k, v in new_state.unfinished_children.items() if k not in unstarted}))
        outcome.state = new_state
        outcome.events = numbered
        self._effects(new_state, result.actions, outcome, lambda: [*load_history(), *numbered])
        if completion is None:
            self.cache.put(iid, execution)
        elif completion.status is RuntimeStatus.CONTINUED_AS_NEW:
            return self._continue_as_new(new_state, completion, now, outcome)
        elif new_state.parent is not None:
            outcome.messages.append(self._child_result(new_state))
        return outcome

    def _effects(self, state: InstanceState, actions: Sequence[object], outcome: TurnOutcome,
                 history: Callable[[], Sequence[ev.HistoryEvent]]) -> None:
        if state.is_terminal or state.status is RuntimeStatus.CONTINUED_AS_NEW:
            return  # work for a finished generation would only produce results nobody wants

        def handed_on(scope: str) -> str | None:  # history propagation: only built when asked for
            return build_propagated_history(scope, state.instance_id, state.name, history()) if scope else None

        for action in actions:
            if isinstance(action, ScheduleTask):
                outcome.work_items.append(cmd.ActivityWorkItem(
                    instance_id=state.instance_id, execution_id=state.execution_id, task_id=action.id,
                    name=action.name, input=action.input, propagated_history=handed_on(action.propagation),
                ))
            elif isinstance(action, CreateTimer):
                outcome.timers.append(TimerRequest(cmd.TimerFiring(
                    instance_id=state.instance_id, execution_id=state.execution_id, timer_id=action.id,
                    fire_at=action.fire_at,
                )))
            elif isinstance(action, CreateChildWorkflow):
                outcome.messages.append(cmd.StartWorkflow(
                    instance_id=action.instance_id,
                    command_id=f"{state.execution_id}:{action.id}",
                    name=action.name,
                    input=action.input,
                    parent=ParentInstance(instance_id=state.instance_id, name=state.name,
                                          task_scheduled_id=action.id, execution_id=state.execution_id),
                    propagated_history=handed_on(action.propagation),
                ))

    def _continue_as_new(
        self, state: InstanceState, completion: CompleteWorkflow, now: datetime, previous: TurnOutcome
    ) -> TurnOutcome:
        execution_id = str(uuid.uuid5(_GENERATION_NS, f"{state.execution_id}:{state.generation + 1}"))
        started = ev.ExecutionStarted(
            timestamp=now, name=state.name, instance_id=state.instance_id, execution_id=execution_id,
            input=completion.result, parent=state.parent,
        )
        carried = [ev.EventRaised(timestamp=now, name=e.name, input=e.input) for e in completion.carryover_events]
        outcome = self._turn(state, [started, *carried], now, _no_history, new_history=True)
        outcome.closed = [*previous.closed, (state.execution_id, previous.events), *outcome.closed]
        outcome.history_reset = True
        outcome.messages = previous.messages + outcome.messages
        return outcome

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
                             input=state.input, scheduled_start=state.scheduled_start, parent=state.parent)


def _no_history() -> Sequence[ev.HistoryEvent]:
    return ()


def _with_seq(event: ev.HistoryEvent, seq: int) -> ev.HistoryEvent:
    return replace(event, seq=seq)
