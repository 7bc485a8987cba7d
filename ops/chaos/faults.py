"""Fault injectors: each does one fault to the running system, waits until it is back, and says what
it did. Timing inside a fault (which process, how long it stays down) is drawn from the run's seed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.topics import Topics

from .checker import PoisonRecord
from .follower import StatusFollower
from .load import LoadDriver, Start
from .rolling import deploy
from .supervisor import APP, APP_V2, Proc, Supervisor, on_broker_thread

__all__ = ["FAULTS", "Fault", "FaultContext"]

#: The engine consumer's session timeout (aiokafka's default): a pause longer than this moves the
#: paused engine's partitions to the other engine.
SESSION_TIMEOUT_S = 10.0


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    took_s: float = 0.0
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "target": self.target,
            "at_s": round(self.at_s, 2),
            "took_s": round(self.took_s, 2),
            "detail": self.detail,
        }


@dataclass
class FaultContext:
    sup: Supervisor
    driver: LoadDriver
    follower: StatusFollower
    rng: random.Random
    t0: float
    say: Callable[[str], None]
    hold_s: float = 60.0
    pause_s: float = SESSION_TIMEOUT_S + 5.0
    wave: int = 20
    version: int = 1
    poison: list[PoisonRecord] = field(default_factory=list)
    #: Targets of the faults in progress ("engine-0", "broker", ...): with overlapping faults, two
    #: never hit the same process, and at most one broker is down.
    busy: set[str] = field(default_factory=set)

    def fault(self, kind: str, target: str) -> Fault:
        return Fault(kind, target, time.monotonic() - self.t0)

    def free(self, procs: list[Proc]) -> list[Proc]:
        return [p for p in procs if p.name not in self.busy]

    @contextlib.contextmanager
    def holding(self, *targets: str) -> Iterator[None]:
        self.busy.update(targets)
        try:
            yield
        finally:
            self.busy.difference_update(targets)

    def done(self, fault: Fault, detail: str = "") -> Fault:
        fault.took_s = time.monotonic() - self.t0 - fault.at_s
        fault.detail = detail
        self.say(f"fault {fault.kind} on {fault.target}: {detail} ({fault.took_s:.1f}s)")
        return fault


async def _restart(ctx: FaultContext, procs: list[Proc], down_s: float, app: str | None = None) -> float:
    await asyncio.sleep(down_s)
    t = time.monotonic()
    await ctx.sup.start(procs, app)
    return time.monotonic() - t


async def engine_kill(ctx: FaultContext) -> Fault | None:
    engines = ctx.free(ctx.sup.role("engine"))
    if not engines:
        return None
    victim = ctx.rng.choice(engines)
    with ctx.holding(victim.name):
        fault = ctx.fault("engine-kill", victim.name)
        victim.kill()
        ready = await _restart(ctx, [victim], ctx.rng.uniform(1.0, 3.0))
        return ctx.done(fault, f"kill -9 pid, restarted, ready in {ready:.1f}s")


def _open_runs(ctx: FaultContext, proc: Proc) -> int:
    """Activities the worker has started and not finished, from the tail of its marks file (a run
    lasts milliseconds, so its start is recent; reading the whole file would cost more and more)."""
    path = ctx.sup.marks_dir / f"{proc.pid}.log"
    try:
        with path.open("rb") as f:
            start = max(0, path.stat().st_size - 16 * 1024)
            f.seek(start)
            lines = f.read().decode(errors="replace").splitlines()[1 if start else 0 :]
    except FileNotFoundError:
        return 0
    running: set[str] = set()
    for line in lines:
        kind, _, key = line.partition(" ")
        if kind == "S":
            running.add(key)
        elif kind == "E":
            running.discard(key)
    return len(running)


async def worker_kill(ctx: FaultContext) -> Fault | None:
    workers = ctx.free(ctx.sup.role("worker"))
    if not workers:
        return None
    deadline = time.monotonic() + 10
    busy = [w for w in workers if _open_runs(ctx, w) > 0]
    while not busy and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        busy = [w for w in workers if _open_runs(ctx, w) > 0]
    victim = ctx.rng.choice([w for w in busy or workers if w.name not in ctx.busy] or [workers[0]])
    if victim.name in ctx.busy:
        return None
    with ctx.holding(victim.name):
        fault = ctx.fault("worker-kill", victim.name)
        victim.kill()
        interrupted = _open_runs(ctx, victim)
        ready = await _restart(ctx, [victim], ctx.rng.uniform(1.0, 3.0))
        return ctx.done(fault, f"kill -9 with {interrupted} activities running, restarted in {ready:.1f}s")


async def api_kill(ctx: FaultContext) -> Fault | None:
    apis = ctx.free(ctx.sup.role("api"))
    if not apis:
        return None
    deadline = time.monotonic() + 10
    busy = [a for a in apis if ctx.driver.in_flight[a.url] > 0]
    while not busy and time.monotonic() < deadline:
        await asyncio.sleep(0.002)
        busy = [a for a in apis if ctx.driver.in_flight[a.url] > 0]
    victim = ctx.rng.choice([a for a in busy or apis if a.name not in ctx.busy] or [apis[0]])
    if victim.name in ctx.busy:
        return None
    with ctx.holding(victim.name):
        fault = ctx.fault("api-kill", victim.name)
        in_flight = ctx.driver.in_flight[victim.url]
        victim.kill()
        ready = await _restart(ctx, [victim], ctx.rng.uniform(1.0, 2.0))
        return ctx.done(fault, f"kill -9 with {in_flight} requests in flight, restarted in {ready:.1f}s")


async def engine_pause(ctx: FaultContext) -> Fault | None:
    """SIGSTOP past the session timeout: the zombie's partitions move; it must not write after."""
    engines = ctx.free(ctx.sup.role("engine"))
    if not engines:
        return None
    victim = ctx.rng.choice(engines)
    with ctx.holding(victim.name):
        fault = ctx.fault("engine-pause", victim.name)
        before = victim.current_log().count("fenced by a newer owner")
        victim.signal(signal.SIGSTOP)
        await asyncio.sleep(ctx.pause_s + ctx.rng.uniform(0.0, 3.0))
        victim.signal(signal.SIGCONT)
        # Time to notice: its next commit is refused, or its heartbeat learns of the move.
        await asyncio.sleep(5.0)
        fenced = victim.current_log().count("fenced by a newer owner") - before
        return ctx.done(fault, f"SIGSTOP then SIGCONT; {fenced} fenced write attempts refused")


