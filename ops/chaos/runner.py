"""One chaos run: cluster, processes, load and faults side by side, drain, then the checker.

The steady state comes first (every process ready, the consumer groups stable, one workflow end to
end), then the load and the faults run together; faults are spaced by a random delay drawn from
the seed. After the load the driver waits until every acknowledged start has finished (or the
drain deadline passes), the processes are stopped, and the checker reads every topic from the
start. A process that exited on its own (not killed by a fault) is a violation too.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.topics import Topics, ensure_topics
from ops.audit import read_history
from ops.kafka import LocalKafka

from . import rolling
from .checker import Verdict, check
from .faults import FAULTS, Fault, FaultContext
from .follower import StatusFollower
from .load import LoadDriver
from .records import read_marks, read_topic
from .scenarios import Scenario
from .supervisor import APP, APP_V2, ChaosError, Supervisor, client_settings, on_broker_thread

__all__ = ["RunOptions", "RunResult", "run_chaos"]

#: Payload limit of the chaos deployment: small enough that an oversized poison record still fits
#: in a broker request (1 MiB by default).
MAX_PAYLOAD_BYTES = 256 * 1024


@dataclass
class RunOptions:
    scenario: Scenario
    workflows: int
    #: Faults to inject; 0 keeps injecting until every start has been sent.
    faults: int
    seed: int = 1
    every_s: tuple[float, float] = (3.0, 6.0)
    #: Starts per second; None paces the load to outlast the faults.
    rate: float | None = None
    partitions: int = 4
    hold_s: float = 60.0
    drain_s: float = 240.0
    secure: bool = False
    #: Start a fault every `every_s` even while earlier ones are still recovering (their targets
    #: never overlap); otherwise the next fault waits `every_s` after the previous one ended.
    overlap: bool = False
    out: Path = Path("chaos-results")
    command: str = ""

    def pace(self) -> float:
        """Starts per second: the load lasts until the last fault has begun, and 5 s more."""
        if self.rate is not None:
            return self.rate
        rounds = max(self.faults, 1)
        hold = self.hold_s if "worker-burst" in self.scenario.faults else 0.0
        spans = rounds if self.scenario.load_spans_fault else rounds - 1
        seconds = rounds * sum(self.every_s) / 2 + spans * self.scenario.span_s + hold + 5.0
        return min(40.0, max(4.0, self.workflows / seconds))


@dataclass
class RunResult:
    verdict: Verdict
    faults: list[Fault]
    directory: Path
    summary: dict[str, Any] = field(default_factory=dict)


async def run_chaos(
    options: RunOptions, kafka: LocalKafka | None = None, say: Callable[[str], None] = print
) -> RunResult:
    """Run one scenario; `kafka` is a running 3-node deployment to use (default: a private one)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    directory = options.out / f"{options.scenario.name}-s{options.seed}-{stamp}-{uuid.uuid4().hex[:4]}"
    directory.mkdir(parents=True, exist_ok=True)
    own = kafka is None
    if kafka is None:
        kafka = LocalKafka(directory / "kafka", log=say, die_with_parent=True)
        t = time.monotonic()
        await on_broker_thread(lambda: kafka.up(nodes=3, port=None, secure=options.secure))
        say(f"3-node cluster ready in {time.monotonic() - t:.1f}s")
    else:
        manifest = kafka.manifest()
        if manifest is None or len(manifest.nodes) < 3:
            raise ChaosError("the chaos runs need a running 3-node deployment (`headrace kafka up --cluster 3`)")
        await on_broker_thread(lambda: kafka.start_nodes([n.node_id for n in manifest.nodes]))
    settings = client_settings(
        kafka,
        topic_prefix=f"chaos.{options.scenario.name}.{uuid.uuid4().hex[:6]}.",
        partitions=options.partitions,
        max_payload_bytes=MAX_PAYLOAD_BYTES,
    )
    sup = Supervisor.create(kafka, settings, directory / "logs", directory / "marks")
    for proc in sup.procs:
        if proc.role != "api" and options.scenario.app is not None:
            proc.app = options.scenario.app
    ok = False
    try:
        await ensure_topics(settings)
        result = await _run(options, sup, directory, say)
        ok = result.verdict.ok
        return result
    finally:
        sup.stop_all(kill=True)
        if own:
            # A failed run keeps the brokers' data and logs for a post-mortem.
            await on_broker_thread(lambda: kafka.down(wipe=ok, grace_s=15.0))


