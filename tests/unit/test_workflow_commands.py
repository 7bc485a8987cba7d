"""`WorkflowCommands` over fake ports (a status the test changes by hand, with the Kafka ports'
watches): the precondition rules, and that each command answers only once the status shows its
effect (read your writes), or its bound passed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from engine.client import WorkflowCommands
from engine.client.memory import MemoryLookUp, MemorySend, run_now
from engine.client.ports import Watch
from engine.client.watches import Watches
from engine.core import commands as cmd
from engine.core.preconditions import Settled, command_settled, fold_starts, own_start_shown, pending_start
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import (
    ChildrenRunningError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)


async def settles(call: asyncio.Task[Any]) -> bool:
    """Whether `call` finishes soon. A waiting command takes several loop steps to answer, so one
    `sleep(0)` would see an unfinished call even when it was about to return the wrong answer."""
    done, _ = await asyncio.wait({call}, timeout=0.1)
    return bool(done)


@dataclass
class FakeLookUp:
    """A status the test changes by hand (`show`), like an engine applying commands later."""

    states: dict[str, InstanceState] = field(default_factory=dict)
    own: dict[str, InstanceState] = field(default_factory=dict)
    forgotten: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.watches = Watches(self.states.get)

    def show(self, iid: str, state: InstanceState | None) -> None:
        if state is None:
            self.states.pop(iid, None)
        else:
            self.states[iid] = state
        self.watches.offer(iid, state)

    async def state(self, instance_id: str) -> InstanceState | None:
        seen = self.states.get(instance_id)
        mine = self.own.get(instance_id)
        if mine is not None and (seen is None or seen.run_id != mine.run_id):
            return mine
        return seen

    async def fresh(self, instance_id: str) -> InstanceState | None:
        return await self.state(instance_id)

    def shown(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    async def seen(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    def own_start(self, instance_id: str) -> str | None:
        mine = self.own.get(instance_id)
        return None if mine is None else mine.run_id

    def watch(self, done: Mapping[str, Settled]) -> contextlib.AbstractAsyncContextManager[Sequence[Watch]]:
        return self.watches.watching(done)

    async def adopt(self, instance_id: str) -> None:
        self.adopted.append(instance_id)

    def accepted(self, start: cmd.StartWorkflow, receipt: int) -> None:
        self.own[start.instance_id] = pending_start(start, None)

    def forget(self, instance_id: str) -> None:
        self.forgotten.append(instance_id)
        self.own.pop(instance_id, None)


@dataclass
class FakeSend:
    sent: list[cmd.Command] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, command: cmd.Command) -> int:
        self.sent.append(command)
        self.arrived.set()
        return len(self.sent) - 1


def running(iid: str, run: str = "r1", **kw: object) -> InstanceState:
    return InstanceState(instance_id=iid, name="wf", status=RuntimeStatus.RUNNING, execution_id=run, run_id=run,
                         **kw)  # type: ignore[arg-type]


def service(lookup: FakeLookUp, send: FakeSend, late: list[tuple[str, str]] | None = None,
            timeout: float = 5.0) -> WorkflowCommands:
    counter = itertools.count()
    return WorkflowCommands(lookup, send, apply_timeout=timeout, max_payload_bytes=100,
                            new_instance_id=lambda: f"i{next(counter)}", new_command_id=lambda: f"c{next(counter)}",
                            on_late=None if late is None else lambda what, iid: late.append((what, iid)))


async def test_a_start_answers_once_the_status_shows_its_run() -> None:
    lookup, send = FakeLookUp(), FakeSend()
    call = asyncio.create_task(service(lookup, send).start("wf", input='"x"', instance_id="a"))
    await send.arrived.wait()
    start = send.sent[0]
    assert isinstance(start, cmd.StartWorkflow) and start.input == '"x"'
    assert not call.done()
    # Read your writes meanwhile: the start shows PENDING before the engine applied it.
    pending = await lookup.state("a")
    assert pending is not None and pending.status is RuntimeStatus.PENDING and pending.run_id == start.command_id
    lookup.show("a", running("a", start.command_id))
    assert await asyncio.wait_for(call, 1) == "a"


async def test_a_start_of_a_live_id_is_refused_before_sending() -> None:
    lookup, send = FakeLookUp(states={"a": running("a")}), FakeSend()
    with pytest.raises(InstanceExistsError):
        await service(lookup, send).start("wf", instance_id="a")
    assert send.sent == []


async def test_a_start_the_engine_refused_raises_and_is_forgotten() -> None:
    done = replace(running("a"), status=RuntimeStatus.COMPLETED, unfinished_children={0: "a:0001"})
    lookup, send = FakeLookUp(states={"a": done}), FakeSend()
    call = asyncio.create_task(service(lookup, send).start("wf", instance_id="a"))
    await send.arrived.wait()
    lookup.show("a", replace(done, recent_commands=(send.sent[0].command_id,)))
    with pytest.raises(ChildrenRunningError, match="a:0001"):
        await asyncio.wait_for(call, 1)
    assert lookup.forgotten == ["a"] and lookup.own == {}


async def test_a_start_the_status_does_not_show_in_time_answers_and_is_counted_late() -> None:
    lookup, send, late = FakeLookUp(), FakeSend(), []
    assert await service(lookup, send, late, timeout=0.05).start("wf") == "i0"
    assert late == [("StartWorkflow", "i0")]
    assert lookup.own["i0"].status is RuntimeStatus.PENDING


async def test_commands_to_an_unknown_instance_are_refused_before_sending() -> None:
    lookup, send = FakeLookUp(), FakeSend()
    commands = service(lookup, send)
    for call in (commands.raise_event("x", "go"), commands.suspend("x"), commands.resume("x"),
                 commands.terminate("x"), commands.purge("x")):
        with pytest.raises(InstanceNotFoundError):
            await call
    assert send.sent == []


async def test_a_payload_over_the_limit_is_refused_before_sending() -> None:
    lookup, send = FakeLookUp(states={"a": running("a")}), FakeSend()
    with pytest.raises(PayloadTooLargeError):
        await service(lookup, send).raise_event("a", "go", '"' + "x" * 200 + '"')
    assert send.sent == []


async def test_a_command_answers_once_its_id_shows_among_the_recent_commands() -> None:
    lookup, send = FakeLookUp(states={"a": running("a")}), FakeSend()
    call = asyncio.create_task(service(lookup, send).raise_event("a", "go", "1"))
    await send.arrived.wait()
    lookup.show("a", replace(running("a"), history_length=3))  # another turn: not this command
    assert not await settles(call)
    lookup.show("a", replace(running("a"), recent_commands=(send.sent[0].command_id,)))
    await asyncio.wait_for(call, 1)


async def test_a_pause_of_a_suspended_instance_answers_at_once() -> None:
    lookup, send, late = FakeLookUp(states={"a": replace(running("a"), status=RuntimeStatus.SUSPENDED)}), FakeSend(), []
    await asyncio.wait_for(service(lookup, send, late).suspend("a"), 1)
    assert isinstance(send.sent[0], cmd.SuspendWorkflow) and late == []


@dataclass
class AskedLookUp(FakeLookUp):
    """As the Python client's view: `shown` holds only the instances it was asked about."""

    asked: set[str] = field(default_factory=set)

    async def state(self, instance_id: str) -> InstanceState | None:
        self.asked.add(instance_id)
        return await super().state(instance_id)

    async def seen(self, instance_id: str) -> InstanceState | None:
        self.asked.add(instance_id)
        return await super().seen(instance_id)

    def shown(self, instance_id: str) -> InstanceState | None:
        return super().shown(instance_id) if instance_id in self.asked else None


