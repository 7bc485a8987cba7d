"""Reads a deployment's history topic back and checks the invariants no fault may break.

- Within one execution of an instance, sequence numbers run 0, 1, 2, … with no gap and no repeat.
- No activity, timer or child result is applied twice (one result event per scheduled task).
- Every execution that ended has exactly one end event (ExecutionCompleted or ContinuedAsNew).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from engine.core import events as ev
from engine.read.to_end import reading
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import decode_events

__all__ = ["HistoryAudit", "audit", "read_history"]


@dataclass
class HistoryAudit:
    executions: int = 0
    events: int = 0
    completed: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


async def read_history(settings: Settings) -> list[tuple[str, str, list[ev.HistoryEvent]]]:
    """Every committed history record of the deployment, in partition order."""
    records: list[tuple[str, str, list[ev.HistoryEvent]]] = []
    async with reading(settings, Topics.for_settings(settings).history) as batches:
        async for batch in batches:
            records.extend(decode_events(r.value) for r in batch if r.value is not None)
    return records


def audit(records: list[tuple[str, str, list[ev.HistoryEvent]]]) -> HistoryAudit:
    by_execution: dict[tuple[str, str], list[ev.HistoryEvent]] = defaultdict(list)
    for instance_id, execution_id, events in records:
        by_execution[(instance_id, execution_id)].extend(events)
    report = HistoryAudit(executions=len(by_execution))
    for (iid, execution_id), events in by_execution.items():
        report.events += len(events)
        where = f"{iid} (execution {execution_id})"
        seqs = [e.seq for e in events]
        if seqs != list(range(len(seqs))):
            repeats = [s for s, n in Counter(seqs).items() if n > 1]
            report.violations.append(f"{where}: sequence numbers are not 0..{len(seqs) - 1}"
                                     + (f"; repeated: {repeats[:10]}" if repeats else ""))
        results: Counter[tuple[str, int]] = Counter()
        for e in events:
            if isinstance(e, (ev.TaskCompleted, ev.TaskFailed)):
                results[("task", e.task_scheduled_id)] += 1
            elif isinstance(e, ev.TimerFired):
                results[("timer", e.timer_id)] += 1
            elif isinstance(e, (ev.ChildWorkflowCompleted, ev.ChildWorkflowFailed)):
                results[("child", e.task_scheduled_id)] += 1
        for (kind, task_id), n in results.items():
            if n > 1:
                report.violations.append(f"{where}: {kind} #{task_id} result applied {n} times")
        ends = [e for e in events if isinstance(e, (ev.ExecutionCompleted, ev.ContinuedAsNew))]
        if len(ends) > 1:
            report.violations.append(f"{where}: ended {len(ends)} times")
        for end in ends:
            report.completed[end.status.value if isinstance(end, ev.ExecutionCompleted) else "CONTINUED_AS_NEW"] += 1
    return report
