"""The benchmark script runs and its chain history is a valid one (a smoke test, not a timing)."""

from __future__ import annotations

import runpy
from pathlib import Path

from support import check_replay_turns

from engine.core import events as ev
from engine.core.state import InstanceState, fold_all
from engine.core.values import RuntimeStatus

BENCH = runpy.run_path(
    str(Path(__file__).resolve().parents[1] / "bench_executor.py"), run_name="bench"
)


def test_main_prints_every_measurement(capsys):
    assert BENCH["main"](["--steps", "320", "--window", "20", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    for needle in (
        "around step    100",
        "around step    220",
        "late/early",
        "µs/event",
        "fold_all",
        "codec decode",
    ):
        assert needle in out


def test_chain_history_is_valid_and_replays():
    times, history = BENCH["run_live"](50)
    assert len(times) == 50
    assert all(t > 0 for t in times)
    assert len(history) == 4 * 51  # 51 turns of four events; the last ends with ExecutionCompleted
    state = fold_all(InstanceState(instance_id="bench-chain"), history)
    assert state.status is RuntimeStatus.COMPLETED
    assert state.output == "50"
    assert isinstance(history[-1], ev.ExecutionCompleted)
    check_replay_turns("bench-chain", BENCH["resolve"], history)
