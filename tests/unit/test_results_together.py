"""A run of one instance's activity results in a batch is applied in one turn (a fan-in's results
cost one turn, as daprd hands a workflow every new event in one work item), without Kafka: the
partition owner's `process` with its commit stubbed."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from support import input_record

from engine import when_all, when_any
from engine.core import commands as cmd
from engine.core import events as ev
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.values import RuntimeStatus
from engine.errors import PoisonedInputError
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import Send, TransactionSink
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import decode_events


def fan_out(ctx: Any, n: Any) -> Any:
    return sum((yield when_all([ctx.call_activity("a", input=i) for i in range(n)])))


def children_and_tasks(ctx: Any) -> Any:
    tasks = [ctx.call_child_workflow("fan_out", input=1, instance_id=f"kid-{i}") for i in range(3)]
    tasks.append(ctx.call_activity("a", input=9))
    return (yield when_all(tasks))


def first_of_two(ctx: Any) -> Any:
    first = yield when_any([ctx.call_activity("a", input=0), ctx.call_activity("a", input=1)])
    return first.get_result()


def listener_then_tasks(ctx: Any) -> Any:
    tasks = [ctx.call_activity("a", input=i) for i in range(4)]
    event = yield ctx.wait_for_external_event("go")
    return [event, (yield when_all(tasks))]


class Owner:
    """A partition owner whose transactions are collected instead of sent."""

    def __init__(self) -> None:
        settings = Settings.from_env({})
        self.topics = Topics.for_settings(settings)
        workflows = {"fan_out": fan_out, "first_of_two": first_of_two, "listener_then_tasks": listener_then_tasks,
                     "children_and_tasks": children_and_tasks}
        self.sent: list[list[Send]] = []
        self.offset = 0

        async def commit(pending: TransactionSink, offsets: object) -> None:
            self.sent.append(pending.records())

        self.owner = PartitionOwner(0, settings, self.topics, Orchestrator(workflows.get, ExecutionCache(10)),
                                    "engine", partitions=1, commit=commit)

    def record(self, topic: str, message: cmd.InstanceMessage) -> ConsumerRecord[bytes, bytes]:
        self.offset += 1
        return input_record(topic, self.offset, message.instance_id.encode(), encode(message))

    async def batch(self, *messages: cmd.InstanceMessage, topic: str | None = None) -> None:
        """One batch of `messages`, each on its usual topic or all on `topic`."""
        batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
        for message in messages:
            on = topic or (self.topics.results if isinstance(message, cmd.ActivityResult) else self.topics.commands)
            batches.setdefault(TopicPartition(on, 0), []).append(self.record(on, message))
        await self.owner.process(batches)

    def turns(self, iid: str) -> int:
        return sum(isinstance(e, ev.WorkflowStarted) for e in self.owner.histories[iid].events) \
            if iid in self.owner.histories else -1


def result(task: int, value: Any = None, iid: str = "i") -> cmd.ActivityResult:
    return cmd.ActivityResult(instance_id=iid, execution_id="c1", task_id=task,
                              result=str(task if value is None else value))


def start(name: str, input: str | None = None, iid: str = "i") -> cmd.StartWorkflow:
    return cmd.StartWorkflow(instance_id=iid, command_id="c1", name=name, input=input)


@pytest.fixture
def o() -> Owner:
    return Owner()


async def test_a_fan_ins_results_in_one_batch_are_one_turn(o: Owner) -> None:
    await o.batch(start("fan_out", "4"), start("fan_out", "4", iid="j"))
    assert o.turns("i") == 1
    # Interleaved with another instance's results, as a worker's partition delivers them.
    await o.batch(result(0), result(0, iid="j"), result(1), result(2), result(1, iid="j"), result(3))
    state = o.owner.states["i"]
    assert state.status is RuntimeStatus.COMPLETED
    assert state.output == "6"
    history = o.owner.states["i"].history_length
    assert history == 2 + 4 + 1 + 4 + 3  # start turn (2 + 4 scheduled), one turn: marker, 4 results, end
    assert o.owner.processed == 2 + 6
    # The other instance's two results were a run of their own: one turn, still running.
    assert o.turns("j") == 2
    assert o.owner.states["j"].status is RuntimeStatus.RUNNING


async def test_children_results_and_an_activitys_in_one_batch_are_one_turn(o: Owner) -> None:
    await o.batch(start("children_and_tasks"))
    assert sorted(o.owner.states["i"].pending_children) == [0, 1, 2]
    children = [cmd.ChildResult(instance_id="i", execution_id="c1", task_id=task, child_instance_id=f"kid-{task}",
                                result=str(task * 10)) for task in range(3)]
    # The children's results come on the commands topic, the activity's on results; one batch.
    await o.batch(children[0], children[2], result(3, value=9), children[1])
    state = o.owner.states["i"]
    assert state.status is RuntimeStatus.COMPLETED
    assert state.output == "[0, 10, 20, 9]"
    events = [e for s in o.sent[-1] if s.topic == o.topics.history and s.key == b"i"
              for e in decode_events(s.value or b"")[2]]
    assert sum(isinstance(e, ev.WorkflowStarted) for e in events) == 1  # one turn took all four
    assert o.owner.processed == 1 + 4


async def test_a_repeated_result_in_the_run_is_dropped(o: Owner) -> None:
    await o.batch(start("fan_out", "3"))
    await o.batch(result(0), result(0, value=99), result(1))
    assert o.turns("i") == 2
    assert sorted(o.owner.states["i"].pending_tasks) == [2]
    await o.batch(result(2))
    assert o.owner.states["i"].output == "3"  # 0 + 1 + 2: the repeated 99 was dropped


async def test_another_input_between_results_keeps_them_apart(o: Owner) -> None:
    await o.batch(start("listener_then_tasks"))
    raise_go = cmd.RaiseEvent(instance_id="i", command_id="r1", name="go", input='"went"')
    # All on one topic, so the event sits between the results: 0-1, the event, 2-3, in that order.
    await o.batch(result(0), result(1), raise_go, result(2), result(3), topic=o.topics.results)
    state = o.owner.states["i"]
    assert state.status is RuntimeStatus.COMPLETED
    assert state.output == '["went", [0, 1, 2, 3]]'
    events = [e for s in o.sent[-1] if s.topic == o.topics.history for e in decode_events(s.value or b"")[2]]
    # Each turn's first input, after its marker.
    turns = [type(events[i + 1]).__name__ for i, e in enumerate(events) if isinstance(e, ev.WorkflowStarted)]
    assert turns == ["TaskCompleted", "EventRaised", "TaskCompleted"]
    completed = [e.task_scheduled_id for e in events if isinstance(e, ev.TaskCompleted)]
    assert completed == [0, 1, 2, 3]


async def test_when_any_completes_on_the_first_result_of_the_run(o: Owner) -> None:
    await o.batch(start("first_of_two"))
    await o.batch(result(1, value='"second"'), result(0, value='"first"'))
    state = o.owner.states["i"]
    assert state.status is RuntimeStatus.COMPLETED
    assert state.output == '"second"'  # the first to arrive, as one result per turn would give


@pytest.mark.pure_python
async def test_a_run_whose_turn_fails_is_applied_one_at_a_time_next(o: Owner, monkeypatch: pytest.MonkeyPatch) -> None:
    await o.batch(start("fan_out", "3"))
    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        raise RuntimeError("boom")

    monkeypatch.setattr(o.owner.orchestrator, "handle_results", broken)
    batch = (result(0), result(1), result(2))
    with pytest.raises(PoisonedInputError, match="one at a time"):
        await o.batch(*batch)
    assert calls == [1]
    assert not o.owner.poisoned  # nothing set aside for a turn of several
    assert len(o.owner.one_by_one) == 3
    # Read again (the engine rebuilds the partition first; its state here is as committed): the
    # same records, one turn each.
    o.offset -= 3
    await o.batch(*batch)
    assert calls == [1]
    assert o.owner.states["i"].status is RuntimeStatus.COMPLETED
    assert o.owner.states["i"].output == "3"
