"""Our states and errors in durabletask's protocol (no Kafka)."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc

from api.errors import BackendError, WorkflowNameMissing
from api.grpc.mapping import classify, workflow_state
from api.grpc.protos import orchestration_pb2 as opb
from engine.core.ids import IdError
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import (
    ChildrenRunningError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)

CREATED = datetime(2026, 12, 4, 12, 0, 0, 250000, tzinfo=UTC)


def test_every_status_has_the_protocol_value_of_its_name() -> None:
    for status in RuntimeStatus:
        state = InstanceState(instance_id="i", status=status)
        value = workflow_state(state, payloads=False).workflowStatus
        assert opb.OrchestrationStatus.Name(value) == f"ORCHESTRATION_STATUS_{status.value}"


def test_failed_state_with_nested_failure_and_payloads() -> None:
    inner = FailureDetails(error_type="KeyError", message="'k'")
    state = InstanceState(
        instance_id="i", name="wf", status=RuntimeStatus.FAILED, input='{"a": 1}', output=None,
        custom_status="half", created_at=CREATED, last_updated_at=CREATED, execution_id="e1",
        failure=FailureDetails(error_type="ValueError", message="bad", stack_trace="tb", inner=inner,
                               non_retriable=True),
    )
    full = workflow_state(state, payloads=True)
    assert full.name == "wf"
    assert full.input.value == '{"a": 1}'
    assert not full.HasField("output")
    assert full.customStatus.value == "half"
    assert full.executionId.value == "e1"
    assert full.createdTimestamp.ToDatetime(tzinfo=UTC) == CREATED
    assert not full.HasField("completedTimestamp")
    assert full.failureDetails.errorType == "ValueError"
    assert full.failureDetails.stackTrace.value == "tb"
    assert full.failureDetails.isNonRetriable
    assert full.failureDetails.innerFailure.errorMessage == "'k'"
    bare = workflow_state(state, payloads=False)
    assert not bare.HasField("input")
    assert not bare.HasField("customStatus")
    assert bare.failureDetails.errorMessage == "bad"  # failure details are not a payload


def test_errors_map_to_codes_with_the_rest_api_messages() -> None:
    cases = [
        (InstanceNotFoundError("x"), grpc.StatusCode.NOT_FOUND),
        (InstanceExistsError("x"), grpc.StatusCode.ALREADY_EXISTS),
        (ChildrenRunningError("x", "x:0001"), grpc.StatusCode.ALREADY_EXISTS),
        (InstanceNotTerminalError("x", "RUNNING"), grpc.StatusCode.FAILED_PRECONDITION),
        (PayloadTooLargeError("workflow input", 10, 5), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (IdError("instance ID is empty"), grpc.StatusCode.INVALID_ARGUMENT),
        (WorkflowNameMissing(), grpc.StatusCode.INVALID_ARGUMENT),
        (BackendError("Kafka is unreachable"), grpc.StatusCode.UNAVAILABLE),
    ]
    for error, code in cases:
        failure = classify(error)
        assert failure.code is code, error
        assert failure.message == str(error)
