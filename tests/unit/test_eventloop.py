"""`engine.runtime.eventloop.run`: the loop an engine or worker process runs on, and its collector."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from engine.runtime import eventloop


@pytest.fixture
def collector() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_runs_the_coroutine_on_uvloop_with_the_collector_tuned(collector: None) -> None:
    uvloop = pytest.importorskip("uvloop")  # a dependency wherever it installs (pyproject.toml)

    async def main() -> type:
        await asyncio.sleep(0)
        return type(asyncio.get_running_loop())

    assert eventloop.run(main()) is uvloop.Loop
    assert gc.get_threshold()[0] == eventloop._YOUNG
    assert gc.get_freeze_count() > 0  # what was alive at start is out of the collector's reach


def test_an_error_of_the_coroutine_is_raised(collector: None) -> None:
    async def main() -> None:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        eventloop.run(main())
