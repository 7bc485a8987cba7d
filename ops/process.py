"""Child processes of the tools (Kafka nodes, engines, workers, APIs): the one place that starts,
identifies, waits for, stops and logs them, and picks free ports for them.

A process is known by a `ProcessRef`: its pid and the kernel's start time of that pid (field 22 of
`/proc/<pid>/stat`, proc(5)), so a pid reused by an unrelated process is never signalled, and a pid
file survives the process that wrote it. `Child` is a process this process started, with its
output appended to a log file; each start writes a `===== start` line so readiness looks only at
the latest run's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ops.errors import OpsError

__all__ = [
    "START_MARK",
    "Child",
    "ChildError",
    "ProcessRef",
    "free_port",
    "free_ports",
    "identify",
    "is_running",
    "kill",
    "log_tail",
    "pids_mentioning",
    "read_pidfile",
    "terminate",
    "wait_gone",
    "write_pidfile",
]

_POLL_S = 0.05
_PR_SET_PDEATHSIG = 1

#: Written to a child's log before each start; what follows the last one is the current run's output.
START_MARK = "\n===== start"


class ChildError(OpsError):
    """A child process exited while starting, did not get ready in time, or survived SIGKILL."""


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
    # A process we spawned ourselves lingers as a zombie until waited for.
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
    """SIGKILL, as a crash would; a stopped (SIGSTOP) process dies as well."""
    if is_running(ref):
        with contextlib.suppress(ProcessLookupError):
            os.kill(ref.pid, signal.SIGKILL)
    if not wait_gone(ref, timeout_s):
        raise ChildError(f"process {ref.pid} survived SIGKILL for {timeout_s}s")


def terminate(ref: ProcessRef, grace_s: float) -> bool:
    """SIGTERM (and SIGCONT, so a paused process can act on it), then SIGKILL after `grace_s`.

    True if it ended within the grace period.
    """
    if not is_running(ref):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(ref.pid, signal.SIGTERM)
        os.kill(ref.pid, signal.SIGCONT)
    if wait_gone(ref, grace_s):
        return True
    kill(ref)
    return False


#: Sets the parent-death signal, then becomes the real program: a separate interpreter (isolated,
#: no site: ~15 ms) rather than a `preexec_fn`. With a `preexec_fn`, CPython starts the child with
#: fork() instead of vfork(), so every library's pthread_atfork handlers run in the child, and then
#: Python code runs there; the subprocess docs warn that it "is NOT SAFE to use in the presence of
#: threads ... the child process could deadlock before exec is called". It did: in a test process
#: with gRPC channels open, gRPC's fork handler hung an engine child before its exec.
#:
#: The program must not notice the interpreter in between: the signals Python ignores at start
#: (SIGPIPE, SIGXFSZ; an ignored signal stays ignored across exec) go back to their defaults, and
#: LC_CTYPE back to what the child was given (Python sets it to C.UTF-8 in its own environment
#: when the locale is C, PEP 538). An exec that fails is reported on `report` (closed on exec, so
#: the parent reads EOF once the program runs), and the parent raises it as Popen would. The getppid
#: check closes the race of a parent that died before the prctl.
_ORPHAN_GUARD = f"""\
import ctypes, os, signal, sys
PR_SET_PDEATHSIG = {_PR_SET_PDEATHSIG}
parent, report, ctype, argv = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4:]
ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
if os.getppid() != parent:
    sys.exit("not started: the process that started it had ended")
os.set_inheritable(report, False)
for number in (signal.SIGPIPE, signal.SIGXFSZ):
    signal.signal(number, signal.SIG_DFL)
env = dict(os.environ)
if ctype == "-":
    env.pop("LC_CTYPE", None)
else:
    env["LC_CTYPE"] = ctype[1:]
try:
    os.execvpe(argv[0], argv, env)
except OSError as exc:
    os.write(report, str(exc.errno).encode())
    os._exit(127)
"""


def _spawn_tied(argv: Sequence[str], env: Mapping[str, str] | None, **popen: Any) -> subprocess.Popen[bytes]:
    """`argv` started so that the kernel kills it (SIGKILL) when the thread that starts it ends,
    with its process or alone (prctl(2), PR_SET_PDEATHSIG, which survives exec). Returns once the
    program runs; raises what Popen would (FileNotFoundError, PermissionError) if it cannot."""
    ctype = (env if env is not None else os.environ).get("LC_CTYPE")
    report, write_end = os.pipe()
    with os.fdopen(report, "rb") as reader:
        try:
            child = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), str(write_end),
                 "-" if ctype is None else f"={ctype}", *argv],
                env=env, pass_fds=(write_end,), **popen,
            )
        finally:
            os.close(write_end)  # the wrapper's copy is then the only one: EOF once it execs
        failure = reader.read()
    if failure:
        child.wait()
        number = int(failure)
        raise OSError(number, os.strerror(number), argv[0])
    return child


def log_since(log_file: Path, start: int = 0) -> str | None:
    """What `log_file` holds from byte `start` on (None: there is no such file)."""
    try:
        with log_file.open("rb") as log:
            log.seek(start)
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return None


def log_tail(log_file: Path, lines: int = 30) -> str:
    text = log_since(log_file)
    return "(no log)" if text is None else "\n".join(text.splitlines()[-lines:])


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


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports the kernel calls free on `host` now (another process may take one
    before it is bound: callers bind soon, and Kafka's launcher checks again)."""
    # Hold every socket open until all are chosen so the kernel cannot hand out one port twice.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port(host: str = "127.0.0.1") -> int:
    return free_ports(1, host)[0]


