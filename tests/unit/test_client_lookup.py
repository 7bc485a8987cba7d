"""The Python client's read-your-writes lookup (`engine.client.kafka.ViewLookUp`) over a view the
test changes by hand: a start it sent shows PENDING until the view shows that run or its refusal."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from engine.client.kafka import ViewLookUp
from engine.core import commands as cmd
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus


class FakeView:
    """What `ViewLookUp` uses of a `StatusFollower`: its states, `look_up` and `subscribe`."""

    def __init__(self) -> None:
        self.states: dict[str, InstanceState] = {}
        self.observers: list[tuple[Callable[[str, InstanceState | None], None], Callable[[str], bool]]] = []

    async def look_up(self, instance_id: str) -> InstanceState | None:
        return self.states.get(instance_id)

    def subscribe(self, observer: Callable[[str, InstanceState | None], None],
                  interest: Callable[[str], bool]) -> Callable[[], None]:
        self.observers.append((observer, interest))
        return lambda: None

    def apply(self, iid: str, state: InstanceState | None) -> None:
        """As the follower applies a record: kept, and told to the observers interested in it."""
        if state is None:
            self.states.pop(iid, None)
        else:
            self.states[iid] = state
        for observer, interest in self.observers:
            if state is None or interest(iid):
                observer(iid, state)


def running(iid: str, run: str, **kw: object) -> InstanceState:
    return InstanceState(instance_id=iid, name="wf", status=RuntimeStatus.RUNNING, execution_id=run, run_id=run,
                         **kw)  # type: ignore[arg-type]


async def test_a_start_the_engine_refused_late_stops_showing_pending() -> None:
    # The start was answered late (the engine slow); another client's run got there first, and the
    # engine refused this one. Before, the client kept showing its own start PENDING for good.
    view = FakeView()
    lookup = ViewLookUp(view)  # type: ignore[arg-type]
    lookup.accepted(cmd.StartWorkflow(instance_id="a", command_id="mine", name="wf"), 0)
    pending = await lookup.state("a")
    assert pending is not None and pending.status is RuntimeStatus.PENDING and pending.run_id == "mine"
    view.states["a"] = theirs = running("a", "theirs")
    assert await lookup.state("a") is theirs  # the live run is the truth: this start will be refused
    assert lookup.own_start("a") == "mine"  # not settled yet
    view.states["a"] = refused = replace(theirs, recent_commands=("mine",))
    assert await lookup.state("a") is refused
    assert lookup.own_start("a") is None
    view.states["a"] = done = replace(refused, status=RuntimeStatus.COMPLETED)
    assert await lookup.state("a") is done


async def test_a_start_shows_pending_until_its_run_shows() -> None:
    view = FakeView()
    lookup = ViewLookUp(view)  # type: ignore[arg-type]
    view.states["a"] = replace(running("a", "old"), status=RuntimeStatus.COMPLETED)
    lookup.accepted(cmd.StartWorkflow(instance_id="a", command_id="mine", name="wf"), 0)
    pending = await lookup.state("a")
    assert pending is not None and pending.status is RuntimeStatus.PENDING and pending.run_id == "mine"
    view.states["a"] = mine = running("a", "mine")
    assert await lookup.state("a") is mine and lookup.own_start("a") is None


async def test_a_start_never_asked_about_is_forgotten_once_its_run_shows() -> None:
    # A process that starts workflows and never reads them back: each start is forgotten as soon as
    # the view shows its run, not kept for the client's lifetime.
    view = FakeView()
    lookup = ViewLookUp(view)  # type: ignore[arg-type]
    lookup.accepted(cmd.StartWorkflow(instance_id="a", command_id="mine", name="wf"), 0)
    assert [interest("a") for _, interest in view.observers] == [True]
    view.apply("a", running("a", "older"))  # another run's state: not this start's
    assert lookup.own_start("a") == "mine"
    view.apply("a", running("a", "mine"))
    assert lookup.own_start("a") is None
    assert [interest("a") for _, interest in view.observers] == [False]  # the view may let it go


async def test_a_removal_seen_by_the_view_keeps_the_start_pending() -> None:
    # The removal may be of the older run (a purge answered late, then this start): the client has
    # no barrier to ask, so it keeps showing its start until the view shows the run.
    view = FakeView()
    lookup = ViewLookUp(view)  # type: ignore[arg-type]
    lookup.accepted(cmd.StartWorkflow(instance_id="a", command_id="mine", name="wf"), 0)
    view.apply("a", None)
    pending = await lookup.state("a")
    assert pending is not None and pending.status is RuntimeStatus.PENDING and lookup.own_start("a") == "mine"


async def test_a_watch_claims_its_instances_while_it_looks_them_up() -> None:
    # The view may let go of instances nobody claims; those a watch is still looking up (before its
    # watches are registered) are claimed, and no longer once the watch is over.
    view = FakeView()
    lookup = ViewLookUp(view)  # type: ignore[arg-type]
    (_, interest), = view.observers
    claimed: list[bool] = []

    async def look_up(instance_id: str) -> InstanceState | None:
        claimed.append(interest("a") and interest("b"))
        return None

    view.look_up = look_up  # type: ignore[method-assign]
    async with lookup.watch({"a": lambda s: s is not None, "b": lambda s: s is not None}):
        assert interest("a")
    assert claimed == [True, True]
    assert not interest("a") and not interest("b")
