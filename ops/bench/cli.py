"""`headrace bench [SCENARIO ...]`: run the benchmark scenarios and write table, JSON and PNG.

Without `--bootstrap-servers` it starts a private Kafka on free ports (and removes it after);
with it, it uses that broker. Either way it starts its own engine and worker processes.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.command import Subcommands

__all__ = ["register"]


def register(subparsers: Subcommands) -> None:
    from .scenarios import GROUPS, SCENARIO_NAMES

    text = "measure throughput, latency and cost of the engine (Dapr perf-suite scenarios)"
    parser = subparsers.add_parser(
        "bench",
        help=text,
        description=text + ". Scenarios: " + ", ".join([*SCENARIO_NAMES, *GROUPS]) + " (default: all). "
        "`headrace bench scale` (on its own, never part of `all`): what history costs, with "
        "10^5 and 10^6 finished instances in the topics (issue 16; ops/bench/scale.py).",
    )
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)")
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="tens of workflows per scenario, short timers (what CI runs)",
    )
    size = parser.add_argument_group("size (overrides each scenario's own)")
    size.add_argument("--workflows", type=int, help="workflows to measure after the warm-up")
    size.add_argument("--duration", type=float, help="seconds to measure after the warm-up")
    size.add_argument("--warmup", type=float, help="seconds of warm-up before measuring")
    size.add_argument("--concurrency", type=int, help="workflows in flight (closed-loop scenarios)")
    size.add_argument("--rate", type=float, help="starts per second (makes a scenario open-loop)")
    deploy = parser.add_argument_group("deployment")
    deploy.add_argument("--bootstrap-servers", help="use this broker instead of starting one")
    deploy.add_argument(
        "--broker-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a dynamic broker config before measuring (repeatable), e.g. "
        "transaction.partition.verification.enable=false; applies to a given broker too",
    )
    deploy.add_argument("--partitions", type=int, default=8, help="partitions of every topic (8)")
    deploy.add_argument("--engines", type=int, default=1, help="engine processes (1)")
    deploy.add_argument("--workers", type=int, default=1, help="activity worker processes (1)")
    deploy.add_argument(
        "--via",
        choices=["kafka", "api", "grpc"],
        default="kafka",
        help="start workflows straight on the commands topic (kafka, default) or through the "
        "REST API's start route (api); completions are read from the status topic either way. "
        "grpc: starts as kafka, but the workflows and activities run in connected Dapr SDK apps "
        "(dapr-ext-workflow, --workers of them) through `headrace grpc`, not in the engine",
    )
    deploy.add_argument("--apis", type=int, default=1, help="API processes with --via api (1)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default="bench-results", help="directory for JSON, PNG, Markdown, logs")
    out.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the raw Kafka round trip")
    parser.add_argument(
        "--keep-topics",
        action="store_true",
        help="with --bootstrap-servers: leave the run's topics (bench.<run ID>.*) on the broker "
        "for inspection; by default they are deleted when the run ends",
    )
    parser.add_argument(
        "--broker-warmup",
        type=float,
        metavar="SECONDS",
        help="unmeasured chain-5 load on a fresh broker before the ceiling and the scenarios, as its "
        "JVM compiles the transaction paths (90 with a private broker; 0 with --tiny or "
        "--bootstrap-servers, whose broker is taken to be warm)",
    )
    parser.add_argument("--ceiling-records", type=int, help="records for the ceiling (50,000; tiny 2,000)")
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        help="give a scenario up when nothing completes for this long (60 s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample engine and worker processes with py-spy during each window "
        "(collapsed stacks in the logs folder, top functions in the JSON)",
    )
    parser.add_argument(
        "--hops",
        action="store_true",
        help="read each chain scenario's records back after it and split its workflows' time into "
        "hops by the records' own timestamps (start -> work item -> result -> next work item -> last state)",
    )
    parser.add_argument(
        "--native",
        action="store_true",
        help="run the engine, worker and API processes from a compiled copy of this checkout "
        "(`python -m ops.native`: the build the container image ships); needs a C compiler and mypy",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (timer delays)")
    scale = parser.add_argument_group("scale (`headrace bench scale`)")
    scale.add_argument("--finished", type=int, action="append", metavar="N",
                       help="finished instances to fill, repeatable (100,000 and 1,000,000; tiny 2,000)")
    scale.add_argument("--running", type=int, metavar="N", help="running instances beside them (10,000; tiny 200)")
    scale.add_argument("--retention-instances", type=int, metavar="N",
                       help="due finished instances the retention figure purges (20,000; tiny 300; 0: skip)")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import importlib.util

    from ops.errors import OpsError

    missing = [m for m in ("matplotlib", "rich") if importlib.util.find_spec(m) is None]
    if args.profile:
        from .profile import py_spy

        if py_spy() is None:
            missing.append("py-spy")
    if missing:
        raise OpsError(f"headrace bench needs {' and '.join(missing)}: pip install -e '.[bench]'")

    from engine.runtime.eventloop import run as run_loop
    from engine.runtime.logs import configure_logging

    from .session import run_session

    # The processes' own setup: the harness's Kafka clients' warnings show, formatted and rate-limited.
    configure_logging("warning")
    if "scale" in args.scenarios:
        if args.scenarios != ["scale"]:
            raise OpsError("run `headrace bench scale` on its own: it fills topics with up to 10^6 instances")
        from .scale import run_scale

        run_loop(run_scale(args, " ".join(["headrace", *sys.argv[1:]])))
        return 0
    # The load generator runs on the loop the engine and worker run on (uvloop where installed):
    # on the standard loop its socket writes alone were a quarter of its CPU, on the same cores.
    doc: dict[str, Any] = run_loop(run_session(args, " ".join(["headrace", *sys.argv[1:]])))
    bad = [r for r in doc["scenarios"] if "error" in r or r["unfinished"] or r["failed"]]
    return 1 if bad else 0
