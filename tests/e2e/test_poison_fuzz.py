"""The poison fuzzer (issue 11): no record anyone can produce stops the engine or the worker.

Hypothesis draws batches of records (`tests/e2e/poison.py`: schema-valid messages with hostile values,
and invalid ones) and produces them to every input topic — `commands`, `results`, `tasks.<queue>` —
of an engine and a worker running as processes of their own, as in production: a crash is then a
process that exits, which is what we are looking for, and a restart is a real one. After each batch
the engine's group must have committed past every record of the batch (each partition made progress
and nothing was skipped), and both processes must be alive. Some records hit *victims*: instances
started for the purpose, whose live execution IDs and pending task and timer IDs the records use.

After the poison the engine is killed (-9) and started again — restoring state written under
poison is where a NUL in an ID once stalled a whole engine — and then: the *witnesses* (instances on
every partition started before the poison and never named by it) complete; a new workflow on every
partition completes, through the worker; every victim still answers a terminate; every record that
no reader may accept has its dead letter, at its topic, partition and offset; the history topic
passes `ops.audit` (no gap in sequence numbers, no result applied twice, one end per execution); and
the worker has committed past every work item sent.

Size: about HEADRACE_FUZZ_RECORDS records (default 300, about 40 s on a loaded 2-core machine) in
batches of 10 to 20, derandomized, so CI sends the same records every run. HEADRACE_FUZZ_SEED=<n>
draws another sequence, as reproducible (`HEADRACE_FUZZ_RECORDS=2000 HEADRACE_FUZZ_SEED=7 pytest -m
fuzz` to explore). The line "poison fuzzer: N records in B batches ..." reports what was sent.
Hypothesis does not shrink here: the broker keeps every record it was sent, so a later, smaller
batch is not tested on a clean engine; a failure prints its whole batch (and the engine's last
traceback), and each record that broke something is kept below in `REGRESSIONS`, sent first.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from hypothesis import HealthCheck, Phase, example, given, seed, settings
from hypothesis import strategies as st

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.state import InstanceState
from engine.settings import Settings
from engine.topics import Topics, ensure_topics, partition_for
from ops.audit import audit, read_history
from tests.e2e.poison import DeepFailure, Poison, Ref, describe, poisons, render
from tests.e2e.processes import Process
from tests.helpers import eventually

RECORDS = int(os.environ.get("HEADRACE_FUZZ_RECORDS") or 300)
SEED = os.environ.get("HEADRACE_FUZZ_SEED") or None
BATCH = 20
PAYLOAD_LIMIT = 64 * 1024
PARTITIONS = 4
WAIT = 120
#: Seconds the slow victim's activity runs: long enough to be pending while a batch names it.
SLOW_S = 15.0

pytestmark = [
    pytest.mark.kafka, pytest.mark.fuzz, pytest.mark.timeout(300 + RECORDS),
    # aiokafka's clients call the `random` module (bootstrap order, partition choice) while an example
    # runs; hypothesis warns about that as if a strategy did it.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]

# Victims, by index in `Ref.victim`: what each runs, and with what input.
VICTIMS: list[tuple[str, Any]] = [("waiter", ["go", "go"]), ("sleeper", 3600.0), ("slow_chain", SLOW_S)]


def _s(kind: str, iid: Any, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "version": 1, "instance_id": iid, **fields}


V0, V1, V2 = (Ref("instance", i) for i in range(3))
E0, E1, E2 = (Ref("execution", i) for i in range(3))

#: Records that broke the engine or the worker once, each kept as a batch of its own (run first).
#: The comment says what the record did before the fix.
REGRESSIONS: dict[str, list[Poison]] = {
    # Issue 11 item 1: orjson.JSONDecodeError killed the engine, and again after every restart.
    "event payload not JSON text": [Poison("commands", _s("RaiseEvent", V0, command_id="r1", name="go",
                                                          input="approved"))],
    "result not JSON text": [Poison("results", _s("ActivityResult", V2, execution_id=E2, task_id=Ref("task", 2),
                                                  result="hello"))],
    # Item 2: a NUL in an ID broke the history-store key; the engine stalled after the next restart.
    "NUL in instance and command ID": [Poison("commands", _s("StartWorkflow", "nul\x00id", command_id="c\x00",
                                                             name="waiter", input='["go"]'))],
    # Item 5: applied on the wrong partition, the instance's later commands were dead-lettered.
    "no key": [Poison("commands", _s("StartWorkflow", "no-key-1", command_id="c", name="chain", input='"x"'),
                      key=None)],
    "wrong partition": [Poison("commands", _s("RaiseEvent", V0, command_id="r2", name="go", input='"p"'),
                               partition=p) for p in range(PARTITIONS)],
    # Found by this fuzzer: FailureDetails nested deeper than the codec's recursion (RecursionError, not
    # DecodeError) or than orjson encodes (255 levels) when the engine writes the failure back.
    "deep failure, known task": [Poison("results", _s("ActivityResult", V2, execution_id=E2,
                                                      task_id=Ref("task", 2), failure=DeepFailure(depth)))
                                 for depth in (300, 600)],
    "deep failure, unknown instance": [Poison("commands", _s("ChildResult", f"deep-{depth}", execution_id="e",
                                                             task_id=0, child_instance_id="c",
                                                             failure=DeepFailure(depth)))
                                       for depth in (300, 1000)],
}


@dataclass
class Stack:
    settings: Settings
    topics: Topics
    logs: Path
    client: DaprWorkflowClient
    engine: Process
    worker: Process
    #: The current instance ID of each victim, and every ID a victim ever had.
    victims: list[str] = field(default_factory=list)
    every_victim: list[str] = field(default_factory=list)
    sent: list[tuple[Poison, str, int, int]] = field(default_factory=list)
    batches: int = 0
    #: Why an earlier batch failed: later batches then fail at once instead of waiting on a broken stack.
    broken: str | None = None

    def alive(self) -> None:
        for proc in (self.engine, self.worker):
            if not proc.alive:
                raise AssertionError(f"the {proc.role} exited with {proc.returncode}:\n{proc.log_text()[-6000:]}")

    def last_error(self) -> str:
        """The engine's and the worker's last logged traceback, for a failure message."""
        found = []
        for proc in (self.engine, self.worker):
            lines = proc.log_text().splitlines()
            starts = [i for i, line in enumerate(lines) if line.startswith("Traceback")]
            if starts:
                found.append(f"last traceback of the {proc.role}:\n" + "\n".join(
                    line for line in lines[starts[-1] - 1:starts[-1] + 60] if line.strip(" ^~")))
        return "\n".join(found) or "(no traceback in the engine's or the worker's log)"

    def view_report(self, iid: str) -> str:
        """What the client's status view shows of an instance, and whether the view still follows."""
        view = self.client._view
        task = getattr(view, "_task", None)
        following = "no task" if task is None else (
            "following" if not task.done() else f"STOPPED: {task.exception() if not task.cancelled() else 'cancelled'}")
        state = self.state(iid)
        shown = "no state" if state is None else (
            f"{state.status.value}, timers {dict(state.pending_timers)}, tasks {dict(state.pending_tasks)}, "
            f"failure {state.failure}")
        return f"{shown}; the view ({len(view.states)} instances) is {following}"

    def state(self, iid: str) -> InstanceState | None:
        return self.client._view.states.get(iid)

    def resolve(self, ref: Ref) -> Any:
        iid = self.victims[ref.victim % len(self.victims)]
        if ref.what == "instance":
            return iid
        state = self.state(iid)
        if ref.what == "execution":
            return state.execution_id if state is not None else "no-execution"
        pending = {"task": state.pending_tasks, "timer": state.pending_timers}[ref.what] if state else {}
        return next(iter(pending), 0)

    def renew_victims(self) -> None:
        """Start a new victim in place of each that ended or was purged, and wait until it runs.

        A victim the poison left alive in another state (suspended, say) stays as it is.
        """
        started: list[tuple[int, str]] = []
        for index, (name, data) in enumerate(VICTIMS):
            if index < len(self.victims):
                state = self.state(self.victims[index])
                if state is not None and not state.is_terminal:
                    continue
            iid = f"victim-{index}-{uuid.uuid4().hex[:8]}"
            self.client.schedule_new_workflow(name, input=data, instance_id=iid)
            if index < len(self.victims):
                self.victims[index] = iid
            else:
                self.victims.append(iid)
            self.every_victim.append(iid)
            started.append((index, iid))
        for index, iid in started:
            # Running, with its timer or task pending where it has one (a Ref then names a real one).
            needs = {1: "pending_timers", 2: "pending_tasks"}.get(index)
            try:
                eventually(self._running(iid, needs), timeout=WAIT)
            except AssertionError:
                raise AssertionError(f"victim {iid} never ran: {self.view_report(iid)}") from None

    def _running(self, iid: str, needs: str | None) -> Callable[[], bool]:
        def check() -> bool:
            state = self.state(iid)
            if state is None:
                return False
            if state.is_terminal:
                return True
            return state.status.value == "RUNNING" and (needs is None or bool(getattr(state, needs)))

        return check

    def ended(self, iid: str) -> Callable[[], bool]:
        def check() -> bool:
            state = self.state(iid)
            return state is None or state.is_terminal

        return check


