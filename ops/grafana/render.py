"""Draw the Grafana dashboard's panels from a Prometheus server, without Grafana.

`python -m ops.grafana.render --prometheus http://127.0.0.1:9090 --out docs/screenshots/grafana.png`
reads `ops/grafana/dashboards/headrace.json`, runs every panel's PromQL over the last `--minutes`
through Prometheus' HTTP API (`/api/v1/query_range`,
https://prometheus.io/docs/prometheus/latest/querying/api/#range-queries) and draws the panels in
the dashboard's grid with matplotlib: the same queries, the same layout, one PNG. It exists for
machines where Grafana itself cannot be installed (it is in no Debian or language registry), so the
README's picture still comes from a real run.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

__all__ = ["DASHBOARD", "main", "render"]

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "headrace.json"
#: Grafana's `$__rate_interval` for a 5 s scrape interval (four scrapes).
RATE_INTERVAL = "20s"
_UNITS = {"ms": "ms", "s": "s", "ops": "/s", "reqps": "req/s", "percentunit": "CPU", "bytes": "bytes"}


def _query(prometheus: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    reply = httpx.get(f"{prometheus}/api/v1/query_range", timeout=30, params={
        "query": expr.replace("$__rate_interval", RATE_INTERVAL), "start": start, "end": end, "step": step})
    reply.raise_for_status()
    result: list[dict[str, Any]] = reply.json()["data"]["result"]
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    out = template
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def render(prometheus: str, out: Path, minutes: float = 10.0, dashboard: Path = DASHBOARD) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    spec = json.loads(dashboard.read_text())
    panels = [p for p in spec["panels"] if p["type"] == "timeseries"]
    rows = [p for p in spec["panels"] if p["type"] == "row"]
    top = 1.5  # grid units above the first row, for the title
    height = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in spec["panels"]) + top
    end = time.time()
    start = end - minutes * 60
    step = max(5.0, (end - start) / 240)
    unit_px = 0.34  # inches per grid unit of height; 24 columns across 20 inches
    fig = plt.figure(figsize=(20, height * unit_px), facecolor="#111217")
    fig.text(0.01, 1 - 1.0 / height, f"{spec['title']}: the Grafana dashboard ops/grafana/dashboards/headrace.json, "
             f"its queries run on Prometheus", color="#d8d9da", fontsize=13)
    for row in rows:
        y = row["gridPos"]["y"] + top
        fig.text(0.01, 1 - (y + 0.6) / height, row["title"], color="#d8d9da", fontsize=12, weight="bold")
    for panel in panels:
        grid = panel["gridPos"]
        left, width = grid["x"] / 24 + 0.006, grid["w"] / 24 - 0.012
        bottom = 1 - (grid["y"] + top + grid["h"]) / height + 0.9 / height
        ax = fig.add_axes((left + 0.02, bottom, width - 0.03, grid["h"] / height - 1.7 / height))
        ax.set_facecolor("#181b1f")
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        ax.tick_params(colors="#8e8e8e", labelsize=7)
        ax.set_title(panel["title"], color="#d8d9da", fontsize=9, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        if unit in _UNITS:
            ax.set_ylabel(_UNITS[unit], color="#8e8e8e", fontsize=7)
        drawn = 0
        for target in panel["targets"]:
            for series in _query(prometheus, target["expr"], start, end, step):
                points = [(datetime.fromtimestamp(float(t), UTC), float(v)) for t, v in series["values"]
                          if v not in ("NaN", "+Inf", "-Inf")]
                if not points:
                    continue
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, linewidth=1.2, label=_legend(target.get("legendFormat", ""), series["metric"]))
                drawn += 1
        ax.set_xlim(datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC))  # type: ignore[arg-type]
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
        ax.grid(color="#2c3235", linewidth=0.5)
        if drawn:
            ax.legend(fontsize=6, loc="upper left", facecolor="#181b1f", edgecolor="#2c3235", labelcolor="#d8d9da",
                      ncol=2 if drawn > 4 else 1)
        else:
            ax.text(0.5, 0.5, "No data", color="#8e8e8e", ha="center", va="center", transform=ax.transAxes)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80, facecolor=fig.get_facecolor())
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots/grafana.png"))
    parser.add_argument("--minutes", type=float, default=10.0, help="how far back to draw")
    args = parser.parse_args(argv)
    print(render(args.prometheus, args.out, args.minutes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
