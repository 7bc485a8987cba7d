"""`python -m ops.bench.turns`: the engine's turns without Kafka run every workflow to its end."""

from __future__ import annotations

import argparse

import pytest

from ops.bench.turns import Shape, main


@pytest.mark.parametrize("shape", ["chain-3", "parallel-4"])
def test_every_workflow_completes_and_a_figure_is_printed(shape: str) -> None:
    lines: list[str] = []
    assert main(["--shape", shape, "--workflows", "30", "--rounds", "2", "--batch", "7"], out=lines.append) == 0
    (line,) = lines
    assert line.startswith(f"{shape}: 30 workflows")
    assert "30 of 30 completed" in line


def test_a_shape_is_chain_or_parallel_with_a_size() -> None:
    assert Shape.parse("parallel-12") == Shape("parallel", 12)
    for bad in ("chain", "chain-0", "fan-5", "chain-5x"):
        with pytest.raises(argparse.ArgumentTypeError):
            Shape.parse(bad)
