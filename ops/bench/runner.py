"""One scenario end to end: fresh topics and processes, the load, and every figure it produced."""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from engine.settings import Settings
from engine.topics import ensure_topics

from .deploy import INTERNAL_TOPICS, ROOT, Broker, Deployment, OffsetCounter, RequestCounter
from .hops import read_hops
from .httpload import GoStarter, build
from .load import Instance, LoadGenerator, LoadResult, Progress, fixed_input
from .procstats import CpuMem, ProcessTable, machine_busy_s
from .profile import Profiler
from .scenarios import Scenario
from .stats import log_histogram, percentiles

__all__ = ["RunOptions", "run_scenario"]

#: "harness": this process when the compiled load generator makes the POSTs (`--via api`): it
#: follows the completions and asks for the starts, while "loadgen" is the Go process.
KINDS = ("broker", "engine", "worker", "api", "grpc", "app", "loadgen", "harness")
#: Keep-alive connections per API process from the Go load generator: each holds one start until
#: the engine applied it, so up to this many are answered side by side (below the API's
#: HEADRACE_API_MAX_IN_FLIGHT, 256 by default, past which it answers 503).
_MAX_CONNECTIONS = 200


@dataclass(frozen=True)
class RunOptions:
    run_id: str
    partitions: int
    engines: int
    workers: int
    stall_s: float
    log_dir: Path
    seed: int = 1
    sample_s: float = 1.0
    #: API processes the starts go through (0: straight to the commands topic).
    apis: int = 0
    #: Sample engine and worker processes with py-spy during the window.
    profile: bool = False
    #: Connected Dapr SDK apps running the workflows through `headrace grpc` (0: in the engine).
    grpc_apps: int = 0
    #: Where the deployed processes import Headrace from (`--native`: a compiled copy).
    code_root: Path = ROOT
    #: Read a chain scenario's records back after it, for its hops (`hops.read_hops`).
    hops: bool = False


@dataclass
class _Marks:
    """What the window hooks capture (CPU snapshots, machine CPU, log end offsets)."""

    procs: ProcessTable
    offsets: OffsetCounter
    requests: RequestCounter
    profiler: Profiler | None = None
    start_cpu: dict[str, dict[int, CpuMem]] | None = None
    end_cpu: dict[str, dict[int, CpuMem]] | None = None
    start_machine: float = 0.0
    end_machine: float = 0.0
    start_offsets: asyncio.Task[dict[str, int]] | None = None
    end_offsets: asyncio.Task[dict[str, int]] | None = None
    start_requests: asyncio.Task[dict[str, dict[str, int]]] | None = None
    end_requests: asyncio.Task[dict[str, dict[str, int]]] | None = None

    def window_start(self) -> None:
        self.procs.reset_peaks()
        self.start_cpu = self.procs.snapshot()
        self.start_machine = machine_busy_s()[0]
        self.start_offsets = asyncio.get_running_loop().create_task(self.offsets.read())
        self.start_requests = asyncio.get_running_loop().create_task(self.requests.read())
        if self.profiler is not None:
            self.profiler.start()

    def window_end(self) -> None:
        self.end_cpu = self.procs.snapshot()
        self.end_machine = machine_busy_s()[0]
        self.end_offsets = asyncio.get_running_loop().create_task(self.offsets.read())
        self.end_requests = asyncio.get_running_loop().create_task(self.requests.read())
        if self.profiler is not None:
            self.profiler.interrupt()


