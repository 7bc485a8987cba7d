"""`WorkflowCommands`: the one command side behind every front end.

The Python clients (`engine.client.dapr`, `engine.aio`), the REST API (`api.gateway`) and the test
environment (`engine.testing`) are thin adapters over this service; a new front end (a gRPC
sidecar, say) supplies the two ports (`engine.client.ports`) and calls the same methods.

Each command is checked (IDs, payload size, the preconditions of `engine.core.preconditions`
against the freshest state the `LookUp` port can see), built, sent through the `Send` port, and
then, as daprd answers only once an operation is done, awaited: the call returns once the status
shows the command took effect (or that the engine ignored it), bounded by `apply_timeout`. Past
that bound the call returns anyway and `on_late` is told: the command is on its way and applies
when the engine gets to it. A start the engine refused raises the refusal.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime

from ..core import commands as cmd
from ..core.ids import check_id, check_new_instance_id
from ..core.payload import DEFAULT_MAX_PAYLOAD_BYTES
from ..core.preconditions import (
    Settled,
    command_settled,
    early_event_refusal,
    gone_or_replaced,
    purge_refusal,
    require_instance,
    run_id,
    start_refusal,
    start_refusal_before,
    start_settled,
)
from ..core.state import InstanceState
from ..core.values import RuntimeStatus
from ..errors import PayloadTooLargeError
from .ports import LookUp, Send, Watch

__all__ = ["PURGE_TREE_LIMIT", "WorkflowCommands", "wait_all"]

log = logging.getLogger(__name__)

#: At most this many descendants of a purged instance are waited for (the purge reaches them all).
PURGE_TREE_LIMIT = 1000

#: Told that a command did not show its effect within the bound: (command type name, instance ID).
LateHook = Callable[[str, str], None]


def _random_instance_id() -> str:
    return str(uuid.uuid4())


def _random_command_id() -> str:
    return uuid.uuid4().hex


class WorkflowCommands:
    """Start, query and steer workflow instances over a `LookUp` and a `Send` port.

    Payloads are JSON text (front ends serialize user values first); `max_payload_bytes` (None:
    no limit) bounds them before anything is sent. `new_instance_id` and `new_command_id` make
    the IDs a caller does not choose (the test environment passes a counter, for repeatable
    histories).
    """

    def __init__(
        self,
        lookup: LookUp,
        send: Send,
        *,
        apply_timeout: float,
        max_payload_bytes: int | None = None,
        new_instance_id: Callable[[], str] = _random_instance_id,
        new_command_id: Callable[[], str] = _random_command_id,
        on_late: LateHook | None = None,
    ) -> None:
        self.lookup = lookup
        self.sender = send
        self.apply_timeout = apply_timeout
        self.max_payload_bytes = max_payload_bytes
        self.new_instance_id = new_instance_id
        self.new_command_id = new_command_id
        self.on_late = on_late

    # -- reads -----------------------------------------------------------------------------------

    async def get(self, instance_id: str) -> InstanceState | None:
        """The instance with this process's own writes in it (see `LookUp.state`)."""
        return await self.lookup.state(instance_id)

    async def wait_for_start(self, instance_id: str, timeout: float | None) -> InstanceState | None:  # noqa: ASYNC109
        return await self.wait(instance_id, _started, timeout)

    async def wait_for_completion(self, instance_id: str, timeout: float | None) -> InstanceState | None:  # noqa: ASYNC109
        return await self.wait(instance_id, _finished, timeout)

    async def wait(
        self, instance_id: str, done: Callable[[InstanceState], bool], timeout: float | None  # noqa: ASYNC109
    ) -> InstanceState | None:
        """Wait until the instance (the run this process started, if it started one) is in a
        state `done` accepts; `TimeoutError` after `timeout` seconds (None: no bound)."""
        run = self.lookup.own_start(instance_id)

        def matches(state: InstanceState | None) -> bool:
            if state is None or (run is not None and run_id(state) != run):
                return False
            return done(state)

        async with self.lookup.watch({instance_id: matches}) as (watch,):
            settled, state = await watch.wait(timeout)
        if not settled:
            raise TimeoutError(f"timed out waiting for workflow '{instance_id}'")
        return state

    # -- commands --------------------------------------------------------------------------------

    async def start(
        self,
        name: str,
        *,
        input: str | None = None,
        instance_id: str | None = None,
        start_at: datetime | None = None,
    ) -> str:
        """Start workflow `name`; returns the instance ID once the engine started the run.

        Raises `InstanceExistsError` (or its `ChildrenRunningError`) when a run of the ID is live,
        before sending or once the engine refused the start.
        """
        # daprd's rule for a new instance's ID (IdError, a ValueError, says which part is wrong).
        iid = check_new_instance_id(instance_id) if instance_id else self.new_instance_id()
        payload = self._payload("workflow input", input)
        if instance_id:
            refused = start_refusal_before(await self.lookup.state(iid))
            if refused is not None:
                raise refused
        else:  # a generated ID is new: nothing to look up, now or when the watch begins
            await self.lookup.adopt(iid)
        start = cmd.StartWorkflow(
            instance_id=iid, command_id=self.new_command_id(), name=name, input=payload, scheduled_start=start_at
        )
        command_id = start.command_id
        async with self.lookup.watch({iid: lambda state: start_settled(state, command_id)}) as (watch,):
            receipt = await self.sender.send(start)
            self.lookup.accepted(start, receipt)
            settled, state = await watch.wait(self.apply_timeout)
        if not settled:
            self._late(start)
            return iid
        refused = start_refusal(state, command_id)
        if refused is not None:
            self.lookup.forget(iid)  # nothing of this start will ever show
            raise refused
        return iid

    async def raise_event(self, instance_id: str, event_name: str, data: str | None = None) -> None:
        if not isinstance(event_name, str):
            # Here, not at the engine: on Kafka a name of another type is a record the engine's
            # codec refuses (dead-lettered, never applied), so the caller would only time out.
            raise TypeError(f"the event name must be a str, got {type(event_name).__name__}")
        payload = self._payload("event data", data)
        event = cmd.RaiseEvent(instance_id=instance_id, command_id=self.new_command_id(), name=event_name,
                               input=payload)

        def refusal(state: InstanceState) -> Exception | None:
            # One the engine would refuse: answered now, not after waiting for a change that never shows.
            if state.status is not RuntimeStatus.PENDING:
                return None
            return early_event_refusal(state, event_name, payload, event.command_id, DEFAULT_MAX_PAYLOAD_BYTES)

        await self._command(event, refusal)

    async def suspend(self, instance_id: str, reason: str | None = None) -> None:
        await self._command(
            cmd.SuspendWorkflow(instance_id=instance_id, command_id=self.new_command_id(), reason=reason)
        )

    async def resume(self, instance_id: str, reason: str | None = None) -> None:
        await self._command(
            cmd.ResumeWorkflow(instance_id=instance_id, command_id=self.new_command_id(), reason=reason)
        )

    async def terminate(self, instance_id: str, output: str | None = None, *, recursive: bool = True) -> None:
        # Terminating a finished instance is a no-op the engine ignores (as in Dapr).
        payload = self._payload("output", output)
        await self._command(
            cmd.TerminateWorkflow(
                instance_id=instance_id, command_id=self.new_command_id(), output=payload, recursive=bool(recursive)
            )
        )

    async def purge(self, instance_id: str, *, recursive: bool = True) -> None:
        """Remove a finished instance; returns once it (and, recursive, the finished descendants
        the purge reaches) is gone from the status. A running child refuses the purge, so its
        subtree is not waited for."""
        check_id(instance_id)
        # Always the fresh state: a purge must not pass on a stale "finished" picture. The engine
        # refuses a purge of a live instance again when it applies the command.
        found = require_instance(instance_id, await self.lookup.fresh(instance_id))
        refused = purge_refusal(found)
        if refused is not None:
            raise refused
        watched: dict[str, Settled] = {instance_id: gone_or_replaced(run_id(found))}
        if recursive:
            for child, child_run in await self._finished_descendants(instance_id):
                watched[child] = gone_or_replaced(child_run)
        purge = cmd.PurgeWorkflow(instance_id=instance_id, command_id=self.new_command_id(), recursive=bool(recursive))
        async with self.lookup.watch(watched) as watches:
            await self.sender.send(purge)
            # What it remembers is of the run being purged (a purge passes only a finished run).
            self.lookup.forget(instance_id)
            settled = await wait_all(watches, self.apply_timeout)
        if not settled:
            self._late(purge)

    # -- internals -------------------------------------------------------------------------------

    def _payload(self, what: str, text: str | None) -> str | None:
        limit = self.max_payload_bytes
        if text is not None and limit is not None and len(text.encode()) > limit:
            raise PayloadTooLargeError(what, len(text.encode()), limit)
        return text

    async def _command(self, command: cmd.Command,
                       refusal: Callable[[InstanceState], Exception | None] | None = None) -> None:
        """Send a command to an existing instance and wait until the status shows it applied, or
        shows it never will (`engine.core.preconditions.command_settled`); `refusal` says why the
        engine would refuse it in the state seen now (raised, nothing sent)."""
        iid = command.instance_id
        check_id(iid)
        before = require_instance(iid, await self.lookup.state(iid))
        refused = refusal(before) if refusal is not None else None
        if refused is not None:
            raise refused
        shown = self.lookup.shown(iid)
        done = command_settled(command, run_id(before), None if shown is None else run_id(shown))
        async with self.lookup.watch({iid: done}) as (watch,):
            await self.sender.send(command)
            settled, _ = await watch.wait(self.apply_timeout)
        if not settled:
            self._late(command)

    async def _finished_descendants(self, instance_id: str) -> list[tuple[str, str]]:
        """(ID, run) of the finished descendants a recursive purge of the instance removes, as the
        status shows them now (a running child refuses the purge; its subtree is not reached)."""
        found: dict[str, str] = {}
        todo = [instance_id]
        while todo and len(found) < PURGE_TREE_LIMIT:
            state = await self.lookup.seen(todo.pop())
            for child in () if state is None else state.children:
                seen = await self.lookup.seen(child)
                if seen is not None and seen.is_terminal and child not in found and child != instance_id:
                    found[child] = run_id(seen)
                    todo.append(child)
        return list(found.items())[:PURGE_TREE_LIMIT]

    def _late(self, command: cmd.Command) -> None:
        what = type(command).__name__
        log.warning(
            "%s for '%s': the status did not show its effect within %gs; it applies when the engine gets to it",
            what, command.instance_id, self.apply_timeout,
        )
        if self.on_late is not None:
            self.on_late(what, command.instance_id)


async def wait_all(watches: Iterable[Watch], timeout: float) -> bool:  # noqa: ASYNC109
    """Wait until every watch is settled, within `timeout` seconds in all; False if it ran out."""
    deadline = time.monotonic() + timeout
    for watch in watches:
        settled, _ = await watch.wait(max(0.0, deadline - time.monotonic()))
        if not settled:
            return False
    return True


def _started(state: InstanceState) -> bool:
    return state.status is not RuntimeStatus.PENDING


def _finished(state: InstanceState) -> bool:
    return state.is_terminal
