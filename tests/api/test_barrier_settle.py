"""How the read-your-writes barrier waits for the status view (`api.consistency.Consistency._settle`):
up to the status partition's high watermark read after the engine's offsets, so a transaction
whose offsets are visible before its status marker is still waited for; past half the budget, a
transaction still open there (its writer died) is not waited for, and the LSO read then is."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from api.consistency import Consistency


class _View:
    def __init__(self, position: int) -> None:
        self.at = position
        self.moved = asyncio.Condition()

    def position(self, partition: int) -> int:
        return self.at

    async def wait_position(self, partition: int, offset: int, timeout: float | None) -> None:  # noqa: ASYNC109
        async with self.moved:
            await self.moved.wait_for(lambda: self.at >= offset)

    async def move_to(self, position: int) -> None:
        async with self.moved:
            self.at = position
            self.moved.notify_all()


@dataclass
class _Settings:
    consistency_timeout_s: float
    sent_ttl_s: float = 30.0


@dataclass
class _Link:
    view: _View
    settings: _Settings
    stable_end: int
    lso_reads: list[int] = field(default_factory=list)
    lso_read: asyncio.Event = field(default_factory=asyncio.Event)

    def observe_view(self, *_: object) -> None:
        pass

    async def status_end(self, partition: int) -> int:
        self.lso_reads.append(partition)
        self.lso_read.set()
        return self.stable_end


def _deadline(link: _Link) -> float:
    return asyncio.get_running_loop().time() + link.settings.consistency_timeout_s


async def _settles(settle: asyncio.Task[None]) -> bool:
    """Whether the barrier finishes soon: a wait that ends takes several loop steps, so one
    `sleep(0)` would see it unfinished even when it was about to return too early."""
    done, _ = await asyncio.wait({settle}, timeout=0.1)
    return bool(done)


async def test_the_view_is_awaited_up_to_the_high_watermark_not_the_stable_end() -> None:
    # Records 5..9 are a transaction whose group offsets are visible already, its marker on the
    # status partition not yet: the LSO (5) would stop short of them.
    link = _Link(_View(5), _Settings(consistency_timeout_s=60), stable_end=5)
    barrier = Consistency(link)  # type: ignore[arg-type]
    settle = asyncio.create_task(barrier._settle(3, 10, _deadline(link)))
    await link.view.move_to(9)
    assert not await _settles(settle)
    await link.view.move_to(11)  # the marker landed; the view read past it
    async with asyncio.timeout(5):
        await settle
    assert link.lso_reads == []


async def test_a_transaction_left_open_by_a_dead_writer_costs_half_the_budget_not_the_request() -> None:
    link = _Link(_View(5), _Settings(consistency_timeout_s=0.2), stable_end=5)
    barrier = Consistency(link)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await barrier._settle(3, 10, _deadline(link))
    assert link.lso_reads == [3]
    assert link.view.at == 5


@pytest.mark.parametrize(("stable_end", "reached"), [(8, 8), (50, 10)],
                         ids=["what-committed-meanwhile", "not-an-end-that-moved-on"])
async def test_past_the_grace_the_view_waits_for_the_lower_of_the_stable_end_and_its_high_watermark(
        stable_end: int, reached: int) -> None:
    # 8: a transaction is stuck at 8, and what committed before it (5..7) is still waited for.
    # 50: nothing is stuck, the view only lags, and the LSO moved past the end the barrier read (10).
    link = _Link(_View(5), _Settings(consistency_timeout_s=0.2), stable_end=stable_end)
    barrier = Consistency(link)  # type: ignore[arg-type]
    settle = asyncio.create_task(barrier._settle(3, 10, _deadline(link)))
    async with asyncio.timeout(5):
        await link.lso_read.wait()
    await link.view.move_to(reached - 1)
    assert not await _settles(settle)
    await link.view.move_to(reached)
    async with asyncio.timeout(5):
        await settle


async def test_later_barriers_skip_the_grace_while_the_view_stands_where_one_gave_up() -> None:
    link = _Link(_View(5), _Settings(consistency_timeout_s=0.2), stable_end=5)
    barrier = Consistency(link)  # type: ignore[arg-type]
    async with asyncio.timeout(5):
        await barrier._settle(3, 10, _deadline(link))
    assert link.lso_reads == [3]
    # The transaction is still open (the view still stands at 5): a barrier with a budget that
    # would make it wait 5 s for it settles at once, without reading anything.
    link.settings.consistency_timeout_s = 60
    async with asyncio.timeout(3):
        await barrier._settle(3, 12, _deadline(link))
    assert link.lso_reads == [3]
    # It ended (the view read past it): the next barrier waits for the high watermark again.
    await link.view.move_to(13)
    async with asyncio.timeout(5):
        await barrier._settle(3, 13, _deadline(link))
    assert barrier._stuck == {}
