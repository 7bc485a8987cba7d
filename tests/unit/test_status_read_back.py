"""A client view's read-back (`StatusFollower.look_up`, followed `from_end`) against what the
follower applies meanwhile, without a broker: `latest_of` is held until the test releases it."""

from __future__ import annotations

import asyncio

import pytest

import engine.read.status as status_module
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.status import StatusFollower
from engine.settings import Settings
from engine.wire.records import encode_state


def _state(run: str) -> bytes:
    return encode_state(InstanceState(instance_id="a", name="wf", status=RuntimeStatus.RUNNING,
                                      execution_id=run, run_id=run))


def _view(monkeypatch: pytest.MonkeyPatch, older: bytes | None
          ) -> tuple[StatusFollower, asyncio.Event, asyncio.Event, list[object]]:
    """A view of one partition already followed, whose read-back finds `older` once released."""
    began, release = asyncio.Event(), asyncio.Event()
    asked: list[object] = []

    async def latest_of(*args: object, **kwargs: object) -> bytes | None:
        asked.append(args[3])
        began.set()
        await release.wait()
        return older

    monkeypatch.setattr(status_module, "latest_of", latest_of)
    view = StatusFollower(Settings.from_env({}), partitions=(), from_end=True)
    view.partitions = 1
    view._positions[0] = 0
    view._reached[0] = asyncio.Event()
    view._reached[0].set()
    return view, began, release, asked


@pytest.mark.parametrize("meanwhile", [_state("newer"), None], ids=["a-newer-state", "a-removal"])
async def test_what_the_follower_applies_during_a_read_back_wins_over_it(
        monkeypatch: pytest.MonkeyPatch, meanwhile: bytes | None) -> None:
    view, began, release, asked = _view(monkeypatch, _state("older"))
    first = asyncio.create_task(view.look_up("a"))
    second = asyncio.create_task(view.look_up("a"))  # shares the read-back under way
    async with asyncio.timeout(5):
        await began.wait()
    view._apply(b"a", meanwhile)  # the follower reads a record written after the read-back's end
    release.set()
    got = await asyncio.gather(first, second)
    assert asked == [b"a"]  # one read-back for both
    expected = None if meanwhile is None else "newer"
    assert [None if s is None else s.run_id for s in got] == [expected, expected]


def test_over_the_limit_every_instance_no_observer_wants_is_looked_at() -> None:
    # Watched ones between them move to the back; the let-go must still reach the last one.
    view = StatusFollower(Settings.from_env({}), partitions=(), from_end=True)
    view.asked_limit = 2
    for iid in ("w1", "u1", "w2", "u2"):
        view._asked[iid] = None
    view.subscribe(lambda iid, state: None, lambda iid: iid.startswith("w"))
    view._let_go(keep="")
    assert list(view._asked) == ["w1", "w2"]
