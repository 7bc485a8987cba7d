"""Hostile input on the real broker (issue 11): one bad record or instance fails alone; the engine lives.

Each test here failed on the engine before the fix: the process died (non-JSON payloads), stalled
after a restart (a NUL in an ID, an unreadable stored record), retried one transaction forever
(a turn too large for one record), or applied a command on a partition that does not own its
instance (no key, or another partitioner).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.ids import IdError
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.to_end import reading
from engine.settings import Settings
from engine.topics import Topics, ensure_topics, partition_for
from engine.wire.records import SNAPSHOT_SUFFIX, encode_state, history_chunk_key, join_events, state_snapshot_key
from tests.e2e.processes import Process
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 120
PAYLOAD_LIMIT = 64 * 1024


@dataclass
class Stack:
    settings: Settings
    client: DaprWorkflowClient
    engine: Process
    worker: Process
    logs: Path
    #: Every process started for this module, stopped at its end (tests may start more).
    spawned: list[Process]

    def alive(self) -> None:
        assert self.engine.alive, self.engine.log_text()[-3000:]
        assert self.worker.alive, self.worker.log_text()[-3000:]


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"h-{uuid.uuid4().hex[:8]}.",
                                 partitions=4, max_payload_bytes=PAYLOAD_LIMIT)
    asyncio.run(ensure_topics(settings))
    logs = tmp_path_factory.mktemp("hostile")
    env = {"HEADRACE_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT)}
    processes: list[Process] = []
    try:
        processes += [Process("engine", settings, logs, env), Process("worker", settings, logs, env)]
        with DaprWorkflowClient(settings=settings) as client:
            yield Stack(settings, client, processes[0], processes[1], logs, processes)
    finally:
        for process in processes:
            process.kill()


def _command(kind: str, iid: str, **fields: Any) -> bytes:
    return orjson.dumps({"type": kind, "version": 1, "instance_id": iid, **fields})


async def _produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes, int | None]]) -> None:
    producer = AIOKafkaProducer(**settings.client_kwargs(), max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for key, value, partition in records:
            await producer.send_and_wait(topic, value, key=key, partition=partition)
    finally:
        await producer.stop()


def produce(stack: Stack, records: list[tuple[bytes | None, bytes]], topic: str = "commands",
            partition: int | None = None) -> None:
    name = getattr(Topics.for_settings(stack.settings), topic)
    asyncio.run(_produce(stack.settings, name, [(k, v, partition) for k, v in records]))


async def _read_dead_letters(settings: Settings) -> list[dict[str, Any]]:
    """Every committed dead letter (read to the end: one fetch could come back short on a loaded
    machine)."""
    letters: list[dict[str, Any]] = []
    async with reading(settings, Topics.for_settings(settings).dead_letter) as batches:
        async for records in batches:
            letters.extend(orjson.loads(r.value) for r in records if r.value is not None)
    return letters


def dead_letter(stack: Stack, key: str, containing: str) -> dict[str, Any]:
    """Wait for a dead letter for `key` whose reason contains `containing`, and return it."""
    found: list[dict[str, Any]] = []

    def seen() -> bool:
        found[:] = [d for d in asyncio.run(_read_dead_letters(stack.settings))
                    if d["key"] == key and containing in d["reason"]]
        return bool(found)

    eventually(seen, timeout=WAIT, message=f"no dead letter for {key!r} with {containing!r}")
    return found[0]


def completed(stack: Stack, iid: str) -> Any:
    state = stack.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None
    assert state.runtime_status is WorkflowStatus.COMPLETED, state.failure_details
    return orjson.loads(state.serialized_output or "null")


def failed(stack: Stack, iid: str) -> str:
    state = stack.client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
    assert state is not None and state.runtime_status is WorkflowStatus.FAILED, state
    assert state.failure_details is not None
    return f"{state.failure_details.error_type}: {state.failure_details.message}"


def test_event_payload_that_is_not_json_text_is_dead_lettered(stack: Stack) -> None:
    iid = f"ev-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("waiter", input=["go"], instance_id=iid)
    stack.client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
    # What a producer in another language sends when it forgets to JSON-encode a string.
    produce(stack, [(iid.encode(), _command("RaiseEvent", iid, command_id="raw-1", name="go", input="approved"))])
    letter = dead_letter(stack, iid, "RaiseEvent.input is not JSON text")
    assert orjson.loads(letter["value"])["input"] == "approved"
    stack.alive()
    stack.client.raise_workflow_event(iid, "go", data="approved")
    assert completed(stack, iid) == ["approved"]


def test_activity_result_that_is_not_json_text_fails_the_task(stack: Stack) -> None:
    iid = f"res-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("slow_chain", input=20.0, instance_id=iid)
    eventually(lambda: bool(stack.client._view.states[iid].pending_tasks), timeout=WAIT)
    state = stack.client._view.states[iid]
    task_id = next(iter(state.pending_tasks))
    result = _command("ActivityResult", iid, execution_id=state.execution_id, task_id=task_id, result="hello")
    produce(stack, [(iid.encode(), result)], topic="results")
    reason = failed(stack, iid)
    assert "activity result is not JSON text" in reason
    stack.alive()


def test_ids_with_nul_or_control_characters_are_refused_at_every_entrance(stack: Stack) -> None:
    bad = f"nul\x00{uuid.uuid4().hex[:6]}"
    produce(stack, [(bad.encode(), _command("StartWorkflow", bad, command_id="c1", name="counter", input="1"))])
    dead_letter(stack, bad, "instance_id")
    ok = f"cmd-{uuid.uuid4().hex[:6]}"
    produce(stack, [(ok.encode(), _command("StartWorkflow", ok, command_id="c\x01", name="counter", input="1"))])
    dead_letter(stack, ok, "command_id")
    with pytest.raises(IdError):
        stack.client.schedule_new_workflow("counter", input=1, instance_id="a\x00b")
    with pytest.raises(IdError):
        stack.client.raise_workflow_event("a\nb", "go")
    # A child ID chosen by workflow code fails that workflow, where the ID was chosen.
    parent = f"kid-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("child_named", input="kid\x00x", instance_id=parent)
    assert "child instance ID" in failed(stack, parent)
    stack.alive()
    # Read through the client: it follows the partition of an ID it is asked about (from its start).
    assert stack.client.get_workflow_state(bad) is None


def test_turn_with_many_large_payloads_is_split_across_records(stack: Stack) -> None:
    iid = f"big-{uuid.uuid4().hex[:6]}"
    doc = "d" * (60 * 1024)
    # 25 x 60 KiB in one turn: 1.5 MB of events, over the 1.25 MiB record limit of this deployment.
    stack.client.schedule_new_workflow("fan_same", input={"doc": doc, "n": 25}, instance_id=iid)
    assert completed(stack, iid) == 25 * len(doc)
    stack.alive()


def test_turn_that_cannot_be_written_fails_only_its_instance(stack: Stack) -> None:
    loud = f"loud-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("loud_failure", input=2_000_000, instance_id=loud)
    reason = failed(stack, loud)
    assert reason.startswith("EngineError") and "over the limit" in reason
    dead_letter(stack, loud, "over the limit")
    after = f"after-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("counter", input=3, instance_id=after)
    assert completed(stack, after) == 3
    stack.alive()


def test_command_without_key_or_on_another_partition_reaches_its_instance(stack: Stack) -> None:
    partitions = stack.settings.partitions
    keyless = f"nokey-{uuid.uuid4().hex[:6]}"
    elsewhere = f"moved-{uuid.uuid4().hex[:6]}"
    wrong = (partition_for(elsewhere.encode(), partitions) + 1) % partitions
    start = {"command_id": "s1", "name": "waiter", "input": '["go"]'}
    produce(stack, [(None, _command("StartWorkflow", keyless, **start))],
            partition=(partition_for(keyless.encode(), partitions) + 1) % partitions)
    produce(stack, [(elsewhere.encode(), _command("StartWorkflow", elsewhere, **start))], partition=wrong)
    for iid in (keyless, elsewhere):
        stack.client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
        stack.client.raise_workflow_event(iid, "go", data=iid)
        assert completed(stack, iid) == [iid]
    stack.alive()


def test_unreadable_stored_records_do_not_stall_a_restarted_engine(stack: Stack) -> None:
    topics = Topics.for_settings(stack.settings)
    legacy = f"legacy\x00{uuid.uuid4().hex[:6]}"
    state = InstanceState(instance_id=legacy, name="waiter", status=RuntimeStatus.RUNNING, execution_id="e1",
                          run_id="e1")
    # Records as an engine wrote them before IDs were checked (a NUL in the history-store key),
    # and records nobody can read. Before the fix, either kept a restarted engine from ever
    # processing its partitions again, silently.
    asyncio.run(_produce(stack.settings, topics.status, [
        (legacy.encode(), encode_state(state), None),
        (b"garbage", b"{not a state", None),
    ]))
    asyncio.run(_produce(stack.settings, topics.history_store, [
        (history_chunk_key(legacy, "e1", 0), join_events(legacy, "e1", []),
         partition_for(legacy.encode(), stack.settings.partitions)),
        (b"no-separators", b"[]", None),
        # Restores read instance states from their snapshots here (issue 16): the same two again.
        (state_snapshot_key(legacy), encode_state(state), partition_for(legacy.encode(), stack.settings.partitions)),
        # On the partition of the unreadable status record: a record after the last snapshot
        # marker makes that partition's restore read `status`, which holds the other one.
        (b"garbage" + SNAPSHOT_SUFFIX, b"{not a state", partition_for(b"garbage", stack.settings.partitions)),
    ]))
    stack.engine.stop()
    stack.engine = Process("engine", stack.settings, stack.logs,
                           {"HEADRACE_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT)})
    stack.spawned.append(stack.engine)
    iid = f"restart-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("counter", input=2, instance_id=iid)
    assert completed(stack, iid) == 2
    stack.alive()
    assert "skipping unreadable status record" in stack.engine.log_text()


def test_timer_firing_from_outside_is_refused(stack: Stack) -> None:
    # Found by the poison fuzzer: anyone could end a durable timer early by producing its firing
    # (the execution and timer IDs are readable in the status topic).
    iid = f"timer-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("sleeper", input=600.0, instance_id=iid)
    eventually(lambda: bool(stack.client._view.states[iid].pending_timers), timeout=WAIT)
    state = stack.client._view.states[iid]
    timer_id, fire_at = next(iter(state.pending_timers.items()))
    firing = _command("TimerFiring", iid, execution_id=state.execution_id, timer_id=timer_id,
                      fire_at=fire_at.isoformat())
    produce(stack, [(iid.encode(), firing)])
    dead_letter(stack, iid, "TimerFiring is internal")
    assert stack.client._view.states[iid].pending_timers == state.pending_timers
    stack.client.terminate_workflow(iid)
    stack.alive()


def test_status_view_survives_a_record_it_cannot_read(stack: Stack) -> None:
    # The view's reader task is awaited by nobody: a key that is not UTF-8 used to end it, and every
    # client and API replica of the process then waited forever.
    topics = Topics.for_settings(stack.settings)
    asyncio.run(_produce(stack.settings, topics.status, [
        (b"\xff\xfe" + bytes([p]), b"\x00garbage", p) for p in range(stack.settings.partitions)
    ]))
    iid = f"view-{uuid.uuid4().hex[:6]}"
    stack.client.schedule_new_workflow("counter", input=1, instance_id=iid)
    assert completed(stack, iid) == 1
