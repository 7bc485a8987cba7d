"""`python -m ops.bench.paired`: two checkouts' turns at once, one per core, cores swapped each pair."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.bench.paired import main

ROOT = Path(__file__).resolve().parents[2]


def test_each_pair_prints_both_medians_and_the_mean_of_the_ratios_ends() -> None:
    lines: list[str] = []
    assert main([str(ROOT), str(ROOT), "--pairs", "2", "--workflows", "20", "--rounds", "1"], out=lines.append) == 0
    assert [line.split(":")[0].split(" (")[0] for line in lines[:2]] == ["pair 1", "pair 2"]
    for line in lines[:2]:
        assert "before " in line and " -> after " in line and "us per workflow" in line
    assert lines[2].startswith("mean of the ratios: ") and "over 2 pairs" in lines[2]
    assert len(lines) == 3


def test_a_directory_without_the_engine_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), str(ROOT)])
    assert exit_info.value.code == 2
    assert "not a Headrace checkout" in capsys.readouterr().err


def test_both_sides_are_pinned_before_either_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each side on its own core for the whole pair, the cores swapped the next pair: a side
    pinned only once the other had ended would have shared the first core with it."""
    import os

    from ops.process import Child

    steps: list[tuple[str, int]] = []
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "sched_setaffinity", lambda pid, cores: steps.append(("pin", *cores)), raising=False)
    wait = Child.wait

    def recorded_wait(self: Child, timeout_s: float) -> bool:
        steps.append(("wait", self.pid))
        return wait(self, timeout_s)

    monkeypatch.setattr(Child, "wait", recorded_wait)
    args = [str(ROOT), str(ROOT), "--pairs", "2", "--workflows", "10", "--rounds", "1"]
    assert main(args, out=lambda line: None) == 0
    kinds = [kind for kind, _ in steps]
    assert kinds == ["pin", "pin", "wait", "wait"] * 2
    assert [core for kind, core in steps if kind == "pin"] == [0, 1, 1, 0]
