"""A local Kafka deployment (one node or a 3-node cluster) rooted in one state directory.

Layout of the state directory:
    deployment.json      what was started: version, cluster id, nodes and their ports, security
    lock                 serialises up/down/start/stop from concurrent processes
    node-N/server.properties, node-N/data/, node-N/server.log, node-N/pid
    security/            only with `secure=True`: CA, keystores, SCRAM users (ops/kafka/security.py)
Everything a later `down`, `status` or `kill-node` needs is on disk, so any process can manage a
deployment another process started.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ops import process as procs
from ops.kafka import process
from ops.kafka import security as sasl_ssl
from ops.kafka.config import NodeSpec, jvm_options, new_cluster_id, render_properties
from ops.kafka.errors import (
    BrokerStartFailed,
    DeploymentConflict,
    NotRunning,
    PortInUse,
)
from ops.kafka.jars import KafkaJars, resolve_jars
from ops.kafka.java import JavaRuntime, find_java
from ops.kafka.locking import file_lock
from ops.kafka.paths import kafka_version
from ops.kafka.ready import wait_ready

DEFAULT_PORT = 9092
READY_TIMEOUT_S = 90.0
STOP_GRACE_S = 30.0
#: Tries of an `up` on free ports it picked itself (`port=None`): the ports are free when picked,
#: and the JVM binds them seconds later, by when another process may have taken one.
FREE_PORT_TRIES = 3


@dataclass(frozen=True)
class Manifest:
    version: str
    cluster_id: str
    nodes: tuple[NodeSpec, ...]
    #: The broker listeners speak SASL_SSL with SCRAM-SHA-512 (see ops/kafka/security.py).
    secure: bool = False

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> NodeSpec:
        for spec in self.nodes:
            if spec.node_id == node_id:
                return spec
        known = ", ".join(str(n.node_id) for n in self.nodes)
        raise NotRunning(f"no node {node_id} in this deployment (nodes: {known})")

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": self.version,
                "cluster_id": self.cluster_id,
                "nodes": [
                    {
                        "node_id": n.node_id,
                        "host": n.host,
                        "broker_port": n.broker_port,
                        "controller_port": n.controller_port,
                    }
                    for n in self.nodes
                ],
                "secure": self.secure,
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        raw = json.loads(text)
        nodes = tuple(
            NodeSpec(
                node_id=int(n["node_id"]),
                broker_port=int(n["broker_port"]),
                controller_port=int(n["controller_port"]),
                host=str(n["host"]),
            )
            for n in raw["nodes"]
        )
        return cls(
            version=str(raw["version"]),
            cluster_id=str(raw["cluster_id"]),
            nodes=nodes,
            secure=bool(raw.get("secure", False)),
        )


@dataclass(frozen=True)
class NodeStatus:
    spec: NodeSpec
    pid: int | None


@dataclass(frozen=True)
class UpResult:
    manifest: Manifest
    already_running: bool
    downloaded: bool
    jars_s: float
    format_s: float
    ready_s: float


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # The JVM binds with SO_REUSEADDR, so a port held only by TIME_WAIT counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def plan_nodes(count: int, port: int | None, host: str = "127.0.0.1") -> tuple[NodeSpec, ...]:
    """Node i: broker port base+2(i-1), controller port one above; `port=None` picks free ports."""
    if port is None:
        ports = procs.free_ports(2 * count, host)
        pairs = [(ports[2 * i], ports[2 * i + 1]) for i in range(count)]
    else:
        pairs = [(port + 2 * i, port + 2 * i + 1) for i in range(count)]
        busy = [p for pair in pairs for p in pair if not _port_free(host, p)]
        if busy:
            raise PortInUse(
                f"port(s) {', '.join(map(str, busy))} on {host} are in use. Stop what holds them "
                "(`headrace kafka status` shows a Headrace broker), pick another `--port`, "
                "or use `--free-port`."
            )
    return tuple(
        NodeSpec(node_id=i + 1, broker_port=b, controller_port=c, host=host)
        for i, (b, c) in enumerate(pairs)
    )


class LocalKafka:
    """Start, inspect and stop the Kafka nodes that live under one state directory."""

    def __init__(
        self,
        state_dir: Path,
        *,
        env: Mapping[str, str] = os.environ,
        log: Callable[[str], None] = lambda _msg: None,
        die_with_parent: bool = False,
    ) -> None:
        self.state_dir = state_dir
        self._env = env
        self._log = log
        self._die_with_parent = die_with_parent
        #: Where each node's log stood when it was last started: what it wrote since is this start's.
        self._log_starts: dict[int, int] = {}

    # -- on-disk state -------------------------------------------------------------------------

    def node_dir(self, node_id: int) -> Path:
        return self.state_dir / f"node-{node_id}"

    def _pidfile(self, node_id: int) -> Path:
        return self.node_dir(node_id) / "pid"

    def _manifest_path(self) -> Path:
        return self.state_dir / "deployment.json"

    def manifest(self) -> Manifest | None:
        try:
            return Manifest.from_json(self._manifest_path().read_text())
        except FileNotFoundError:
            return None

    def security(self) -> sasl_ssl.BrokerSecurity | None:
        """The CA, keystores and client credentials of a secure deployment (None otherwise)."""
        found = self.manifest()
        if found is None or not found.secure:
            return None
        return sasl_ssl.load(self.state_dir / "security")

    def _require_manifest(self) -> Manifest:
        found = self.manifest()
        if found is None:
            raise NotRunning(f"no Kafka deployment in {self.state_dir}; start one with `up`")
        return found

    def _running_ref(self, node_id: int) -> procs.ProcessRef | None:
        ref = procs.read_pidfile(self._pidfile(node_id))
        return ref if ref is not None and procs.is_running(ref) else None

    def status(self) -> list[NodeStatus]:
        found = self.manifest()
        if found is None:
            return []
        result = []
        for spec in found.nodes:
            ref = self._running_ref(spec.node_id)
            result.append(NodeStatus(spec=spec, pid=ref.pid if ref else None))
        return result

    # -- lifecycle -----------------------------------------------------------------------------

    def up(
        self,
        *,
        nodes: int = 1,
        port: int | None = DEFAULT_PORT,
        wipe: bool = False,
        timeout_s: float = READY_TIMEOUT_S,
        secure: bool = False,
    ) -> UpResult:
        """Start the deployment; `secure` makes its listeners SASL_SSL with SCRAM-SHA-512."""
        java = find_java(self._env)
        with file_lock(self.state_dir / "lock"):
            existing = self.manifest()
            running = [s for s in self.status() if s.pid is not None]
            if running and existing is not None:
                requested_port = port is None or existing.nodes[0].broker_port == port
                same = len(existing.nodes) == nodes and existing.secure == secure
                if same and requested_port and not wipe:
                    self._start_missing(java, existing, timeout_s)
                    return UpResult(existing, True, False, 0.0, 0.0, 0.0)
                raise DeploymentConflict(
                    f"a {len(existing.nodes)}-node Kafka already runs from {self.state_dir} at "
                    f"{existing.bootstrap}; stop it first with `headrace kafka down`"
                )
            if wipe:
                self._wipe()
                existing = None
            if existing is not None and len(existing.nodes) != nodes:
                raise DeploymentConflict(
                    f"{self.state_dir} holds data of a {len(existing.nodes)}-node deployment; "
                    f"start with `--wipe` to replace it by a {nodes}-node one"
                )
            if existing is not None and existing.secure != secure:
                # SCRAM users are written when storage is formatted: security cannot change later.
                kind = "SASL_SSL" if existing.secure else "PLAINTEXT"
                raise DeploymentConflict(
                    f"{self.state_dir} holds data of a {kind} deployment; "
                    "start with `--wipe` to change its security"
                )
            t0 = time.monotonic()
            version = existing.version if existing else kafka_version(self._env)
            resolution = resolve_jars(version, java, env=self._env, log=self._log)
            t1 = time.monotonic()
            cluster_id = existing.cluster_id if existing else new_cluster_id()
            self.state_dir.mkdir(parents=True, exist_ok=True)
            if secure:
                sasl_ssl.ensure(self.state_dir / "security", java)
            tries_left = FREE_PORT_TRIES if port is None else 1
            while True:
                tries_left -= 1
                manifest = Manifest(version=version, cluster_id=cluster_id, nodes=plan_nodes(nodes, port),
                                    secure=secure)
                self._manifest_path().write_text(manifest.to_json() + "\n")
                # Each node's config names the ports; its storage, formatted once, does not.
                self._format(java, resolution.jars, manifest)
                t2 = time.monotonic()
                try:
                    for spec in manifest.nodes:
                        self._spawn(java, resolution.jars, spec)
                    ready_s = self._await(manifest, manifest.nodes, timeout_s)
                except PortInUse as exc:
                    if not tries_left:
                        raise
                    self._log(f"{exc.args[0].splitlines()[0]}; trying other free ports")
                    continue
                return UpResult(manifest, False, resolution.downloaded, t1 - t0, t2 - t1, ready_s)

    def down(self, *, wipe: bool = False, grace_s: float = STOP_GRACE_S) -> list[int]:
        """Stop every node (SIGTERM, then SIGKILL after `grace_s`); return the pids stopped."""
        with file_lock(self.state_dir / "lock"):
            stopped = self._stop(self._all_ids(), grace_s=grace_s)
            if wipe:
                self._wipe()
            return stopped

    def stop_node(self, node_id: int, grace_s: float = STOP_GRACE_S) -> list[int]:
        with file_lock(self.state_dir / "lock"):
            self._require_manifest().node(node_id)
            return self._stop([node_id], grace_s=grace_s)

    def kill_node(self, node_id: int) -> int:
        """SIGKILL one node, as a crash would; return its pid."""
        with file_lock(self.state_dir / "lock"):
            self._require_manifest().node(node_id)
            ref = self._running_ref(node_id)
            if ref is None:
                raise NotRunning(f"node {node_id} is not running")
            procs.kill(ref)
            self._pidfile(node_id).unlink(missing_ok=True)
            return ref.pid

    def start_node(self, node_id: int, timeout_s: float = READY_TIMEOUT_S) -> float:
        return self.start_nodes([node_id], timeout_s)

    def start_nodes(self, node_ids: Sequence[int], timeout_s: float = READY_TIMEOUT_S) -> float:
        """Start stopped nodes side by side, on their old ports, and wait for all of them.

        Together, not in turn: with every node of a cluster down, one node alone has no quorum."""
        java = find_java(self._env)
        with file_lock(self.state_dir / "lock"):
            manifest = self._require_manifest()
            specs = [manifest.node(i) for i in node_ids if self._running_ref(i) is None]
            if not specs:
                return 0.0
            jars = resolve_jars(manifest.version, java, env=self._env, log=self._log).jars
            for spec in specs:
                self._spawn(java, jars, spec)
            return self._await(manifest, specs, timeout_s)

    # -- internals -----------------------------------------------------------------------------

    def _all_ids(self) -> list[int]:
        found = self.manifest()
        return [n.node_id for n in found.nodes] if found else []

    def _format(self, java: JavaRuntime, jars: KafkaJars, manifest: Manifest) -> None:
        todo = []
        security = self.security()
        for spec in manifest.nodes:
            node_dir = self.node_dir(spec.node_id)
            data = node_dir / "data"
            data.mkdir(parents=True, exist_ok=True)
            config = node_dir / "server.properties"
            config.write_text(render_properties(spec, manifest.nodes, data, security))
            if security is not None:
                config.chmod(0o600)  # it holds the broker's SCRAM password and keystore password
            if not (data / "meta.properties").exists():
                todo.append((config, node_dir))
        if not todo:
            return
        # One short-lived JVM per node; run them side by side to keep cluster start fast.
        with ThreadPoolExecutor(max_workers=len(todo)) as pool:
            futures = [
                pool.submit(
                    process.format_storage,
                    java,
                    jars,
                    config,
                    manifest.cluster_id,
                    # The storage tool needs little memory; a small heap starts faster.
                    jvm_options(node_dir, self._env, heap="-Xms64m -Xmx256m"),
                    security.scram_arguments() if security is not None else (),
                )
                for config, node_dir in todo
            ]
            for future in futures:
                future.result()

    def _spawn(self, java: JavaRuntime, jars: KafkaJars, spec: NodeSpec) -> None:
        node_dir = self.node_dir(spec.node_id)
        log_file = node_dir / "server.log"
        self._log_starts[spec.node_id] = log_file.stat().st_size if log_file.exists() else 0
        ref = process.spawn(
            java,
            jars,
            node_dir / "server.properties",
            node_dir / "server.log",
            jvm_options(node_dir, self._env),
            die_with_parent=self._die_with_parent,
        )
        procs.write_pidfile(self._pidfile(spec.node_id), ref)

    def _check_alive(self, specs: Sequence[NodeSpec]) -> None:
        for spec in specs:
            if self._running_ref(spec.node_id) is None:
                log_file = self.node_dir(spec.node_id) / "server.log"
                # All this start wrote is searched: the bind error comes long before the tail's
                # shutdown lines.
                written = procs.log_since(log_file, self._log_starts.get(spec.node_id, 0)) or ""
                tail = "\n".join(written.splitlines()[-30:]) or "(no log)"
                if "Address already in use" in written:
                    raise PortInUse(
                        f"node {spec.node_id} could not bind {spec.bootstrap} or its controller "
                        f"port {spec.controller_port}: address already in use.\n{tail}"
                    )
                raise BrokerStartFailed(
                    f"Kafka node {spec.node_id} exited during start; last lines of {log_file}:\n"
                    f"{tail}"
                )

    def _await(self, manifest: Manifest, specs: Sequence[NodeSpec], timeout_s: float) -> float:
        try:
            security = self.security() if manifest.secure else None
            return wait_ready(
                [s.bootstrap for s in specs],
                {s.node_id for s in specs},
                timeout_s,
                check_alive=lambda: self._check_alive(specs),
                security=security.client_kwargs() if security is not None else None,
            )
        except (TimeoutError, BrokerStartFailed, PortInUse) as exc:
            # Leave nothing half-started behind a failed `up` (one node of three that could not
            # bind its port left the other two running, until PortInUse was caught here too).
            self._stop([s.node_id for s in specs], grace_s=5.0)
            if isinstance(exc, (BrokerStartFailed, PortInUse)):
                raise
            raise BrokerStartFailed(
                f"{exc}\nlogs: {', '.join(str(self.node_dir(s.node_id)) for s in specs)}"
            ) from exc

    def _start_missing(self, java: JavaRuntime, manifest: Manifest, timeout_s: float) -> None:
        missing = [s for s in manifest.nodes if self._running_ref(s.node_id) is None]
        if not missing:
            return
        jars = resolve_jars(manifest.version, java, env=self._env, log=self._log).jars
        for spec in missing:
            self._spawn(java, jars, spec)
        self._await(manifest, missing, timeout_s)

    def _stop(self, node_ids: Sequence[int], *, grace_s: float) -> list[int]:
        refs = [(i, self._running_ref(i)) for i in node_ids]
        live = [(i, ref) for i, ref in refs if ref is not None]
        # Signal all first, then wait: nodes of one cluster shut down in parallel, not in turn.
        with ThreadPoolExecutor(max_workers=max(1, len(live))) as pool:
            list(pool.map(lambda item: procs.terminate(item[1], grace_s), live))
        for node_id in node_ids:
            self._pidfile(node_id).unlink(missing_ok=True)
        return [ref.pid for _, ref in live]

    def _wipe(self) -> None:
        for child in self.state_dir.glob("node-*"):
            shutil.rmtree(child, ignore_errors=True)
        shutil.rmtree(self.state_dir / "security", ignore_errors=True)
        self._manifest_path().unlink(missing_ok=True)
