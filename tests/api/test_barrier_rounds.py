"""The read-your-writes barrier's rounds (`api.consistency._Rounds`): requests asked for at the same
time share one round, and a request never joins a round that has started reading, so the offsets
it gets were read after it asked (the guarantee of api/consistency.py's module docstring)."""

from __future__ import annotations

import asyncio

import pytest

from api.consistency import _Found, _Rounds


class _FakeRounds:
    """A round function that records what each round was asked and waits until released."""

    def __init__(self) -> None:
        self.asked: list[dict[int, set[str]]] = []
        self.release: list[asyncio.Event] = []
        self.fail: Exception | None = None
        self.changed = asyncio.Condition()

    async def __call__(self, wanted: dict[int, set[str]]) -> dict[tuple[int, str], _Found]:
        self.asked.append({p: set(ids) for p, ids in wanted.items()})
        gate = asyncio.Event()
        self.release.append(gate)
        async with self.changed:
            self.changed.notify_all()
        await gate.wait()
        if self.fail is not None:
            raise self.fail
        n = len(self.asked)
        return {(p, iid): _Found(status_written=n, pending=()) for p, ids in wanted.items() for iid in ids}

    async def started(self, rounds: int) -> None:
        async with asyncio.timeout(5), self.changed:
            await self.changed.wait_for(lambda: len(self.asked) >= rounds)


async def test_requests_asked_together_share_a_round_and_later_ones_wait_for_the_next() -> None:
    fake = _FakeRounds()
    rounds = _Rounds(fake)
    first = [asyncio.create_task(rounds.ask(p, iid)) for p, iid in ((0, "a"), (0, "b"), (3, "c"), (0, "a"))]
    await fake.started(1)
    # Asked while round 1 reads: its offsets could predate the request, so round 2 serves it.
    late = asyncio.create_task(rounds.ask(0, "d"))
    await asyncio.sleep(0)  # one loop step: the new task runs up to its wait, its ask registered
    assert (0, "d") in rounds._waiting  # asked while round 1 is still reading
    fake.release[0].set()
    assert [f.status_written for f in await asyncio.gather(*first)] == [1, 1, 1, 1]
    await fake.started(2)
    fake.release[1].set()
    assert (await late).status_written == 2
    assert fake.asked == [{0: {"a", "b"}, 3: {"c"}}, {0: {"d"}}]
    await rounds.close()


async def test_a_failed_round_fails_its_requests_and_the_next_round_still_runs() -> None:
    fake = _FakeRounds()
    rounds = _Rounds(fake)
    fake.fail = OSError("broker away")
    doomed = asyncio.create_task(rounds.ask(1, "x"))
    await fake.started(1)
    fake.release[0].set()
    with pytest.raises(OSError, match="broker away"):
        await doomed
    fake.fail = None
    later = asyncio.create_task(rounds.ask(1, "y"))
    await fake.started(2)
    fake.release[1].set()
    assert (await later).status_written == 2
    await rounds.close()


async def test_a_request_that_gives_up_leaves_the_others_their_answer() -> None:
    fake = _FakeRounds()
    rounds = _Rounds(fake)
    quitter = asyncio.create_task(rounds.ask(2, "q"))
    stayer = asyncio.create_task(rounds.ask(2, "s"))
    await fake.started(1)
    quitter.cancel()
    fake.release[0].set()
    assert (await stayer).status_written == 1
    assert quitter.cancelled()
    await rounds.close()


async def test_closing_cancels_the_round_in_flight_and_its_requests() -> None:
    fake = _FakeRounds()
    rounds = _Rounds(fake)
    asked = asyncio.create_task(rounds.ask(0, "z"))
    await fake.started(1)
    await rounds.close()
    with pytest.raises(asyncio.CancelledError):
        await asked
