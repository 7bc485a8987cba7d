"""The short variant of every chaos scenario: a few hundred workflows, one or two faults, and the
checker's verdict. Each scenario is also the regression test of what it once found."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from ops.chaos.runner import RunOptions, RunResult, run_chaos
from ops.chaos.scenarios import SCENARIOS
from ops.kafka import LocalKafka

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(420)]

ROOT = Path(__file__).resolve().parents[2]
#: Run in process; `poison` runs through the CLI below, `mixed` is for long runs, `rolling-deploy`
#: has its own test below.
IN_PROCESS = [n for n in SCENARIOS if n not in ("poison", "mixed", "rolling-deploy")]


def run(name: str, cluster: LocalKafka, out: Path, workflows: int | None = None,
        rate: float | None = None) -> RunResult:
    scenario = SCENARIOS[name]
    options = RunOptions(
        scenario,
        workflows=workflows or scenario.workflows,
        faults=scenario.fault_count,
        seed=7,
        every_s=scenario.every_s,
        hold_s=15.0,
        drain_s=150.0,
        out=out,
        rate=rate,
    )
    return asyncio.run(run_chaos(options, cluster, say=print))


@pytest.mark.parametrize("name", IN_PROCESS)
def test_scenario_loses_nothing_and_duplicates_nothing(name: str, chaos_cluster: LocalKafka, tmp_path: Path):
    result = run(name, chaos_cluster, tmp_path)
    c = result.verdict.counts
    scenario = SCENARIOS[name]
    assert result.verdict.violations == [], result.summary
    assert (c.lost, c.duplicated, c.wrong_output) == (0, 0, 0)
    assert c.faults_injected == scenario.fault_count
    assert c.workflows_started >= scenario.workflows
    assert c.completed + c.failed_as_expected == c.workflows_started
    if name == "worker-kill":
        # A kill mid-activity leaves the item to be delivered again.
        assert c.activities_interrupted >= 1
        assert c.activities_redelivered >= 1
    if name == "api-kill":
        assert c.ambiguous_resolved >= 1
    if name == "nondeterminism":
        assert c.failed_as_expected >= 1


@pytest.mark.parametrize("name", ["engine-kill", "engine-pause"])
def test_one_transaction_per_partition_loses_nothing_and_duplicates_nothing(
        name: str, chaos_cluster: LocalKafka, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The engines commit each partition's batch in a transaction of the partition's own ID
    (`HEADRACE_TRANSACTIONS=partition`; the scenarios above run the default, one per poll): a
    killed engine's open transaction, a paused one that wakes up past its session."""
    monkeypatch.setenv("HEADRACE_TRANSACTIONS", "partition")  # the chaos processes inherit the environment
    result = run(name, chaos_cluster, tmp_path)
    c = result.verdict.counts
    assert result.verdict.violations == [], result.summary
    assert (c.lost, c.duplicated, c.wrong_output) == (0, 0, 0)
    assert c.faults_injected == SCENARIOS[name].fault_count
    assert c.completed + c.failed_as_expected == c.workflows_started >= SCENARIOS[name].workflows
    engine_logs = sorted(tmp_path.rglob("engine-*.log"))
    assert engine_logs and all("a transaction per partition" in log.read_text() for log in engine_logs)


def test_a_rolling_deploy_fails_nothing_for_its_code_and_every_run_takes_its_history_s_branch(
        chaos_cluster: LocalKafka, tmp_path: Path):
    """Issue 12: v2 (a new workflow and activity, a patch, a new named version) rolled into a v1
    fleet one process at a time under load, then v1 removed (ops/chaos/rolling.py)."""
    # 100 workflows over most of the ~60-100 s the deploy takes, so v2 kinds start while v1 processes remain.
    result = run("rolling-deploy", chaos_cluster, tmp_path, workflows=100, rate=1.8)
    c = result.verdict.counts
    assert result.verdict.violations == [], result.summary
    assert (c.lost, c.duplicated, c.wrong_output) == (0, 0, 0)
    assert c.completed == c.workflows_started >= 100
    rolled = result.summary["rolling"]
    assert rolled["failed_for_code"] == 0
    # Both sides of every change ran: old and new branches, old and new versions, the new workflow.
    for path in ("patched/unpatched", "patched/patched", "named/v1", "named/v2", "new/new"):
        assert rolled["paths"].get(path, 0) >= 1, rolled


def test_one_command_runs_a_scenario_and_ends_with_the_verdict(chaos_cluster: LocalKafka, tmp_path: Path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ops",
            "chaos",
            "poison",
            "--workflows",
            "200",
            "--kafka-state-dir",
            str(chaos_cluster.state_dir),
            "--out",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "chaos poison (seed 1): PASS" in done.stdout
    assert "lost 0, duplicated 0" in done.stdout
    assert "poison dead-lettered 10/10" in done.stdout
    assert list(tmp_path.glob("poison-*/verdict.json"))
