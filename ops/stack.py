"""`headrace stack up|down|status`: the engine, a worker and the API as background processes.

`ops/dev up` calls this after starting Kafka, so a newcomer gets a working stack with the example
workflows registered. Pid files (with process start times, so a recycled pid is never killed) and
logs live in the state directory beside Kafka's.
"""

from __future__ import annotations

import argparse
import os
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
        with log_file.open("ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "ops", *argv, "--app", app],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True, env=os.environ.copy(),
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
            clean = terminate(ref, grace_s=20.0)
            print(f"{role}: stopped{'' if clean else ' (killed)'}", file=sys.stderr)
        pidfile.unlink(missing_ok=True)


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


def _status(args: argparse.Namespace) -> int:
    for role in ROLES:
        ref = read_pidfile(stack_dir() / f"{role}.pid")
        state = f"running (pid {ref.pid})" if ref is not None and is_running(ref) else "stopped"
        print(f"{role}: {state}")
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
    sub.add_parser("status", help="show which run").set_defaults(handler=_status)
