"""Golden histories: recorded JSON histories must still decode and replay against today's code.

The files under `tests/golden/` were written by `record_golden.py` from the scenarios in
`golden_workflows.py`. A failure here means the engine (or the example code) no longer makes the
decisions it made when the history was written: existing instances would break on upgrade.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from golden_workflows import SCENARIOS, wfr
from record_golden import FORMAT, wire
from support import check_replay_turns, split_turns

from engine.core import events as ev
from engine.core.codec import Codec
from engine.core.executor import WorkflowExecution, execute
from engine.core.state import InstanceState, fold_all
from engine.core.values import RuntimeStatus

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
FILES = sorted(GOLDEN.glob("*.json"))
EVENTS = Codec(ev.EVENT_TYPES)


def load(path: Path) -> list[tuple[str, list[ev.HistoryEvent], list[dict]]]:
    document = orjson.loads(path.read_bytes())
    assert document["format"] == FORMAT
    return [
        (
            execution["instance_id"],
            [EVENTS.decode(e) for e in execution["events"]],
            execution["events"],
        )
        for execution in document["executions"]
    ]


def history_of(name: str, instance_id: str) -> list[ev.HistoryEvent]:
    return next(h for iid, h, _ in load(GOLDEN / f"{name}.json") if iid == instance_id)


def test_every_scenario_has_a_recorded_history():
    assert {p.stem for p in FILES} == set(SCENARIOS)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_recorded_history_decodes_and_encodes_back_to_the_same_json(path):
    for _, history, raw in load(path):
        assert [wire(e) for e in history] == raw
        assert [e.seq for e in history] == list(range(len(history)))


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_recorded_history_replays_to_the_same_actions_and_ending(path):
    for instance_id, history, _ in load(path):
        # Turn by turn, a live execution and a replay from scratch take the recorded steps...
        last = check_replay_turns(instance_id, wfr.registry.get_workflow, history)
        # ...and end the way the history ends.
        ending = history[-1]
        assert isinstance(ending, (ev.ExecutionCompleted, ev.ContinuedAsNew))
        assert last.completion is not None
        if isinstance(ending, ev.ExecutionCompleted):
            assert last.completion.status is ending.status
            assert last.completion.result == ending.result
        else:
            assert last.completion.status is RuntimeStatus.CONTINUED_AS_NEW
            assert last.completion.result == ending.input
        # The whole history in one replay leaves the code finished, with nothing left to record.
        execution = WorkflowExecution(instance_id, wfr.registry.get_workflow)
        execution.replay(history)
        assert execution.is_complete
        assert execution.step([]).actions == ()
        # And the fold accepts it as a valid sequence of transitions.
        state = fold_all(InstanceState(instance_id=instance_id), history)
        assert state.status is (
            ending.status
            if isinstance(ending, ev.ExecutionCompleted)
            else RuntimeStatus.CONTINUED_AS_NEW
        )


def test_golden_covers_the_interesting_event_types():
    seen = {type(e) for path in FILES for _, history, _ in load(path) for e in history}
    # EventSent is recorded only for workflows that run in apps connected over gRPC
    # (`engine.core.remote`: durabletask's SendEvent); Dapr's Python SDK has no such call.
    assert seen == set(ev.EVENT_TYPES) - {ev.EventSent}


# -- changed code must not replay silently ------------------------------------------------------


def changed_order(ctx, order):
    ctx.set_custom_status("reserving")
    reservation = yield ctx.call_activity("reserve", input=order)
    ctx.set_custom_status("charging")
    payment = yield ctx.call_activity("charge_with_fee", input=order["amount"] + 1)  # the change
    return [reservation, payment]


def test_golden_history_against_changed_code_fails_with_non_determinism():
    history = history_of("order", "order-1")
    resolve = {"order": changed_order}.get
    # Replay everything up to the turn where the changed step was recorded, then one more turn.
    turns = split_turns(history)
    past, inputs = turns[2].past, turns[2].inputs
    _, result = execute("order-1", resolve, past, inputs)
    completion = result.completion
    assert completion is not None
    assert completion.status is RuntimeStatus.FAILED
    assert completion.failure is not None
    assert completion.failure.error_type == "NonDeterminismError"
    message = completion.failure.message
    assert "workflow 'order'" in message
    assert "'order-1'" in message
    assert "history step #1 is call_activity('charge')" in message
    assert "the code now takes call_activity('charge_with_fee')" in message


def test_golden_history_against_changed_code_fails_on_a_full_replay_too():
    execution = WorkflowExecution("order-1", {"order": changed_order}.get)
    execution.replay(history_of("order", "order-1"))
    result = execution.step(
        [
            ev.WorkflowStarted(
                timestamp=history_of("order", "order-1")[-1].timestamp + timedelta(seconds=1)
            )
        ]
    )
    assert result.completion is not None
    assert result.completion.failure is not None
    assert result.completion.failure.error_type == "NonDeterminismError"
    assert "call_activity('charge_with_fee')" in result.completion.failure.message
