"""Events raised to an instance that has not started (PENDING: scheduled for later, or waiting for
its code) are held for its start within a bound that counts every event, and one over the bound
is refused at once by the front end (`engine.client.WorkflowCommands`: the REST API answers 413)
instead of after the whole apply wait; the events held before it are kept and reach the run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine import DaprWorkflowContext, WorkflowRuntime, WorkflowStatus
from engine.core import commands as cmd
from engine.core.orchestrator import Disposition, Orchestrator
from engine.core.preconditions import EARLY_EVENT_OVERHEAD, early_event_refusal
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.errors import PayloadTooLargeError
from engine.testing import WorkflowTestEnvironment

rt = WorkflowRuntime()


@rt.workflow(name="collector")
def collector(ctx: DaprWorkflowContext, count: int):  # type: ignore[no-untyped-def]
    got = []
    for n in range(count):
        got.append((yield ctx.wait_for_external_event(f"e{n}")))
    return [len(g) if isinstance(g, str) else g for g in got]


def test_events_without_data_are_bounded_too() -> None:
    # Before, only the data counted: events without data were held without limit, the state grew
    # past the record limit and every further one broke its turn (the partition rebuilt each time).
    orchestrator = Orchestrator(lambda name: None, max_early_bytes=10 * (EARLY_EVENT_OVERHEAD + 10))
    start = cmd.StartWorkflow(instance_id="i", command_id="run-1", name="not-known-here")  # waits for code
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = orchestrator.handle(None, start, now, list).state
    assert state is not None and state.status is RuntimeStatus.PENDING
    refused = 0
    for n in range(50):
        outcome = orchestrator.handle(state, cmd.RaiseEvent(instance_id="i", command_id=f"c{n:03d}", name="e"),
                                      now, list)
        if outcome.unapplied is not None:
            assert outcome.unapplied.disposition is Disposition.REFUSED
            assert "events held for the start" in outcome.unapplied.reason
            refused += 1
        else:
            state = outcome.state
            assert state is not None
    assert state is not None and 1 <= len(state.early_events) < 50 and refused == 50 - len(state.early_events)


def test_the_rule_counts_name_data_and_command_id() -> None:
    state = InstanceState(instance_id="i", status=RuntimeStatus.PENDING)
    one = EARLY_EVENT_OVERHEAD + len("name") + len('"x"') + len("cmd")
    assert early_event_refusal(state, "name", '"x"', "cmd", one) is None
    refusal = early_event_refusal(state, "name", '"x"', "cmd", one - 1)
    assert isinstance(refusal, PayloadTooLargeError) and refusal.size == one


def test_a_front_end_refuses_an_early_event_over_the_bound_at_once_and_keeps_the_others() -> None:
    env = WorkflowTestEnvironment(rt)
    iid = env.schedule_new_workflow("collector", input=6, start_at=env.clock.now + timedelta(minutes=5))
    env.run()
    assert env.get_workflow_state(iid).runtime_status is WorkflowStatus.PENDING  # type: ignore[union-attr]
    big = "x" * 200_000  # five fit in the default bound of 1 MiB; the sixth does not
    for n in range(5):
        env.raise_workflow_event(iid, f"e{n}", data=big)
    with pytest.raises(PayloadTooLargeError, match="events held for the start"):
        env.raise_workflow_event(iid, "e5", data=big)
    env.raise_workflow_event(iid, "e5", data="small")  # within the bound still
    done = env.wait_for_workflow_completion(iid)
    assert done.runtime_status is WorkflowStatus.COMPLETED
    assert done.serialized_output == "[200000, 200000, 200000, 200000, 200000, 5]"


def test_terminating_an_instance_that_holds_several_events_records_them_all() -> None:
    # Before, the held events were numbered from a length that grew while they were added: from the
    # second one on the history had gaps, the turn raised, and the terminate was set aside.
    env = WorkflowTestEnvironment(rt)
    iid = env.schedule_new_workflow("collector", input=3, start_at=env.clock.now + timedelta(minutes=5))
    env.run()
    for n in range(3):
        env.raise_workflow_event(iid, f"e{n}", data=n)
    env.terminate_workflow(iid, output="stop")
    env.run()
    state = env.get_workflow_state(iid)
    assert state is not None and state.runtime_status is WorkflowStatus.TERMINATED
    raised = [e for e in env.history(iid) if type(e).__name__ == "EventRaised"]
    assert [e.name for e in raised] == ["e0", "e1", "e2"]
