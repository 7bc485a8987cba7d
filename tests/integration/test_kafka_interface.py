"""Kafka as a public interface (docs/kafka-interface.md, issue 19), checked from the outside.

- every example record in the doc is valid against its JSON Schema and decoded and accepted by the
  engine's own edge checks (`PartitionOwner._decode` = `MESSAGES.decode` + `check_message`);
- `headrace topics` prints what `topic_configs` says, and `--create` makes the topics on a real broker.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from engine.core import commands as cmd
from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from engine.topics import Topics, ensure_topics, partition_count, topic_configs
from engine.wire.records import MESSAGES, WORK_ITEMS
from ops.kafka.paths import cache_root, kafka_version
from ops.process import Child
from tests.api import workflows as api_workflows
from tests.api.support import ApiServer, eventually

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "kafka-interface.md"
SCHEMAS = ROOT / "schemas" / "messages"

_BLOCK = re.compile(r"^```json ([A-Za-z]+)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def doc_examples() -> list[tuple[str, dict[str, Any]]]:
    return [(tag, json.loads(body)) for tag, body in _BLOCK.findall(DOC.read_text())]


def test_the_doc_has_an_example_of_every_public_message() -> None:
    tags = {tag for tag, _ in doc_examples()}
    public = {t.__name__ for t in cmd.COMMAND_TYPES} | {"ActivityResult", "ActivityWorkItem"}
    assert public <= tags, f"no example for {sorted(public - tags)}"


@pytest.mark.parametrize(("tag", "record"), doc_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_doc_example_is_schema_valid_and_accepted(tag: str, record: dict[str, Any]) -> None:
    assert record["type"] == tag
    schema = json.loads((SCHEMAS / f"{tag}.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(record)
    data = json.dumps(record).encode()
    if tag == "ActivityWorkItem":
        item = WORK_ITEMS.decode(data)
        assert isinstance(item, cmd.ActivityWorkItem)
        return
    message = MESSAGES.decode(data)
    assert type(message).__name__ == tag
    # check_message returns the message unchanged when it is accepted as is (a result whose payload is
    # not JSON text would come back as a failure instead).
    assert cmd.check_message(message) == message


def test_topics_cli_prints_the_engine_topic_configs(topic_prefix: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ops.cli", "topics", "-o", "json", "--topic-prefix", topic_prefix, "--partitions", "3"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    rows = json.loads(out)
    settings = Settings.from_env(topic_prefix=topic_prefix, partitions=3)
    configs = topic_configs(settings)
    assert {row["name"]: row["configs"] for row in rows} == configs
    topics = Topics.for_settings(settings)
    assert {row["name"]: row["partitions"] for row in rows} == {
        name: (1 if name == topics.dead_letter else 3) for name in configs}


async def _list_topics(settings: Settings) -> set[str]:
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


@pytest.mark.kafka
def test_topics_cli_create_makes_the_topics(kafka_bootstrap: str, topic_prefix: str) -> None:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=topic_prefix, partitions=2)
    topics = Topics.for_settings(settings)
    # Not describe_topics: its metadata request may auto-create the topic with the broker's defaults.
    assert not set(topic_configs(settings)) & asyncio.run(_list_topics(settings))
    subprocess.run(
        [sys.executable, "-m", "ops.cli", "topics", "--create", "--bootstrap-servers", kafka_bootstrap,
         "--topic-prefix", topic_prefix, "--partitions", "2"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
    )
    for name in topic_configs(settings):
        assert asyncio.run(partition_count(settings, name)) == (1 if name == topics.dead_letter else 2), name


# --- (a) commands from Kafka's own console producer, outcomes through the REST API -----------------

KAFKA_VERSION = kafka_version()
CACHE = cache_root()  # where the local broker keeps its jars, XDG_CACHE_HOME included


@pytest.fixture(scope="module")
def console_producer_classpath() -> str:
    """Kafka's jars (the local broker's cache) plus kafka-tools, which holds ConsoleProducer."""
    lib = CACHE / "kafka" / KAFKA_VERSION / "lib"
    tools = CACHE / "kafka-tools" / KAFKA_VERSION
    jar = tools / f"kafka-tools-{KAFKA_VERSION}.jar"
    if not jar.is_file():
        tools.mkdir(parents=True, exist_ok=True)
        artifact = f"org.apache.kafka:kafka-tools:{KAFKA_VERSION}"
        subprocess.run(["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", f"-DoutputDirectory={tools}"],
                       check=True, timeout=300, capture_output=True)
    assert jar.is_file() and (lib / f"kafka-clients-{KAFKA_VERSION}.jar").is_file()
    return f"{tools}/*:{lib}/*"


def console_produce(classpath: str, bootstrap: str, topic: str, lines: list[str], *, keyed: bool = True) -> None:
    args = ["java", "-cp", classpath, "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
            "--topic", topic, "--producer-property", "acks=all"]
    if keyed:
        args += ["--property", "parse.key=true", "--property", "key.separator=|"]
    subprocess.run(args, input="".join(line + "\n" for line in lines), text=True, check=True, timeout=120,
                   capture_output=True)


def _command(kind: str, iid: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "version": 1, "instance_id": iid, "command_id": uuid.uuid4().hex, **fields})


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, ApiServer]]:
    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=4,
                                 topic_prefix=f"t.kafka-interface.{uuid.uuid4().hex[:8]}.")
    host = RuntimeHost(api_workflows.runtime.registry, settings)
    host.start(timeout=90)
    server = ApiServer(settings, tmp_path_factory.mktemp("kafka-interface-api")).start()
    try:
        server.wait_ready()
        yield settings, server
    finally:
        server.stop()
        host.stop()


def _status(http: httpx.Client, iid: str) -> tuple[int, dict[str, Any]]:
    response = http.get(f"/v1.0/workflows/dapr/{iid}")
    return response.status_code, response.json()


@pytest.mark.kafka
@pytest.mark.timeout(300)
def test_lifecycle_through_the_console_producer(stack: tuple[Settings, ApiServer],
                                                console_producer_classpath: str) -> None:
    settings, server = stack
    topics = Topics.for_settings(settings)
    gated, doomed = f"gate-{uuid.uuid4().hex[:8]}", f"doomed-{uuid.uuid4().hex[:8]}"
    console_produce(console_producer_classpath, settings.bootstrap_servers, topics.commands, [
        f"{gated}|" + _command("StartWorkflow", gated, name="api_gate", input='"from kafka"'),
        f"{doomed}|" + _command("StartWorkflow", doomed, name="api_gate", input="1"),
        f"{gated}|" + _command("RaiseEvent", gated, name="go", input="21"),
    ])
    with server.client() as http:
        def gated_done() -> dict[str, Any] | None:
            code, body = _status(http, gated)
            return body if code == 200 and body["runtimeStatus"] == "COMPLETED" else None

        body = eventually(gated_done, 60, what=f"{gated} COMPLETED")
        assert json.loads(body["properties"]["dapr.workflow.output"]) == {"input": "from kafka", "doubled": 42}
        code, body = _status(http, doomed)
        assert code == 200 and body["runtimeStatus"] == "RUNNING", body

        # Terminate keyed; purge without a key: the engine forwards it to the instance's partition.
        console_produce(console_producer_classpath, settings.bootstrap_servers, topics.commands, [
            f"{doomed}|" + _command("TerminateWorkflow", doomed, output='"stopped"'),
            f"{gated}|" + _command("PurgeWorkflow", gated),
        ])
        eventually(lambda: _status(http, doomed)[1].get("runtimeStatus") == "TERMINATED" or None, 60,
                   what=f"{doomed} TERMINATED")
        eventually(lambda: _status(http, gated)[0] == 404 or None, 60, what=f"{gated} purged")
        console_produce(console_producer_classpath, settings.bootstrap_servers, topics.commands,
                        [_command("PurgeWorkflow", doomed)], keyed=False)
        eventually(lambda: _status(http, doomed)[0] == 404 or None, 60, what=f"{doomed} purged (keyless)")


# --- (b) an activity worker in Java (tests/foreign/java-worker), killed mid-task ---------------------

JAVA_WORKER = ROOT / "tests" / "foreign" / "java-worker"


@pytest.fixture(scope="module")
def java_worker_classpath(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Builds the Java worker with Maven in a copy of its project (dependencies cached in ~/.m2)."""
    project = tmp_path_factory.mktemp("java-worker") / "java-worker"
    shutil.copytree(JAVA_WORKER, project, ignore=shutil.ignore_patterns("target"))
    subprocess.run(["mvn", "-q", "-B", "package", "-DskipTests"], cwd=project, check=True, timeout=600,
                   capture_output=True)
    return f"{project / 'target' / 'classes'}:{project / 'target' / 'lib'}/*"


