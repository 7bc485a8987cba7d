"""The error hierarchy of the `engine` package: one root, one sub-root per layer.

Callers branch on the class (and on `retriable` where it is set), never on message text.
"""

from __future__ import annotations

__all__ = [
    "ChildrenRunningError",
    "DecodeError",
    "GenerationFenced",
    "HeadraceError",
    "InstanceError",
    "InstanceExistsError",
    "InstanceNotFoundError",
    "InstanceNotTerminalError",
    "InvalidAnswerError",
    "InvalidTransitionError",
    "NonDeterminismError",
    "PayloadDecodeError",
    "PayloadTooLargeError",
    "PoisonedInputError",
    "ReadStalledError",
    "RegistrationError",
    "SerializationError",
    "UnknownActivityError",
    "UnknownWorkflowError",
    "WorkflowError",
    "children_running_message",
]


class HeadraceError(Exception):
    """Root of every error the engine raises on purpose."""

    #: Whether trying the same operation again may succeed.
    retriable: bool = False


class WorkflowError(HeadraceError):
    """Something about a workflow's execution or its history is wrong."""


class NonDeterminismError(WorkflowError):
    """Workflow code no longer matches the history it is replayed against."""


class InvalidTransitionError(WorkflowError):
    """An event cannot be applied to an instance in its current state."""


class InvalidAnswerError(WorkflowError):
    """A connected app answered a workflow turn with actions the engine cannot record
    (`engine.core.remote.check_answer`)."""


class DecodeError(HeadraceError):
    """A message on the wire is not valid JSON or does not match its schema."""


class PayloadDecodeError(DecodeError):
    """A payload (an input, result or event body) is not the JSON text it must be."""


class PoisonedInputError(HeadraceError):
    """Applying one input (a record or a timer firing) failed in a way the engine did not foresee.

    The partition is rebuilt from its committed state and the input is set aside with `reason`
    (dead-lettered, its instance failed) the next time it comes round, so one input can never stop
    a partition.
    """

    retriable = True

    def __init__(self, source: object, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ReadStalledError(HeadraceError):
    """A read of committed records to their end stopped making progress before it got there (the
    broker stopped answering, or is too slow to): what was read is only a part, and nothing may be
    built on it (`engine.read.to_end`)."""

    retriable = True


class GenerationFenced(HeadraceError):
    """The group coordinator refused a transaction's offsets: the consumer group moved on without
    this engine (or is rebalancing), so the partitions the transaction wrote may be another
    engine's now. The transaction was aborted (`engine.runtime.group_fencing`)."""


class SerializationError(HeadraceError):
    """A value given by user code cannot be encoded as JSON."""


class PayloadTooLargeError(HeadraceError):
    """A payload is larger than the configured limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class RegistrationError(HeadraceError):
    """A workflow or activity is registered twice or under an invalid name."""


class UnknownWorkflowError(WorkflowError):
    """No workflow is registered under the requested name."""


class UnknownActivityError(WorkflowError):
    """No activity is registered under the requested name."""


class InstanceError(WorkflowError):
    """A request names an instance in a state that does not allow it."""

    def __init__(self, instance_id: str, message: str) -> None:
        super().__init__(message)
        self.instance_id = instance_id


class InstanceNotFoundError(InstanceError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, f"unable to find workflow with the provided instance ID: {instance_id}")


class InstanceExistsError(InstanceError):
    def __init__(self, instance_id: str) -> None:
        super().__init__(instance_id, f"an active workflow with ID '{instance_id}' already exists")


class ChildrenRunningError(InstanceExistsError):
    """A start over a finished instance whose child workflow still runs (daprd refuses it too)."""

    def __init__(self, instance_id: str, child_id: str | None) -> None:
        InstanceError.__init__(self, instance_id, children_running_message(instance_id, child_id))
        self.child_id = child_id


def children_running_message(instance_id: str, child_id: str | None) -> str:
    """daprd's words (`createIfCompleted`, durabletask-go's `ErrNotCompleted`)."""
    child = f"child workflow '{child_id}'" if child_id is not None else "a child workflow"
    return f"cannot recreate workflow with ID '{instance_id}': {child}: orchestration has not yet completed"


class InstanceNotTerminalError(InstanceError):
    def __init__(self, instance_id: str, status: str) -> None:
        super().__init__(
            instance_id,
            f"workflow '{instance_id}' is {status}; only COMPLETED, FAILED or TERMINATED workflows can be purged",
        )
