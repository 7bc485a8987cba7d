"""Starting, watching and stopping one Kafka JVM, by pid, from any process.

Pid files store the kernel's start time of the process next to its pid, so a stale pid file whose
number was reused by an unrelated process is never signalled.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ops.kafka.errors import BrokerStartFailed
from ops.kafka.jars import KafkaJars
from ops.kafka.java import JavaRuntime

_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessRef:
    pid: int
    start_ticks: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name sits in parentheses and may contain spaces; fields follow the last ')'.
    return raw.rsplit(")", 1)[1].split()


def identify(pid: int) -> ProcessRef | None:
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return ProcessRef(pid=pid, start_ticks=int(fields[19]))


def _reap_if_child(pid: int) -> None:
    # A broker we spawned ourselves lingers as a zombie until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def is_running(ref: ProcessRef) -> bool:
    _reap_if_child(ref.pid)
    fields = _stat_fields(ref.pid)
    if fields is None:
        return False
    state, start_ticks = fields[0], int(fields[19])
    return start_ticks == ref.start_ticks and state not in {"Z", "X"}


def write_pidfile(path: Path, ref: ProcessRef) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{ref.pid} {ref.start_ticks}\n")
    tmp.replace(path)


def read_pidfile(path: Path) -> ProcessRef | None:
    try:
        pid_text, ticks_text = path.read_text().split()
        return ProcessRef(pid=int(pid_text), start_ticks=int(ticks_text))
    except (FileNotFoundError, ValueError):
        return None


def wait_gone(ref: ProcessRef, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while is_running(ref):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True


def kill(ref: ProcessRef, timeout_s: float = 10.0) -> None:
    if is_running(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
    if not wait_gone(ref, timeout_s):
        raise BrokerStartFailed(f"process {ref.pid} survived SIGKILL for {timeout_s}s")


def terminate(ref: ProcessRef, grace_s: float) -> bool:
    """SIGTERM (Kafka's controlled shutdown), then SIGKILL after `grace_s`. True if it was clean."""
    if not is_running(ref):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, signal.SIGTERM)
    if wait_gone(ref, grace_s):
        return True
    kill(ref)
    return False


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: when the test process dies, the kernel kills
    # the broker too.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def format_storage(
    java: JavaRuntime,
    jars: KafkaJars,
    config: Path,
    cluster_id: str,
    jvm_opts: Sequence[str],
    extra_args: Sequence[str] = (),
) -> None:
    """Format one node's KRaft storage; `extra_args` adds e.g. `--add-scram` credentials."""
    argv = [
        str(java.executable),
        *jvm_opts,
        "-cp",
        jars.classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(config),
        "--ignore-formatted",
        *extra_args,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise BrokerStartFailed(
            f"formatting KRaft storage for {config} failed (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )


def spawn(
    java: JavaRuntime,
    jars: KafkaJars,
    config: Path,
    log_file: Path,
    jvm_opts: Sequence[str],
    *,
    die_with_parent: bool,
) -> ProcessRef:
    argv = [str(java.executable), *jvm_opts, "-cp", jars.classpath, "kafka.Kafka", str(config)]
    with log_file.open("ab") as log:
        log.write(f"\n===== headrace: starting {' '.join(argv)}\n".encode())
        log.flush()
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own session: `headrace kafka up` exits and the broker stays, immune to the
            # terminal's SIGHUP and to Ctrl-C aimed at the launcher.
            start_new_session=True,
            preexec_fn=_die_with_parent if die_with_parent else None,
            close_fds=True,
        )
    ref = identify(child.pid)
    if ref is None:
        child.wait()
        raise BrokerStartFailed(f"broker exited at once (exit {child.returncode}); see {log_file}")
    return ref


def log_tail(log_file: Path, lines: int = 30) -> str:
    try:
        text = log_file.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def pids_mentioning(text: str) -> list[int]:
    """Pids of live processes whose command line contains `text` (e.g. a state directory)."""
    found: list[int] = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            ref = identify(int(entry.name))
            if ref is not None and is_running(ref):
                found.append(ref.pid)
    return found
