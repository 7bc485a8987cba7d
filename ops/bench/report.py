"""Results as a terminal table, a Markdown table, a JSON file with every figure, and a PNG.

The PNG has four panels: start-to-completion latency (CDF per scenario), completed workflows per
second over time, timer lateness, and engine RSS against completed workflows.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .hops import hop_rows

__all__ = ["markdown", "plot", "print_tables", "rows", "targets", "write_json"]

GiB = 1024.0


def _get(result: dict[str, Any], *path: str) -> Any:
    value: Any = result
    for key in path:
        if not isinstance(value, dict) or value.get(key) is None:
            return None
        value = value[key]
    return value


def targets(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured figure and whether it was met at full size."""
    by = {r["scenario"]: r for r in results if "error" not in r}
    out: list[dict[str, Any]] = []

    def add(target: str, scenario: str, measured: str, met: bool | None, comparable: bool) -> None:
        verdict = (
            "not run"
            if scenario not in by
            else (("met" if met else "missed") if comparable else "not comparable (smaller run)")
        )
        out.append({"target": target, "scenario": scenario, "measured": measured, "verdict": verdict})

    r = by.get("chain-5")
    add(
        "chain-5 >= 150 completed wf/s sustained for 60 s",
        "chain-5",
        f"{r['workflows_per_s']} wf/s over {r['window_s']:.0f} s" if r else "-",
        bool(r and r["workflows_per_s"] >= 150),
        bool(r and r["window_s"] >= 59.5),
    )
    r = by.get("parallel-5")
    add(
        "parallel-5 >= 200 wf/s",
        "parallel-5",
        f"{r['workflows_per_s']} wf/s" if r else "-",
        bool(r and r["workflows_per_s"] >= 200),
        bool(r and r["window_s"] >= 30),
    )
    r = by.get("chain-1-latency")
    p50, p99 = (_get(r, "latency_ms", "p50"), _get(r, "latency_ms", "p99")) if r else (None, None)
    add(
        "chain-1-latency at 10 wf/s: p50 <= 25 ms, p99 <= 100 ms",
        "chain-1-latency",
        f"p50 {p50} ms, p99 {p99} ms" if r else "-",
        bool(p50 is not None and p99 is not None and p50 <= 25 and p99 <= 100),
        bool(r and r["spec"]["rate"] == 10 and r["completed_in_window"] >= 300),
    )
    r = by.get("timers")
    late = _get(r, "timer_lateness_ms", "p99") if r else None
    add(
        "timers: 10,000 concurrent timer workflows, p99 lateness <= 1 s",
        "timers",
        f"{r['started'] - 1} workflows, {r['peak_running']} running at once, p99 lateness {late} ms" if r else "-",
        bool(late is not None and late <= 1000 and r and r["unfinished"] == 0),
        bool(r and r["started"] - 1 >= 10_000),
    )
    r = by.get("memory")
    at_100k = _get(r, "engine_rss_at_completed_mib", "100000") if r else None
    rss = _get(r, "cpu", "engine", "rss_end_mib") if r else None
    growth = _get(r, "engine_rss_growth") if r else None
    slope = growth["bytes_per_completed_wf"] if growth else None
    add(
        "engine RSS after 100,000 completed workflows < 1 GiB, not growing with finished instances",
        "memory",
        f"{at_100k} MiB at 100,000, {rss} MiB at the end ({r['completed']}); over "
        f"{growth['from_completed']}-{growth['to_completed']}: {slope} B per finished workflow"
        if r and growth
        else "-",
        # "Not growing": under 100 B per finished workflow, i.e. < 10 MB per 100,000.
        bool(
            at_100k is not None
            and at_100k < GiB
            and rss is not None
            and rss < GiB
            and slope is not None
            and slope < 100
        ),
        bool(r and r["completed"] >= 200_000),
    )
    return out


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