async def run_scenario(
    scenario: Scenario, broker: Broker, opts: RunOptions, progress: Progress, note: Any = print
) -> dict[str, Any]:
    settings = Settings.from_env(
        bootstrap_servers=broker.bootstrap,
        topic_prefix=f"bench.{opts.run_id}.{scenario.name}.",
        partitions=opts.partitions,
    )
    await ensure_topics(settings)
    fingerprint = engine_fingerprint()
    deployment = Deployment(settings, opts.engines, opts.workers, opts.log_dir / scenario.name, apis=opts.apis,
                            grpc_apps=opts.grpc_apps, code_root=opts.code_root)
    samples: list[dict[str, Any]] = []
    go: GoStarter | None = None
    try:
        ready_s = await deployment.wait_ready()
        apis = f", {opts.apis} API process(es)" if opts.apis else ""
        apis += f", headrace grpc and {opts.grpc_apps} Dapr SDK app(s)" if opts.grpc_apps else ""
        note(f"{scenario.name}: {opts.engines} engine(s), {opts.workers} worker(s){apis} ready in {ready_s:.1f} s")
        procs = ProcessTable()
        if broker.pid is not None:
            procs.add("broker", broker.pid)
        for pid in deployment.pids("engine"):
            procs.add("engine", pid)
        for pid in deployment.pids("worker"):
            procs.add("worker", pid)
        for kind in ("api", "grpc", "app"):
            for pid in deployment.pids(kind):
                procs.add(kind, pid)
        if opts.apis:
            binary = await asyncio.to_thread(build, note)
            if binary is not None:
                go = await GoStarter.open(
                    binary, deployment.api_urls, scenario.workflow, fixed_input(scenario),
                    min(_MAX_CONNECTIONS, max(64, scenario.concurrency)), opts.log_dir / scenario.name / "loadgen.log",
                )
        if go is not None:
            procs.add("loadgen", go.pid)
            procs.add("harness", os.getpid())
        else:
            procs.add("loadgen", os.getpid())
        offsets = OffsetCounter(settings)
        await offsets.start()
        # Through the Go load generator this process is the harness: its own requests are its reads.
        marks = _Marks(procs, offsets, RequestCounter(deployment.metrics_urls(), "harness" if go else "loadgen"))
        if opts.profile:
            marks.profiler = Profiler(
                opts.log_dir / scenario.name / "profile",
                # The API too, through the API: its CPU per start is one of issue 17's targets.
                {kind: deployment.pids(kind) for kind in ("engine", "worker", "api") if deployment.pids(kind)},
                scenario.duration_s or 600,
            )
        load = LoadGenerator(
            scenario,
            settings,
            on_window_start=marks.window_start,
            on_window_end=marks.window_end,
            progress=progress,
            seed=opts.seed,
            stall_s=opts.stall_s,
            api_urls=deployment.api_urls,
            go=go,
        )
        sampler = asyncio.create_task(_sample(procs, load, opts.sample_s, samples))
        try:
            result = await load.run()
        finally:
            sampler.cancel()
            await asyncio.gather(sampler, return_exceptions=True)
        profile = await asyncio.to_thread(marks.profiler.stop) if marks.profiler else None
        final = procs.snapshot()
        totals = await offsets.read()
        hops = await read_hops(settings) if opts.hops and scenario.workflow == "bench_chain" else None
        window_offsets = (
            await marks.start_offsets if marks.start_offsets else {},
            await marks.end_offsets if marks.end_offsets else totals,
        )
        window_requests = (
            await marks.start_requests if marks.start_requests else {},
            await marks.end_requests if marks.end_requests else {},
        )
        await offsets.stop()
    finally:
        if go is not None:
            await go.close()  # done already unless the load failed before its own close
        deployment.stop()
    figures = _figures(
        scenario,
        opts,
        result,
        marks,
        final,
        totals,
        window_offsets,
        samples,
        deployment.problems(),
        ready_s,
    )
    figures["kafka_requests"] = _requests_per_workflow(window_requests, figures["completed_in_window"])
    figures["engine_source"] = fingerprint
    figures["hops_ms"] = hops
    if profile is not None:
        figures["profile"] = profile
    return figures


async def _sample(procs: ProcessTable, load: LoadGenerator, every_s: float, out: list[dict[str, Any]]) -> None:
    t0 = time.monotonic()
    while True:
        snap = procs.snapshot()
        out.append(
            {
                "t": round(time.monotonic() - t0, 2),
                "completed": load.done_count,
                "running": load.running,
                "rss": {kind: sum(m.rss_bytes for m in snap.get(kind, {}).values()) for kind in snap},
                "cpu": {kind: round(sum(m.cpu_s for m in snap.get(kind, {}).values()), 2) for kind in snap},
            }
        )
        await asyncio.sleep(every_s)