async def test_a_purge_needs_a_finished_instance_and_waits_for_its_finished_children() -> None:
    lookup, send = AskedLookUp(states={"p": running("p")}), FakeSend()
    commands = service(lookup, send)
    with pytest.raises(InstanceNotTerminalError):
        await commands.purge("p")
    assert send.sent == []
    done = dict(status=RuntimeStatus.COMPLETED)
    lookup.show("p", replace(running("p", children=("p:0001",)), **done))  # type: ignore[arg-type]
    lookup.show("p:0001", replace(running("p:0001", "r2"), **done))  # type: ignore[arg-type]
    call = asyncio.create_task(commands.purge("p"))
    await send.arrived.wait()
    assert isinstance(send.sent[0], cmd.PurgeWorkflow)
    lookup.show("p", None)
    assert not await settles(call)  # the child is not gone yet
    lookup.show("p:0001", None)
    await asyncio.wait_for(call, 1)


async def test_waiting_for_completion_waits_for_the_run_this_process_started() -> None:
    old = replace(running("a", "old"), status=RuntimeStatus.COMPLETED)
    lookup, send = FakeLookUp(states={"a": old}), FakeSend()
    commands = service(lookup, send, timeout=0.01)
    await commands.start("wf", instance_id="a")  # not shown in time: the old run still shows
    waiting = asyncio.create_task(commands.wait_for_completion("a", 1))
    assert not await settles(waiting)  # the old run is finished, but it is not this client's run
    run = send.sent[0].command_id
    lookup.show("a", replace(running("a", run), status=RuntimeStatus.COMPLETED))
    state = await asyncio.wait_for(waiting, 1)
    assert state is not None and state.run_id == run
    with pytest.raises(TimeoutError):
        await commands.wait_for_start("other", 0.01)