def start_java_worker(classpath: str, settings: Settings, markers: Path, *, hold: bool) -> Child:
    args = ["java", "-cp", classpath, "dev.headrace.example.Worker", settings.bootstrap_servers,
            settings.topic_prefix, settings.task_queue, str(markers)]
    worker = Child([*args, "hold"] if hold else args, markers.parent / "java-worker.log", label="java worker")
    worker.start()
    return worker


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_java_worker_serves_an_activity_and_survives_kill_9(kafka_bootstrap: str, tmp_path: Path,
                                                              java_worker_classpath: str) -> None:
    from engine import DaprWorkflowClient
    from tests.e2e.processes import Process

    settings = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=2,
                                 topic_prefix=f"t.java-worker.{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(settings))
    markers = tmp_path / "markers"
    markers.mkdir()
    # Only an engine for the workflow: no Python worker, the activity is Java's alone.
    engine = Process("engine", settings, tmp_path / "logs", app="tests.foreign.app:runtime")
    first = start_java_worker(java_worker_classpath, settings, markers, hold=True)
    second: Child | None = None
    try:
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("foreign_echo", input={"n": 7})
            started = markers / "started-0"
            eventually(started.exists, 120, what="the Java worker received the task")
            first.kill()  # SIGKILL mid-task: no result was produced, no offset committed
            assert not (markers / "done-0").exists()
            started.unlink()
            second = start_java_worker(java_worker_classpath, settings, markers, hold=False)
            state = client.wait_for_workflow_completion(iid, timeout_in_seconds=180)
            assert state is not None and state.runtime_status.name == "COMPLETED", state
            assert json.loads(state.serialized_output or "null") == {"echoed": ["java", {"n": 7}]}
            assert started.exists()  # redelivered to the new worker, which commits after the result is acked
            eventually((markers / "done-0").exists, 60, what="the second Java worker committed the task")
            # One task, run to the end once: no retry with another task ID, no second completion.
            assert sorted(p.name for p in markers.iterdir()) == ["done-0", "started-0"]
    finally:
        first.kill()
        if second is not None:
            second.kill()
        engine.stop()
