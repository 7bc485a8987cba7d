"""CPU seconds and memory of processes, read from /proc (Linux only).

Peak RSS is VmHWM. Writing "5" to /proc/<pid>/clear_refs resets it to the current RSS, so a peak
can be measured over one scenario's window even for a broker or a load generator that lives
through several scenarios.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CpuMem", "ProcessTable", "listener_pid", "machine_busy_s", "read", "reset_peak"]

_TICK = os.sysconf("SC_CLK_TCK")
_KB = 1024


@dataclass(frozen=True, slots=True)
class CpuMem:
    cpu_s: float
    rss_bytes: int
    peak_rss_bytes: int
    #: Of `cpu_s`, what a JVM's just-in-time compiler threads spent: a fresh broker compiles its
    #: hot paths for minutes (measured: half a core through a whole bench run on 2 cores), a cost a
    #: long-running broker paid long ago. Reported apart, so CPU per workflow is the steady cost.
    jit_s: float = 0.0


def read(pid: int) -> CpuMem | None:
    """CPU (user+system, all threads) and memory of one process; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # Fields after the command name start at field 3 (state): utime is 14, stime 15.
    cpu = (int(fields[11]) + int(fields[12])) / _TICK
    rss = _status_kb(status, "VmRSS")
    return CpuMem(cpu_s=cpu, rss_bytes=rss, peak_rss_bytes=max(rss, _status_kb(status, "VmHWM")),
                  jit_s=_compiler_s(pid))


#: Thread names (as /proc shows them, cut to 15 characters) of HotSpot's C1 and C2 compilers.
_COMPILER_THREAD = re.compile(r"^C\d CompilerThre")


def _compiler_s(pid: int) -> float:
    """CPU seconds of the JIT compiler threads of `pid` (0 for a process that has none)."""
    total = 0
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                if not _COMPILER_THREAD.match((task / "comm").read_text()):
                    continue
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    return total / _TICK


def _status_kb(status: str, name: str) -> int:
    match = re.search(rf"^{name}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) * _KB if match else 0


def reset_peak(pid: int) -> bool:
    """Start VmHWM afresh from the current RSS; False where the kernel or permissions refuse."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def machine_busy_s() -> tuple[float, int]:
    """CPU seconds spent busy by the whole machine since boot (all cores), and the core count."""
    lines = Path("/proc/stat").read_text().splitlines()
    # user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in lines[0].split()[1:8])
    busy = user + nice + system + irq + softirq
    cores = sum(1 for line in lines if re.match(r"cpu\d+ ", line))
    return busy / _TICK, cores


def listener_pid(port: int) -> int | None:
    """The local process listening on TCP `port` (the broker of a given bootstrap), if visible."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                local, state, inode = parts[1], parts[3], parts[9]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                    inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if str(fd.readlink()) in inodes:
                        return int(proc.name)
    return None


@dataclass
class ProcessTable:
    """The measured processes by kind (broker, engine, worker, api, loadgen)."""

    pids: dict[str, list[int]] = field(default_factory=dict)

    def add(self, kind: str, pid: int) -> None:
        self.pids.setdefault(kind, []).append(pid)

    def snapshot(self) -> dict[str, dict[int, CpuMem]]:
        out: dict[str, dict[int, CpuMem]] = {}
        for kind, pids in self.pids.items():
            out[kind] = {pid: m for pid in pids if (m := read(pid)) is not None}
        return out

    def reset_peaks(self) -> None:
        for pids in self.pids.values():
            for pid in pids:
                reset_peak(pid)
