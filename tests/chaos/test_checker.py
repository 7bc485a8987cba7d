"""The chaos checker on hand-built records: it must catch every kind of loss and duplication it
claims to, or a green chaos run proves nothing. No broker needed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import orjson

from engine.core import events as ev
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.wire.records import encode_state
from ops.chaos.checker import PoisonRecord, check
from ops.chaos.load import Start
from ops.chaos.records import Marks, TopicRecord, read_marks

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _chain(iid: str, x: int = 1, *, result: int | None = None, extra: list[ev.HistoryEvent] = ()) -> list:
    """History of chaos_chain with n=1: one activity, then completion."""
    events = [
        ev.ExecutionStarted(
            timestamp=T0,
            seq=0,
            name="chaos_chain",
            instance_id=iid,
            execution_id="e1",
            input=orjson.dumps({"x": x, "n": 1}).decode(),
        ),
        ev.TaskScheduled(timestamp=T0, seq=1, event_id=0, name="chaos_add", input=str(x)),
        ev.TaskCompleted(timestamp=T0, seq=2, task_scheduled_id=0, result=str(x + 1)),
        *extra,
    ]
    events.append(
        ev.ExecutionCompleted(
            timestamp=T0,
            seq=len(events),
            status=RuntimeStatus.COMPLETED,
            result=str(x + 1 if result is None else result),
        )
    )
    return [(iid, "e1", events)]


def _status(iid: str, status: str, output: object = None, execution_id: str = "e1",
            failure: FailureDetails | None = None) -> TopicRecord:
    state = InstanceState(
        instance_id=iid,
        execution_id=execution_id,
        status=RuntimeStatus(status),
        output=None if output is None else orjson.dumps(output).decode(),
        failure=failure,
    )
    return TopicRecord(0, 0, iid.encode(), encode_state(state))


def _start(iid: str, x: int = 1, **fields) -> Start:
    return Start(iid, "chain", {"x": x, "n": 1}, attempts=1, acked=True, ack="202", **fields)


def _marks(*keys: tuple[str, int]) -> Marks:
    marks = Marks()
    for key in keys:
        marks.runs[key] += 1
        marks.ends[key] += 1
    return marks


def test_a_clean_run_passes_with_its_counts():
    verdict = check(
        {"a": _start("a")},
        _chain("a"),
        [_status("a", "RUNNING"), _status("a", "COMPLETED", 2)],
        [],
        _marks(("a", 0)),
        faults=Counter({"engine-kill": 1}),
    )
    assert verdict.ok, verdict.violations
    c = verdict.counts
    assert (c.workflows_started, c.completed, c.lost, c.duplicated, c.activity_runs) == (1, 1, 0, 0, 1)
    assert c.faults == {"engine-kill": 1}


def test_an_acknowledged_start_that_never_finishes_is_lost():
    verdict = check(
        {"a": _start("a"), "b": _start("b")},
        _chain("a"),
        [_status("a", "COMPLETED", 2), _status("b", "RUNNING")],
        [],
        None,
        faults=Counter(),
    )
    assert not verdict.ok
    assert verdict.counts.lost == 1
    assert "b (chain) acknowledged but lost: it is still RUNNING" in verdict.violations[0]


def test_an_unacknowledged_start_is_not_lost():
    start = Start("a", "chain", {"x": 1, "n": 1}, attempts=3, ambiguous=3)
    verdict = check({"a": start}, [], [], [], None, faults=Counter())
    assert verdict.ok
    assert verdict.counts.unacknowledged == 1


def test_a_wrong_output_is_reported():
    verdict = check(
        {"a": _start("a")}, _chain("a", result=5), [_status("a", "COMPLETED", 5)], [], None, faults=Counter()
    )
    assert verdict.counts.wrong_output == 1
    assert "expected COMPLETED 2, got COMPLETED 5" in verdict.violations[0]


def test_a_terminal_status_written_twice_is_a_duplicate():
    log = [_status("a", "COMPLETED", 2), _status("a", "COMPLETED", 2)]
    verdict = check({"a": _start("a")}, _chain("a"), log, [], None, faults=Counter())
    assert verdict.counts.duplicated == 1
    assert "written after its terminal status" in verdict.violations[0]


def test_an_unreadable_status_record_is_a_violation_not_a_crash():
    log = [_status("a", "COMPLETED", 2), TopicRecord(0, 1, b"a", b'{"status": "COMPLETED"}')]
    verdict = check({"a": _start("a")}, _chain("a"), log, [], None, faults=Counter())
    assert verdict.counts.completed == 1
    assert any("a: unreadable status record at offset 1" in v for v in verdict.violations)


def test_more_executions_than_start_requests_is_a_duplicate():
    history = _chain("a") + [(iid, "e2", events) for iid, _, events in _chain("a")]
    verdict = check({"a": _start("a")}, history, [_status("a", "COMPLETED", 2)], [], None, faults=Counter())
    assert verdict.counts.duplicated == 1
    assert "2 executions from 1 start requests" in verdict.violations[0]


def test_a_result_applied_twice_is_caught_by_the_history_audit():
    again = ev.TaskCompleted(timestamp=T0, seq=3, task_scheduled_id=0, result="2")
    verdict = check(
        {"a": _start("a")},
        _chain("a", extra=[again]),
        [_status("a", "COMPLETED", 2)],
        [],
        _marks(("a", 0)),
        faults=Counter(),
    )
    assert verdict.counts.duplicated == 1
    assert any("task #0 result applied 2 times" in v for v in verdict.violations)


def test_a_sequence_gap_is_a_violation():
    ((iid, execution, events),) = _chain("a")
    gapped = [*events[:2], *[ev.TaskCompleted(timestamp=T0, seq=3, task_scheduled_id=0, result="2")]]
    gapped.append(ev.ExecutionCompleted(timestamp=T0, seq=4, status=RuntimeStatus.COMPLETED, result="2"))
    verdict = check(
        {"a": _start("a")}, [(iid, execution, gapped)], [_status("a", "COMPLETED", 2)], [], None, faults=Counter()
    )
    assert not verdict.ok
    assert "sequence numbers are not 0..3" in verdict.violations[0]


def test_activity_runs_are_bounded_by_one_redelivery_per_fault():
    marks = _marks(("a", 0))
    marks.runs[("a", 0)] += 2  # three runs of one task
    no_faults = check({"a": _start("a")}, _chain("a"), [_status("a", "COMPLETED", 2)], [], marks, faults=Counter())
    assert "task #0 ran 3 times; at most 1" in no_faults.violations[0]
    two_faults = check(
        {"a": _start("a")}, _chain("a"), [_status("a", "COMPLETED", 2)], [], marks, faults=Counter({"worker-kill": 2})
    )
    assert two_faults.ok, two_faults.violations
    assert two_faults.counts.activities_redelivered == 2


def test_a_result_without_a_run_and_a_run_without_a_task_are_violations():
    verdict = check(
        {"a": _start("a")}, _chain("a"), [_status("a", "COMPLETED", 2)], [], _marks(("a", 7)), faults=Counter()
    )
    assert any("task #0 has a result but never ran" in v for v in verdict.violations)
    assert any("task #7 ran 1 times but was never scheduled" in v for v in verdict.violations)


def test_an_early_or_missing_timer_firing_is_a_violation():
    due = T0 + timedelta(seconds=5)
    timers = [
        ev.TimerCreated(timestamp=T0, seq=3, event_id=1, fire_at=due),
        ev.TimerFired(timestamp=due - timedelta(milliseconds=20), seq=4, timer_id=1, fire_at=due),
        ev.TimerCreated(timestamp=T0, seq=5, event_id=2, fire_at=due),
    ]
    verdict = check(
        {"a": _start("a")}, _chain("a", extra=timers), [_status("a", "COMPLETED", 2)], [], None, faults=Counter()
    )
    assert any("timer #1 fired 20.0 ms early" in v for v in verdict.violations)
    assert any("timer #2 (timer) fired 0 times" in v for v in verdict.violations)


def test_an_expected_non_determinism_failure_counts_as_such():
    start = Start("v", "versioned", {"x": 1}, event=3, attempts=1, acked=True, expect_failure="NonDeterminismError")
    record = _status("v", "FAILED", failure=FailureDetails(error_type="NonDeterminismError", message="changed"))
    verdict = check({"v": start}, [], [record], [], None, faults=Counter())
    assert verdict.ok, verdict.violations
    assert verdict.counts.failed_as_expected == 1


def test_poison_must_be_dead_lettered_with_its_reason():
    letter = TopicRecord(0, 0, b"p1", orjson.dumps({"key": "p1", "reason": "not valid JSON: ..."}))
    sent = [PoisonRecord("p1", "malformed-json", "not valid JSON"), PoisonRecord("p2", "oversized", "over")]
    verdict = check({}, [], [], [letter], None, faults=Counter(), poison=sent)
    assert verdict.counts.poison_dead_lettered == 1
    assert verdict.violations == ["poison oversized (p2) not dead-lettered with 'over': []"]


def test_marks_files_count_runs_and_interrupted_runs(tmp_path):
    (tmp_path / "101.log").write_text("S a 0 chaos_add\nE a 0 chaos_add\nS b 1 chaos_add\nS c 0 chaos_a")
    (tmp_path / "102.log").write_text("S b 1 chaos_add\nE b 1 chaos_add\n")
    marks = read_marks(tmp_path)
    assert marks.runs == Counter({("a", 0): 1, ("b", 1): 2, ("c", 0): 1})
    assert marks.interrupted == Counter({101: 2, 102: 0})


# -- the rolling deploy: the branch a run took must be the one its history asks for -------------

from ops.chaos import rolling  # noqa: E402


def _patched_history(iid: str, *, patched: bool) -> list:
    """chaos_patched with x=1 and event 10: add, the event, then triple (patched) or add."""
    second = "chaos_triple" if patched else "chaos_add"
    events: list[ev.HistoryEvent] = [
        ev.WorkflowStarted(timestamp=T0, seq=0),
        ev.ExecutionStarted(timestamp=T0, seq=1, name="chaos_patched", instance_id=iid, execution_id="e1",
                            input='{"x": 1}'),
        ev.TaskScheduled(timestamp=T0, seq=2, event_id=0, name="chaos_add", input="1"),
        ev.TaskCompleted(timestamp=T0, seq=3, task_scheduled_id=0, result="2"),
        ev.WorkflowStarted(timestamp=T0, seq=4, patches=(rolling.PATCH,) if patched else ()),
        ev.EventRaised(timestamp=T0, seq=5, name="go", input='{"v": 10}'),
        ev.TaskScheduled(timestamp=T0, seq=6, event_id=1, name=second, input="12"),
    ]
    return [(iid, "e1", events)]


def test_a_rolling_deploy_run_must_return_the_branch_its_history_recorded():
    start = Start("p", "patched", {"x": 1}, event=10, attempts=1, acked=True, ack="202")
    right = {"path": "patched", "value": 36}
    ok = check({"p": start}, _patched_history("p", patched=True), [_status("p", "COMPLETED", right)], [], None,
               faults=Counter())
    assert ok.counts.completed == 1 and ok.counts.wrong_output == 0, ok.violations
    # The history did not take the patch: a run that says it did is on the wrong branch.
    wrong = check({"p": start}, _patched_history("p", patched=False), [_status("p", "COMPLETED", right)], [], None,
                  faults=Counter())
    assert wrong.counts.wrong_output == 1
    assert "'path': 'unpatched', 'value': 13" in wrong.violations[0]


def test_rolling_figures_count_branches_stalls_and_failures_for_code():
    start = Start("p", "patched", {"x": 1}, event=10, attempts=1, acked=True, ack="202")
    stalled = InstanceState(instance_id="p", execution_id="e1", status=RuntimeStatus.RUNNING, waiting_for_code=T0)
    log = [
        TopicRecord(0, 0, b"p", encode_state(stalled)),
        _status("p", "COMPLETED", {"path": "patched", "value": 36}),
        _status("q", "FAILED", failure=FailureDetails(error_type="NonDeterminismError", message="changed")),
    ]
    violations, figures = rolling.check_paths({"p": start}, _patched_history("p", patched=True), log)
    assert figures.paths == {"patched/patched": 1}
    assert (figures.stalled, figures.starts_waited, figures.failed_for_code) == ({"patched": 1}, {}, 1)
    assert violations and "q: FAILED for its code: NonDeterminismError" in violations[0]
