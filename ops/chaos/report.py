"""The verdict as a person reads it at the end of a run."""

from __future__ import annotations

from typing import Any

__all__ = ["render"]


def render(summary: dict[str, Any]) -> str:
    verdict = summary["verdict"]
    c = verdict["counts"]
    faults = ", ".join(f"{kind} {n}" for kind, n in sorted(c["faults"].items())) or "none"
    lines = [
        f"chaos {summary['scenario']} (seed {summary['seed']}): {'PASS' if verdict['ok'] else 'FAIL'}",
        f"  workflows started {c['workflows_started']}, completed {c['completed']}, "
        f"failed as expected {c['failed_as_expected']}, lost {c['lost']}, duplicated {c['duplicated']}, "
        f"wrong output {c['wrong_output']}",
        f"  starts never acknowledged {c['unacknowledged']} (of which landed {c['unacknowledged_landed']}), "
        f"ambiguous starts resolved by retry {c['ambiguous_resolved']}, child workflows {c['children']}",
        f"  activities run {c['activity_runs']}, redelivered {c['activities_redelivered']} "
        f"(interrupted by a kill {c['activities_interrupted']}, most runs of one task "
        f"{c['max_runs_of_one_task']}), retries scheduled {c['retries_scheduled']}, timers fired {c['timers_fired']}",
        f"  faults injected {c['faults_injected']} ({faults}); dead letters {c['dead_letters']} "
        f"(second starts of a running instance refused {c['refused_duplicate_starts']})"
        + (f", poison dead-lettered {c['poison_dead_lettered']}/{c['poison_sent']}" if c["poison_sent"] else ""),
        f"  history {c['history_events']} events in {c['executions']} executions; load {summary['load_s']}s "
        f"at {summary['rate_per_s']}/s, drain {summary['drain_s']}s",
    ]
    lines += [
        f"  - {fault['at_s']:7.1f}s {fault['kind']} {fault['target']}: {fault['detail']}" for fault in summary["faults"]
    ]
    if verdict["violations"]:
        lines.append("  violations:")
        lines += [f"    {v}" for v in verdict["violations"]]
    else:
        lines.append("  violations: none")
    lines.append(f"  details: {summary['directory']}/verdict.json")
    return "\n".join(lines)
