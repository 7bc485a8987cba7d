"""Kafka launcher failures, each with a message that says what to do next."""

from __future__ import annotations

from ops.errors import OpsError


class KafkaOpsError(OpsError):
    """Root of the local-Kafka errors."""


class ToolMissing(KafkaOpsError):
    """A required external tool (Java 17+, Maven) is absent or too old."""


class JarResolutionFailed(KafkaOpsError):
    """Maven could not resolve the Kafka jars."""


class BrokerStartFailed(KafkaOpsError):
    """A broker process exited or never became ready."""


class PortInUse(KafkaOpsError):
    """A requested listener port is already bound by another process."""


class NotRunning(KafkaOpsError):
    """The requested node or deployment is not running."""

    exit_code = 3


class DeploymentConflict(KafkaOpsError):
    """A different deployment already runs from the same state directory."""