async def _run(options: RunOptions, sup: Supervisor, directory: Path, say: Callable[[str], None]) -> RunResult:
    settings = sup.settings
    t = time.monotonic()
    await sup.start()
    await sup.wait_groups_stable()
    say(f"2 engines, 2 workers, 2 APIs ready in {time.monotonic() - t:.1f}s (logs in {sup.log_dir})")
    # Two streams of one seed: the load draws from its own as fast as its starts go, so the faults'
    # timing, kinds and victims would otherwise depend on how many starts came before each (the same
    # `--seed` gave `mixed` two api-kills one day and an engine-kill and two worker-kills another).
    load_rng = random.Random(f"{options.seed}:load")  # noqa: S311 - reproducible, not secrets
    fault_rng = random.Random(f"{options.seed}:faults")  # noqa: S311
    follower = StatusFollower(settings)
    await follower.start()
    driver = LoadDriver(
        sup.api_urls, follower, load_rng, prefix=f"{options.scenario.name}-{options.seed}-", rate=options.pace()
    )
    driver.weights.update(dict(options.scenario.mix))
    ctx = FaultContext(sup, driver, follower, fault_rng, time.monotonic(), say, hold_s=options.hold_s)
    faults: list[Fault] = []
    try:
        probe = driver.new_start("chain")
        driver.launch(probe)
        await driver.settle()
        if not await driver.wait_done(60):
            raise ChaosError(f"the probe workflow did not complete; see the logs in {sup.log_dir}")
        say(
            f"steady state reached; {options.workflows} workflows at {options.pace():.1f}/s, "
            f"faults: {options.faults or 'every'} x {'/'.join(options.scenario.faults)}"
        )
        ctx.t0 = time.monotonic()
        ticker = asyncio.create_task(_progress(driver, follower, faults, ctx.t0, say))
        load = asyncio.create_task(driver.run(options.workflows))
        try:
            await _inject(options, ctx, load, faults)
            await load
            if "nondeterminism" in options.scenario.faults:
                # After the last change of code, new instances run it from the start and complete.
                for _ in range(ctx.wave):
                    driver.launch(driver.new_start("versioned", version=ctx.version))
                await driver.settle()
            load_s = time.monotonic() - ctx.t0
            drained = await driver.wait_done(options.drain_s)
        finally:
            ticker.cancel()
        drain_s = time.monotonic() - ctx.t0 - load_s
        say(f"load sent in {load_s:.1f}s; drained {'in' if drained else 'NOT within'} {drain_s:.1f}s")
        crashed = [p for p in sup.procs if not p.alive]
        crash_notes = [
            f"{p.name} exited on its own ({p.returncode}):\n{p.log_tail(15)}" for p in crashed
        ]
    finally:
        await follower.stop()
        await driver.close()
    sup.stop_all()
    topics = Topics.for_settings(settings)
    history = await read_history(settings)
    status_log = await read_topic(settings, topics.status)
    dead_letters = await read_topic(settings, topics.dead_letter)
    verdict = check(
        driver.starts,
        history,
        status_log,
        dead_letters,
        read_marks(sup.marks_dir),
        faults=Counter(f.kind for f in faults),
        poison=ctx.poison,
    )
    verdict.violations.extend(crash_notes)
    rolled: dict[str, Any] = {}
    if "rolling-deploy" in options.scenario.faults:
        code_failures, figures = rolling.check_paths(driver.starts, history, status_log)
        verdict.violations.extend(code_failures)
        rolled = figures.to_json()
    verdict.violations.extend(_leaked_secrets(sup))
    summary = {
        "scenario": options.scenario.name,
        "command": options.command,
        "seed": options.seed,
        "ok": verdict.ok,
        "workflows": options.workflows,
        "rate_per_s": round(options.pace(), 2),
        "load_s": round(load_s, 1),
        "drain_s": round(drain_s, 1),
        "completed_per_s": round(verdict.counts.completed / max(load_s + drain_s, 1e-9), 1),
        "partitions": options.partitions,
        "secure": sup.kafka.security() is not None,
        "verdict": verdict.to_json(),
        "faults": [f.to_json() for f in sorted(faults, key=lambda f: f.at_s)],
        "apps": {"v1": options.scenario.app or APP, "v2": rolling.APP_V2 if rolled else APP_V2},
        **({"rolling": rolled} if rolled else {}),
        "directory": str(directory),
    }
    (directory / "verdict.json").write_text(json.dumps(summary, indent=2) + "\n")
    with (directory / "starts.jsonl").open("w") as f:
        for start in driver.starts.values():
            f.write(json.dumps(start.to_json()) + "\n")
    return RunResult(verdict, faults, directory, summary)


def _leaked_secrets(sup: Supervisor) -> list[str]:
    """On a SASL_SSL cluster: no password may appear in a process log or a broker log."""
    security = sup.kafka.security()
    manifest = sup.kafka.manifest()
    if security is None or manifest is None:
        return []
    secrets = {
        "client": security.client_password,
        "broker": security.broker_password,
        "keystore": security.store_password,
    }
    logs = [*sup.log_dir.glob("*.log"), *(sup.kafka.node_dir(n.node_id) / "server.log" for n in manifest.nodes)]
    found = []
    for log in logs:
        text = log.read_text(errors="replace") if log.exists() else ""
        found += [f"{log.name} contains the {name} password" for name, secret in secrets.items() if secret in text]
    return found


async def _inject(options: RunOptions, ctx: FaultContext, load: asyncio.Task[None], faults: list[Fault]) -> None:
    kinds = options.scenario.faults
    running: set[asyncio.Task[None]] = set()

    async def one(kind: str) -> None:
        fault = await FAULTS[kind](ctx)
        if fault is not None:
            faults.append(fault)

    started = 0
    while options.faults == 0 or started < options.faults:
        done, _ = await asyncio.wait({load}, timeout=ctx.rng.uniform(*options.every_s))
        if done and options.faults == 0:
            break
        kind = ctx.rng.choice(kinds)
        started += 1
        if not options.overlap:
            await one(kind)
            continue
        task = asyncio.create_task(one(kind))
        running.add(task)
        task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)


async def _progress(
    driver: LoadDriver, follower: StatusFollower, faults: list[Fault], t0: float, say: Callable[[str], None]
) -> None:
    while True:
        await asyncio.sleep(5.0)
        acked = sum(s.acked for s in driver.starts.values())
        say(
            f"  t={time.monotonic() - t0:5.0f}s  sent {len(driver.starts)}  acked {acked}  "
            f"unfinished {driver.unfinished()}  finished {len(follower.done)}  faults {len(faults)}"
        )
