"""One `headrace bench` invocation: broker, ceiling, the scenarios in turn, then the files."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import subprocess
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.settings import Settings

from . import report
from .ceiling import measure_ceiling
from .deploy import ROOT, Broker, new_run_id, set_broker_config
from .procstats import machine_busy_s
from .runner import RunOptions, run_scenario
from .scenarios import Scenario, broker_warmup, override, select

__all__ = ["run_session", "warmup_seconds"]

#: Seconds of unmeasured load a private broker gets first (`--broker-warmup`; `broker_warmup`).
DEFAULT_BROKER_WARMUP_S = 90.0


async def _code_root(args: argparse.Namespace, native_dir: Path, progress: _Progress) -> Path:
    """Where the deployed processes import Headrace from: this checkout, or with `--native` a
    compiled copy of it (`ops.native`; half a minute of compiling, off the event loop)."""
    if not args.native:
        return ROOT
    from ops.native import build

    progress.note(f"building the native copy in {native_dir}")
    return await asyncio.to_thread(build, native_dir)


def _environment() -> dict[str, Any]:
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": commit or "unknown",
        "loadavg_at_start": os.getloadavg(),
    }


class _Progress:
    """A rich progress bar with one line per scenario (plain lines when disabled or not a TTY)."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=self.console,
            disable=not enabled,
            refresh_per_second=4,
        )
        self.task: Any = None
        self.scenario: Scenario | None = None

    def begin(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.task = self.bar.add_task(scenario.name, total=1.0, info="starting processes")

    def update(self, phase: str, done: int, started: int, measured_done: int, since: float) -> None:
        s = self.scenario
        assert s is not None
        if phase == "warm-up":
            frac = since / s.warmup_s if s.warmup_s else 0.0
        elif phase == "measure":
            frac = measured_done / s.workflows if s.workflows else since / max(s.duration_s, 1e-9)
        else:
            frac = done / max(started, 1)
        rate = f"{done / since:.0f} wf/s" if phase == "measure" and since > 1 and not s.workflows else ""
        self.bar.update(self.task, completed=min(frac, 1.0), info=f"{phase}: {done}/{started} done {rate}")

    def finish(self, figures: dict[str, Any]) -> None:
        """The bar's last word: the ticker stops before the drain's final completions."""
        if "error" in figures:
            info = "error"
        else:
            info = f"{figures['completed']}/{figures['started']} completed"
            info += ", STALLED" if figures["stalled"] else f", {figures['workflows_per_s']} wf/s"
        self.bar.update(self.task, completed=1.0, info=info)

    def note(self, text: str) -> None:
        self.console.print(text)


async def run_session(args: argparse.Namespace, command: str) -> dict[str, Any]:
    scenarios = [
        override(
            s,
            workflows=args.workflows,
            duration_s=args.duration,
            warmup_s=args.warmup,
            concurrency=args.concurrency,
            rate=args.rate,
        )
        for s in select(args.scenarios, tiny=args.tiny)
    ]
    run_id = new_run_id()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - before any load runs
    progress = _Progress(enabled=not args.no_progress)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    if args.bootstrap_servers:
        broker = Broker.given(args.bootstrap_servers)
    else:
        progress.note("starting a private Kafka broker on free ports")
        broker = await asyncio.to_thread(Broker.start_local)
    progress.note(f"broker {broker.bootstrap} ({broker.source}, pid {broker.pid or 'unknown'})")
    broker_config = dict(item.split("=", 1) for item in args.broker_config)
    doc: dict[str, Any] = {
        "command": command,
        "started_at": started_at,
        "run_id": run_id,
        "environment": _environment(),
        "broker": {
            "config": broker_config,
            "bootstrap": broker.bootstrap,
            "source": broker.source,
            "pid": broker.pid,
            "version": broker.version,
        },
        "options": {
            "partitions": args.partitions,
            "engines": args.engines,
            "workers": args.workers,
            "via": args.via,
            "apis": args.apis if args.via == "api" else 0,
            # With --via grpc, --workers counts the connected SDK apps (they run the activities).
            "grpc_apps": args.workers if args.via == "grpc" else 0,
            "tiny": args.tiny,
            "stall_timeout_s": args.stall_timeout,
            "seed": args.seed,
            "native": args.native,
        },
        "ceiling": None,
        "scenarios": [],
    }
    busy0, t0 = machine_busy_s()[0], time.monotonic()
    opts = RunOptions(
        run_id=run_id,
        partitions=args.partitions,
        engines=args.engines,
        workers=0 if args.via == "grpc" else args.workers,
        stall_s=args.stall_timeout,
        log_dir=out / f"logs-{run_id}",
        seed=args.seed,
        apis=args.apis if args.via == "api" else 0,
        grpc_apps=args.workers if args.via == "grpc" else 0,
        profile=args.profile,
        hops=args.hops,
        code_root=await _code_root(args, out / f"native-{run_id}", progress),
    )
    try:
        if broker_config:
            await set_broker_config(broker.bootstrap, broker_config)
            progress.note(f"broker config set: {broker_config}")
        warmup_s = warmup_seconds(args)
        doc["broker"]["warmup_s"] = warmup_s
        if warmup_s > 0:
            progress.note(f"warming the broker up: chain-5, 100 in flight, {warmup_s:g} s, not measured")
            try:
                warm = await run_scenario(broker_warmup(warmup_s), broker,
                                          replace(opts, apis=0, grpc_apps=0, profile=False, hops=False,
                                                  workers=max(1, args.workers)),
                                          lambda *_: None, lambda _: None)
            except Exception as exc:
                # As a scenario's failure: said, kept in the JSON, and the scenarios still run
                # (each reports its own error if the deployment is broken).
                warm = {"error": f"{type(exc).__name__}: {exc}"}
            doc["broker"]["warmup_completed"] = warm.get("completed", 0)
            progress.note(f"broker warm-up failed: {warm['error']}" if "error" in warm
                          else f"broker warmed up: {warm.get('completed', 0)} workflows in {warmup_s:g} s")
            if "error" in warm:
                doc["broker"]["warmup_error"] = warm["error"]
        if not args.no_ceiling:
            progress.note("measuring the ceiling: raw aiokafka produce -> consume round trip")
            settings = Settings.from_env(
                bootstrap_servers=broker.bootstrap,
                topic_prefix=f"bench.{run_id}.",
                partitions=args.partitions,
            )
            records = args.ceiling_records or (2_000 if args.tiny else 50_000)
            ceiling = await measure_ceiling(settings, records=records, idle_s=1.0 if args.tiny else 5.0,
                                            transactions=20 if args.tiny else 200)
            doc["ceiling"] = ceiling.to_json()
            progress.note(
                f"ceiling: {ceiling.records_per_s:.0f} records/s, idle round trip p50 "
                f"{ceiling.idle_latency_ms.get('p50', 0):.1f} ms, one transaction p50 "
                f"{ceiling.transaction_ms.get('p50', 0):.1f} ms "
                f"({ceiling.transaction_with_offsets_ms.get('p50', 0):.1f} with group offsets)"
            )
        with progress.bar:
            for scenario in scenarios:
                progress.begin(scenario)
                try:
                    figures = await run_scenario(scenario, broker, opts, progress.update, progress.note)
                except Exception as exc:
                    figures = {"scenario": scenario.name, "error": f"{type(exc).__name__}: {exc}"}
                doc["scenarios"].append(figures)
                progress.finish(figures)
                progress.note(_one_line(figures))
    finally:
        await broker.close(run_id, keep_topics=args.keep_topics, note=progress.note)
    doc["environment"]["loadavg_at_end"] = os.getloadavg()
    doc["environment"]["machine_busy_cores"] = round((machine_busy_s()[0] - busy0) / (time.monotonic() - t0), 2)
    doc["targets"] = report.targets(doc["scenarios"])
    stem = out / f"bench-{run_id}"
    report.write_json(stem.with_suffix(".json"), doc)
    stem.with_suffix(".md").write_text(report.markdown(doc))
    report.plot(stem.with_suffix(".png"), doc)
    report.print_tables(doc)
    progress.note(f"wrote {stem}.json, {stem}.png and {stem}.md")
    return doc


def warmup_seconds(args: argparse.Namespace) -> float:
    """`--broker-warmup`, or its default: `DEFAULT_BROKER_WARMUP_S` for a private broker at full
    size, none with `--tiny` or a given broker."""
    if args.broker_warmup is not None:
        return max(0.0, float(args.broker_warmup))
    return 0.0 if args.tiny or args.bootstrap_servers else DEFAULT_BROKER_WARMUP_S


def _one_line(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['scenario']}: ERROR {r['error']}"
    lat = r["latency_ms"]
    extra = f", STALLED: {r['stalled']}" if r["stalled"] else ""
    return (
        f"{r['scenario']}: {r['completed']}/{r['started']} completed, {r['workflows_per_s']} wf/s, "
        f"p50 {lat.get('p50', '-')} ms, p99 {lat.get('p99', '-')} ms{extra}"
    )
