"""What a turn writes, decided once: `apply_outcome` plays a `TurnOutcome` into an `EffectSink`.

The orchestrator's outcome says what happened to one instance; a backend only has to know how to
write each kind of effect. The Kafka engine's sink buffers the records of one transaction
(`engine.runtime.sink.TransactionSink`), the test environment's keeps everything in memory
(`engine.testing`), and a recording sink unit-tests this module. Nothing else interprets an outcome,
so the engine and the test environment cannot drift apart on what a turn does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from . import commands as cmd
from .apps import AppMessage
from .events import HistoryEvent
from .orchestrator import Disposition, StateWrite, TurnOutcome, Unapplied, scheduled_start_command
from .remote import WorkflowWorkItem
from .state import InstanceState
from .timers import CodeWait, DurableTimer, ScheduledStart, Timer
from .unknown_code import CodeCheck
from .values import RuntimeStatus

__all__ = ["EffectSink", "apply_outcome", "due_message"]


class EffectSink(Protocol):
    """Where a turn's effects go, in the order `apply_outcome` calls them."""

    def close_execution(self, instance_id: str, execution_id: str, events: Sequence[HistoryEvent]) -> None:
        """An execution ended in this turn and a new one began (continue-as-new): `events` are its
        last events (for the audit log); its history will not be replayed again."""

    def remove_instance(self, instance_id: str) -> None:
        """The instance is purged: its state and its history go."""

    def append_history(self, state: InstanceState, events: Sequence[HistoryEvent], *, reset: bool) -> None:
        """Append a turn's events to the history of `state.execution_id` and to the audit log.
        `reset`: the events open that history (a start, a restart, continue-as-new)."""

    def put_state(self, state: InstanceState) -> None:
        """The instance's state after the turn."""

    def send_workflow_item(self, item: WorkflowWorkItem) -> None:
        """A turn of a remote workflow for the connected apps (`engine.core.remote`)."""

    def send_task(self, item: cmd.ActivityWorkItem) -> None:
        """An activity work item for the workers."""

    def schedule_timer(self, timer: Timer) -> None:
        """Something to do when `timer.due` comes (see `due_message`)."""

    def send_message(self, message: cmd.InstanceMessage) -> None:
        """A message to another (or the same) instance: child starts and results, recursive commands."""

    def send_to_app(self, sent: AppMessage) -> None:
        """A message to an instance of another app (`engine.core.apps`); work items for another app
        name it in `ActivityWorkItem.app_id` and go through `send_task`."""

    def ignore(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        """The input changed nothing and its sender need not hear of it (a duplicate, a stale result)."""

    def refuse(self, message: cmd.InstanceMessage | None, unapplied: Unapplied) -> None:
        """The input could not apply and its sender should find out why (the engine dead-letters it)."""


def apply_outcome(
    instance_id: str, outcome: TurnOutcome, sink: EffectSink, message: cmd.InstanceMessage | None = None
) -> None:
    """Write what handling `message` (None: an engine-made turn, `Orchestrator.fail`) did to `instance_id`."""
    for closed in outcome.closed:
        sink.close_execution(instance_id, closed.execution_id, closed.events)
    write = outcome.write
    if write is StateWrite.PURGE:
        sink.remove_instance(instance_id)
    state = outcome.state
    if state is not None and write is StateWrite.SAVE:
        if outcome.events:
            sink.append_history(state, outcome.events, reset=outcome.history_reset)
        sink.put_state(state)
    for item in outcome.work_items:
        sink.send_task(item)
    for turn in outcome.workflow_items:
        sink.send_workflow_item(turn)
    for timer in outcome.timers:
        sink.schedule_timer(timer)
    for sent in outcome.messages:
        sink.send_message(sent)
    for routed in outcome.app_messages:
        sink.send_to_app(routed)
    unapplied = outcome.unapplied
    if unapplied is not None:
        if _reported(unapplied, message):
            sink.refuse(message, unapplied)
        else:
            sink.ignore(message, unapplied)


def _reported(unapplied: Unapplied, message: cmd.InstanceMessage | None) -> bool:
    """A command that could not apply (refused, or for an instance that does not exist) is kept with
    its reason, so whoever produced it can find out; results and firings are dropped."""
    if unapplied.disposition is Disposition.REFUSED:
        return True
    return unapplied.disposition is Disposition.NOT_FOUND and isinstance(message, cmd.Command)


def due_message(timer: Timer, state: InstanceState | None) -> cmd.InstanceMessage | None:
    """What a timer that came due delivers to its instance, if anything is still to be done.

    A durable timer always fires (the orchestrator drops a firing that is no longer pending); a
    scheduled start is rebuilt from the state, so only the start the instance still waits for is
    applied (a later start over a PENDING instance replaces the earlier one).
    """
    if isinstance(timer, DurableTimer):
        return timer.message()
    if isinstance(timer, CodeWait):
        waiting = state is not None and state.is_running and state.waiting_for_code is not None
        return CodeCheck(instance_id=timer.instance_id, execution_id=timer.execution_id) if waiting else None
    assert isinstance(timer, ScheduledStart)
    if state is None or state.status is not RuntimeStatus.PENDING:
        return None
    return scheduled_start_command(state)
