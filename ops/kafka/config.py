"""Rendering broker properties and JVM options for a local KRaft node.

Every node is a combined broker+controller. One node makes a development broker; three make a
fault-testing cluster with replication factor 3 and min.insync.replicas=2.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ops.kafka.security import BrokerSecurity

LOG4J2_CONFIG = Path(__file__).with_name("log4j2.properties")

# Sized for 2-core, 24 GiB machines: three nodes fit in ~3 GiB of heap, and the log cleaner's
# dedupe buffer (128 MiB by default, allocated at start) stays well inside the heap.
DEFAULT_HEAP_OPTS = "-Xms256m -Xmx1g"
_GC_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:+ExitOnOutOfMemoryError",
    "-XX:-UsePerfData",
    "-Djava.awt.headless=true",
)


@dataclass(frozen=True)
class NodeSpec:
    node_id: int
    broker_port: int
    controller_port: int
    host: str = "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.broker_port}"

    @property
    def voter(self) -> str:
        return f"{self.node_id}@{self.host}:{self.controller_port}"


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's Uuid form)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        # Kafka refuses ids that start with '-' because its CLI would read them as flags.
        if not text.startswith("-"):
            return text


def render_properties(
    node: NodeSpec,
    voters: Sequence[NodeSpec],
    log_dir: Path,
    security: BrokerSecurity | None = None,
) -> str:
    """`security` turns the broker listener into SASL_SSL (SCRAM-SHA-512), inter-broker included."""
    size = len(voters)
    listener = "PLAINTEXT" if security is None else "SASL_SSL"
    replication = min(size, 3)
    min_isr = 2 if size >= 3 else 1
    props: dict[str, str | int] = {
        "process.roles": "broker,controller",
        "node.id": node.node_id,
        # Static voters: the quorum is fixed in config, so formatting needs no --standalone and a
        # restart may move a node to new ports.
        "controller.quorum.voters": ",".join(v.voter for v in voters),
        "listeners": (
            f"{listener}://{node.host}:{node.broker_port},"
            f"CONTROLLER://{node.host}:{node.controller_port}"
        ),
        "advertised.listeners": f"{listener}://{node.bootstrap}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        "listener.security.protocol.map": f"CONTROLLER:PLAINTEXT,{listener}:{listener}",
        "log.dirs": str(log_dir),
        "num.partitions": 1,
        "default.replication.factor": replication,
        "min.insync.replicas": min_isr,
        # The default, stated because the fault tests rely on it: a replica that was not in sync
        # never becomes leader, so an acks=all write is never lost to a stale leader (KIP-966).
        "unclean.leader.election.enable": "false",
        "offsets.topic.replication.factor": replication,
        # 50 partitions (the default) make the first consumer-group join slow on a small box.
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 10,
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min_isr,
        "group.initial.rebalance.delay.ms": 0,
        # Faust changelogs are compacted, so the cleaner runs; its buffer is allocated on the heap.
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.cleaner.threads": 1,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "background.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        # Fail over within seconds when a node is killed: drop a dead follower from the ISR after
        # 6 s (default 30 s) so acks=all producers resume quickly.
        "replica.lag.time.max.ms": 6000,
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 6000,
        "auto.create.topics.enable": "true",
    }
    if security is not None:
        props.update(security.broker_properties())
    lines = ["# Written by headrace (ops/kafka/config.py); regenerated on every start."]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def jvm_options(
    node_dir: Path, env: Mapping[str, str] = os.environ, *, heap: str | None = None
) -> list[str]:
    if heap is None:
        heap = env.get("HEADRACE_KAFKA_HEAP_OPTS", "").strip() or DEFAULT_HEAP_OPTS
    return [
        *heap.split(),
        *_GC_OPTS,
        f"-Dlog4j2.configurationFile={LOG4J2_CONFIG}",
        f"-Dkafka.logs.dir={node_dir}",
    ]
