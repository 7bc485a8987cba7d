"""Unknown code waits instead of failing: the orchestrator's and the test environment's side."""

from __future__ import annotations

from datetime import timedelta

from support import T0, at
from test_orchestrator import Harness, result, start, two_steps

from engine.core import commands as cmd
from engine.core.effects import due_message
from engine.core.executor import execute
from engine.core.state import InstanceState
from engine.core.timers import CodeWait, ScheduledStart
from engine.core.unknown_code import DEFAULT_TIMEOUT, RECHECK, CodeCheck, next_check
from engine.core.values import RuntimeStatus
from engine.sdk.workflow_runtime import WorkflowRuntime
from engine.testing import WorkflowTestEnvironment
from engine.wire.records import decode_state, encode_state


def hello(ctx, name):
    return f"hello {name}"


def test_next_check_waits_until_the_deadline_and_never_past_it():
    assert next_check(at(0), at(0), timedelta(seconds=12)) == at(0) + RECHECK
    assert next_check(at(0), at(10), timedelta(seconds=12)) == at(12)
    assert next_check(at(0), at(12), timedelta(seconds=12)) is None
    assert next_check(at(0), at(0), timedelta(0)) is None
    assert timedelta(minutes=10) == DEFAULT_TIMEOUT


def recheck(h: Harness, iid: str, t: float):
    """What the engine does when the instance's re-check timer comes due."""
    message = due_message(ScheduledStart(due=at(t), instance_id=iid), h.states.get(iid))
    assert isinstance(message, cmd.StartWorkflow)
    return h.handle(message, t=t)


def test_a_start_of_unknown_code_waits_then_runs_once_the_code_is_known():
    h = Harness({})
    outcome = h.handle(start(name="later", input='"x"'))
    state = outcome.state
    assert state is not None and state.status is RuntimeStatus.PENDING
    assert state.waiting_for_code == T0 and state.failure is None
    assert outcome.events == [] and outcome.unapplied is None
    assert [t.due for t in outcome.timers] == [at(0) + RECHECK]
    # A new owner of the partition looks at once: the rebuilt timer is due already.
    assert [t.due for t in state.timers()] == [T0]
    # Looked at again, still unknown: nothing is written, the next look is scheduled.
    again = recheck(h, "i1", 5)
    assert again.write.value == "keep" and [t.due for t in again.timers] == [at(10)]
    # The code arrives (a process that knows it took the partition over): the start runs.
    h.workflows["later"] = hello
    done = recheck(h, "i1", 10)
    assert done.state is not None and done.state.status is RuntimeStatus.COMPLETED
    assert done.state.output == '"hello x"'
    assert done.state.waiting_for_code is None and done.state.created_at == at(10)


def test_a_start_of_unknown_code_fails_with_the_clear_error_after_the_timeout():
    h = Harness({})
    h.orchestrator.unknown_code_timeout = timedelta(seconds=8)
    h.handle(start(name="ghost"))
    assert recheck(h, "i1", 5).state.status is RuntimeStatus.PENDING
    failed = recheck(h, "i1", 8).state
    assert failed is not None and failed.status is RuntimeStatus.FAILED
    assert failed.failure is not None and failed.failure.error_type == "UnknownWorkflowError"
    assert "'ghost'" in failed.failure.message


def test_a_new_start_over_a_waiting_one_replaces_it_and_waits_afresh():
    h = Harness({})
    h.handle(start(name="ghost", command_id="c1"))
    outcome = h.handle(start(name="ghost", command_id="c2"), t=3)
    assert outcome.state is not None and outcome.state.run_id == "c2"
    assert outcome.state.waiting_for_code == at(3)


def test_the_wait_mark_survives_the_status_record():
    state = InstanceState(instance_id="i", name="n", waiting_for_code=T0)
    assert decode_state(encode_state(state)) == state
    assert decode_state(encode_state(InstanceState(instance_id="i"))).waiting_for_code is None


def test_environment_waits_for_the_default_timeout_then_fails():
    env = WorkflowTestEnvironment(WorkflowRuntime())
    iid = env.schedule_new_workflow("ghost")
    env.run()
    waiting = env.get_workflow_state(iid)
    assert waiting is not None and waiting.runtime_status.name == "PENDING"
    state = env.wait_for_workflow_completion(iid)
    assert state.runtime_status.name == "FAILED"
    assert state.failure_details is not None and state.failure_details.error_type == "UnknownWorkflowError"
    assert env.clock.now - T0 >= DEFAULT_TIMEOUT


# -- a running instance whose partition moved to an engine that does not know its workflow -----

