"""Hostile input on the new paths, on the real broker: answers to remote workflow turns written
straight to `results` (as anyone who can produce to it could), and app IDs in records that would
name topics. Each bad record fails its one instance with the reason or is dead-lettered; the
engine's partitions and the worker go on (a later workflow on every partition completes).

Before the fix, an answer naming a cross-app call to app "../x" made the engine try to create
that app's topics inside its commit: Kafka refused the name, and the partition rebuilt and read the
same batch again, for ever.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.actions import CompleteWorkflow, CreateChildWorkflow, ScheduleTask, SendEvent
from engine.core.codec import encode
from engine.core.commands import ActivityWorkItem
from engine.core.remote import WorkflowAnswer, WorkflowWorkItem
from engine.core.values import RuntimeStatus
from engine.read.to_end import reading
from engine.settings import Settings
from engine.topics import Topics, ensure_topics
from engine.wire.records import decode_workflow_item
from tests.e2e.processes import Process
from tests.e2e.test_hostile import _produce, dead_letter
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120
PARTITIONS = 2
BAD_APP_IDS = ["../x", "a" * 5000, "app with spaces", "ünï/côde"]


@dataclass
class Stack:
    settings: Settings
    client: DaprWorkflowClient
    engine: Process
    worker: Process
    logs: Path

    def alive(self) -> None:
        assert self.engine.alive, self.engine.log_text()[-3000:]
        assert self.worker.alive, self.worker.log_text()[-3000:]

    def topics(self) -> Topics:
        return Topics.for_settings(self.settings)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"hr-{uuid.uuid4().hex[:8]}.",
                                 partitions=PARTITIONS)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("hostile-remote")
    env = {"HEADRACE_REMOTE_WORKFLOWS": "remote_wf"}
    processes = [Process("engine", settings, logs, env), Process("worker", settings, logs)]
    try:
        with DaprWorkflowClient(settings=settings) as client:
            yield Stack(settings, client, processes[0], processes[1], logs)
    finally:
        for process in processes:
            process.kill()


async def _turns(settings: Settings) -> list[WorkflowWorkItem]:
    async with reading(settings, Topics.for_settings(settings).orchestrations) as batches:
        return [decode_workflow_item(r.value) async for records in batches for r in records if r.value is not None]


def turn_of(stack: Stack, iid: str) -> WorkflowWorkItem:
    """The turn the engine handed out for `iid` (read from the orchestrations topic)."""
    found: list[WorkflowWorkItem] = []

    def seen() -> bool:
        found[:] = [t for t in asyncio.run(_turns(stack.settings)) if t.instance_id == iid]
        return bool(found)

    eventually(seen, timeout=WAIT, message=f"no turn handed out for {iid}")
    return found[-1]


def answer_raw(stack: Stack, records: list[tuple[bytes | None, bytes]]) -> None:
    asyncio.run(_produce(stack.settings, stack.topics().results, [(k, v, None) for k, v in records]))


def ended(stack: Stack, iid: str) -> tuple[WorkflowStatus, str]:
    state = stack.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None
    details = state.failure_details
    return state.runtime_status, f"{details.error_type}: {details.message}" if details is not None else ""


def every_partition_works(stack: Stack) -> None:
    """A local workflow on each partition completes: no partition is stopped."""
    ids = [f"alive-{uuid.uuid4().hex[:8]}-{n}" for n in range(PARTITIONS * 3)]
    for iid in ids:
        stack.client.schedule_new_workflow("counter", input=2, instance_id=iid)
    for iid in ids:
        assert ended(stack, iid)[0] is WorkflowStatus.COMPLETED
    stack.alive()


def test_answers_naming_what_cannot_be_sent_fail_their_instance_and_stop_nothing(stack: Stack) -> None:
    hostile: dict[str, dict[str, object]] = {}
    for n, app_id in enumerate(BAD_APP_IDS):
        hostile[f"task-app-{n}"] = {"tasks": (ScheduleTask(id=1, name="step", input="1", app_id=app_id),)}
        hostile[f"child-app-{n}"] = {"children": (CreateChildWorkflow(id=1, instance_id=f"c-{n}", name="counter",
                                                                      app_id=app_id),)}
    hostile["child-empty-id"] = {"children": (CreateChildWorkflow(id=1, instance_id="", name="counter"),)}
    hostile["send-bad-id"] = {"sent": (SendEvent(id=1, instance_id="a b", name="go"),)}
    hostile["status-running"] = {"completion": CompleteWorkflow(id=1, status=RuntimeStatus.RUNNING, result="1")}
    hostile["dup-ids"] = {"tasks": (ScheduleTask(id=1, name="step", input="1"),
                                    ScheduleTask(id=1, name="step", input="2"))}
    run = uuid.uuid4().hex[:6]
    for iid in hostile:
        stack.client.schedule_new_workflow("remote_wf", input=1, instance_id=f"{iid}-{run}")
    records = []
    for iid, actions in hostile.items():
        turn = turn_of(stack, f"{iid}-{run}")
        answer = WorkflowAnswer(instance_id=turn.instance_id, execution_id=turn.execution_id, turn=turn.turn,
                                **actions)  # type: ignore[arg-type]
        records.append((turn.instance_id.encode(), encode(answer)))
    answer_raw(stack, records)
    for iid in hostile:
        status, why = ended(stack, f"{iid}-{run}")
        assert status is WorkflowStatus.FAILED, (iid, why)
        assert why.startswith(("InvalidAnswerError:", "NonDeterminismError:")), (iid, why)
    every_partition_works(stack)


def test_garbage_and_forged_answers_are_dead_lettered_or_ignored(stack: Stack) -> None:
    iid = f"forged-{uuid.uuid4().hex[:8]}"
    stack.client.schedule_new_workflow("remote_wf", input=1, instance_id=iid)
    turn = turn_of(stack, iid)
    good = WorkflowAnswer(instance_id=iid, execution_id=turn.execution_id, turn=turn.turn,
                          completion=CompleteWorkflow(id=1, status=RuntimeStatus.COMPLETED, result='"ok"'))
    wire = orjson.loads(encode(good))
    answer_raw(stack, [
        (iid.encode(), b"\x00not json"),
        (iid.encode(), orjson.dumps({**wire, "tasks": [{"id": "one", "name": 5}]})),  # wrong types
        (iid.encode(), orjson.dumps({**wire, "turn": turn.turn + 40})),  # a turn that is not out
        (iid.encode(), orjson.dumps({**wire, "execution_id": "another-run"})),
        (b"someone-else", encode(good)),  # key and instance disagree
        (iid.encode(), encode(good)),
        (iid.encode(), encode(good)),  # repeated: the turn is no longer out
    ])
    assert ended(stack, iid) == (WorkflowStatus.COMPLETED, "")
    assert stack.client.get_workflow_state(iid).serialized_output == '"ok"'  # type: ignore[union-attr]
    dead_letter(stack, iid, "tasks")
    every_partition_works(stack)


def test_app_ids_that_cannot_name_topics_are_refused_and_create_no_topic(stack: Stack) -> None:
    topics = stack.topics()
    records: list[tuple[bytes | None, bytes, int | None]] = []
    for n, app_id in enumerate(BAD_APP_IDS):
        item = ActivityWorkItem(instance_id=f"item-{n}", execution_id="e", task_id=1, name="step", input="1",
                                reply_app_id=app_id)
        records.append((item.instance_id.encode(), encode(item), None))
    asyncio.run(_produce(stack.settings, topics.tasks, records))
    for n in range(len(BAD_APP_IDS)):
        dead_letter(stack, f"item-{n}", "reply_app_id")
    start = {"type": "StartWorkflow", "version": 1, "instance_id": "child-x", "command_id": "c-x",
             "name": "counter", "input": "1",
             "parent": {"instance_id": "p", "name": "wf", "task_scheduled_id": 1, "execution_id": "pe",
                        "app_id": "../x"}}
    asyncio.run(_produce(stack.settings, topics.commands, [(b"child-x", orjson.dumps(start), None)]))
    dead_letter(stack, "child-x", "parent.app_id")
    every_partition_works(stack)

    async def names() -> set[str]:
        admin = AIOKafkaAdminClient(**stack.settings.client_kwargs())
        await admin.start()
        try:
            return set(await admin.list_topics())
        finally:
            await admin.close()

    made = asyncio.run(names())
    assert not [t for t in made if ".." in t or "a" * 50 in t], made