def _ms(values: list[float]) -> dict[str, float]:
    return {k: (v if k == "count" else round(v * 1000, 2)) for k, v in percentiles(values).items()}


def _figures(
    scenario: Scenario,
    opts: RunOptions,
    result: LoadResult,
    marks: _Marks,
    final: dict[str, dict[int, CpuMem]],
    totals: dict[str, int],
    window_offsets: tuple[dict[str, int], dict[str, int]],
    samples: list[dict[str, Any]],
    problems: dict[str, list[str]],
    ready_s: float,
) -> dict[str, Any]:
    instances = result.instances
    done = [i for i in instances.values() if i.done]
    completed = sum(1 for i in done if i.status == "COMPLETED")
    ws, we = result.window
    window_s = max(we - ws, 1e-9)
    in_window = sum(1 for i in done if ws <= i.done <= we)
    measured = [i for i in done if i.measured]
    latency = _ms([i.done - i.sent for i in measured])
    # Through the API: how long its start request took (the API answers once the engine applied it).
    api_latency = _ms([i.responded - i.sent for i in measured if i.responded])
    engine_latency = _ms([i.engine_s for i in measured if i.engine_s is not None])

    cpu: dict[str, Any] = {}
    start, end = marks.start_cpu or {}, marks.end_cpu or final
    ours = 0.0
    for kind in KINDS:
        pids = end.get(kind)
        if not pids:
            cpu[kind] = None
            continue
        used = sum(m.cpu_s - start.get(kind, {}).get(pid, CpuMem(0, 0, 0)).cpu_s for pid, m in pids.items())
        ours += used
        # A JVM's compiler threads are warm-up, not the cost of a workflow (`CpuMem.jit_s`).
        jit = sum(m.jit_s - start.get(kind, {}).get(pid, CpuMem(0, 0, 0)).jit_s for pid, m in pids.items())
        used -= jit
        cpu[kind] = {
            "processes": len(pids),
            "cpu_s": round(used, 2),
            "jit_cpu_s": round(jit, 2),
            "cores": round(used / window_s, 3),
            "cpu_ms_per_wf": round(used * 1000 / in_window, 3) if in_window else None,
            # Peak over the window (VmHWM was reset at its start), largest process of the kind.
            "peak_rss_mib": round(max(m.peak_rss_bytes for m in (final.get(kind) or pids).values()) / 2**20, 1),
            "rss_end_mib": round(sum(m.rss_bytes for m in (final.get(kind) or pids).values()) / 2**20, 1),
        }
    machine_s = marks.end_machine - marks.start_machine
    deployment_labels = [k for k in totals if k not in INTERNAL_TOPICS]
    total_records = sum(totals[k] for k in deployment_labels)
    w0, w1 = window_offsets
    window_records = sum(w1.get(k, 0) - w0.get(k, 0) for k in deployment_labels)

    figures: dict[str, Any] = {
        "scenario": scenario.name,
        "description": scenario.description,
        "load": scenario.load,
        "spec": {
            k: getattr(scenario, k)
            for k in (
                "workflow",
                "activities",
                "shape",
                "concurrency",
                "rate",
                "workflows",
                "duration_s",
                "warmup_s",
                "payload_bytes",
                "timer_s",
            )
        },
        "processes_ready_s": round(ready_s, 2),
        "via": "grpc" if opts.grpc_apps else "api" if opts.apis else "kafka",
        "probe_s": None if math.isnan(result.probe_s) else round(result.probe_s, 3),
        "started": len(instances),
        "completed": completed,
        "failed": sum(1 for i in done if i.status != "COMPLETED"),
        "unfinished": len(instances) - len(done),
        "stalled": result.stalled,
        "send_errors": result.send_errors[:10],
        "window_s": round(window_s, 3),
        "completed_in_window": in_window,
        "workflows_per_s": round(in_window / window_s, 2),
        "activities_per_s": round(in_window * scenario.activities / window_s, 2),
        "latency_ms": latency,
        "engine_latency_ms": engine_latency,
        "api_start_latency_ms": api_latency if opts.apis else None,
        "loadgen": ("go" if cpu.get("harness") else "python") if opts.apis else None,
        "latency_histogram_ms": [
            (round(b * 1000, 3), n) for b, n in log_histogram([i.done - i.sent for i in measured])
        ],
        "cpu": cpu,
        "machine": {"busy_cpu_s": round(machine_s, 2), "other_cpu_s": round(machine_s - ours, 2)},
        "records": {
            "per_topic_total": totals,
            "total": total_records,
            "per_workflow": round(total_records / len(done), 2) if done else None,
            "in_window": window_records,
            "per_s": round(window_records / window_s, 1),
        },
        "peak_running": result.peak_running,
        "throughput_series": _series(result.t0, done),
        "samples": samples,
        "log_problems": {name: lines[:20] for name, lines in problems.items()},
        "log_problem_count": sum(len(lines) for lines in problems.values()),
    }
    if scenario.workflow == "bench_timer":
        lateness = [float(orjson.loads(i.output)) for i in measured if i.status == "COMPLETED" and i.output is not None]
        figures["timer_lateness_ms"] = _ms(lateness)
        figures["timer_lateness_histogram_ms"] = [(round(b * 1000, 3), n) for b, n in log_histogram(lateness)]
    figures["engine_rss_growth"] = _growth(samples)
    figures["engine_rss_at_completed_mib"] = _checkpoints(samples)
    return figures