async def broker_kill(ctx: FaultContext) -> Fault | None:
    if "broker" in ctx.busy:
        return None  # one broker down at a time: two of three would stop every acks=all write
    with ctx.holding("broker"):
        node = await ctx.sup.busiest_leader()
        fault = ctx.fault("broker-kill", f"broker-{node}")
        kafka = ctx.sup.kafka
        await on_broker_thread(lambda: kafka.kill_node(node))
        await asyncio.sleep(ctx.rng.uniform(4.0, 8.0))
        ready = await on_broker_thread(lambda: kafka.start_node(node))
        return ctx.done(fault, f"kill -9 of the leader of the busiest partitions; back in {ready:.1f}s")


async def stack_restart(ctx: FaultContext) -> Fault:
    """Everything at once: processes killed, brokers stopped, then all started again."""
    fault = ctx.fault("stack-restart", "all")
    kafka = ctx.sup.kafka
    ctx.sup.stop_all(kill=True)
    await on_broker_thread(lambda: kafka.down(grace_s=10.0))
    await asyncio.sleep(ctx.rng.uniform(1.0, 3.0))
    manifest = kafka.manifest()
    assert manifest is not None
    ids = [n.node_id for n in manifest.nodes]
    brokers = await on_broker_thread(lambda: kafka.start_nodes(ids))
    await ctx.sup.start(app=APP if ctx.version == 1 else APP_V2)
    return ctx.done(fault, f"cluster back in {brokers:.1f}s, processes ready")


async def worker_burst(ctx: FaultContext) -> Fault:
    """Workers away while work piles up, then all back together."""
    workers = ctx.sup.role("worker")
    fault = ctx.fault("worker-burst", "all workers")
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        worker.stop()
    piled = ctx.driver.unfinished()
    await asyncio.sleep(ctx.hold_s)
    waiting = ctx.driver.unfinished()
    ready = await _restart(ctx, workers, 0.0)
    return ctx.done(fault, f"workers stopped {ctx.hold_s:.0f}s; unfinished {piled} -> {waiting}; back in {ready:.1f}s")


