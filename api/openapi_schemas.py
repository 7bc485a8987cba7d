"""Body schemas of the OpenAPI document (api/openapi.py): errors, instances, lists, histories."""

from __future__ import annotations

from typing import Any

from engine.core.values import RuntimeStatus

__all__ = ["component_schemas"]


def _timestamp(description: str) -> dict[str, Any]:
    return {"type": "string", "format": "date-time", "description": description}


def component_schemas() -> dict[str, Any]:
    statuses = [s.value for s in RuntimeStatus]
    summary_props = {
        "instanceID": {"type": "string"},
        "workflowName": {"type": "string"},
        "createdAt": _timestamp("RFC 3339, UTC."),
        "lastUpdatedAt": _timestamp("RFC 3339, UTC."),
        "runtimeStatus": {"type": "string", "enum": statuses},
    }
    return {
        "Error": {
            "type": "object",
            "required": ["errorCode", "message"],
            "additionalProperties": False,
            "properties": {
                "errorCode": {"type": "string", "pattern": "^ERR_[A-Z_]+$"},
                "message": {"type": "string"},
            },
        },
        "StartResponse": {
            "type": "object",
            "required": ["instanceID"],
            "additionalProperties": False,
            "properties": {"instanceID": {"type": "string"}},
        },
        "Workflow": {
            "type": "object",
            "required": [*summary_props, "properties"],
            "additionalProperties": False,
            "properties": {
                **summary_props,
                "properties": {
                    "type": "object",
                    "description": "Present keys follow daprd: `dapr.workflow.input`, "
                    "`dapr.workflow.output` "
                    "(never on a failed instance), `dapr.workflow.custom_status`, "
                    "`dapr.workflow.failure.error_type`, `.error_message`, `.stack_trace`; Headrace adds "
                    "`headrace.workflow.waiting_for_code` while no engine holding the instance knows its "
                    "workflow (which name, since when), and `headrace.workflow.remote_turn` while a turn of a "
                    "workflow run in a connected app waits for the app (since when).",
                    "additionalProperties": {"type": "string"},
                    "propertyNames": {
                        "enum": [
                            "dapr.workflow.input",
                            "dapr.workflow.output",
                            "dapr.workflow.custom_status",
                            "dapr.workflow.failure.error_type",
                            "dapr.workflow.failure.error_message",
                            "dapr.workflow.failure.stack_trace",
                            "headrace.workflow.waiting_for_code",
                            "headrace.workflow.remote_turn",
                        ]
                    },
                },
            },
        },
        "WorkflowSummary": {
            "type": "object",
            "required": list(summary_props),
            "additionalProperties": False,
            "properties": summary_props,
        },
        "WorkflowList": {
            "type": "object",
            "required": ["instances"],
            "additionalProperties": False,
            "properties": {
                "instances": {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/WorkflowSummary"},
                },
                "continuationToken": {
                    "type": "string",
                    "description": "Pass as `continuationToken` for the next page; "
                    "absent on the last.",
                },
            },
        },
        "History": {
            "type": "object",
            "required": ["instanceID", "executionID", "events"],
            "additionalProperties": False,
            "properties": {
                "instanceID": {"type": "string"},
                "executionID": {"type": "string"},
                "events": {
                    "type": "array",
                    "description": "History events in order; their JSON Schemas are in "
                    "`schemas/events/` (`type` names the event).",
                    "items": {
                        "type": "object",
                        "required": ["type", "version", "seq", "timestamp"],
                    },
                },
            },
        },
    }
