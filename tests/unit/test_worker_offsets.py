"""The worker's commit metadata (finished offsets above the committed one) and its daemon thread pool."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import random
import subprocess
import sys
import textwrap
import threading
import traceback
import zlib
from pathlib import Path

import pytest

from engine.runtime.worker import METADATA_BUDGET, DaemonThreadPool, _Partition, decode_finished, encode_finished

ROOT = Path(__file__).resolve().parents[2]


def test_finished_offsets_round_trip_through_the_metadata() -> None:
    finished = {101, 102, 105, 140, 1000}
    metadata, dropped = encode_finished(100, finished)
    assert dropped == 0
    assert metadata.startswith("hr1:")
    assert decode_finished(100, metadata) == finished


def test_offsets_at_or_below_the_committed_one_are_left_out() -> None:
    metadata, dropped = encode_finished(100, {98, 100, 103})
    assert dropped == 0
    assert decode_finished(100, metadata) == {103}
    assert encode_finished(100, {90, 100}) == ("", 0)


def test_gaps_of_transaction_markers_compress_to_well_under_the_limit() -> None:
    # Every other offset is a commit marker of the engine's transactions: 30,000 finished items.
    finished = set(range(1, 60_000, 2))
    metadata, dropped = encode_finished(0, finished)
    assert dropped == 0
    assert len(metadata) < METADATA_BUDGET
    assert decode_finished(0, metadata) == finished


def test_what_does_not_fit_is_dropped_from_the_top_and_counted() -> None:
    rng = random.Random(7)
    finished = {o for o in range(1, 400_000) if rng.random() < 0.5}  # incompressible
    metadata, dropped = encode_finished(0, finished, budget=2000)
    assert len(metadata) <= 2000
    kept = decode_finished(0, metadata)
    assert kept  # a prefix still fits
    assert kept <= finished
    assert len(kept) + dropped == len(finished)
    assert max(kept) < min(finished - kept)  # the lowest offsets are kept: they are reached first


@pytest.mark.parametrize("metadata", ["", "other-consumer-metadata", "hr1:not base64!", "hr1:" + "A" * 12])
def test_foreign_or_broken_metadata_means_nothing_was_finished(metadata: str) -> None:
    assert decode_finished(5, metadata) == set()


def test_a_metadata_bomb_is_refused() -> None:
    bomb = "hr1:" + base64.b64encode(zlib.compress(b"\xff" * (64 * 1024 * 1024), 9)).decode()
    assert decode_finished(0, bomb) == set()


def test_commit_point_is_the_lowest_unfinished_offset_with_the_finished_ones_above() -> None:
    part = _Partition(committed=10, finished={12})  # 12 finished before a restart
    part.running |= {10, 11, 13}
    part.finished |= {14, 15}
    base, metadata, dropped = part.commit_point(position=16, budget=METADATA_BUDGET)
    assert (base, dropped) == (10, 0)
    assert decode_finished(base, metadata) == {12, 14, 15}
    part.running -= {10, 11, 13}
    part.finished |= {10, 11, 13}
    base, metadata, _ = part.commit_point(position=17, budget=METADATA_BUDGET)
    assert (base, metadata) == (17, "")  # position 17: past a transaction marker at 16
    assert part.finished == set()


def test_finished_offsets_not_fetched_yet_stay_in_the_metadata() -> None:
    part = _Partition(committed=10, finished={12, 30})
    part.next = 13  # fetched 10..12; 10 and 11 ran, 12 was skipped
    part.finished |= {10, 11}
    base, metadata, _ = part.commit_point(position=13, budget=METADATA_BUDGET)
    assert base == 13
    assert decode_finished(base, metadata) == {30}


def test_daemon_pool_runs_work_and_refuses_it_after_shutdown() -> None:
    pool = DaemonThreadPool(2, "t")
    futures = [pool.submit(pow, 2, n) for n in range(10)]
    assert [f.result(timeout=10) for f in futures] == [2**n for n in range(10)]
    pool.shutdown(wait=True)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(pow, 2, 1)


def test_daemon_pool_runs_a_call_for_the_loop_and_settles_it_there() -> None:
    pool = DaemonThreadPool(2, "t")
    loop_thread: list[int] = []

    def fail(message: str) -> None:
        raise ValueError(message)

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        on_threads = await asyncio.gather(*(pool.run_soon(threading.get_ident) for _ in range(20)))
        assert loop_thread[0] not in on_threads  # ran on the pool's threads
        assert await asyncio.gather(*(pool.run_soon(pow, 2, n) for n in range(10))) == [2**n for n in range(10)]
        with pytest.raises(ValueError, match="no good") as raised:
            await pool.run_soon(fail, "no good")
        # The activity's own frame is in the traceback a failure's details are made from.
        assert any(frame.name == "fail" for frame in traceback.extract_tb(raised.value.__traceback__))

    asyncio.run(main())
    pool.shutdown(wait=True)


def _hold(pool: DaemonThreadPool) -> tuple[asyncio.Future[bool], threading.Event]:
    """Hold a one-thread pool's thread until the event is set: calls queued meanwhile wait."""
    release = threading.Event()
    return pool.run_soon(release.wait, 30), release


