"""What a command needs of its instance, and what the status shows once the engine took it.

Pure rules over `InstanceState`, shared by every front end (the Python clients, the REST API, the
test environment) through `engine.client.WorkflowCommands`:

- *refusals* (`start_refusal_before`, `require_instance`, `purge_refusal`, `early_event_refusal`): the typed error a
  front end raises before sending, from the freshest state it can see; the engine checks again
  when it applies the command, so these only answer early what the engine would decide anyway;
- *settled predicates* (`start_settled`, `command_settled`, `gone_or_replaced`): whether a state
  shows what became of a command just sent, so a front end answers once the command took effect,
  as daprd does (read your writes);
- *the pending start* (`pending_start`, `own_start_shown`, `fold_starts`): how an accepted start
  the engine has not applied yet shows: PENDING, as Dapr shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime

from ..errors import (
    ChildrenRunningError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)
from . import commands as cmd
from .state import InstanceState
from .values import RuntimeStatus

__all__ = [
    "EARLY_EVENT_OVERHEAD",
    "Settled",
    "command_settled",
    "early_event_refusal",
    "fold_starts",
    "gone_or_replaced",
    "moot",
    "own_start_shown",
    "pending_start",
    "purge_refusal",
    "require_instance",
    "run_id",
    "start_refusal",
    "start_refusal_before",
    "start_settled",
]

#: Says whether an instance's state (None: absent) shows what a waiter waits for.
Settled = Callable[[InstanceState | None], bool]


def run_id(state: InstanceState) -> str:
    """The ID of the start that began this run: the StartWorkflow's `command_id`.

    Engines before `run_id` existed wrote only the first generation's `execution_id`, which is
    the same value until the first continue-as-new.
    """
    return state.run_id or state.execution_id


# -- refusals, before sending ---------------------------------------------------------------------


def start_refusal_before(state: InstanceState | None) -> InstanceExistsError | None:
    """A start of an ID whose run is live is refused (daprd: "an active workflow ... exists")."""
    if state is not None and not state.is_terminal:
        return InstanceExistsError(state.instance_id)
    return None


#: Bytes an event held for a start costs besides its name, input and command ID: the fixed fields
#: of its wire form in the instance's state (type, timestamp, keys). Counted so that events without
#: data are bounded too (before, a flood of them grew the state past the record limit, and every
#: further one broke its turn and made the partition rebuild).
EARLY_EVENT_OVERHEAD = 160


def _early_bytes(name: str, data: str | None, command_id: str) -> int:
    text = (name, data or "", command_id)
    return EARLY_EVENT_OVERHEAD + sum(len(t.encode("utf-8", "surrogatepass")) for t in text)


def early_event_refusal(state: InstanceState, name: str, data: str | None, command_id: str,
                        limit: int) -> PayloadTooLargeError | None:
    """An instance that has not started (PENDING) holds the events raised to it for its start, up
    to `limit` bytes in all (`EARLY_EVENT_OVERHEAD` each plus name, data and command ID): one more
    that would pass it is refused, by the engine and, from the state it sees, by a front end."""
    held = sum(_early_bytes(e.name, e.input, e.command_id or "") for e in state.early_events)
    size = held + _early_bytes(name, data, command_id)
    if size <= limit:
        return None
    return PayloadTooLargeError(f"the events held for the start of instance '{state.instance_id}' "
                                f"({len(state.early_events) + 1} with this one)", size, limit)


def require_instance(instance_id: str, state: InstanceState | None) -> InstanceState:
    """Commands other than a start need the instance to exist."""
    if state is None:
        raise InstanceNotFoundError(instance_id)
    return state


def purge_refusal(state: InstanceState) -> InstanceNotTerminalError | None:
    """Only a finished instance can be purged."""
    if not state.is_terminal:
        return InstanceNotTerminalError(state.instance_id, state.status.value)
    return None


# -- what the status shows after sending ----------------------------------------------------------


def start_settled(state: InstanceState | None, command_id: str) -> bool:
    """The status shows what became of the start `command_id`: its run, or its refusal."""
    return state is not None and (run_id(state) == command_id or command_id in state.recent_commands)


def start_refusal(state: InstanceState | None, command_id: str) -> InstanceExistsError | None:
    """The error for a start the engine refused (`start_settled` holds), or None if it started."""
    if state is None or run_id(state) == command_id or command_id not in state.recent_commands:
        return None
    if not state.is_terminal:
        return InstanceExistsError(state.instance_id)
    # Refused over a finished run: one of its children still ran (it may have ended since).
    unfinished = state.unfinished_children
    return ChildrenRunningError(state.instance_id, unfinished[min(unfinished)] if unfinished else None)


def moot(command: cmd.Command, state: InstanceState) -> bool:
    """The engine ignores `command` in `state`: nothing of it will ever show.

    A finished run takes no command; a run that has not started (PENDING) keeps every command for
    its start; a pause of a suspended run and a resume of a running one change nothing (someone
    else's got there first).
    """
    if state.is_terminal:
        return True
    if state.status is RuntimeStatus.PENDING:
        return False
    if isinstance(command, cmd.SuspendWorkflow):
        return state.status is RuntimeStatus.SUSPENDED
    if isinstance(command, cmd.ResumeWorkflow):
        return state.status is not RuntimeStatus.SUSPENDED
    return False


def command_settled(command: cmd.Command, run: str, shown_run: str | None) -> Settled:
    """Whether a state shows that `command`, sent to the run `run`, took effect or never will.

    `shown_run` is the run the status showed when the command was sent; `run` may be a start it
    did not show yet (applied later, before this command: they share a partition). Settled: the
    command's ID among the run's recent commands, or the run in a state in which the command is
    `moot`, or the run gone after it showed (purged), or replaced by a newer one.
    """
    seen = shown_run == run

    def done(state: InstanceState | None) -> bool:
        nonlocal seen
        if state is None:
            return seen  # gone after showing the run: purged, nothing more to see
        current = run_id(state)
        if current != run:
            return current != shown_run  # replaced by a newer run
        seen = True
        return command.command_id in state.recent_commands or moot(command, state)

    return done


def gone_or_replaced(run: str) -> Settled:
    """A purge of the run `run` shows as the instance gone (or a newer run in its place)."""

    def done(state: InstanceState | None) -> bool:
        return state is None or run_id(state) != run

    return done


# -- the pending start ----------------------------------------------------------------------------


def pending_start(start: cmd.StartWorkflow, accepted_at: datetime | None) -> InstanceState:
    """An accepted start the engine has not applied yet: Dapr shows such an instance PENDING."""
    return InstanceState(
        instance_id=start.instance_id,
        name=start.name,
        status=RuntimeStatus.PENDING,
        execution_id=start.command_id,
        run_id=start.command_id,
        input=start.input,
        created_at=accepted_at,
        last_updated_at=accepted_at,
        scheduled_start=start.scheduled_start,
    )


def own_start_shown(current: InstanceState | None, own: InstanceState) -> tuple[InstanceState | None, bool]:
    """What a front end shows for an instance it sent a start of (`own`, its `pending_start`) that
    may not have shown yet, and whether that start is settled (its run or its refusal shows in
    `current`: the front end forgets it then). A live run of another start is shown as it is:
    the engine refuses this start over it, so showing the start PENDING would be showing a run that
    never comes (and, once refused, would show it for good)."""
    if current is not None and start_settled(current, run_id(own)):
        return current, True
    if current is not None and not current.is_terminal:
        return current, False
    return own, False


def fold_starts(
    current: InstanceState | None, starts: Iterable[tuple[cmd.StartWorkflow, datetime | None]]
) -> InstanceState | None:
    """Apply unapplied starts (with when each was accepted) as the engine will: each replaces
    nothing or a finished run; one over a live run will be refused."""
    for start, accepted_at in starts:
        if start_settled(current, start.command_id):
            # Applied already: its run, or its refusal. The status can be ahead of the offsets
            # that said which starts were unapplied (the engine group's offsets follow its commits).
            continue
        if current is None or current.is_terminal:
            current = pending_start(start, accepted_at)
    return current