#: Process kinds of the cost table (`grpc` and `app`: the front end and Dapr SDK apps of --via grpc).
_COST_KINDS = ("broker", "engine", "worker", "api", "grpc", "app", "loadgen", "harness")


def rows(
    results: list[dict[str, Any]], ceiling: dict[str, Any] | None
) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """Two tables: speed (throughput, latency) and cost (CPU, RSS, records)."""
    speed_head = [
        "scenario",
        "load",
        "done/started",
        "wf/s",
        "act/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "engine p50/p99 ms",
        "timer late p50/p99 ms",
    ]
    cost_head = [
        "scenario",
        "CPU ms/wf broker",
        *_COST_KINDS[1:],
        "cores used",
        "peak RSS MiB broker",
        *_COST_KINDS[1:],
        "records/wf",
        "records/s",
        "of ceiling",
        "broker JIT cores",
        "other procs cores",
        "log warnings",
    ]
    speed: list[list[str]] = []
    cost: list[list[str]] = []
    for r in results:
        if "error" in r:
            speed.append([r["scenario"], "error: " + r["error"][:80]] + [""] * (len(speed_head) - 2))
            continue
        lat = r["latency_ms"]
        eng = r["engine_latency_ms"]
        timer = r.get("timer_lateness_ms")
        state = f"{r['completed']}/{r['started']}" + (" STALLED" if r["stalled"] else "")
        speed.append(
            [
                r["scenario"],
                r["load"],
                state,
                _f(r["workflows_per_s"]),
                _f(r["activities_per_s"]),
                _f(lat.get("p50")),
                _f(lat.get("p90")),
                _f(lat.get("p99")),
                _f(lat.get("max")),
                f"{_f(eng.get('p50'))}/{_f(eng.get('p99'))}",
                f"{_f(timer.get('p50'))}/{_f(timer.get('p99'))}" if timer else "-",
            ]
        )
        cpu = r["cpu"]
        cores = sum(c["cores"] for c in cpu.values() if c)
        per_s = r["records"]["per_s"]
        frac = f"{per_s / ceiling['records_per_s']:.1%}" if ceiling else "-"
        cost.append(
            [
                r["scenario"],
                *[_f(_get(cpu, k, "cpu_ms_per_wf"), 2) for k in _COST_KINDS],
                _f(cores, 2),
                *[_f(_get(cpu, k, "peak_rss_mib")) for k in _COST_KINDS],
                _f(r["records"]["per_workflow"]),
                _f(per_s, 0),
                frac,
                # A fresh broker's compiler threads, left out of its CPU per workflow (`CpuMem.jit_s`).
                _f((_get(cpu, "broker", "jit_cpu_s") or 0.0) / r["window_s"], 2),
                # CPU the rest of the machine used meanwhile: how noisy this row is.
                _f(r["machine"]["other_cpu_s"] / r["window_s"], 2),
                str(r["log_problem_count"]),
            ]
        )
    return speed_head, speed, cost_head, cost


#: Requests whose count is the number of transactions a process committed or aborted.
_TRANSACTION_END = "EndTxn"


