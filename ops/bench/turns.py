"""The engine's turns without Kafka (issue 17): what a partition owner's own Python costs a workflow.

`PartitionOwner.process` over workflows of the bench's shapes, fed in batches as the engine's
consumer hands records over, with the commit replaced by building the transaction's records
(`TransactionSink.records`): every decode, turn, fold and encode is counted, nothing is sent. What
`headrace bench` adds on top is the Kafka client's share and the other processes; this separates
the two, and moves by a few per cent between runs where the bench moves by ten.

    python -m ops.bench.turns --shape chain-5 --workflows 1000 --rounds 5
    py-spy record -r 1000 -o turns.svg -- python -m ops.bench.turns
    python -m ops.bench.paired BEFORE_DIR AFTER_DIR   # two checkouts (or compiled copies) at once

Findings: docs/performance.md ("The turn's own Python").
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from engine.core import commands as cmd
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.payload import dump_payload
from engine.core.values import RuntimeStatus
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import TransactionSink
from engine.settings import Settings
from engine.topics import Topics

from .apps import runtime
from .inputs import input_record
from .scenarios import Scenario

__all__ = ["Shape", "TurnFigures", "main", "measure"]

#: Bytes of payload each step of a chain passes on. `headrace bench chain-5` passes none (its
#: `payload-*` scenarios 1 KiB and more); every figure of this harness in docs/performance.md was
#: measured with these 100 bytes, so they stay.
PAYLOAD_BYTES = 100


@dataclass(frozen=True)
class Shape:
    """A workflow shape of the bench (`ops.bench.apps`): `chain-N` or `parallel-N`."""

    kind: str
    size: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        found = re.fullmatch(r"(chain|parallel)-([1-9][0-9]*)", text)
        if found is None:
            raise argparse.ArgumentTypeError(f"{text!r}: expected chain-N or parallel-N")
        return cls(found[1], int(found[2]))

    @property
    def scenario(self) -> Scenario:
        """The bench's scenario of this shape, which says what its workflows are started with."""
        if self.kind == "chain":
            return Scenario(f"chain-{self.size}", "", "bench_chain", self.size, "closed", payload_bytes=PAYLOAD_BYTES)
        return Scenario(f"parallel-{self.size}", "", "bench_fan_out", self.size, "closed")

    def start(self, instance_id: str) -> cmd.StartWorkflow:
        scenario = self.scenario
        return cmd.StartWorkflow(instance_id=instance_id, command_id=f"c-{instance_id}", name=scenario.workflow,
                                 input=dump_payload(scenario.workflow_input(random.Random(0))))  # noqa: S311

    def result(self, task_id: int) -> str:
        """What the bench's echo activity answers task `task_id` with: its input (a chain passes the
        payload on; a fan-out's task N was given N)."""
        return orjson.dumps("x" * PAYLOAD_BYTES if self.kind == "chain" else task_id).decode()


@dataclass(frozen=True)
class TurnFigures:
    shape: Shape
    workflows: int
    #: CPU microseconds per workflow, one per round.
    rounds: tuple[float, ...]
    completed: int

    def line(self) -> str:
        each = " ".join(f"{us:.0f}" for us in self.rounds)
        return (f"{self.shape.kind}-{self.shape.size}: {self.workflows:,} workflows, CPU us per workflow "
                f"by round: {each} (min {min(self.rounds):.0f}, median {statistics.median(self.rounds):.0f}); "
                f"{self.completed:,} of {self.workflows:,} completed in the last round")


def measure(shape: Shape, workflows: int, batch: int, rounds: int) -> TurnFigures:
    """`rounds` runs of `workflows` workflows of `shape`, each on a fresh partition owner."""
    per_round: list[float] = []
    completed = 0
    for _ in range(rounds):
        seconds, completed = asyncio.run(_one_round(shape, workflows, batch))
        per_round.append(seconds / workflows * 1e6)
    return TurnFigures(shape, workflows, tuple(per_round), completed)


async def _one_round(shape: Shape, workflows: int, batch: int) -> tuple[float, int]:
    settings = Settings.from_env({})
    topics = Topics.for_settings(settings)
    orchestrator = Orchestrator(runtime.registry.get_workflow, ExecutionCache(workflows))

    async def build_records(pending: TransactionSink, offsets: object) -> None:
        pending.records()

    owner = PartitionOwner(0, settings, topics, orchestrator, "engine", partitions=1, commit=build_records)
    offsets = iter(range(1, 1 << 62))
    ids = [f"wf-{n}" for n in range(workflows)]
    spent = 0.0

    async def feed(topic: str, messages: list[cmd.InstanceMessage]) -> None:
        nonlocal spent
        records = [input_record(topic, next(offsets), message.instance_id.encode(), encode(message))
                   for message in messages]  # not timed
        began = time.process_time()
        for first in range(0, len(records), batch):
            await owner.process({TopicPartition(topic, 0): records[first:first + batch]})
        spent += time.process_time() - began

    await feed(topics.commands, [shape.start(iid) for iid in ids])
    while True:
        results = _results(owner, ids, shape)
        if not results:
            break
        await feed(topics.results, results)
    done = sum(1 for iid in ids if (state := owner.states.get(iid)) is not None
               and state.status is RuntimeStatus.COMPLETED)
    return spent, done


def _results(owner: PartitionOwner, ids: list[str], shape: Shape) -> list[cmd.InstanceMessage]:
    """Every pending activity's result, as the bench's echo activity answers it."""
    out: list[cmd.InstanceMessage] = []
    for iid in ids:
        state = owner.states.get(iid)
        if state is None or state.status is not RuntimeStatus.RUNNING:
            continue
        for task_id in state.pending_tasks:
            out.append(cmd.ActivityResult(instance_id=iid, execution_id=state.execution_id, task_id=task_id,
                                          result=shape.result(task_id)))
    return out


def main(argv: list[str] | None = None, out: Callable[[str], Any] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.bench.turns", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", type=Shape.parse, default=Shape("chain", 5), help="chain-N or parallel-N (chain-5)")
    parser.add_argument("--workflows", type=int, default=1000, help="workflows per round (1,000)")
    parser.add_argument("--batch", type=int, default=12,
                        help="records per batch handed to the owner (12: about what chain-5 at 1,000 in flight gets)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each on a fresh owner (5)")
    args = parser.parse_args(argv)
    figures = measure(args.shape, args.workflows, args.batch, args.rounds)
    out(figures.line())
    return 0 if figures.completed == figures.workflows else 1


if __name__ == "__main__":
    raise SystemExit(main())