class Child:
    """One process started by this one, its stdout and stderr appended to `log_path`.

    `detach=True` gives it its own session, so it outlives this process and ignores the terminal's
    SIGHUP and Ctrl-C (a `headrace kafka up` broker, a `headrace stack up` role); `die_with_parent`
    makes the kernel kill it when this process dies (harnesses, so nothing they started keeps
    loading a shared machine).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detach: bool = False,
        die_with_parent: bool = False,
        label: str | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.env = None if env is None else dict(env)
        self.cwd = cwd
        self.detach = detach
        self.die_with_parent = die_with_parent
        self.label = label or Path(self.argv[0]).name
        self.starts = 0
        self._popen: subprocess.Popen[bytes] | None = None

    # -- starting ----------------------------------------------------------------------------------

    def start(self) -> ProcessRef:
        """Start it (again, if it ended); returns its reference."""
        if self.alive:
            ref = identify(self.pid)
            assert ref is not None
            return ref
        self.starts += 1
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # One line, so that `log_text` can leave the command line out (a `-c` script has newlines).
            command = " ".join(self.argv).replace("\r", "\\r").replace("\n", "\\n")
            log.write(f"{START_MARK} {self.starts}: {command}\n".encode())
            log.flush()
            options: dict[str, Any] = {"cwd": self.cwd, "stdin": subprocess.DEVNULL, "stdout": log,
                                       "stderr": subprocess.STDOUT, "start_new_session": self.detach,
                                       "close_fds": True}
            if self.die_with_parent:
                self._popen = _spawn_tied(self.argv, self.env, **options)
            else:
                self._popen = subprocess.Popen(self.argv, env=self.env, **options)
        ref = identify(self._popen.pid)
        if ref is None:
            self._popen.wait()
            raise ChildError(f"{self.label} exited at once (exit {self._popen.returncode}); see {self.log_path}")
        return ref

    # -- state -------------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise ChildError(f"{self.label} was never started")
        return self._popen.pid

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def log_text(self) -> str:
        """The output of the latest start (not its start line, whose command line could match a
        readiness line the program has not printed yet)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if START_MARK not in text:
            return text
        return text.rsplit(START_MARK, 1)[1].partition("\n")[2]

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:]) or "(no output)"

    # -- waiting -----------------------------------------------------------------------------------

    def _settled(self, ready: bool, started: float, timeout_s: float) -> bool:
        if ready:
            return True
        if not self.alive:
            raise ChildError(f"{self.label} exited with {self.returncode} while starting:\n{self.log_tail()}")
        if time.monotonic() - started > timeout_s:
            raise ChildError(
                f"{self.label} not ready within {timeout_s:.0f}s (log {self.log_path}):\n{self.log_tail()}"
            )
        return False

    def _in_log(self, line: str) -> bool:
        return line in self.log_text()

    def wait_ready(self, ready: Callable[[], bool] | str, timeout_s: float = 90.0, interval_s: float = 0.1) -> float:
        """Until `ready()` holds (or, given a string, the current run's output contains it).

        Raises ChildError when the process exits first or `timeout_s` passes; returns the seconds waited.
        """
        started = time.monotonic()
        while not self._settled(self._in_log(ready) if isinstance(ready, str) else ready(), started, timeout_s):
            time.sleep(interval_s)
        return time.monotonic() - started

    async def wait_ready_async(
        self, ready: Callable[[], Awaitable[bool]] | str, timeout_s: float = 90.0, interval_s: float = 0.1
    ) -> float:
        """`wait_ready` on an event loop, with an async check (e.g. an HTTP probe)."""
        started = time.monotonic()
        while True:
            ok = self._in_log(ready) if isinstance(ready, str) else await ready()
            if self._settled(ok, started, timeout_s):
                return time.monotonic() - started
            await asyncio.sleep(interval_s)

    # -- stopping ----------------------------------------------------------------------------------

    def signal(self, sig: signal.Signals) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.send_signal(sig)

    def kill(self, timeout_s: float = 10.0) -> None:
        """SIGKILL: no shutdown code runs, as in a crash (a paused process dies too)."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._popen.send_signal(signal.SIGCONT)
            self._popen.kill()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            raise ChildError(f"{self.label} (pid {self._popen.pid}) survived SIGKILL for {timeout_s}s") from None

    def wait(self, timeout_s: float) -> bool:
        """Until it ends, at most `timeout_s`; True if it ended (or never started)."""
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return False
        return True

    def stop(self, grace_s: float = 20.0) -> bool:
        """SIGTERM (with SIGCONT, so a paused process can act on it), SIGKILL after `grace_s`.

        True if it ended within the grace period (or had already ended).
        """
        if self._popen is None or self._popen.poll() is not None:
            return True
        self._popen.terminate()
        self._popen.send_signal(signal.SIGCONT)
        if self.wait(grace_s):
            return True
        self.kill()
        return False

    def forget(self) -> None:
        """Leave a detached child running without this object waiting for it (it is known by its
        pid file from now on); Python then does not warn that it is still running."""
        if self._popen is not None:
            # Popen warns (ResourceWarning) when collected while its process runs; a detached
            # child outliving us is the point, and `is_running` reaps it if it ends first.
            self._popen.returncode = 0
            self._popen = None
