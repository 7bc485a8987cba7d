"""Request validation with daprd's rules (`validateInstanceID` in dapr/dapr pkg/api/universal).

The ID rules themselves live in `engine.core.ids`, once for every entrance; this module maps their
`IdError` to daprd's error codes.
"""

from __future__ import annotations

import orjson
from starlette.datastructures import QueryParams

from engine.core import ids

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
    "first_query_value",
    "payload_from_body",
]

#: The one workflow component, built in as in Dapr.
COMPONENT = "dapr"
MAX_INSTANCE_ID_LENGTH = ids.MAX_NEW_INSTANCE_ID_BYTES


def check_component(component: str) -> None:
    if component != COMPONENT:
        raise ComponentNotFound(component)


def _utf8_size(value: str) -> int:
    return len(value.encode(errors="surrogatepass"))


def check_instance_id(instance_id: str) -> None:
    """An ID for an operation on an existing instance: non-empty (daprd's only rule), and one the
    engine can hold (`ids.check_id`): no instance has any other, and a NUL or control character
    must never reach a command on Kafka."""
    if not instance_id:
        raise InstanceIdMissing()
    try:
        ids.check_id(instance_id)
    except ids.IdError as exc:
        if _utf8_size(instance_id) > ids.MAX_ID_BYTES:
            raise InstanceIdTooLong(ids.MAX_ID_BYTES) from None
        raise InstanceIdInvalid(instance_id, str(exc)) from None


def check_new_instance_id(instance_id: str) -> None:
    """Rules for an ID that creates an instance: at most 64, only letters, digits, `_`, `-`.

    The length is counted in UTF-8 bytes, as daprd's `len(instanceID)` does, so an ID accepted
    here is accepted by Dapr too (and fits state stores with short key limits). daprd checks the
    length first, so an ID that breaks both rules is "too long".
    """
    if not instance_id:
        raise InstanceIdMissing()
    try:
        ids.check_new_instance_id(instance_id)
    except ids.IdError:
        if _utf8_size(instance_id) > MAX_INSTANCE_ID_LENGTH:
            raise InstanceIdTooLong(MAX_INSTANCE_ID_LENGTH) from None
        raise InstanceIdInvalid(instance_id) from None


def first_query_value(params: QueryParams, name: str) -> str | None:
    """The first value of a repeated query parameter, as daprd's `r.URL.Query().Get` takes it
    (Starlette's `.get` takes the last)."""
    values = params.getlist(name)
    return values[0] if values else None


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
