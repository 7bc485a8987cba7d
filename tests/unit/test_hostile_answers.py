"""Answers to remote workflow turns (`engine.core.remote`) that contradict history or name what the
engine cannot send: each fails its one instance with a clear reason or is ignored, and none raises
(an exception in a turn would stop the partition until the record is set aside) or leaves a topic
name, key or status behind that a later step refuses with nobody to tell."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from engine.core import commands as cmd
from engine.core.actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask, SendEvent
from engine.core.apps import AppMessage
from engine.core.orchestrator import Disposition
from engine.core.values import RuntimeStatus
from tests.unit.test_remote import Harness, answer, start


class AppHarness(Harness):
    """`Harness` that also takes messages for other apps (`EffectSink.send_to_app`)."""

    def __init__(self) -> None:
        super().__init__()
        self.app_messages: list[AppMessage] = []

    def send_to_app(self, routed: AppMessage) -> None:
        self.app_messages.append(routed)


BAD_APP_IDS = ["../x", "a" * 5000, "app/with/slashes", "app id", "", "-starts-with-dash", "ünïcode"]


def failed_with(h: Harness, *fragments: str) -> None:
    state = h.states["i1"]
    assert state.status is RuntimeStatus.FAILED
    assert state.failure is not None and state.failure.error_type == "InvalidAnswerError"
    for fragment in fragments:
        assert fragment in state.failure.message
    assert state.remote is None  # no turn out for an ended run


@pytest.mark.parametrize("app_id", BAD_APP_IDS)
def test_a_call_to_an_app_id_that_cannot_name_topics_fails_the_instance_and_sends_nothing(app_id: str) -> None:
    for actions in ({"tasks": (ScheduleTask(id=1, name="act", app_id=app_id),)},
                    {"children": (CreateChildWorkflow(id=1, instance_id="c1", name="wf", app_id=app_id),)}):
        h = AppHarness()
        item = start(h)
        outcome = h.send(answer(item, **actions))
        assert outcome.unapplied is None
        failed_with(h, "app ID of action 1")
        assert h.tasks == [] and h.app_messages == [] and h.messages == []


def test_a_good_app_id_still_goes_to_that_app() -> None:
    h = AppHarness()
    item = start(h)
    h.send(answer(item, tasks=(ScheduleTask(id=1, name="act", app_id="other.app_1-x"),)))
    assert h.states["i1"].status is RuntimeStatus.RUNNING
    assert [(t.name, t.app_id) for t in h.tasks] == [("act", "other.app_1-x")]


@pytest.mark.parametrize("target", ["", "a b", "x\n", "é" * 2000])
def test_an_event_sent_to_an_id_the_engine_refuses_fails_the_instance(target: str) -> None:
    h = AppHarness()
    item = start(h)
    h.send(answer(item, sent=(SendEvent(id=1, instance_id=target, name="go"),)))
    failed_with(h, "event 'go' is sent to")
    assert h.messages == []


@pytest.mark.parametrize("status", [RuntimeStatus.RUNNING, RuntimeStatus.PENDING, RuntimeStatus.SUSPENDED])
def test_a_completion_whose_status_does_not_end_a_run_fails_the_instance(status: RuntimeStatus) -> None:
    # durabletask's CompleteWorkflowAction with its status unset reads as RUNNING (the proto's zero):
    # recorded as is, the instance would stay RUNNING with no turn out, forever.
    h = AppHarness()
    item = start(h)
    h.send(answer(item, completion=CompleteWorkflow(id=1, status=status, result='"x"')))
    failed_with(h, f"status {status.value}")


def test_duplicate_ids_and_ids_of_pending_steps_fail_the_instance() -> None:
    h = AppHarness()
    item = start(h)
    h.send(answer(item, tasks=(ScheduleTask(id=1, name="a"),), timers=(
        CreateTimer(id=1, fire_at=datetime(2026, 1, 1, tzinfo=UTC)),)))
    assert h.states["i1"].status is RuntimeStatus.FAILED
    assert h.tasks == []


def test_timers_in_year_1_and_9999_are_recorded_and_the_past_one_is_due_at_once() -> None:
    h = AppHarness()
    item = start(h)
    early, late = datetime(1, 1, 1, tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    h.send(answer(item, timers=(CreateTimer(id=1, fire_at=early), CreateTimer(id=2, fire_at=late))))
    state = h.states["i1"]
    assert state.status is RuntimeStatus.RUNNING and set(state.pending_timers) == {1, 2}


def test_answers_for_ended_purged_or_unknown_instances_change_nothing() -> None:
    h = AppHarness()
    item = start(h)
    h.send(answer(item, completion=CompleteWorkflow(id=1, status=RuntimeStatus.COMPLETED, result='"done"')))
    assert h.send(answer(item)).unapplied.disposition is Disposition.MOOT  # type: ignore[union-attr]
    h.send(cmd.PurgeWorkflow(instance_id="i1", command_id="purge-1"))
    assert "i1" not in h.states
    late = h.send(answer(item, completion=CompleteWorkflow(id=2, status=RuntimeStatus.FAILED)))
    assert late.unapplied is not None and late.unapplied.disposition is Disposition.NOT_FOUND
    assert "i1" not in h.states


def test_an_answer_to_a_local_workflow_or_a_turn_not_out_changes_nothing() -> None:
    h = AppHarness()
    h.send(cmd.StartWorkflow(instance_id="loc", command_id="run-loc", name="local_wf", input="1"))
    assert h.states["loc"].status is RuntimeStatus.COMPLETED
    h.send(cmd.StartWorkflow(instance_id="i1", command_id="run-i1", name="remote_wf", input="1"))
    item = h.items[-1]
    forged = answer(item, completion=CompleteWorkflow(id=1, status=RuntimeStatus.COMPLETED))
    on_local = h.send(replace(forged, instance_id="loc"))
    assert on_local.unapplied is not None and h.states["loc"].output == "2"
    for wrong in (replace(forged, turn=item.turn + 7), replace(forged, execution_id="other-run")):
        outcome = h.send(wrong)
        assert outcome.unapplied is not None and outcome.events == []
    assert h.states["i1"].status is RuntimeStatus.RUNNING