def moved_to_an_old_engine(h: Harness) -> None:
    h.workflows.pop("wf")
    h.orchestrator.cache.clear()  # another process: nothing of the code is alive there


def code_check(h: Harness, iid: str, t: float):
    state = h.states[iid]
    timer = next(due for due in state.timers() if isinstance(due, CodeWait))
    message = due_message(timer, state)
    assert isinstance(message, CodeCheck)
    return h.handle(message, t=t)


def test_a_running_instance_records_its_inputs_while_its_code_is_unknown_and_runs_them_later():
    h = Harness({"wf": two_steps})
    h.handle(start(input='"x"'))
    moved_to_an_old_engine(h)
    held = h.handle(result("i1", 0, '"A"'), t=1)
    assert [type(e).__name__ for e in held.events] == ["WorkflowStarted", "TaskCompleted", "WorkflowCompleted"]
    state = held.state
    assert state is not None and state.status is RuntimeStatus.RUNNING and state.failure is None
    assert state.waiting_for_code == at(1) and not state.pending_tasks
    assert [type(t).__name__ for t in held.timers] == ["CodeWait"]
    still = code_check(h, "i1", 6)
    assert still.events == [] and [t.due for t in still.timers] == [at(11)]
    h.workflows["wf"] = two_steps  # an engine of the new version holds the partition again
    resumed = code_check(h, "i1", 7)
    assert [type(e).__name__ for e in resumed.events] == ["WorkflowStarted", "TaskScheduled", "WorkflowCompleted"]
    assert resumed.state is not None and resumed.state.waiting_for_code is None
    done = h.handle(result("i1", 1, '"B"'), t=8).state
    assert done is not None and done.status is RuntimeStatus.COMPLETED and done.output == '"B"'
    # The history replays from scratch with the code, without non-determinism.
    _, replayed = execute("i1", h.workflows.get, h.histories["i1"], [])
    assert replayed.actions == ()


def test_a_running_instance_fails_with_the_clear_error_once_the_wait_is_over():
    h = Harness({"wf": two_steps})
    h.orchestrator.unknown_code_timeout = timedelta(seconds=8)
    h.handle(start())
    moved_to_an_old_engine(h)
    h.handle(result("i1", 0, '"A"'), t=1)
    assert code_check(h, "i1", 6).state.status is RuntimeStatus.RUNNING
    failed = code_check(h, "i1", 9).state
    assert failed is not None and failed.status is RuntimeStatus.FAILED
    assert failed.failure is not None and failed.failure.error_type == "UnknownWorkflowError"
    assert "'wf'" in failed.failure.message and failed.waiting_for_code is None


def test_a_running_instance_without_its_code_can_still_be_terminated():
    h = Harness({"wf": two_steps})
    h.handle(start())
    moved_to_an_old_engine(h)
    ended = h.handle(cmd.TerminateWorkflow(instance_id="i1", command_id="t1", output='"stop"'), t=1).state
    assert ended is not None and ended.status is RuntimeStatus.TERMINATED and ended.output == '"stop"'
    assert ended.waiting_for_code is None
    h.workflows["wf"] = two_steps
    _, replayed = execute("i1", h.workflows.get, h.histories["i1"], [])
    assert replayed.completion is None and replayed.actions == ()


def uses_late(ctx, name):
    return (yield ctx.call_activity("late", input=name))


def test_environment_holds_an_unknown_activity_until_it_is_registered():
    runtime = WorkflowRuntime()
    runtime.register_workflow(uses_late)
    env = WorkflowTestEnvironment(runtime)
    iid = env.schedule_new_workflow(uses_late, input="Ed")
    env.run()
    assert env.get_workflow_state(iid).runtime_status.name == "RUNNING"
    assert env.activity_runs["late"] == 0
    runtime.register_activity(lambda ctx, name: f"late {name}", name="late")  # a worker that knows it
    env.advance(RECHECK)
    state = env.get_workflow_state(iid)
    assert state.runtime_status.name == "COMPLETED" and state.serialized_output == '"late Ed"'


def test_environment_fails_an_unknown_activity_after_the_timeout():
    runtime = WorkflowRuntime()
    runtime.register_workflow(uses_late)
    env = WorkflowTestEnvironment(runtime, unknown_code_timeout=timedelta(seconds=30))
    iid = env.schedule_new_workflow(uses_late, input="Ed")
    state = env.wait_for_workflow_completion(iid)
    assert state.runtime_status.name == "FAILED"
    assert state.failure_details.inner.error_type == "UnknownActivityError"
    assert env.clock.now - T0 == timedelta(seconds=30)
