"""Broker properties and version parsing: the settings the fault tests depend on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ops.kafka import LocalKafka, deployment
from ops.kafka.config import NodeSpec, new_cluster_id, render_properties
from ops.kafka.deployment import Manifest, plan_nodes
from ops.kafka.errors import PortInUse
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


def test_fixed_ports_follow_the_documented_layout(monkeypatch):
    # Only the arithmetic: the port check is stubbed, since any fixed port may be some client's
    # ephemeral port at the moment (47110 was, once, in a CI-like run).
    monkeypatch.setattr(deployment, "_port_free", lambda host, port: True)
    nodes = plan_nodes(3, port=47110)
    assert [(n.broker_port, n.controller_port) for n in nodes] == [
        (47110, 47111),
        (47112, 47113),
        (47114, 47115),
    ]


def test_a_busy_fixed_port_is_refused_clearly():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        # The controller port (port + 1) is checked too; on a busy machine some other client may
        # hold it at that moment (a CI run saw "35375, 35376"), so it may be named as well.
        with pytest.raises(
            PortInUse, match=f"port\\(s\\) {port}(, {port + 1})? on 127.0.0.1 are in use"
        ):
            plan_nodes(1, port=port)


def test_free_ports_taken_before_the_broker_binds_them_are_replaced(tmp_path: Path, java_runtime,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """`up` on ports it picked (`port=None`): one taken between the pick and the JVM's bind (here
    by this test, on the first pick) fails that try, and the next try picks others."""
    real = deployment.procs.free_ports
    picks: list[list[int]] = []
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]

        def first_pick_taken(count: int, host: str = "127.0.0.1") -> list[int]:
            ports = real(count, host)
            picks.append([taken, *ports[1:]] if not picks else ports)
            return picks[-1]

        monkeypatch.setattr(deployment.procs, "free_ports", first_pick_taken)
        local = LocalKafka(tmp_path / "kafka", die_with_parent=True)
        try:
            result = local.up(nodes=1, port=None)
            assert len(picks) == 2 and picks[0][0] == taken
            assert result.manifest.nodes[0].broker_port == picks[1][0] != taken
            assert "Address already in use" in (local.node_dir(1) / "server.log").read_text()  # the first try's
            assert [s.pid is not None for s in local.status()] == [True]
        finally:
            local.down(wipe=True, grace_s=10.0)


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


def test_unclean_leader_election_is_off_explicitly():
    nodes = plan_nodes(3, port=None)
    props = _props(render_properties(nodes[0], nodes, Path("/data")))
    assert props["unclean.leader.election.enable"] == "false"


def _security(tmp_path: Path):
    from ops.kafka.security import BrokerSecurity

    return BrokerSecurity(directory=tmp_path, client_password="client-secret", broker_password="broker-secret",
                          store_password="store-secret", salt="c2FsdHNhbHRzYWx0")


def test_sasl_ssl_turns_the_broker_listener_and_inter_broker_traffic_to_scram_over_tls(tmp_path):
    node = NodeSpec(node_id=1, broker_port=9092, controller_port=9093)
    props = _props(render_properties(node, [node], Path("/data"), _security(tmp_path)))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9092"
    assert props["inter.broker.listener.name"] == "SASL_SSL"
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["sasl.mechanism.inter.broker.protocol"] == "SCRAM-SHA-512"
    assert 'username="headrace-broker" password="broker-secret"' in props[
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    assert props["ssl.keystore.location"] == str(tmp_path / "broker.p12")


def test_scram_users_are_formatted_as_salted_credentials_not_passwords(tmp_path):
    args = _security(tmp_path).scram_arguments()
    assert args[0::2] == ["--add-scram", "--add-scram"]
    assert args[1].startswith("SCRAM-SHA-512=[name=headrace-broker,iterations=4096,salt=")
    assert args[3].startswith("SCRAM-SHA-512=[name=headrace,")
    assert not any("secret" in arg for arg in args)


def test_client_settings_of_a_secure_deployment(tmp_path):
    from engine.settings import Settings

    settings = Settings.from_env(_security(tmp_path).client_env())
    assert settings.security_protocol == "SASL_SSL"
    assert settings.sasl_mechanism == "SCRAM-SHA-512"
    assert settings.sasl_username == "headrace"
    assert settings.sasl_password == "client-secret"
    assert settings.ssl_cafile == str(tmp_path / "ca.pem")
    assert "client-secret" not in repr(settings)


def test_manifest_remembers_security():
    manifest = Manifest("4.1.2", new_cluster_id(), plan_nodes(1, port=None), secure=True)
    assert Manifest.from_json(manifest.to_json()).secure is True
    legacy = manifest.to_json().replace('"secure": true', '"ignored": 1')
    assert Manifest.from_json(legacy).secure is False