def _requests_per_workflow(window: tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]],
                           in_window: int) -> dict[str, dict[str, Any]]:
    """Kafka requests sent over the window per completed workflow, by kind of process: in all
    and by request type (what a workflow costs at moderate load: `docs/performance.md`)."""
    start, end = window
    out: dict[str, dict[str, Any]] = {}
    for kind, counts in end.items():
        sent = {request: n - start.get(kind, {}).get(request, 0) for request, n in counts.items()}
        sent = {request: n for request, n in sent.items() if n > 0}
        if not sent or not in_window:
            continue
        out[kind] = {
            "per_workflow": round(sum(sent.values()) / in_window, 3),
            "by_request": {r: round(n / in_window, 3) for r, n in sorted(sent.items(), key=lambda rn: -rn[1])},
        }
    return out


def engine_fingerprint() -> str:
    """A hash of engine/ as the processes of this scenario loaded it: tells runs of one engine
    version from another when the code changes between (or during) benchmark runs."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "engine").rglob("*.py")):
        digest.update(path.relative_to(ROOT).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _series(t0: float, done: list[Instance]) -> list[int]:
    """Workflows completed in each second since the first start."""
    if not done:
        return []
    last = int(max(i.done for i in done) - t0)
    counts = [0] * (last + 1)
    for inst in done:
        counts[max(0, int(inst.done - t0))] += 1
    return counts


def _checkpoints(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Engine RSS (all engine processes) when the completed count first reached each milestone."""
    out: dict[str, float] = {}
    for milestone in (1_000, 10_000, 50_000, 100_000, 150_000, 200_000, 300_000, 500_000, 1_000_000):
        hit = next((s for s in samples if s["completed"] >= milestone and "engine" in s["rss"]), None)
        if hit is not None:
            out[str(milestone)] = round(hit["rss"]["engine"] / 2**20, 1)
    return out


def _growth(samples: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Engine RSS against completed workflows over the second half: bytes per finished workflow."""
    points = [(s["completed"], s["rss"].get("engine", 0)) for s in samples if "engine" in s["rss"]]
    half = points[len(points) // 2 :]
    if len(half) < 3 or half[-1][0] == half[0][0]:
        return None
    n = len(half)
    mx = sum(x for x, _ in half) / n
    my = sum(y for _, y in half) / n
    var = sum((x - mx) ** 2 for x, _ in half)
    slope = sum((x - mx) * (y - my) for x, y in half) / var if var else 0.0
    return {
        "bytes_per_completed_wf": round(slope, 1),
        "from_completed": half[0][0],
        "to_completed": half[-1][0],
        "rss_from_mib": round(half[0][1] / 2**20, 1),
        "rss_to_mib": round(half[-1][1] / 2**20, 1),
    }
