"""A real Apache Kafka for development and tests, assembled from Maven Central jars.

Import cost matters (the CLI imports this on every start), so only light modules load here.
"""

from __future__ import annotations

from ops.kafka.deployment import LocalKafka, Manifest, UpResult
from ops.kafka.errors import KafkaOpsError
from ops.kafka.select import BootstrapChoice, docker_engine_answers, select_bootstrap

__all__ = [
    "BootstrapChoice",
    "KafkaOpsError",
    "LocalKafka",
    "Manifest",
    "UpResult",
    "docker_engine_answers",
    "select_bootstrap",
]
