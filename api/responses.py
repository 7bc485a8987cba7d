"""JSON responses (orjson), and the Dapr wire shape of an instance and its timestamps."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.responses import Response

from engine.core.state import InstanceState
from engine.core.unknown_code import waiting_reason
from engine.core.values import RuntimeStatus

__all__ = [
    "REMOTE_TURN", "WAITING_FOR_CODE", "instance_body", "json_response", "parse_rfc3339", "rfc3339", "summary_body",
]

#: The property that says why a PENDING instance waits: no engine that held it knew its workflow.
WAITING_FOR_CODE = "headrace.workflow.waiting_for_code"
#: The property that says a turn of a workflow run in a connected app waits for the app's answer.
REMOTE_TURN = "headrace.workflow.remote_turn"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def rfc3339(value: datetime | None) -> str:
    """A UTC timestamp as protojson writes one: `Z`, and 0, 3 or 6 fraction digits."""
    if value is None:
        value = _EPOCH  # protojson renders an unset Timestamp as the epoch
    value = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    micros = value.microsecond
    if micros:
        text += f".{micros // 1000:03d}" if micros % 1000 == 0 else f".{micros:06d}"
    return text + "Z"


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (a trailing `Z` included); a time without offset is UTC."""
    value = datetime.fromisoformat(text.strip().replace("z", "Z").replace("Z", "+00:00"))
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _properties(instance: InstanceState) -> dict[str, str]:
    """Dapr's `properties`: each key present exactly when daprd (HEAD) sets it, plus
    `WAITING_FOR_CODE` on an instance that waits for its code."""
    props: dict[str, str] = {}
    if instance.custom_status is not None:
        props["dapr.workflow.custom_status"] = instance.custom_status
    if instance.input is not None:
        props["dapr.workflow.input"] = instance.input
    failure = instance.failure
    if instance.output is not None and failure is None:
        # A failed instance never shows an output (dapr tests/integration/.../failureoutput.go).
        props["dapr.workflow.output"] = instance.output
    if failure is not None:
        props["dapr.workflow.failure.error_type"] = failure.error_type
        props["dapr.workflow.failure.error_message"] = failure.message
        if failure.stack_trace:
            props["dapr.workflow.failure.stack_trace"] = failure.stack_trace
    if instance.waiting_for_code is not None:
        # Not daprd's: why a PENDING instance does not start (engine.core.unknown_code). Clients
        # index the keys they know, so one more key changes nothing for them.
        props[WAITING_FOR_CODE] = waiting_reason("workflow", instance.name, instance.waiting_for_code)
    remote = instance.remote
    if remote is not None and remote.out and remote.since is not None and instance.is_running:
        # Not daprd's: its workflow code runs in an app connected to `headrace grpc` (engine.core.remote).
        props[REMOTE_TURN] = f"waiting since {remote.since.isoformat()} for a connected app to run its code"
    return props


def instance_body(instance: InstanceState) -> dict[str, Any]:
    """The body of GET /workflows/dapr/{instanceID}, field for field as daprd writes it."""
    # daprd always sets the map (a nil map is its "not found"); clients index into it.
    return {**summary_body(instance), "properties": _properties(instance)}


def summary_body(instance: InstanceState) -> dict[str, Any]:
    """One row of the instance list: the GET body without payloads, to keep pages small."""
    return {
        "instanceID": instance.instance_id,
        "workflowName": instance.name,
        "createdAt": rfc3339(instance.created_at),
        "lastUpdatedAt": rfc3339(instance.last_updated_at),
        "runtimeStatus": instance.shown_status.value,
    }


STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in RuntimeStatus)
