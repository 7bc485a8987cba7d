"""`--profile`: py-spy samples engine and worker processes during a scenario's window.

py-spy writes collapsed stacks ("frame;frame;... count" lines, `--format raw`); any flame graph
tool draws them, and `summarize` turns them into the top functions by own and by total time for
the JSON file and the report. Sampling pauses the process ~100 times a second, so a profiled run's
speed figures are a little lower than an unprofiled one's.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ops.process import Child

__all__ = ["Profiler", "py_spy", "summarize"]


def py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profiler:
    def __init__(self, out_dir: Path, targets: dict[str, list[int]], duration_s: float) -> None:
        self.out_dir = out_dir
        self.targets = targets
        self.duration_s = max(1, int(duration_s))
        self.runs: list[tuple[str, int, Path, Child]] = []

    def start(self) -> None:
        exe = py_spy()
        if exe is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        for kind, pids in self.targets.items():
            for pid in pids:
                path = self.out_dir / f"{kind}-{pid}.folded"
                proc = Child(
                    [
                        exe,
                        "record",
                        "--pid",
                        str(pid),
                        "--duration",
                        str(self.duration_s),
                        "--rate",
                        "100",
                        "--format",
                        "raw",
                        "--function",
                        # Only samples holding the GIL: where the CPU goes, not threads waiting
                        # in epoll or on the activity pool's queue.
                        "--gil",
                        "--output",
                        str(path),
                    ],
                    self.out_dir / f"{kind}-{pid}.py-spy.log",
                    label=f"py-spy of {kind} {pid}",
                )
                proc.start()
                self.runs.append((kind, pid, path, proc))

    def interrupt(self) -> None:
        """End sampling now: on SIGINT py-spy writes what it has."""
        for _, _, _, proc in self.runs:
            proc.signal(signal.SIGINT)

    def stop(self) -> dict[str, Any]:
        """Wait for every py-spy to write its file and summarize each process."""
        self.interrupt()
        out: dict[str, Any] = {}
        for kind, pid, path, proc in self.runs:
            if not proc.wait(30):
                proc.kill()
            with contextlib.suppress(OSError, ValueError):
                out[f"{kind}-{pid}"] = {"file": str(path), **summarize(path)}
        return out


#: Frames every sample passes through (entry points, the event loop, thread bootstrap): left out of
#: the by-total list, where they would fill the top rows with 100 %.
_TRUNK = (
    "asyncio/",
    "<frozen runpy>",
    "threading.py",
    "concurrent/futures/",
    "ops/__main__.py",
    "ops/cli.py",
    "ops/engine_cli.py",
    "selectors.py",
)


def summarize(path: Path, top: int = 15) -> dict[str, Any]:
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            if not any(part in frame for part in _TRUNK):
                total[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / samples, 1)) for f, n in counter.most_common(top)]

    return {"samples": samples, "top_own_pct": share(own), "top_total_pct": share(total)}