def test_daemon_pool_skips_a_call_cancelled_before_a_thread_takes_it() -> None:
    pool = DaemonThreadPool(1, "t")
    ran: list[str] = []

    async def main() -> None:
        busy, release = _hold(pool)
        skipped = pool.run_soon(ran.append, "skipped")
        skipped.cancel()
        after = pool.run_soon(ran.append, "after")
        release.set()
        assert await busy is True
        await after

    asyncio.run(main())
    assert ran == ["after"]
    pool.shutdown(wait=True)


def test_daemon_pool_drops_an_outcome_whose_loop_has_closed() -> None:
    pool = DaemonThreadPool(1, "t")
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(30)
        return "late"

    async def main() -> None:
        pool.run_soon(slow)
        pool.run_soon(finished.set)  # runs after `slow`, on the same thread

    asyncio.run(main())  # the loop is closed with `slow` still running
    release.set()
    assert finished.wait(30)  # the thread lived on past settling on a closed loop
    assert [t for t in pool._threads if t.is_alive()]
    pool.shutdown(wait=True)


def test_daemon_pool_run_soon_edge_cases_leave_the_loop_and_the_threads_working() -> None:
    pool = DaemonThreadPool(1, "t")
    seen: list[str] = []
    handled: list[dict[str, object]] = []
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    release = threading.Event()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: handled.append(context))
        # An asyncio future refuses StopIteration: without the wrapping the call would never end.
        with pytest.raises(RuntimeError, match="StopIteration") as raised:
            await asyncio.wait_for(pool.run_soon(next, iter([])), 30)
        assert isinstance(raised.value.__cause__, StopIteration)
        # Cancelled while it runs: its outcome is dropped quietly.
        started = threading.Event()
        running = pool.run_soon(lambda: (started.set(), release.wait(30)))
        assert await asyncio.to_thread(started.wait, 30)
        running.cancel()
        release.set()
        # The call runs in the caller's context (log fields, as `asyncio.to_thread` does).
        var.set("caller's")
        assert await pool.run_soon(var.get) == "caller's"
        seen.append("after")

    asyncio.run(main())
    assert seen == ["after"]
    assert handled == []
    pool.shutdown(wait=True)


def test_daemon_pool_shutdown_cancels_queued_loop_calls_on_their_loop() -> None:
    pool = DaemonThreadPool(1, "t")
    ran: list[int] = []
    told: list[bool] = []

    async def main() -> None:
        busy, release = _hold(pool)
        queued = [pool.run_soon(ran.append, n) for n in range(3)]
        for future in queued:  # a callback on each: a cancel schedules it on the loop
            future.add_done_callback(lambda f: told.append(f.cancelled()))
        # From another thread, as a stopping process may call it: each future is cancelled on
        # its loop's thread (debug mode below refuses a cancel from any other).
        await asyncio.to_thread(lambda: pool.shutdown(wait=False, cancel_futures=True))
        release.set()
        assert await busy is True
        for future in queued:
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(future, 30)

    asyncio.run(main(), debug=True)
    assert ran == []
    assert told == [True, True, True]
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(pow, 2, 1)


_EXIT_PROGRAM = textwrap.dedent("""
    import sys, threading
    from engine.runtime.worker import DaemonThreadPool
    from concurrent.futures import ThreadPoolExecutor
    pool = DaemonThreadPool(1, "t") if sys.argv[1] == "daemon" else ThreadPoolExecutor(1)
    started = threading.Event()
    pool.submit(lambda: (started.set(), threading.Event().wait(600)))
    started.wait()
    pool.shutdown(wait=False, cancel_futures=True)
    print("main done", flush=True)
""")


def test_an_activity_still_running_does_not_hold_the_process_open() -> None:
    # The old worker used ThreadPoolExecutor, whose threads are joined at interpreter exit.
    done = subprocess.run([sys.executable, "-c", _EXIT_PROGRAM, "daemon"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "main done\n"
    # The contrast, so this test shows what it guards against: past its main code, a process
    # whose pool is the standard library's waits for the running function.
    stdlib = subprocess.Popen([sys.executable, "-c", _EXIT_PROGRAM, "stdlib"], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert stdlib.stdout is not None and stdlib.stdout.readline() == "main done\n"
        with pytest.raises(subprocess.TimeoutExpired):
            stdlib.wait(timeout=3)
    finally:
        stdlib.kill()
        stdlib.wait(10)
        if stdlib.stdout is not None:
            stdlib.stdout.close()
