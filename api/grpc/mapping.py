"""Our values in durabletask's protocol: an `InstanceState` as a `WorkflowState`, and any error as a
gRPC status (the one mapping of errors to gRPC, as `api.errors` is the one mapping to HTTP).

The messages are the REST API's (the engine's errors' own text), so one failure reads the same on
both front ends. The codes follow gRPC's guide (grpc.io/docs/guides/status-codes): the Go sidecar
(durabletask-go's `backend/executor.go`, which daprd serves) returns most backend errors as they
come, which grpc-go sends as UNKNOWN; a precise code costs the SDKs nothing (the Python SDK's
`get_workflow_state` and the waits branch on the message "no such instance exists" and on
FAILED_PRECONDITION/UNAVAILABLE, see dapr/python-sdk `ext/dapr-ext-workflow`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

import grpc
from aiokafka.errors import KafkaError
from google.protobuf import timestamp_pb2, wrappers_pb2

from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import (
    DecodeError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
    SerializationError,
)

from ..errors import ApiError, BackendError
from .protos import orchestration_pb2 as opb

__all__ = ["NOT_FOUND_MESSAGE", "GrpcFailure", "classify", "failure_details", "workflow_state"]

log = logging.getLogger(__name__)

#: durabletask-go's `api.ErrInstanceNotFound`; the Python SDK's `get_workflow_state` looks for it.
NOT_FOUND_MESSAGE = "no such instance exists"

_STATUS: dict[RuntimeStatus, int] = {
    RuntimeStatus.RUNNING: opb.ORCHESTRATION_STATUS_RUNNING,
    RuntimeStatus.COMPLETED: opb.ORCHESTRATION_STATUS_COMPLETED,
    RuntimeStatus.CONTINUED_AS_NEW: opb.ORCHESTRATION_STATUS_CONTINUED_AS_NEW,
    RuntimeStatus.FAILED: opb.ORCHESTRATION_STATUS_FAILED,
    RuntimeStatus.CANCELED: opb.ORCHESTRATION_STATUS_CANCELED,
    RuntimeStatus.TERMINATED: opb.ORCHESTRATION_STATUS_TERMINATED,
    RuntimeStatus.PENDING: opb.ORCHESTRATION_STATUS_PENDING,
    RuntimeStatus.SUSPENDED: opb.ORCHESTRATION_STATUS_SUSPENDED,
    RuntimeStatus.STALLED: opb.ORCHESTRATION_STATUS_STALLED,
}


def _text(value: str | None) -> wrappers_pb2.StringValue | None:
    return None if value is None else wrappers_pb2.StringValue(value=value)


def _time(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def failure_details(failure: FailureDetails) -> opb.TaskFailureDetails:
    return opb.TaskFailureDetails(
        errorType=failure.error_type,
        errorMessage=failure.message,
        stackTrace=_text(failure.stack_trace),
        innerFailure=None if failure.inner is None else failure_details(failure.inner),
        isNonRetriable=failure.non_retriable,
    )


def workflow_state(state: InstanceState, *, payloads: bool) -> opb.WorkflowState:
    """`state` as durabletask's `WorkflowState`; without `payloads` (the request's
    `getInputsAndOutputs` false) input, output and custom status are left out, as daprd does."""
    return opb.WorkflowState(
        instanceId=state.instance_id,
        name=state.name,
        workflowStatus=_STATUS[state.shown_status],  # type: ignore[arg-type]  # the enum's values are ints
        scheduledStartTimestamp=_time(state.scheduled_start),
        createdTimestamp=_time(state.created_at),
        lastUpdatedTimestamp=_time(state.last_updated_at),
        completedTimestamp=_time(state.completed_at),
        input=_text(state.input) if payloads else None,
        output=_text(state.output) if payloads else None,
        customStatus=_text(state.custom_status) if payloads else None,
        failureDetails=None if state.failure is None else failure_details(state.failure),
        executionId=_text(state.execution_id or None),
        parentInstanceId=None if state.parent is None else _text(state.parent.instance_id),
    )


@dataclass(frozen=True, slots=True)
class GrpcFailure:
    code: grpc.StatusCode
    message: str


def classify(exc: BaseException) -> GrpcFailure:
    """The gRPC status an error is answered with."""
    if isinstance(exc, InstanceNotFoundError):
        return GrpcFailure(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, InstanceExistsError):
        return GrpcFailure(grpc.StatusCode.ALREADY_EXISTS, str(exc))
    if isinstance(exc, InstanceNotTerminalError):
        return GrpcFailure(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    if isinstance(exc, PayloadTooLargeError):
        return GrpcFailure(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, BackendError | KafkaError):
        # Kafka away or slow: the SDKs' waits retry UNAVAILABLE, and so may any caller.
        return GrpcFailure(grpc.StatusCode.UNAVAILABLE, getattr(exc, "message", None) or str(exc))
    if isinstance(exc, ApiError):
        return GrpcFailure(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
    # IdError is a ValueError: a malformed ID, as the REST API's 400.
    if isinstance(exc, DecodeError | SerializationError | ValueError):
        return GrpcFailure(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    log.error("unexpected error in a gRPC call", exc_info=exc)
    return GrpcFailure(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}")
