"""Remote workflows in the pure core (`engine.core.remote`): turns handed out one at a time and
answered, recorded with the same effects as a local turn; late, repeated and stale answers ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.actions import CompleteWorkflow, CreateChildWorkflow, CreateTimer, ScheduleTask, SendEvent
from engine.core.effects import apply_outcome
from engine.core.orchestrator import Disposition, Orchestrator, TurnOutcome
from engine.core.remote import RemoteNames, WorkflowAnswer, WorkflowWorkItem
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import NonDeterminismError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def local_wf(ctx, x):
    return (x or 0) + 1


class Harness:
    def __init__(self, names: tuple[str, ...] = ("remote_wf",)) -> None:
        known = {"local_wf": local_wf}
        self.orchestrator = Orchestrator(known.get, remote=RemoteNames(names, known))
        self.states: dict[str, InstanceState] = {}
        self.histories: dict[str, list[ev.HistoryEvent]] = {}
        self.items: list[WorkflowWorkItem] = []
        self.tasks: list[cmd.ActivityWorkItem] = []
        self.messages: list[cmd.InstanceMessage] = []
        self.now = T0

    def send(self, message: cmd.InstanceMessage) -> TurnOutcome:
        self.now += timedelta(seconds=1)
        iid = message.instance_id
        outcome = self.orchestrator.handle(self.states.get(iid), message, self.now,
                                           lambda: list(self.histories.get(iid, [])))
        apply_outcome(iid, outcome, self)  # type: ignore[arg-type]
        return outcome

    # EffectSink
    def close_execution(self, instance_id, execution_id, events) -> None:
        pass

    def remove_instance(self, instance_id: str) -> None:
        self.states.pop(instance_id, None)

    def append_history(self, state: InstanceState, events, *, reset: bool) -> None:
        if reset:
            self.histories[state.instance_id] = []
        self.histories.setdefault(state.instance_id, []).extend(events)

    def put_state(self, state: InstanceState) -> None:
        self.states[state.instance_id] = state

    def send_task(self, item: cmd.ActivityWorkItem) -> None:
        self.tasks.append(item)

    def send_workflow_item(self, item: WorkflowWorkItem) -> None:
        self.items.append(item)

    def schedule_timer(self, timer) -> None:
        pass

    def send_message(self, message: cmd.InstanceMessage) -> None:
        self.messages.append(message)

    def send_app_message(self, routed) -> None:
        self.messages.append(routed.message)

    def ignore(self, message, unapplied) -> None:
        pass

    def refuse(self, message, unapplied) -> None:
        pass


def answer(item: WorkflowWorkItem, **actions: object) -> WorkflowAnswer:
    return WorkflowAnswer(instance_id=item.instance_id, execution_id=item.execution_id, turn=item.turn,
                          **actions)  # type: ignore[arg-type]


def start(h: Harness, iid: str = "i1", name: str = "remote_wf") -> WorkflowWorkItem:
    h.send(cmd.StartWorkflow(instance_id=iid, command_id=f"run-{iid}", name=name, input='"in"'))
    return h.items[-1]


def test_a_start_hands_out_a_turn_and_runs_no_code() -> None:
    h = Harness()
    item = start(h)
    assert h.states["i1"].status is RuntimeStatus.RUNNING
    assert item.new_from == 0 and item.turn == 3
    assert [type(e) for e in item.events] == [ev.WorkflowStarted, ev.ExecutionStarted, ev.WorkflowCompleted]
    assert h.states["i1"].remote is not None and h.states["i1"].remote.out


def test_an_answer_is_recorded_with_the_effects_of_a_local_turn() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item, tasks=(ScheduleTask(id=1, name="act", input='"x"', task_execution_id="te1"),),
                  custom_status='"step 1"'))
    state = h.states["i1"]
    assert dict(state.pending_tasks) == {1: "act"} and state.custom_status == '"step 1"'
    assert h.tasks[-1].task_id == 1 and h.tasks[-1].task_execution_id == "te1"
    assert state.remote is not None and not state.remote.out
    h.send(cmd.ActivityResult(instance_id="i1", execution_id=item.execution_id, task_id=1, result='"r"'))
    second = h.items[-1]
    assert second.new_from == item.turn and second.turn == h.states["i1"].history_length
    assert any(isinstance(e, ev.TaskCompleted) for e in second.events[second.new_from:])
    h.send(answer(second, completion=CompleteWorkflow(id=2, status=RuntimeStatus.COMPLETED, result='"done"')))
    assert h.states["i1"].status is RuntimeStatus.COMPLETED and h.states["i1"].output == '"done"'


def test_repeated_late_and_stale_answers_change_nothing() -> None:
    h = Harness()
    item = start(h)
    first = answer(item, timers=(CreateTimer(id=1, fire_at=T0 + timedelta(hours=1)),))
    h.send(first)
    assert h.send(first).unapplied.disposition is Disposition.DUPLICATE  # type: ignore[union-attr]
    stale = WorkflowAnswer(instance_id="i1", execution_id="other", turn=item.turn)
    assert h.send(stale).unapplied.disposition is Disposition.STALE  # type: ignore[union-attr]
    assert len(h.states["i1"].pending_timers) == 1


def test_inputs_during_a_turn_wait_for_its_answer_then_the_next_turn_goes_out() -> None:
    h = Harness()
    item = start(h)
    h.send(cmd.RaiseEvent(instance_id="i1", command_id="e1", name="go", input="1"))
    assert len(h.items) == 1  # one turn out at a time
    h.send(answer(item))
    assert len(h.items) == 2
    nxt = h.items[-1]
    assert any(isinstance(e, ev.EventRaised) for e in nxt.events[nxt.new_from:])


def test_suspended_instances_get_no_turn_until_resumed() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item))
    h.send(cmd.SuspendWorkflow(instance_id="i1", command_id="s1"))
    h.send(cmd.RaiseEvent(instance_id="i1", command_id="e1", name="go"))
    assert len(h.items) == 1
    h.send(cmd.ResumeWorkflow(instance_id="i1", command_id="r1"))
    assert len(h.items) == 2 and h.states["i1"].status is RuntimeStatus.RUNNING


def test_terminate_needs_no_turn_and_a_late_answer_is_moot() -> None:
    h = Harness()
    item = start(h)
    h.send(cmd.TerminateWorkflow(instance_id="i1", command_id="t1", output='"bye"'))
    assert h.states["i1"].status is RuntimeStatus.TERMINATED
    assert h.send(answer(item)).unapplied.disposition is Disposition.MOOT  # type: ignore[union-attr]


def test_continue_as_new_hands_out_the_new_generations_first_turn() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item, completion=CompleteWorkflow(id=-1, status=RuntimeStatus.CONTINUED_AS_NEW, result="2")))
    state = h.states["i1"]
    assert state.status is RuntimeStatus.RUNNING and state.generation == 1 and state.input == "2"
    nxt = h.items[-1]
    assert nxt.execution_id == state.execution_id != item.execution_id and nxt.new_from == 0


def test_a_child_and_a_failure_reach_the_parent() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item, children=(CreateChildWorkflow(id=1, instance_id="i1:0001", name="remote_wf", input="3"),)))
    child_start = h.messages[-1]
    assert isinstance(child_start, cmd.StartWorkflow) and child_start.parent is not None
    h.send(child_start)
    child_item = h.items[-1]
    assert child_item.instance_id == "i1:0001"
    failure = FailureDetails(error_type="ValueError", message="no")
    h.send(answer(child_item, completion=CompleteWorkflow(id=-1, status=RuntimeStatus.FAILED, failure=failure)))
    result = h.messages[-1]
    assert isinstance(result, cmd.ChildResult) and result.failure == failure


def test_an_answer_reusing_a_pending_action_id_fails_the_instance() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item, tasks=(ScheduleTask(id=1, name="act"),)))
    h.send(cmd.RaiseEvent(instance_id="i1", command_id="e1", name="go"))
    h.send(answer(h.items[-1], tasks=(ScheduleTask(id=1, name="act"),)))
    state = h.states["i1"]
    assert state.status is RuntimeStatus.FAILED
    assert state.failure is not None and state.failure.error_type == NonDeterminismError.__name__


def test_local_workflows_run_beside_remote_ones_and_star_means_every_unknown_name() -> None:
    h = Harness(names=("*",))
    h.send(cmd.StartWorkflow(instance_id="l1", command_id="run-l1", name="local_wf", input="1"))
    assert h.states["l1"].status is RuntimeStatus.COMPLETED and not h.items
    start(h, "r1", name="anything")
    assert h.items[-1].name == "anything"


def test_an_answer_naming_a_child_id_the_engine_refuses_fails_the_instance() -> None:
    h = Harness()
    item = start(h)
    h.send(answer(item, children=(CreateChildWorkflow(id=1, instance_id="has space", name="remote_wf"),)))
    state = h.states["i1"]
    assert state.status is RuntimeStatus.FAILED and not h.messages
    assert state.failure is not None and "child workflow instance ID" in state.failure.message


def test_a_turn_out_is_shown_with_when_it_went_out_and_cleared_at_the_end() -> None:
    from api.responses import REMOTE_TURN, instance_body

    h = Harness()
    start(h)
    shown = instance_body(h.states["i1"])["properties"]
    assert "for a connected app" in shown[REMOTE_TURN]
    h.send(cmd.TerminateWorkflow(instance_id="i1", command_id="t1"))
    assert h.states["i1"].remote is None
    assert REMOTE_TURN not in instance_body(h.states["i1"])["properties"]


def test_an_event_sent_is_recorded_in_history_and_delivered_even_by_the_last_turn() -> None:
    # durabletask's SDKs (Java, .NET) expect the EventSent event back when they replay the action.
    h = Harness()
    item = start(h)
    h.send(answer(item, sent=(SendEvent(id=1, instance_id="other", name="ping", input='"p"'),),
                  completion=CompleteWorkflow(id=2, status=RuntimeStatus.COMPLETED)))
    sent = [e for e in h.histories["i1"] if isinstance(e, ev.EventSent)]
    assert [(e.event_id, e.instance_id, e.name, e.input) for e in sent] == [(1, "other", "ping", '"p"')]
    raised = [m for m in h.messages if isinstance(m, cmd.RaiseEvent)]
    assert [(m.instance_id, m.name, m.command_id) for m in raised] == [("other", "ping", f"{item.execution_id}:1")]
    assert h.states["i1"].status is RuntimeStatus.COMPLETED
