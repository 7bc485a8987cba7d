"""The observability profile of docker-compose.yml, the Prometheus scrape config and the Grafana
dashboard fit together and query only metrics the processes expose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, ProcessCollector

from api.metrics import ApiMetrics
from engine.runtime.telemetry import EngineMetrics, WorkerMetrics

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
PROMETHEUS = ROOT / "ops" / "prometheus" / "prometheus.yml"
DASHBOARD = json.loads((ROOT / "ops" / "grafana" / "dashboards" / "headrace.json").read_text())


def _exposed() -> set[str]:
    """Every sample name the engine, worker and API processes can serve."""
    names: set[str] = set()
    process = CollectorRegistry()
    ProcessCollector(registry=process)
    for registry in (EngineMetrics().registry, WorkerMetrics().registry, ApiMetrics().registry, process):
        for family in registry.collect():
            names.add(family.name)
            kind = family.type
            if kind == "counter":
                names.add(f"{family.name}_total")
            elif kind == "histogram":
                names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
            names.update(sample.name for sample in family.samples)
    return names


def test_the_observability_profile_adds_prometheus_and_grafana_only_on_request() -> None:
    services = COMPOSE["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    for name in ("kafka", "engine", "worker", "api"):
        assert "profiles" not in services[name]
    for service in ("prometheus", "grafana"):
        for volume in services[service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), source


def test_prometheus_scrapes_every_engine_worker_and_api_on_their_metrics_ports() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    port = int(COMPOSE["x-headrace"]["environment"]["HEADRACE_METRICS_PORT"])
    assert COMPOSE["x-headrace"]["environment"]["HEADRACE_METRICS_HOST"] == "0.0.0.0"
    jobs = {job["job_name"]: job["dns_sd_configs"][0] for job in config["scrape_configs"]}
    assert jobs["headrace-engine"]["names"] == ["engine"] and jobs["headrace-engine"]["port"] == port
    assert jobs["headrace-worker"]["names"] == ["worker"] and jobs["headrace-worker"]["port"] == port
    assert jobs["headrace-api"]["names"] == ["api"] and jobs["headrace-api"]["port"] == 3500
    promtool = shutil.which("promtool")
    if promtool is not None:  # Debian's prometheus package ships it
        checked = subprocess.run([promtool, "check", "config", str(PROMETHEUS)], capture_output=True, text=True,
                                 check=False, timeout=60)
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_dashboard_query_names_a_metric_the_processes_expose() -> None:
    exposed = _exposed()
    datasource = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    panels = [p for p in DASHBOARD["panels"] if p["type"] == "timeseries"]
    assert len(panels) >= 12
    used: set[str] = set()
    for panel in panels:
        assert panel["datasource"]["uid"] == uid
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b((?:dapr_runtime|headrace|process)_[a-z0-9_]+)\b", target["expr"]))
            assert names, target["expr"]
            unknown = names - exposed
            assert not unknown, f"{panel['title']}: {sorted(unknown)}"
            used |= names
    # Dapr's workflow metrics, by their Dapr names, are on the dashboard.
    for dapr in ("dapr_runtime_workflow_execution_count_total", "dapr_runtime_workflow_execution_latency_bucket",
                 "dapr_runtime_workflow_scheduling_latency_bucket", "dapr_runtime_workflow_operation_count_total",
                 "dapr_runtime_workflow_activity_execution_count_total"):
        assert dapr in used, dapr
    # Panels do not overlap on the 24-column grid.
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        columns, rows = range(grid["x"], grid["x"] + grid["w"]), range(grid["y"], grid["y"] + grid["h"])
        mine = {(x, y) for x in columns for y in rows}
        assert not mine & cells, panel["title"]
        cells |= mine


@pytest.mark.parametrize("metric", ["dapr_runtime_workflow_execution_count", "dapr_runtime_workflow_operation_count",
                                    "dapr_runtime_workflow_activity_execution_count"])
def test_dapr_counters_keep_dapr_family_names(metric: str) -> None:
    families = {f.name for r in (EngineMetrics().registry, WorkerMetrics().registry, ApiMetrics().registry)
                for f in r.collect()}
    assert metric in families