def test_the_settled_rule_ends_on_a_newer_run_or_a_purge_after_the_run_showed() -> None:
    suspend = cmd.SuspendWorkflow(instance_id="a", command_id="s")
    # The run was not shown yet when sent: its absence is no answer, its showing is a step.
    done = command_settled(suspend, "r1", None)
    assert not done(None)
    assert not done(running("a", "r1"))
    assert done(None)  # gone after it showed: purged
    # Sent to a start not applied yet while an older run shows: that older run is no answer.
    behind = command_settled(suspend, "r1", "r0")
    assert not behind(running("a", "r0"))
    assert behind(running("a", "r2"))  # a newer run replaced it
    shown = command_settled(suspend, "r1", "r1")
    assert not shown(running("a", "r1"))
    # A PENDING run keeps the command for its start: only its ID in the recent commands answers.
    assert not shown(replace(running("a"), status=RuntimeStatus.PENDING))
    assert shown(replace(running("a"), status=RuntimeStatus.PENDING, recent_commands=("s",)))
    assert shown(replace(running("a"), status=RuntimeStatus.COMPLETED))  # the engine ignores it
    assert shown(replace(running("a"), recent_commands=("s",)))


def test_unapplied_starts_fold_like_the_engine() -> None:
    start = cmd.StartWorkflow(instance_id="a", command_id="c1", name="wf", input='"n"')
    assert fold_starts(None, [(start, None)]) == pending_start(start, None)
    live = running("a")
    assert fold_starts(live, [(start, None)]) is live  # the engine will refuse it


def test_an_own_start_shows_pending_until_its_run_or_its_refusal_shows() -> None:
    own = pending_start(cmd.StartWorkflow(instance_id="a", command_id="mine", name="wf"), None)
    finished = replace(running("a", "old"), status=RuntimeStatus.COMPLETED)
    assert own_start_shown(None, own) == (own, False)
    assert own_start_shown(finished, own) == (own, False)  # it replaces a finished run
    live = running("a", "theirs")
    assert own_start_shown(live, own) == (live, False)  # the engine will refuse it over that run
    for settled in (running("a", "mine"), replace(live, recent_commands=("mine",)),
                    replace(finished, recent_commands=("mine",))):  # its run, or refused (children)
        assert own_start_shown(settled, own) == (settled, True)


def test_in_memory_ports_apply_each_command_before_it_answers() -> None:
    states: dict[str, InstanceState] = {}

    def deliver(command: cmd.Command) -> None:
        if isinstance(command, cmd.StartWorkflow):
            states[command.instance_id] = running(command.instance_id, command.command_id)
        elif isinstance(command, cmd.TerminateWorkflow):
            states[command.instance_id] = replace(states[command.instance_id], status=RuntimeStatus.TERMINATED)
        elif isinstance(command, cmd.PurgeWorkflow):
            del states[command.instance_id]

    late: list[tuple[str, str]] = []
    commands = WorkflowCommands(MemoryLookUp(states), MemorySend(deliver), apply_timeout=0.0,
                                on_late=lambda what, iid: late.append((what, iid)))
    iid = run_now(commands.start("wf", instance_id="m"))
    with pytest.raises(InstanceExistsError):
        run_now(commands.start("wf", instance_id=iid))
    run_now(commands.terminate(iid))
    run_now(commands.purge(iid))
    assert states == {} and late == []


async def test_a_generated_id_is_adopted_and_a_given_one_looked_up() -> None:
    lookup, send = FakeLookUp(), FakeSend()
    commands = service(lookup, send, timeout=0.01)
    generated = await commands.start("wf")
    await commands.start("wf", instance_id="given")
    assert lookup.adopted == [generated]