def _ids_on_every_partition(prefix: str, partitions: int) -> list[str]:
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        iid = f"{prefix}-{n}"
        found.setdefault(partition_for(iid.encode(), partitions), iid)
        n += 1
    return [found[p] for p in range(partitions)]


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    config = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"fz-{uuid.uuid4().hex[:8]}.",
                               partitions=PARTITIONS, max_payload_bytes=PAYLOAD_LIMIT)
    topics = asyncio.run(ensure_topics(config))
    # Poison may start unregistered names: they wait 1 s for code, then fail (engine.core.unknown_code).
    env = {"HEADRACE_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT), "HEADRACE_UNKNOWN_CODE_TIMEOUT": "1"}
    engine = Process("engine", config, tmp_path, env)
    worker = Process("worker", config, tmp_path, env)
    stack: Stack | None = None
    try:
        with DaprWorkflowClient(settings=config) as client:
            stack = Stack(config, topics, tmp_path, client, engine, worker)
            yield stack
    finally:
        # The test replaces the engine (a restart): stop whichever processes run now.
        (stack.engine if stack is not None else engine).stop()
        engine.stop()
        (stack.worker if stack is not None else worker).kill()  # a slow victim's activity may still run
        worker.kill()


async def _produce(stack: Stack, batch: list[Poison]) -> dict[TopicPartition, int]:
    """Send the batch; return, per engine input partition, the offset just past the last record sent."""
    names = {"commands": stack.topics.commands, "results": stack.topics.results, "tasks": stack.topics.tasks}
    producer = AIOKafkaProducer(**stack.settings.client_kwargs(), max_request_size=4 * 1024 * 1024)
    await producer.start()
    past: dict[TopicPartition, int] = {}
    try:
        for poison in batch:
            key, value = render(poison, stack.resolve)
            partition = None if poison.partition is None else poison.partition % stack.settings.partitions
            if key is None and partition is None:
                partition = len(stack.sent) % stack.settings.partitions
            if key is None and value is None:
                key = b""  # aiokafka refuses a record with neither; Kafka itself would take it
            meta = await producer.send_and_wait(names[poison.topic], value, key=key, partition=partition)
            stack.sent.append((poison, meta.topic, meta.partition, meta.offset))
            tp = TopicPartition(meta.topic, meta.partition)
            past[tp] = max(past.get(tp, 0), meta.offset + 1)
    finally:
        await producer.stop()
    return past


async def _committed(settings: Settings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


def _wait_committed(stack: Stack, group: str, past: dict[TopicPartition, int], what: str) -> None:
    """Wait until `group` has committed at least `past` on each partition, with both processes alive."""
    behind: dict[TopicPartition, tuple[int, int]] = {}

    def caught_up() -> bool:
        stack.alive()
        committed = asyncio.run(_committed(stack.settings, group))
        behind.clear()
        behind.update({tp: (committed.get(tp, -1), end) for tp, end in past.items() if committed.get(tp, -1) < end})
        return not behind

    try:
        eventually(caught_up, timeout=WAIT, interval=0.1)
    except AssertionError:
        lagging = ", ".join(f"{tp.topic}[{tp.partition}] at {c} of {e}" for tp, (c, e) in behind.items())
        raise AssertionError(f"{what}: no progress past the poison within {WAIT}s: {lagging}\n"
                             f"{stack.last_error()}") from None


def send_batch(stack: Stack, batch: list[Poison]) -> None:
    if stack.broken is not None:
        raise AssertionError(f"not sent: an earlier batch broke the stack ({stack.broken[:300]})")
    try:
        stack.alive()
        stack.renew_victims()
        past = asyncio.run(_produce(stack, batch))
        stack.batches += 1
        engine_past = {tp: end for tp, end in past.items() if tp.topic != stack.topics.tasks}
        _wait_committed(stack, f"{stack.settings.topic_prefix}engine", engine_past, "engine")
        stack.alive()
    except AssertionError as exc:
        stack.broken = str(exc)
        records = "\n".join(f"  {describe(p, stack.resolve)}" for p in batch)
        raise AssertionError(f"{exc}\nthe batch ({len(batch)} records):\n{records}") from None


async def _dead_letters(settings: Settings) -> list[dict[str, Any]]:
    topic = Topics.for_settings(settings).dead_letter
    consumer = AIOKafkaConsumer(topic, **settings.client_kwargs(), auto_offset_reset="earliest",
                                isolation_level="read_committed", group_id=None, max_partition_fetch_bytes=8 * 2**20)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        end = (await consumer.end_offsets([tp]))[tp]
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(WAIT):
            while await consumer.position(tp) < end:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    found += [orjson.loads(r.value) for r in records if r.value is not None]
        return found
    finally:
        await consumer.stop()


def _fuzz(stack: Stack, announce: Callable[[str], None]) -> None:
    examples = max(1, RECORDS // ((BATCH + BATCH // 2) // 2))

    @settings(max_examples=examples, deadline=None, derandomize=SEED is None, database=None,
              phases=(Phase.explicit, Phase.generate), print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(batch=st.lists(poisons(PAYLOAD_LIMIT, len(VICTIMS)), min_size=BATCH // 2, max_size=BATCH))
    def run(batch: list[Poison]) -> None:
        send_batch(stack, batch)

    for case in REGRESSIONS.values():
        run = example(batch=case)(run)
    if SEED is not None:
        run = seed(int(SEED) if SEED.isdigit() else SEED)(run)
    started = time.monotonic()
    try:
        run()
    finally:
        # Inputs the engine's safety net set aside (an exception while applying them, or a turn too large
        # to write): each is an engine bug the net contained, worth a look even when the test passes.
        set_aside = sorted({line.split(": ", 1)[-1][:300] for line in stack.engine.log_text().splitlines()
                            if "setting aside" in line})
        topics = {t: sum(1 for p, *_ in stack.sent if p.topic == t) for t in ("commands", "results", "tasks")}
        invalid = sum(1 for p, *_ in stack.sent if p.certainly_invalid)
        announce(f"poison fuzzer: {len(stack.sent)} records in {stack.batches} batches "
                 f"({sum(len(c) for c in REGRESSIONS.values())} of them regression cases) "
                 f"in {time.monotonic() - started:.0f}s: {topics}, {invalid} not messages at all, "
                 f"{len(stack.every_victim)} victims; the engine set aside {len(set_aside)} input(s)"
                 + "".join(f"\n  {line}" for line in set_aside[:20]))


# When a batch fails, hypothesis replays it and writes out the whole batch (hundreds of kB), which
# it warns about; an error there would hide the batch's own failure (seen once in CI).
@pytest.mark.filterwarnings("default:Generating overly large repr:hypothesis.errors.HypothesisWarning")
def test_no_record_stops_the_engine_or_the_worker(stack: Stack, request: pytest.FixtureRequest) -> None:
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    capture = request.config.pluginmanager.getplugin("capturemanager")

    def announce(line: str) -> None:
        print(line)
        request.node.user_properties.append(("poison", line))
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)

    client = stack.client
    # Witnesses: running before the poison on every partition, never named by it.
    waiters = _ids_on_every_partition(f"witness-wait-{uuid.uuid4().hex[:6]}", PARTITIONS)
    sleepers = _ids_on_every_partition(f"witness-sleep-{uuid.uuid4().hex[:6]}", PARTITIONS)
    for iid in waiters:
        client.schedule_new_workflow("waiter", input=["go"], instance_id=iid)
    for iid in sleepers:
        client.schedule_new_workflow("sleeper", input=5.0, instance_id=iid)
    for iid in waiters + sleepers:
        client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)

    _fuzz(stack, announce)

    # A restart after the poison: the new engine restores whatever the poison left in its topics.
    stack.engine.kill()
    stack.engine = Process("engine", stack.settings, stack.logs, {"HEADRACE_MAX_PAYLOAD_BYTES": str(PAYLOAD_LIMIT)})

    for iid in waiters:
        client.raise_workflow_event(iid, "go", data=iid)
    for iid in waiters:
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, (iid, state)
        assert orjson.loads(state.serialized_output or "null") == [iid]
    for iid in sleepers:
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, (iid, state)

    # New work on every partition, through the worker's partitions of the same numbers.
    fresh = _ids_on_every_partition(f"after-{uuid.uuid4().hex[:6]}", PARTITIONS)
    for iid in fresh:
        client.schedule_new_workflow("counter", input=2, instance_id=iid)
    for iid in fresh:
        state = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
        assert state is not None and state.runtime_status is WorkflowStatus.COMPLETED, (iid, state)
        assert orjson.loads(state.serialized_output or "null") == 2

    # Every victim either ended (any way), was purged, or still obeys a terminate.
    for iid in stack.every_victim:
        if not stack.ended(iid)():
            client.terminate_workflow(iid)
    for iid in stack.every_victim:
        eventually(stack.ended(iid), timeout=WAIT, message=f"victim {iid} does not end after a terminate")

    # The worker handled every work item sent (its committed offsets are past them), so the dead
    # letters of those it refused are written by now.
    tasks_past: dict[TopicPartition, int] = {}
    for _poison, topic, p, o in stack.sent:
        if topic == stack.topics.tasks:
            tp = TopicPartition(topic, p)
            tasks_past[tp] = max(tasks_past.get(tp, 0), o + 1)
    assert tasks_past, "the fuzzer sent no work item at all"
    _wait_committed(stack, f"{stack.settings.topic_prefix}workers.{stack.settings.task_queue}", tasks_past,
                    "worker")

    # Every record no reader may accept was dead-lettered where it was read.
    letters = {(d["topic"], d["partition"], d["offset"]) for d in asyncio.run(_dead_letters(stack.settings))}
    refused = [(topic, p, o) for poison, topic, p, o in stack.sent if poison.certainly_invalid]
    assert refused, "the fuzzer sent no invalid record at all"
    missing = [(t, p, o) for t, p, o in refused if (t, p, o) not in letters]
    assert not missing, f"invalid records without a dead letter: {missing[:20]}"

    # The history the engine wrote under poison keeps its invariants: no gap or repeat in sequence
    # numbers, no result applied twice, one end per ended execution.
    report = audit(asyncio.run(read_history(stack.settings)))
    assert report.violations == [], report.violations[:20]
    assert report.completed["COMPLETED"] >= 3 * PARTITIONS  # the witnesses and the new work at least

    stack.alive()
