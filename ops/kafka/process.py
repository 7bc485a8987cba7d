"""The Kafka-specific processes: formatting a node's KRaft storage, and starting one Kafka JVM.

Watching and stopping them by pid, from any process, is `ops.process` (pid files hold the kernel's
start time next to the pid, so a reused pid is never signalled).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from ops.kafka.errors import BrokerStartFailed
from ops.kafka.jars import KafkaJars
from ops.kafka.java import JavaRuntime
from ops.process import Child, ChildError, ProcessRef


def format_storage(
    java: JavaRuntime,
    jars: KafkaJars,
    config: Path,
    cluster_id: str,
    jvm_opts: Sequence[str],
    extra_args: Sequence[str] = (),
) -> None:
    """Format one node's KRaft storage; `extra_args` adds e.g. `--add-scram` credentials."""
    argv = [
        str(java.executable),
        *jvm_opts,
        "-cp",
        jars.classpath,
        "kafka.tools.StorageTool",
        "format",
        "--cluster-id",
        cluster_id,
        "--config",
        str(config),
        "--ignore-formatted",
        *extra_args,
    ]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, stdin=subprocess.DEVNULL
    )
    if done.returncode != 0:
        raise BrokerStartFailed(
            f"formatting KRaft storage for {config} failed (exit {done.returncode}):\n"
            f"{done.stdout}{done.stderr}".rstrip()
        )


def spawn(
    java: JavaRuntime,
    jars: KafkaJars,
    config: Path,
    log_file: Path,
    jvm_opts: Sequence[str],
    *,
    die_with_parent: bool,
) -> ProcessRef:
    argv = [str(java.executable), *jvm_opts, "-cp", jars.classpath, "kafka.Kafka", str(config)]
    # Its own session: `headrace kafka up` exits and the broker stays, immune to the terminal's
    # SIGHUP and to Ctrl-C aimed at the launcher. From here on it is known by its pid file.
    child = Child(argv, log_file, detach=True, die_with_parent=die_with_parent, label="broker")
    try:
        ref = child.start()
    except ChildError as exc:
        raise BrokerStartFailed(str(exc)) from None
    child.forget()
    return ref
