"""Request validation with daprd's rules (`validateInstanceID` in dapr/dapr pkg/api/universal)."""

from __future__ import annotations

import orjson

from .errors import (
    BadRequest,
    ComponentNotFound,
    EventNameMissing,
    InstanceIdInvalid,
    InstanceIdMissing,
    InstanceIdTooLong,
    WorkflowNameMissing,
)

__all__ = [
    "COMPONENT",
    "MAX_INSTANCE_ID_LENGTH",
    "check_component",
    "check_event_name",
    "check_instance_id",
    "check_new_instance_id",
    "check_workflow_name",
    "payload_from_body",
]

#: The one workflow component, built in as in Dapr.
COMPONENT = "dapr"
MAX_INSTANCE_ID_LENGTH = 64


def check_component(component: str) -> None:
    if component != COMPONENT:
        raise ComponentNotFound(component)


def check_instance_id(instance_id: str) -> None:
    """Any operation on an existing instance only needs a non-empty ID (as in daprd)."""
    if not instance_id:
        raise InstanceIdMissing()


def _allowed(char: str) -> bool:
    # Go's unicode.IsLetter is category L*, IsDigit is Nd: str.isalpha and str.isdecimal.
    return char.isalpha() or char.isdecimal() or char in "_-"


def check_new_instance_id(instance_id: str) -> None:
    """Rules for an ID that creates an instance: at most 64, only letters, digits, `_`, `-`.

    The length is counted in UTF-8 bytes, as daprd's `len(instanceID)` does, so an ID accepted
    here is accepted by Dapr too (and fits state stores with short key limits).
    """
    check_instance_id(instance_id)
    if len(instance_id.encode()) > MAX_INSTANCE_ID_LENGTH:
        raise InstanceIdTooLong(MAX_INSTANCE_ID_LENGTH)
    if not all(_allowed(c) for c in instance_id):
        raise InstanceIdInvalid(instance_id)


def check_workflow_name(name: str) -> None:
    if not name:
        raise WorkflowNameMissing()


def check_event_name(name: str) -> None:
    if not name:
        raise EventNameMissing()


def payload_from_body(body: bytes) -> str | None:
    """A request body as the JSON text the engine carries (Dapr passes bodies through as-is).

    A JSON body reaches the workflow as the value it encodes; any other text reaches it as a
    string; an empty body is no input at all (not `null`).
    """
    if not body:
        return None
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8 text; send JSON or plain text") from None
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return orjson.dumps(text).decode()
    return text
