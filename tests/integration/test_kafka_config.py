"""Broker properties and version parsing: the settings the fault tests depend on."""

from __future__ import annotations

from pathlib import Path

import pytest

from ops.kafka.config import NodeSpec, new_cluster_id, render_properties
from ops.kafka.deployment import Manifest, plan_nodes
from ops.kafka.java import parse_java_major


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return dict(pairs)


def test_three_node_cluster_replicates_and_requires_two_in_sync():
    nodes = plan_nodes(3, port=None)
    props = _props(render_properties(nodes[1], nodes, Path("/data")))
    assert props["node.id"] == "2"
    assert props["process.roles"] == "broker,controller"
    assert props["controller.quorum.voters"] == ",".join(n.voter for n in nodes)
    assert props["default.replication.factor"] == "3"
    assert props["min.insync.replicas"] == "2"
    assert props["offsets.topic.replication.factor"] == "3"
    assert props["transaction.state.log.min.isr"] == "2"
    assert int(props["log.cleaner.dedupe.buffer.size"]) <= 32 * 1024 * 1024
    assert len({p for n in nodes for p in (n.broker_port, n.controller_port)}) == 6


def test_single_node_settings_fit_one_broker():
    node = NodeSpec(node_id=1, broker_port=9092, controller_port=9093)
    props = _props(render_properties(node, [node], Path("/data")))
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_fixed_ports_follow_the_documented_layout():
    # Only checks the arithmetic; ports far from common services, unlikely to be bound here.
    nodes = plan_nodes(3, port=47110)
    assert [(n.broker_port, n.controller_port) for n in nodes] == [
        (47110, 47111),
        (47112, 47113),
        (47114, 47115),
    ]


def test_manifest_roundtrips_through_json():
    manifest = Manifest("4.1.2", new_cluster_id(), plan_nodes(3, port=None))
    assert Manifest.from_json(manifest.to_json()) == manifest
    assert manifest.bootstrap.count(",") == 2


def test_cluster_ids_have_kafka_uuid_shape():
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


@pytest.mark.parametrize(
    ("text", "major"), [("17.0.15", 17), ("1.8.0_392", 8), ("25", 25), ("21-ea", 21)]
)
def test_java_major_version(text, major):
    assert parse_java_major(text) == major