async def poison(ctx: FaultContext) -> Fault:
    """Records no client should send, straight to the commands topic."""
    fault = ctx.fault("poison", "commands topic")
    settings = ctx.sup.settings
    tag = uuid.uuid4().hex[:6]
    start = {
        "type": "StartWorkflow",
        "version": 1,
        "command_id": "c",
        "name": "chaos_chain",
        "input": orjson.dumps({"x": 1, "n": 1}).decode(),
    }
    big = "x" * (settings.max_payload_bytes + 16 * 1024)
    cases: list[tuple[str, str, bytes]] = [
        ("malformed-json", "not valid JSON", b'{"type": "StartWorkflow", "version": 1, '),
        ("schema-version", "unsupported schema version 99", orjson.dumps({**start, "version": 99})),
        (
            "unknown-type",
            "unknown message type 'LaunchMissiles'",
            orjson.dumps({"type": "LaunchMissiles", "version": 1}),
        ),
        ("oversized", "over the payload limit", orjson.dumps({**start, "input": orjson.dumps(big).decode()})),
        (
            "unknown-instance",
            "no workflow instance",
            orjson.dumps({"type": "RaiseEvent", "version": 1, "command_id": "c", "name": "go", "input": "1"}),
        ),
    ]
    producer = AIOKafkaProducer(
        **settings.client_kwargs(), enable_idempotence=True, max_request_size=2 * settings.max_payload_bytes + 64 * 1024
    )
    await producer.start()
    try:
        for kind, reason, value in cases:
            key = f"poison-{tag}-{kind}"
            if value.startswith(b"{") and value.endswith(b"}"):
                value = orjson.dumps({**orjson.loads(value), "instance_id": key})
            await producer.send_and_wait(Topics.for_settings(settings).commands, value, key=key.encode())
            ctx.poison.append(PoisonRecord(key, kind, reason))
    finally:
        await producer.stop()
    return ctx.done(fault, f"{len(cases)} records: {', '.join(kind for kind, _, _ in cases)}")


async def nondeterminism(ctx: FaultContext) -> Fault:
    """Instances of `chaos_versioned` wait for their event; the engines restart with changed code."""
    old, new = ctx.version, 3 - ctx.version
    fault = ctx.fault("nondeterminism", f"v{old} -> v{new}")
    wave: list[Start] = [ctx.driver.new_start("versioned", version=old, auto_event=False) for _ in range(ctx.wave)]
    for start in wave:
        ctx.driver.launch(start)
    deadline = time.monotonic() + 120
    while not all(s.acked and ctx.follower.waiting_for_event(s.instance_id) for s in wave):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    waiting = [s for s in wave if ctx.follower.waiting_for_event(s.instance_id)]
    engines = ctx.sup.role("engine")
    for engine in engines:
        engine.signal(signal.SIGTERM)
    for engine in engines:
        engine.stop()
    ctx.version = new
    ready = await _restart(ctx, engines, 0.0, APP if new == 1 else APP_V2)
    for start in waiting:
        start.expect_failure = "NonDeterminismError"
    # One that had not reached the wait either had no history yet (the new code runs it and it
    # completes) or had its first step recorded (the replay fails): both are right.
    for start in wave:
        if start not in waiting:
            start.expect_failure, start.version, start.either = "NonDeterminismError", new, True
    await asyncio.gather(*(ctx.driver.raise_event(s) for s in wave))
    return ctx.done(
        fault, f"{len(waiting)}/{len(wave)} waiting instances of v{old}; engines restarted with v{new} in {ready:.1f}s"
    )


#: An injector returns None when every target it could hit is under another fault already.
Injector = Callable[[FaultContext], Awaitable[Fault | None]]

FAULTS: dict[str, Injector] = {
    "engine-kill": engine_kill,
    "worker-kill": worker_kill,
    "api-kill": api_kill,
    "engine-pause": engine_pause,
    "broker-kill": broker_kill,
    "stack-restart": stack_restart,
    "worker-burst": worker_burst,
    "poison": poison,
    "nondeterminism": nondeterminism,
    "rolling-deploy": deploy,
}
