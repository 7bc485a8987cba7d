"""The verdict of a chaos run: the history audit of ops/audit.py, plus what only the client knows.

Inputs: the driver's records (every start with its input, whether it was acknowledged, what it must
end as), the history topic, the whole status log, the dead-letter topic and the activities' run
marks. Checked, beyond ops/audit.py (sequence numbers, results applied once, one end per
execution):

- every acknowledged start reaches a terminal status, exactly once, with the right output for its
  input (or the expected failure); an instance never runs more executions than starts were sent;
- every instance in the status log (children included) ends, and no terminal status is written
  twice or taken back;
- every activity result comes from a run, every run belongs to a scheduled task, a task runs at
  most once plus one redelivery per fault injected, and a call is scheduled at most as often as
  its retry policy allows;
- every timer of a finished execution fired exactly once, and none before its due time;
- every poison record is dead-lettered with its reason;
- a rolling-deploy workflow (ops/chaos/rolling.py) returns the branch its own history recorded.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from engine.core import events as ev
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import DecodeError
from engine.wire.records import decode_state
from ops.audit import audit

from . import rolling
from .load import Start
from .records import Marks, TopicRecord

__all__ = ["Counts", "PoisonRecord", "Verdict", "check"]

#: Scheduled attempts each activity may have per call (its retry policy), default 1.
MAX_ATTEMPTS = {"chaos_flaky": 3}
#: Violations listed in full; past this, only counted.
SHOWN = 40

History = list[tuple[str, str, list[ev.HistoryEvent]]]


@dataclass(frozen=True)
class PoisonRecord:
    key: str
    kind: str
    #: A fragment the dead letter's reason must contain.
    reason: str


@dataclass
class Counts:
    workflows_started: int = 0
    completed: int = 0
    failed_as_expected: int = 0
    lost: int = 0
    duplicated: int = 0
    wrong_output: int = 0
    unacknowledged: int = 0
    unacknowledged_landed: int = 0
    ambiguous_resolved: int = 0
    children: int = 0
    executions: int = 0
    history_events: int = 0
    activity_runs: int = 0
    activities_redelivered: int = 0
    activities_interrupted: int = 0
    max_runs_of_one_task: int = 0
    retries_scheduled: int = 0
    timers_fired: int = 0
    dead_letters: int = 0
    #: Dead letters that are a second start of a running instance: an ambiguous start (the API
    #: answered 500 while Kafka was away, the command landed later) retried by the client.
    refused_duplicate_starts: int = 0
    poison_sent: int = 0
    poison_dead_lettered: int = 0
    faults_injected: int = 0
    faults: dict[str, int] = field(default_factory=dict)


@dataclass
class Verdict:
    counts: Counts
    violations: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations and self.counts.lost == 0 and self.counts.duplicated == 0

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": asdict(self.counts), "violations": self.violations}


class _Report:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.hidden = 0
        self.duplicated: set[str] = set()

    def add(self, text: str) -> None:
        if len(self.violations) < SHOWN:
            self.violations.append(text)
        else:
            self.hidden += 1

    def finish(self) -> list[str]:
        return self.violations + ([f"... and {self.hidden} more"] if self.hidden else [])


def _payload(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def check(
    starts: dict[str, Start],
    history: History,
    status_log: list[TopicRecord],
    dead_letters: list[TopicRecord],
    marks: Marks | None,
    *,
    faults: Counter[str],
    poison: Sequence[PoisonRecord] = (),
) -> Verdict:
    counts = Counts(faults=dict(faults), faults_injected=sum(faults.values()))
    report = _Report()
    _check_history(history, counts, report)
    finals = _check_status_log(status_log, report)
    _check_starts(starts, history, finals, counts, report)
    by_execution = _executions(history)
    _check_timers(by_execution, counts, report)
    if marks is not None:
        _check_activities(by_execution, marks, counts, report, allowance=1 + counts.faults_injected)
    _check_dead_letters(dead_letters, poison, counts, report)
    counts.duplicated = len(report.duplicated)
    return Verdict(counts, report.finish())


def _executions(history: History) -> dict[tuple[str, str], list[ev.HistoryEvent]]:
    found: dict[tuple[str, str], list[ev.HistoryEvent]] = defaultdict(list)
    for iid, execution_id, events in history:
        found[(iid, execution_id)].extend(events)
    return found


def _check_history(history: History, counts: Counts, report: _Report) -> None:
    audited = audit(history)
    counts.executions = audited.executions
    counts.history_events = audited.events
    for violation in audited.violations:
        report.add(f"history: {violation}")
        if any(word in violation for word in ("repeated", "applied", "ended")):
            report.duplicated.add(violation.split(" ", 1)[0])


def _check_status_log(log: list[TopicRecord], report: _Report) -> dict[str, InstanceState]:
    """The latest state of every instance; terminal statuses written twice or taken back."""
    latest: dict[str, InstanceState] = {}
    terminal: dict[tuple[str, str], RuntimeStatus] = {}
    for record in log:
        if record.key is None:
            continue
        iid = record.key.decode()
        if record.value is None:
            latest.pop(iid, None)
            continue
        try:
            state = decode_state(record.value)
        except DecodeError as exc:
            report.add(f"{iid}: unreadable status record at offset {record.offset}: {exc}")
            continue
        latest[iid] = state
        key = (iid, state.execution_id)
        if key in terminal:
            report.add(f"{iid}: status {state.status} written after its terminal status {terminal[key]}")
            report.duplicated.add(iid)
        elif state.is_terminal:
            terminal[key] = state.status
    for iid, state in latest.items():
        if not state.is_terminal and state.parent is not None:
            report.add(f"child {iid} never finished: last status {state.status}")
    return latest


def _check_starts(
    starts: dict[str, Start], history: History, finals: dict[str, InstanceState], counts: Counts, report: _Report
) -> None:
    executions: Counter[str] = Counter()
    events_of: dict[str, list[ev.HistoryEvent]] = defaultdict(list)
    for iid, _execution_id, events in history:
        executions[iid] += sum(isinstance(e, ev.ExecutionStarted) for e in events)
        if iid in starts and starts[iid].kind in rolling.KINDS:
            events_of[iid].extend(events)
    counts.children = sum(1 for s in finals.values() if s.parent is not None)
    for iid, start in starts.items():
        if start.errors and not start.acked:
            report.add(f"{iid}: start refused: {start.errors[0]}")
        if executions[iid] > max(start.attempts, 1):
            report.add(f"{iid}: {executions[iid]} executions from {start.attempts} start requests")
            report.duplicated.add(iid)
        if not start.acked:
            counts.unacknowledged += 1
            counts.unacknowledged_landed += iid in finals
            continue
        counts.workflows_started += 1
        counts.ambiguous_resolved += start.ambiguous > 0
        state = finals.get(iid)
        if state is None or not state.is_terminal:
            counts.lost += 1
            where = "never appeared" if state is None else f"is still {state.status}"
            why = "" if start.raised or start.event is None else " (its event was never acknowledged)"
            report.add(f"{iid} ({start.kind}) acknowledged but lost: it {where}{why}")
            continue
        failure = state.failure
        if start.expect_failure is not None:
            if (state.status is RuntimeStatus.FAILED and failure is not None
                    and failure.error_type == start.expect_failure):
                counts.failed_as_expected += 1
                continue
            if start.either and state.status is RuntimeStatus.COMPLETED and _payload(state.output) == start.expected:
                counts.completed += 1
                continue
            counts.wrong_output += 1
            report.add(f"{iid}: expected FAILED with {start.expect_failure}, got {state.status} {failure}")
            continue
        output = _payload(state.output)
        # A rolling-deploy workflow must return the branch its own history asks for.
        want = rolling.expected_for(start, events_of[iid]) if start.kind in rolling.KINDS else start.expected
        if state.status is RuntimeStatus.COMPLETED and output == want:
            counts.completed += 1
        else:
            counts.wrong_output += 1
            detail = failure.message if failure is not None else output
            report.add(
                f"{iid} ({start.kind} {start.args}): expected COMPLETED {want}, "
                f"got {state.status} {detail!r}"
            )


def _check_timers(by_execution: dict[tuple[str, str], list[ev.HistoryEvent]], counts: Counts, report: _Report) -> None:
    for (iid, _execution_id), events in by_execution.items():
        created = {e.event_id: e for e in events if isinstance(e, ev.TimerCreated)}
        fired: Counter[int] = Counter()
        for e in events:
            if isinstance(e, ev.TimerFired):
                fired[e.timer_id] += 1
                counts.timers_fired += 1
                timer = created.get(e.timer_id)
                if timer is None:
                    report.add(f"{iid}: timer #{e.timer_id} fired but was never created")
                elif e.timestamp < timer.fire_at:
                    early = (timer.fire_at - e.timestamp).total_seconds()
                    report.add(f"{iid}: timer #{e.timer_id} fired {early * 1000:.1f} ms early")
        ended = any(isinstance(e, ev.ExecutionCompleted) and e.status is RuntimeStatus.COMPLETED for e in events)
        for timer_id, timer in created.items():
            if ended and timer.origin in ("timer", "retry") and fired[timer_id] != 1:
                report.add(f"{iid}: timer #{timer_id} ({timer.origin}) fired {fired[timer_id]} times")


def _check_activities(
    by_execution: dict[tuple[str, str], list[ev.HistoryEvent]],
    marks: Marks,
    counts: Counts,
    report: _Report,
    *,
    allowance: int,
) -> None:
    scheduled: set[tuple[str, int]] = set()
    for (iid, _execution_id), events in by_execution.items():
        calls: Counter[tuple[str, str | None]] = Counter()
        for e in events:
            if isinstance(e, ev.TaskScheduled):
                scheduled.add((iid, e.event_id))
                calls[(e.name, e.input)] += 1
            elif isinstance(e, (ev.TaskCompleted, ev.TaskFailed)) and marks.runs[(iid, e.task_scheduled_id)] == 0:
                report.add(f"{iid}: task #{e.task_scheduled_id} has a result but never ran")
        for (name, _input), n in calls.items():
            counts.retries_scheduled += n - 1
            if n > MAX_ATTEMPTS.get(name, 1):
                report.add(f"{iid}: {name} scheduled {n} times, its policy allows {MAX_ATTEMPTS.get(name, 1)}")
    counts.activity_runs = marks.total_runs
    counts.activities_interrupted = sum(marks.interrupted.values())
    for key, runs in marks.runs.items():
        counts.activities_redelivered += runs - 1
        counts.max_runs_of_one_task = max(counts.max_runs_of_one_task, runs)
        if key not in scheduled:
            report.add(f"{key[0]}: task #{key[1]} ran {runs} times but was never scheduled")
        elif runs > allowance:
            report.add(
                f"{key[0]}: task #{key[1]} ran {runs} times; at most {allowance} (once, plus one redelivery per fault)"
            )


def _check_dead_letters(
    dead_letters: list[TopicRecord], poison: Sequence[PoisonRecord], counts: Counts, report: _Report
) -> None:
    counts.dead_letters = len(dead_letters)
    reasons: dict[str, list[str]] = defaultdict(list)
    for record in dead_letters:
        if record.value is not None:
            letter = orjson.loads(record.value)
            reasons[str(letter.get("key"))].append(str(letter.get("reason")))
            counts.refused_duplicate_starts += "already exists" in str(letter.get("reason"))
    counts.poison_sent = len(poison)
    for sent in poison:
        found = reasons.get(sent.key, [])
        if any(sent.reason in reason for reason in found):
            counts.poison_dead_lettered += 1
        else:
            report.add(f"poison {sent.kind} ({sent.key}) not dead-lettered with '{sent.reason}': {found}")
