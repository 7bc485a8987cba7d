"""The data path over SASL_SSL: engine, worker and API against a broker that requires SCRAM-SHA-512
over TLS, a workflow end to end through the REST API, and no secret in any log."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ops.chaos.supervisor import Supervisor, client_settings
from ops.kafka import LocalKafka
from ops.kafka.java import JavaRuntime

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory, java_runtime: JavaRuntime) -> Iterator[LocalKafka]:
    local = LocalKafka(tmp_path_factory.mktemp("secure") / "kafka", die_with_parent=True)
    local.up(nodes=1, port=None, secure=True)
    try:
        yield local
    finally:
        local.down(wipe=True, grace_s=15.0)


async def _refused(kafka: LocalKafka, **override: object) -> bool:
    security = kafka.security()
    manifest = kafka.manifest()
    assert security is not None and manifest is not None
    producer = AIOKafkaProducer(
        bootstrap_servers=manifest.bootstrap, **{**security.client_kwargs(), **override}, request_timeout_ms=5000
    )
    try:
        await asyncio.wait_for(producer.start(), 20)
    except (KafkaError, OSError, TimeoutError):
        return True
    finally:
        await producer.stop()
    return False


# A producer whose connection the broker refuses mid-handshake can leave its socket transport to the
# garbage collector (aiokafka closes the connection object; asyncio warns when it collects the
# transport, whenever that is). Each refusal runs in a process of its own, so that socket dies with
# it instead of warning in whichever test of this process runs when the collector gets to it.
_REFUSAL = """
import asyncio, json, sys
from pathlib import Path
from ops.kafka import LocalKafka
from tests.chaos.test_security import _refused
refused = asyncio.run(_refused(LocalKafka(Path(sys.argv[1])), **json.loads(sys.argv[2])))
sys.exit(0 if refused else 3)
"""


def _with_root_on_path() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def _refused_elsewhere(kafka: LocalKafka, **override: object) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", _REFUSAL, str(kafka.state_dir), json.dumps(override)],
        cwd=ROOT, env=_with_root_on_path(),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode in (0, 3), done.stderr[-2000:]
    return done.returncode == 0


def test_wrong_password_and_plaintext_are_refused(secure_kafka: LocalKafka):
    assert _refused_elsewhere(secure_kafka, sasl_plain_password="not-the-password")
    assert _refused_elsewhere(secure_kafka, security_protocol="PLAINTEXT", ssl_context=None)


def test_stack_runs_over_sasl_ssl_and_no_secret_reaches_a_log(secure_kafka: LocalKafka, tmp_path: Path):
    security = secure_kafka.security()
    assert security is not None
    settings = client_settings(secure_kafka, topic_prefix=f"secure.{uuid.uuid4().hex[:6]}.", partitions=2)
    assert settings.security_protocol == "SASL_SSL"
    sup = Supervisor.create(secure_kafka, settings, tmp_path / "logs", tmp_path / "marks", engines=1, workers=1, apis=1)
    try:
        asyncio.run(sup.start())
        (api,) = sup.role("api")
        with httpx.Client(base_url=api.url, timeout=30) as http:
            started = http.post(
                "/v1.0/workflows/dapr/chaos_chain/start", params={"instanceID": "secure-1"}, json={"x": 40, "n": 2}
            )
            assert started.status_code == 202, started.text
            deadline = time.monotonic() + 90
            while (body := http.get("/v1.0/workflows/dapr/secure-1").json())["runtimeStatus"] != "COMPLETED":
                assert time.monotonic() < deadline, body
                time.sleep(0.2)
        assert body["properties"]["dapr.workflow.output"] == "42"
    finally:
        sup.stop_all()
    secrets = {
        "client": security.client_password,
        "broker": security.broker_password,
        "keystore": security.store_password,
    }
    logs = [*sorted((tmp_path / "logs").glob("*.log")), secure_kafka.node_dir(1) / "server.log"]
    assert len(logs) == 4
    for log in logs:
        text = log.read_text(errors="replace")
        assert text, log
        leaked = [name for name, secret in secrets.items() if secret in text]
        assert leaked == [], f"{log.name} contains the {leaked} password"