def request_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Kafka requests per completed workflow, by kind of process: in all, and the transactions
    among them (the broker's own requests, markers and verification, are not counted)."""
    kinds = [k for k in _COST_KINDS[1:] if any((r.get("kafka_requests") or {}).get(k) for r in results)]
    head = ["scenario", *kinds, "all"]
    body: list[list[str]] = []
    for r in results:
        counted = r.get("kafka_requests")
        if "error" in r or not counted:
            continue
        cells = []
        for kind in kinds:
            found = counted.get(kind)
            if not found:
                cells.append("-")
                continue
            ends = found["by_request"].get(_TRANSACTION_END)
            cells.append(_f(found["per_workflow"], 2) + (f" ({_f(ends, 2)} transactions)" if ends else ""))
        body.append([r["scenario"], *cells, _f(sum(c["per_workflow"] for c in counted.values()), 2)])
    return head, body


def _md_table(head: list[str], body: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in body]
    return "\n".join(lines)


def markdown(doc: dict[str, Any]) -> str:
    speed_head, speed, cost_head, cost = rows(doc["scenarios"], doc.get("ceiling"))
    env = doc["environment"]
    parts = [
        f"# headrace bench, {doc['started_at']}",
        "",
        f"`{doc['command']}` on {env['cores']} cores ({env['cpu_model']}), "
        f"{env['memory_gib']} GiB, "
        f"Python {env['python']}, broker {doc['broker']['source']} "
        f"{doc['broker'].get('version') or ''} at {doc['broker']['bootstrap']}, "
        f"{doc['options']['partitions']} partitions, {doc['options']['engines']} engine and "
        f"{doc['options']['workers']} {'Dapr SDK app' if doc['options'].get('via') == 'grpc' else 'worker'} "
        "process(es), starts via "
        f"{doc['options'].get('via', 'kafka')}; commit {env['commit']}.",
        "",
    ]
    if doc["broker"].get("warmup_s"):
        parts += [f"The broker was warmed up first: {doc['broker']['warmup_s']:g} s of chain-5 with 100 in flight "
                  f"({doc['broker'].get('warmup_completed', 0)} workflows), not measured.", ""]
    ceiling = doc.get("ceiling")
    if ceiling:
        parts += [
            f"Ceiling (raw aiokafka produce -> consume, {ceiling['record_bytes']} B records): "
            f"{ceiling['records_per_s']:.0f} records/s; latency saturated p50 "
            f"{ceiling['saturated_latency_ms'].get('p50', 0):.1f} ms / p99 "
            f"{ceiling['saturated_latency_ms'].get('p99', 0):.1f} ms, "
            f"at {ceiling['idle_rate']:g}/s "
            f"p50 {ceiling['idle_latency_ms'].get('p50', 0):.1f} ms / p99 "
            f"{ceiling['idle_latency_ms'].get('p99', 0):.1f} ms; one transaction (three partitions) p50 "
            f"{ceiling.get('transaction_ms', {}).get('p50', 0):.1f} ms / p99 "
            f"{ceiling.get('transaction_ms', {}).get('p99', 0):.1f} ms, with the group's offsets in it p50 "
            f"{ceiling.get('transaction_with_offsets_ms', {}).get('p50', 0):.1f} ms.",
            "",
        ]
    parts += [
        "## Throughput and latency",
        "",
        _md_table(speed_head, speed),
        "",
        "## Cost",
        "",
        _md_table(cost_head, cost),
        "",
        "## Kafka requests per completed workflow",
        "",
        _md_table(*request_rows(doc["scenarios"])),
        "",
    ]
    hop_head, hop_body = hop_rows(doc["scenarios"])
    if hop_body:
        parts += ["## Hops (`--hops`): p50 / p99 ms, from the records' own timestamps", "",
                  _md_table(hop_head, hop_body), ""]
    parts += [
        "## Targets",
        "",
        _md_table(
            ["target", "measured", "verdict"],
            [[t["target"], t["measured"], t["verdict"]] for t in doc["targets"]],
        ),
        "",
    ]
    for r in doc["scenarios"]:
        for process, prof in (r.get("profile") or {}).items():
            parts += [
                f"## Profile: {r['scenario']}, {process} ({prof['samples']} samples holding the GIL)",
                "",
                _md_table(
                    ["own time %", "function", "total time %", "function (event loop left out)"],
                    [
                        [str(o[1]), o[0], str(t[1]), t[0]]
                        for o, t in zip(prof["top_own_pct"], prof["top_total_pct"], strict=False)
                    ],
                ),
                "",
            ]
    return "\n".join(parts)


def print_tables(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=220)
    speed_head, speed, cost_head, cost = rows(doc["scenarios"], doc.get("ceiling"))
    tables = [
        ("throughput and latency", speed_head, speed),
        ("cost per completed workflow", cost_head, cost),
        ("Kafka requests per completed workflow (sent by our processes)", *request_rows(doc["scenarios"])),
    ]
    hop_head, hop_body = hop_rows(doc["scenarios"])
    if hop_body:
        tables.append(("hops of a chain, p50 / p99 ms (--hops)", hop_head, hop_body))
    for title, head, body in tables:
        table = Table(title=title, title_justify="left")
        for i, name in enumerate(head):
            table.add_column(name, justify="left" if i < 2 else "right")
        for row in body:
            table.add_row(*row)
        console.print(table)
    table = Table(title="targets", title_justify="left")
    for name in ("target", "measured", "verdict"):
        table.add_column(name)
    for t in doc["targets"]:
        table.add_row(t["target"], t["measured"], t["verdict"])
    console.print(table)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")


def _smooth(series: list[int], width: int = 5) -> list[float]:
    """Trailing mean over `width` seconds: per-second counts swing with the engine's batches."""
    out, acc = [], 0
    for i, n in enumerate(series):
        acc += n - (series[i - width] if i >= width else 0)
        out.append(acc / min(i + 1, width))
    return out


def plot(path: Path, doc: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on servers and in CI
    import matplotlib.pyplot as plt

    results = [r for r in doc["scenarios"] if "error" not in r]
    fig, axes = plt.subplots(2, 2, figsize=(15, 10))
    (lat_ax, tput_ax), (timer_ax, mem_ax) = axes
    for r in results:
        hist = r["latency_histogram_ms"]
        total = sum(n for _, n in hist)
        if total:
            xs, ys, acc = [], [], 0
            for bound, n in hist:
                acc += n
                xs.append(bound)
                ys.append(acc / total)
            lat_ax.step(xs, ys, where="post", label=r["scenario"])
        series = r["throughput_series"]
        if series:
            tput_ax.plot(range(len(series)), _smooth(series), label=r["scenario"], linewidth=1)
    lat_ax.set_xscale("log")
    lat_ax.set_xlabel("start-to-completion (ms, log)")
    lat_ax.set_ylabel("fraction of workflows")
    lat_ax.set_title("latency distribution (CDF)")
    lat_ax.grid(True, which="both", alpha=0.3)
    tput_ax.set_xlabel("seconds since the scenario's first start")
    tput_ax.set_ylabel("completed workflows / s (5 s mean)")
    tput_ax.set_title("throughput over time")
    tput_ax.grid(True, alpha=0.3)
    for ax in (lat_ax, tput_ax):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    for r in results:
        hist = r.get("timer_lateness_histogram_ms")
        if hist:
            total = sum(n for _, n in hist)
            xs, ys, acc = [], [], 0
            for bound, n in hist:
                acc += n
                xs.append(bound)
                ys.append(acc / total)
            timer_ax.step(xs, ys, where="post", label=r["scenario"])
            timer_ax.axvline(1000, color="grey", linestyle="--", linewidth=1)
    timer_ax.set_xscale("log")
    timer_ax.set_xlabel("timer lateness: handled minus due (ms, log; dashed: 1 s target)")
    timer_ax.set_ylabel("fraction of timers")
    timer_ax.grid(True, which="both", alpha=0.3)
    timer_ax.set_title("timer lateness (CDF)")
    for r in results:
        pts = [(s["completed"], s["rss"]["engine"] / 2**20) for s in r["samples"] if "engine" in s["rss"]]
        if pts and r["scenario"] in ("memory", "chain-5", "timers"):
            mem_ax.plot([p[0] for p in pts], [p[1] for p in pts], label=r["scenario"])
    mem_ax.set_xlabel("completed workflows")
    mem_ax.set_ylabel("engine RSS (MiB)")
    mem_ax.set_title("engine memory against finished workflows")
    mem_ax.grid(True, alpha=0.3)
    if mem_ax.get_legend_handles_labels()[0]:
        mem_ax.legend(fontsize=8)
    fig.suptitle(f"headrace bench {doc['started_at']} ({doc['environment']['cores']} cores)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
