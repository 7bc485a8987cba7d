"""`headrace stack up|down|status`: the engine, a worker and the API as background processes.

`ops/dev up` calls this after starting Kafka, so a newcomer gets a working stack with the example
workflows registered. Pid files (with process start times, so a recycled pid is never killed) and
logs live in the state directory beside Kafka's. The engine and the worker serve metrics and health
on free ports (remembered in `<role>.metrics-port`), and `status` prints each one's health.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ops.errors import OpsError
from ops.kafka.paths import state_root
from ops.kafka.process import identify, is_running, log_tail, read_pidfile, terminate, write_pidfile

#: Role → (CLI arguments after `headrace`, the log line that says it is ready).
ROLES: dict[str, tuple[list[str], str]] = {
    "engine": (["engine"], "engine ready"),
    "worker": (["worker"], "activity worker started"),
    "api": (["api"], "Uvicorn running"),
}


#: Roles that serve /metrics, /healthz and /readyz (engine/runtime/telemetry.py).
METRICS_ROLES = ("engine", "worker")


class StackError(OpsError):
    """A stack process did not start."""


def stack_dir() -> Path:
    path = state_root() / "stack"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _available_roles() -> list[str]:
    from ops.cli import build_parser

    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [role for role, (argv, _) in ROLES.items() if argv[0] in subcommands.choices]


def up(app: str, roles: list[str], timeout_s: float = 90.0) -> None:
    directory = stack_dir()
    started: list[tuple[str, Path]] = []
    for role in roles:
        pidfile = directory / f"{role}.pid"
        ref = read_pidfile(pidfile)
        if ref is not None and is_running(ref):
            print(f"{role}: already running (pid {ref.pid})", file=sys.stderr)
            continue
        log_file = directory / f"{role}.log"
        argv, _ = ROLES[role]
        env = os.environ.copy()
        if role in METRICS_ROLES:
            port = _free_port()
            env["HEADRACE_METRICS_PORT"] = str(port)
            (directory / f"{role}.metrics-port").write_text(str(port))
        with log_file.open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "ops", *argv, "--app", app],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=env,
            )
        ref = identify(child.pid)
        if ref is None:
            raise StackError(f"{role} exited at once; see {log_file}")
        write_pidfile(pidfile, ref)
        started.append((role, log_file))
    deadline = time.monotonic() + timeout_s
    for role, log_file in started:
        marker = ROLES[role][1]
        while marker not in log_file.read_text(errors="replace").split("===== start")[-1]:
            ref = read_pidfile(directory / f"{role}.pid")
            if ref is None or not is_running(ref):
                raise StackError(f"{role} stopped while starting:\n{log_tail(log_file)}")
            if time.monotonic() > deadline:
                raise StackError(f"{role} not ready within {timeout_s:.0f}s:\n{log_tail(log_file)}")
            time.sleep(0.1)
        print(f"{role}: ready (log {log_file})", file=sys.stderr)


def down() -> None:
    directory = stack_dir()
    for role in reversed(list(ROLES)):
        pidfile = directory / f"{role}.pid"
        ref = read_pidfile(pidfile)
        if ref is not None:
            # A worker lets running activities finish for its grace period (30 s by default) first.
            clean = terminate(ref, grace_s=45.0)
            print(f"{role}: stopped{'' if clean else ' (killed)'}", file=sys.stderr)
        pidfile.unlink(missing_ok=True)
        (directory / f"{role}.metrics-port").unlink(missing_ok=True)


def _up(args: argparse.Namespace) -> int:
    roles = args.roles.split(",") if args.roles else _available_roles()
    directory = stack_dir()
    for role in roles:
        with (directory / f"{role}.log").open("ab") as log:
            log.write(b"\n===== start\n")
    up(args.app, roles, args.timeout)
    return 0


def _down(args: argparse.Namespace) -> int:
    down()
    return 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health(role: str) -> str:
    """One line on a running role's /readyz: "healthy", or its problems; "" if it serves none."""
    import httpx

    path = stack_dir() / f"{role}.metrics-port"
    if role not in METRICS_ROLES or not path.exists():
        return ""
    try:
        reply = httpx.get(f"http://127.0.0.1:{path.read_text().strip()}/readyz", timeout=5)
        body = reply.json()
    except (httpx.HTTPError, ValueError) as exc:
        return f"health unknown ({type(exc).__name__})"
    if reply.status_code == 200:
        return "healthy"
    problems = "; ".join(
        f"{'partition ' + str(p['partition']) + ': ' if p.get('partition') is not None else ''}{p.get('reason')}"
        for p in body.get("problems", [])
    )
    return f"UNHEALTHY: {problems}"


def _status(args: argparse.Namespace) -> int:
    for role in ROLES:
        ref = read_pidfile(stack_dir() / f"{role}.pid")
        running = ref is not None and is_running(ref)
        state = f"running (pid {ref.pid})" if ref is not None and running else "stopped"
        line = health(role) if running else ""
        print(f"{role}: {state}{', ' + line if line else ''}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("stack", help="run the engine, a worker and the API in the background")
    sub = parser.add_subparsers(dest="stack_command", metavar="ACTION", required=True)
    up_parser = sub.add_parser("up", help="start the processes and wait until they are ready")
    up_parser.add_argument("--app", default="examples.app:runtime", help="module:attribute of a WorkflowRuntime")
    up_parser.add_argument("--roles", help="comma-separated subset of engine,worker,api (default: all)")
    up_parser.add_argument("--timeout", type=float, default=90.0)
    up_parser.set_defaults(handler=_up)
    sub.add_parser("down", help="stop them").set_defaults(handler=_down)
    sub.add_parser("status", help="show which run, and the health of engine and worker").set_defaults(
        handler=_status)
