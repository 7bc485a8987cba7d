"""Benchmark of the replay executor (a measurement to read, not a test that passes or fails).

    python -m tests.bench_executor                 # 10,000-activity chain
    python -m tests.bench_executor --steps 2000 --repeat 1

1. Sticky execution: one live `WorkflowExecution` runs a chain of N activities; each turn feeds
   `WorkflowStarted` + `TaskCompleted` to `WorkflowExecution.step` and gets the next
   `ScheduleTask` back. The time of every step is taken; the mean (and median) over a window of
   steps around step 100 and around step N-100 must be the same if a step costs O(1), whatever
   the length of the history behind it.
2. Replay from scratch: a fresh execution replays the whole recorded history (what happens after
   a restart, a rebalance or a cache eviction), reported as time per history event; half the
   history is replayed too, to show the cost is linear.
3. For scale: the fold (`fold_all`) and the codec's decoding of the same history, per event.

Event objects are built before the clock starts, so the numbers are the executor's own cost.
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.core import events as ev
from engine.core.actions import ScheduleTask
from engine.core.codec import Codec, encode
from engine.core.executor import WorkflowExecution, execute
from engine.core.state import InstanceState, fold_all

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IID = "bench-chain"


def chain(ctx: Any, n: int) -> Any:
    total = 0
    for i in range(n):
        total += yield ctx.call_activity("step", input=i)
    return total


def resolve(name: str) -> Callable[..., Any] | None:
    return chain if name == "chain" else None


def turn_inputs(steps: int) -> list[list[ev.HistoryEvent]]:
    """The inputs of every turn: the start, then one activity result per turn."""
    turns: list[list[ev.HistoryEvent]] = [
        [
            ev.WorkflowStarted(timestamp=T0),
            ev.ExecutionStarted(
                timestamp=T0, name="chain", instance_id=IID, execution_id="e1", input=str(steps)
            ),
        ]
    ]
    for i in range(steps):
        t = T0 + timedelta(milliseconds=i + 1)
        turns.append(
            [
                ev.WorkflowStarted(timestamp=t),
                ev.TaskCompleted(timestamp=t, task_scheduled_id=i, result="1"),
            ]
        )
    return turns


def run_live(steps: int) -> tuple[list[int], list[ev.HistoryEvent]]:
    """Drive one live execution through every turn; return per-step nanoseconds and the history."""
    turns = turn_inputs(steps)
    execution = WorkflowExecution(IID, resolve)
    history: list[ev.HistoryEvent] = []
    times: list[int] = []
    clock = time.perf_counter_ns
    for inputs in turns:
        started = clock()
        result = execution.step(inputs)
        times.append(clock() - started)
        t = inputs[0].timestamp
        history.extend(inputs)
        for action in result.actions:
            if isinstance(action, ScheduleTask):
                history.append(
                    ev.TaskScheduled(
                        timestamp=t, event_id=action.id, name=action.name, input=action.input
                    )
                )
        history.append(ev.WorkflowCompleted(timestamp=t, custom_status=result.custom_status))
        if result.completion is not None:
            c = result.completion
            history.append(
                ev.ExecutionCompleted(timestamp=t, event_id=c.id, status=c.status, result=c.result)
            )
    assert execution.is_complete, "the chain did not finish"
    history = [replace(e, seq=i) for i, e in enumerate(history)]
    return times[1:], history  # times[k] is the step that delivers the result of activity k


def window(times: Sequence[int], center: int, width: int) -> list[int]:
    lo = max(0, center - width // 2)
    return list(times[lo : lo + width])


def best_of(repeat: int, fn: Callable[[], Any]) -> float:
    """Seconds of the fastest of `repeat` runs (the least disturbed by the rest of the machine)."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000, help="activities in the chain")
    parser.add_argument(
        "--window", type=int, default=100, help="steps averaged around each probe point"
    )
    parser.add_argument(
        "--repeat", type=int, default=5, help="runs; the median of the window means is shown"
    )
    args = parser.parse_args(argv)
    steps, width = args.steps, args.window
    early, late = 100, steps - 100
    if late <= early + width:
        parser.error(
            "--steps must leave the two windows apart (at least 300 with the default window)"
        )

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {steps:,}-activity chain, "
        f"windows of {width} steps, {args.repeat} run(s)"
    )

    early_means, late_means, early_medians, late_medians = [], [], [], []
    history: list[ev.HistoryEvent] = []
    for _ in range(args.repeat):
        gc.collect()
        times, history = run_live(steps)
        a, b = window(times, early, width), window(times, late, width)
        early_means.append(statistics.fmean(a))
        late_means.append(statistics.fmean(b))
        early_medians.append(statistics.median(a))
        late_medians.append(statistics.median(b))
    e_mean, l_mean = statistics.median(early_means), statistics.median(late_means)
    e_med, l_med = statistics.median(early_medians), statistics.median(late_medians)
    print(
        "\nsticky execution, WorkflowExecution.step "
        "(one activity result in, next ScheduleTask out):"
    )
    print(
        f"  around step {early:>6,}: mean {e_mean / 1000:7.2f} µs   median {e_med / 1000:7.2f} µs"
    )
    print(f"  around step {late:>6,}: mean {l_mean / 1000:7.2f} µs   median {l_med / 1000:7.2f} µs")
    print(
        f"  late/early: mean {l_mean / e_mean:.2f}x, median {l_med / e_med:.2f}x "
        f"(1.00x = a step costs the same however long the history)"
    )

    n_events = len(history)
    half = history[: n_events // 2]
    full_s = best_of(args.repeat, lambda: execute(IID, resolve, history, []))
    half_s = best_of(args.repeat, lambda: execute(IID, resolve, half, []))
    print("\nreplay from scratch, execute(past=history, new=[]):")
    print(
        f"  {n_events:>7,} events: {full_s * 1000:8.1f} ms"
        f" = {full_s / n_events * 1e6:6.2f} µs/event"
    )
    print(
        f"  {len(half):>7,} events: {half_s * 1000:8.1f} ms"
        f" = {half_s / len(half) * 1e6:6.2f} µs/event"
    )

    fold_s = best_of(args.repeat, lambda: fold_all(InstanceState(instance_id=IID), history))
    wire = [encode(e) for e in history]
    codec = Codec(ev.EVENT_TYPES)
    decode_s = best_of(args.repeat, lambda: [codec.decode(w) for w in wire])
    print("\nfor scale, over the same history:")
    print(f"  fold_all:      {fold_s / n_events * 1e6:6.2f} µs/event")
    print(
        f"  codec decode:  {decode_s / n_events * 1e6:6.2f} µs/event "
        f"(mean {sum(map(len, wire)) / n_events:.0f} bytes/event)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
