"""`headrace kafka ...`: a real local Apache Kafka for development and tests.

Progress goes to stderr; stdout carries only results meant for scripts (the bootstrap address after
`up`), so `BOOTSTRAP=$(headrace kafka up --free-port)` works.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.command import Subcommands, group_options


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _deployment(args: argparse.Namespace) -> Any:
    from ops.kafka.deployment import LocalKafka
    from ops.kafka.paths import kafka_state_dir

    state_dir = Path(args.state_dir) if args.state_dir else kafka_state_dir()
    return LocalKafka(state_dir, log=_say)


def _up(args: argparse.Namespace) -> int:
    from ops.kafka.deployment import DEFAULT_PORT

    local = _deployment(args)
    port = None if args.free_port else (args.port or DEFAULT_PORT)
    result = local.up(
        nodes=args.cluster, port=port, wipe=args.wipe, timeout_s=args.timeout, secure=args.sasl_ssl
    )
    manifest = result.manifest
    size = len(manifest.nodes)
    shape = "single node" if size == 1 else f"{size}-node cluster"
    if result.already_running:
        _say(f"Kafka {manifest.version} ({shape}) is already running.")
    else:
        jars = "downloaded" if result.downloaded else "cached"
        _say(
            f"Kafka {manifest.version} ({shape}) ready in "
            f"{result.jars_s + result.format_s + result.ready_s:.1f}s "
            f"(jars {result.jars_s:.1f}s {jars}, format {result.format_s:.1f}s, "
            f"start {result.ready_s:.1f}s). State: {local.state_dir}"
        )
    for status in local.status():
        _say(f"  node {status.spec.node_id}: pid {status.pid}, {status.spec.bootstrap}")
    _say(f"Bootstrap servers: {manifest.bootstrap}")
    if manifest.secure:
        env_file = local.state_dir / "security" / "client.env"
        _say(f"SASL_SSL (SCRAM-SHA-512): clients need the settings in `source {env_file}`")
    where = "" if args.state_dir is None else f" --state-dir {args.state_dir}"
    _say(f"Stop it with: headrace kafka{where} down")
    print(manifest.bootstrap, flush=True)
    return 0


def _down(args: argparse.Namespace) -> int:
    local = _deployment(args)
    stopped = local.down(wipe=args.wipe, grace_s=args.grace)
    if stopped:
        _say(f"Stopped Kafka (pids {', '.join(map(str, stopped))}).")
    else:
        _say("No Kafka was running.")
    if args.wipe:
        _say(f"Wiped data in {local.state_dir}.")
    return 0


def _status(args: argparse.Namespace) -> int:
    local = _deployment(args)
    nodes = local.status()
    if not nodes:
        _say(f"No Kafka deployment in {local.state_dir}.")
        return 3
    for node in nodes:
        state = f"running, pid {node.pid}" if node.pid else "stopped"
        print(f"node {node.spec.node_id}: {state}, {node.spec.bootstrap}")
    return 0 if all(node.pid for node in nodes) else 3


def _kill_node(args: argparse.Namespace) -> int:
    pid = _deployment(args).kill_node(args.node_id)
    _say(f"Killed node {args.node_id} (pid {pid}) with SIGKILL.")
    return 0


def _stop_node(args: argparse.Namespace) -> int:
    stopped = _deployment(args).stop_node(args.node_id, grace_s=args.grace)
    _say(f"Stopped node {args.node_id}." if stopped else f"Node {args.node_id} was not running.")
    return 0


def _start_node(args: argparse.Namespace) -> int:
    waited = _deployment(args).start_node(args.node_id, timeout_s=args.timeout)
    _say(f"Node {args.node_id} ready after {waited:.1f}s.")
    return 0


def _jars(args: argparse.Namespace) -> int:
    from ops.kafka.jars import resolve_jars
    from ops.kafka.java import find_java
    from ops.kafka.paths import kafka_version

    resolution = resolve_jars(kafka_version(), find_java(), log=_say)
    state = "downloaded" if resolution.downloaded else "already cached"
    _say(f"Kafka {resolution.jars.version} jars {state}.")
    print(resolution.jars.lib_dir)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _state_dir_option(target: argparse.ArgumentParser, default: Callable[[Any], Any]) -> None:
    target.add_argument(
        "--state-dir",
        default=default(os.environ.get("HEADRACE_KAFKA_STATE_DIR")),
        help="where logs, data and pid files live (default: $HEADRACE_STATE_DIR/kafka or "
        "~/.local/state/headrace/kafka)",
    )


def register(subparsers: Subcommands) -> None:
    kafka = subparsers.add_parser("kafka", help="run a real local Apache Kafka (KRaft)")
    shared = group_options(kafka, _state_dir_option)
    verbs = kafka.add_subparsers(dest="verb", metavar="VERB", required=True)

    def verb_parser(name: str, text: str) -> argparse.ArgumentParser:
        return verbs.add_parser(name, help=text, parents=[shared])

    up = verb_parser("up", "start Kafka and wait until it answers metadata requests")
    where = up.add_mutually_exclusive_group()
    where.add_argument("--port", type=_positive, help="broker port of node 1 (default 9092)")
    where.add_argument("--free-port", action="store_true",
                       help="pick free ports (others, if one is taken before the broker binds it)")
    up.add_argument(
        "--cluster", type=_positive, default=1, metavar="N", help="number of nodes (3 for RF=3)"
    )
    up.add_argument("--wipe", action="store_true", help="delete existing data before starting")
    up.add_argument(
        "--sasl-ssl",
        action="store_true",
        help="listeners require SCRAM-SHA-512 over TLS (a private CA and users are made once)",
    )
    up.add_argument("--timeout", type=float, default=90.0, help="readiness deadline in seconds")
    up.set_defaults(handler=_up)

    down = verb_parser("down", "stop every node (graceful, then SIGKILL)")
    down.add_argument("--wipe", action="store_true", help="also delete data and logs")
    down.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
    down.set_defaults(handler=_down)

    verb_parser("status", "show nodes, pids and ports").set_defaults(handler=_status)

    for name, handler, text in (
        ("kill-node", _kill_node, "SIGKILL one node, as a crash would"),
        ("stop-node", _stop_node, "stop one node gracefully"),
        ("start-node", _start_node, "start one stopped or killed node again"),
    ):
        verb = verb_parser(name, text)
        verb.add_argument("node_id", type=_positive, metavar="N")
        if name == "stop-node":
            verb.add_argument("--grace", type=float, default=30.0, help="seconds before SIGKILL")
        if name == "start-node":
            verb.add_argument("--timeout", type=float, default=90.0, help="readiness deadline")
        verb.set_defaults(handler=handler)

    jars = verb_parser("jars", "download the Kafka jars into the cache (once)")
    jars.set_defaults(handler=_jars)
