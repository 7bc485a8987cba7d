"""`headrace stack up|down|status`: the engine, a worker and the API as background processes.

`ops/dev up` calls this after starting Kafka, so a newcomer gets a working stack with the example
workflows registered. Pid files (with process start times, so a recycled pid is never killed) and
logs live in the state directory beside Kafka's. The engine and the worker serve metrics and health
on free ports (remembered in `<role>.metrics-port`), and `status` prints each one's health.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ops.errors import OpsError
from ops.kafka.paths import state_root
from ops.process import Child, ChildError, free_port, is_running, read_pidfile, terminate, write_pidfile

if TYPE_CHECKING:
    from ops.command import Subcommands

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


def up(app: str, roles: list[str], timeout_s: float = 90.0) -> None:
    # Here, not at the top: `headrace --help` imports this module and the engine package is not cheap.
    from engine.settings import Settings

    directory = stack_dir()
    started: list[tuple[str, Child]] = []
    for role in roles:
        pidfile = directory / f"{role}.pid"
        ref = read_pidfile(pidfile)
        if ref is not None and is_running(ref):
            print(f"{role}: already running (pid {ref.pid})", file=sys.stderr)
            continue
        argv, _ = ROLES[role]
        env = os.environ.copy()
        if role in METRICS_ROLES:
            port = free_port()
            env.update(Settings(metrics_port=port).to_env("metrics_port"))
            (directory / f"{role}.metrics-port").write_text(str(port))
        # Its own session: the stack outlives `headrace stack up` and the terminal it ran in.
        child = Child([sys.executable, "-m", "ops", *argv, "--app", app], directory / f"{role}.log",
                      env=env, detach=True, label=role)
        try:
            write_pidfile(pidfile, child.start())
        except ChildError as exc:
            raise StackError(str(exc)) from None
        started.append((role, child))
    deadline = time.monotonic() + timeout_s
    for role, child in started:
        try:
            child.wait_ready(ROLES[role][1], timeout_s=max(0.0, deadline - time.monotonic()))
        except ChildError as exc:
            raise StackError(str(exc)) from None
        # From here on the role is known by its pid file (`down`, `status`).
        child.forget()
        print(f"{role}: ready (log {child.log_path})", file=sys.stderr)


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
    roles = args.roles.split(",") if args.roles else list(ROLES)
    up(args.app, roles, args.timeout)
    return 0


def _down(args: argparse.Namespace) -> int:
    down()
    return 0


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


def register(subparsers: Subcommands) -> None:
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
