"""Two checkouts' turns measured at once, one per core: how docs/performance.md compares builds.

On a shared machine, runs of one build minutes apart differ by up to a fifth, more than most
changes to the turn are worth (issue 17). Run at the same moment, one per core, two copies of the
same build differ by 2-5 %; swapping the cores each pair cancels a difference between them. Each
side is `python -m ops.bench.turns` run in its own directory, which comes first on its import path:
a checkout, a `git worktree`, or a compiled copy from `python -m ops.native build --out DIR`; its
own harness runs, so a checkout from before a change to the harness's inputs compares as well.

    python -m ops.bench.paired BEFORE_DIR AFTER_DIR --pairs 4 --workflows 2000 --rounds 3

Each pair prints both medians (CPU microseconds per workflow) and their ratio; the last line gives
the mean of the ratios, the figure the performance notes quote. With one usable CPU the two sides
run one after the other instead.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.process import Child

from .turns import Shape

__all__ = ["Pair", "main", "run_pairs"]

#: The median in the harness's line: "... (min 1203, median 1210); 2,000 of 2,000 completed ...".
_MEDIAN = re.compile(r"median ([0-9]+(?:\.[0-9]+)?)\)")

#: Longest one side may take (a round of thousands of workflows takes seconds).
SIDE_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Pair:
    """One pair: each side's median CPU microseconds per workflow, and the cores they ran on."""

    before_us: float
    after_us: float
    cores: tuple[int, int] | None

    @property
    def ratio(self) -> float:
        return self.after_us / self.before_us

    def line(self, number: int) -> str:
        where = f" (cores {self.cores[0]}/{self.cores[1]})" if self.cores else ""
        return (f"pair {number}{where}: before {self.before_us:,.0f} -> after {self.after_us:,.0f} us per workflow "
                f"({self.ratio - 1:+.1%})")


def run_pairs(before: Path, after: Path, pairs: int, turns_args: Sequence[str],
              out: Callable[[str], Any] = print) -> list[Pair]:
    """`pairs` pairs of `python -m ops.bench.turns turns_args`, `before` and `after` at once."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    results: list[Pair] = []
    with tempfile.TemporaryDirectory(prefix="headrace-paired-") as logs:
        for number in range(1, pairs + 1):
            cores = (usable[0], usable[1]) if len(usable) >= 2 else None
            if cores is not None and number % 2 == 0:
                cores = (cores[1], cores[0])
            sides = [_side(directory, Path(logs) / f"{label}-{number}.log", turns_args)
                     for label, directory in (("before", before), ("after", after))]
            if cores is None:  # one CPU: one after the other
                medians = []
                for side in sides:
                    side.start()
                    medians.append(_median(side))
            else:
                for side, core in zip(sides, cores, strict=True):
                    side.start()
                    # Pinned once running, both before either is waited for: what runs unpinned is
                    # the interpreter's start, which the harness does not count (it times each
                    # round with the process's own CPU clock).
                    os.sched_setaffinity(side.pid, {core})
                medians = [_median(side) for side in sides]
            pair = Pair(medians[0], medians[1], cores)
            results.append(pair)
            out(pair.line(number))
    ratios = [p.ratio for p in results]
    out(f"mean of the ratios: {statistics.mean(ratios) - 1:+.1%} over {len(ratios)} pairs "
        f"(from {min(ratios) - 1:+.1%} to {max(ratios) - 1:+.1%})")
    return results


def _side(directory: Path, log: Path, turns_args: Sequence[str]) -> Child:
    env = {**os.environ, "PYTHONPATH": str(directory)}
    return Child([sys.executable, "-m", "ops.bench.turns", *turns_args], log, env=env, cwd=directory,
                 die_with_parent=True, label=f"turns in {directory}")


def _median(side: Child) -> float:
    """Wait for the started `side` to end; its median CPU microseconds per workflow."""
    if not side.wait(SIDE_TIMEOUT_S):
        side.stop()
        raise SystemExit(f"{side.label} took over {SIDE_TIMEOUT_S:.0f} s; see {side.log_path}")
    text = side.log_text()
    if side.returncode != 0:
        raise SystemExit(f"{side.label} failed (exit {side.returncode}):\n{text[-2000:]}")
    # The harness's one line (`TurnFigures.line`), as every checkout since it existed prints it.
    found = _MEDIAN.search(text)
    if found is None:
        raise SystemExit(f"{side.label} printed no median:\n{text[-2000:]}")
    return float(found[1])


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.paired", description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="directory of the code before (a checkout or a compiled copy)")
    parser.add_argument("after", type=Path, help="directory of the code after")
    parser.add_argument("--pairs", type=int, default=4, help="pairs to run, the cores swapped each time (4)")
    parser.add_argument("--shape", type=Shape.parse, default=Shape("chain", 5), help="chain-N or parallel-N (chain-5)")
    parser.add_argument("--workflows", type=int, default=2000, help="workflows per round (2,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, of which the median counts (3)")
    args = parser.parse_args(argv)
    for directory in (args.before, args.after):
        if not (directory / "engine" / "__init__.py").is_file():
            parser.error(f"{directory}: not a Headrace checkout (no engine/__init__.py)")
    shape = f"{args.shape.kind}-{args.shape.size}"
    run_pairs(args.before.resolve(), args.after.resolve(), args.pairs,
              ["--shape", shape, "--workflows", str(args.workflows), "--rounds", str(args.rounds)], out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
