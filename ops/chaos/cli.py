"""`headrace chaos SCENARIO`: fault injection on a 3-node cluster, ending with the checker's verdict.

Without `--kafka-state-dir` it starts a private 3-node cluster (RF=3, min.insync.replicas=2,
unclean leader election off) on free ports and removes it afterwards (kept when the run fails);
with it, it uses a cluster started by `headrace kafka --state-dir DIR up --cluster 3`. Either way
it starts its own two engines, two workers and two APIs on fresh topics.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ops.command import Subcommands

__all__ = ["register"]


def _span(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    try:
        span = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError("expected seconds as A-B, e.g. 10-20") from None
    if not 0 < span[0] <= span[1]:
        raise argparse.ArgumentTypeError("expected 0 < A <= B")
    return span


def register(subparsers: Subcommands) -> None:
    from .scenarios import SCENARIOS

    text = "inject faults under a mixed load and check that no workflow is lost or duplicated"
    lines = "\n".join(f"  {s.name:<15} {s.about}" for s in SCENARIOS.values())
    parser = subparsers.add_parser(
        "chaos",
        help=text,
        description=f"{text}.\n\nscenarios:\n{lines}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=list(SCENARIOS), metavar="SCENARIO", help="one of the scenarios below")
    parser.add_argument("--workflows", type=int, help="workflows to start (default: the short variant's, 200)")
    parser.add_argument(
        "--faults", type=int, help="faults to inject; 0 = one every --every seconds until the load is sent"
    )
    parser.add_argument("--every", type=_span, help="seconds between faults, A-B (short variant: 3-6)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: inputs, fault choice and timing")
    parser.add_argument("--rate", type=float, help="starts per second (default: paced to outlast the faults)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of every topic (4)")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds the workers stay away (worker-burst)")
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait for the last workflows")
    parser.add_argument(
        "--overlap",
        action="store_true",
        help="start a fault every --every seconds even while earlier ones recover "
        "(never two on one process, never two brokers down)",
    )
    parser.add_argument("--secure", action="store_true", help="brokers speak SASL_SSL with SCRAM-SHA-512")
    parser.add_argument("--kafka-state-dir", help="use the running 3-node cluster of this state directory")
    parser.add_argument("--out", default="chaos-results", help="directory for verdicts, logs and marks")
    parser.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    import asyncio
    import logging

    from engine.runtime.logs import configure_logging
    from ops.kafka import LocalKafka

    from .report import render
    from .runner import RunOptions, run_chaos
    from .scenarios import SCENARIOS

    configure_logging(logging.WARNING)
    # The harness's own Kafka clients see every injected outage; the processes under test log it.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    scenario = SCENARIOS[args.scenario]
    options = RunOptions(
        scenario=scenario,
        workflows=args.workflows or scenario.workflows,
        faults=scenario.fault_count if args.faults is None else args.faults,
        seed=args.seed,
        every_s=args.every or scenario.every_s,
        rate=args.rate,
        partitions=args.partitions,
        hold_s=args.hold,
        drain_s=args.drain,
        secure=args.secure,
        overlap=args.overlap,
        out=Path(args.out),
        command=" ".join(["headrace", *sys.argv[1:]]),
    )
    kafka: Any = LocalKafka(Path(args.kafka_state_dir)) if args.kafka_state_dir else None

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    result = asyncio.run(run_chaos(options, kafka, say))
    print(render(result.summary))
    return 0 if result.verdict.ok else 1
