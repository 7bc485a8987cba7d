"""The OpenAPI 3.1 document of the REST API, built here and served at /openapi.json.

`schemas/openapi.json` is this document written out
(`python -m api.openapi > schemas/openapi.json`); a test keeps the two equal. It is built in code
because the API ships as a package without the repository's `schemas/` folder. Paths are
documented under /v1.0; /v1.0-beta1 and /v1.0-alpha1 serve the same operations.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import orjson

from engine.core.values import RuntimeStatus

from .openapi_schemas import component_schemas
from .overview import overview_paths

__all__ = ["document", "document_bytes"]

_REF_ERROR = {"$ref": "#/components/schemas/Error"}
#: The list route's parameters the counts route takes too.
_FILTERS = ("workflowName", "createdAfter", "createdBefore")
_JSON = "application/json"

_ID = {
    "name": "instanceID",
    "in": "path",
    "required": True,
    "description": "The workflow instance ID.",
    "schema": {"type": "string"},
}
_COMPONENT = {
    "name": "component",
    "in": "path",
    "required": True,
    "description": "The workflow component: only `dapr` exists; any other name is a 400.",
    "schema": {"type": "string", "enum": ["dapr"]},
}
_APP_ID = {
    "name": "appID",
    "in": "query",
    "required": False,
    "description": "Accepted for Dapr compatibility; ignored.",
    "schema": {"type": "string"},
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": _REF_ERROR}}}


def _errors(*extra: tuple[int, str]) -> dict[str, Any]:
    found = {
        "400": _error(
            "Malformed request: unknown component, bad instance ID, bad parameter "
            "(`errorCode` says which)."
        ),
        "401": _error(
            "`DAPR_API_TOKEN` is set and the `dapr-api-token` header is missing or wrong."
        ),
        "404": _error("No such instance (`ERR_INSTANCE_ID_NOT_FOUND`), or no such route."),
        "413": _error("The request body is over the configured limit (default 4 MiB)."),
        "500": _error(
            "Kafka is unreachable or too slow; `errorCode` is the operation's `ERR_*` code."
        ),
    }
    for status, description in extra:
        found[str(status)] = _error(description)
    return dict(sorted(found.items()))


def _body(description: str) -> dict[str, Any]:
    return {
        "required": False,
        "description": description,
        "content": {_JSON: {"schema": {}}, "text/plain": {"schema": {"type": "string"}}},
    }


def _command(
    summary: str,
    description: str,
    op_id: str,
    code: str,
    *extra: tuple[int, str],
    params: tuple[dict[str, Any], ...] = (),
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": f"{description}\n\nBackend failures answer 500 with `errorCode` `{code}`.",
        "parameters": [_COMPONENT, _ID, *params, _APP_ID],
        "responses": {
            "202": {
                "description": "Done: a GET after it, on any replica, shows its effect "
                "(or, if the engine did not apply it within `HEADRACE_API_APPLY_WAIT_S`, it is "
                "in Kafka and applies when the engine gets to it).",
                "content": {_JSON: {"schema": {"type": "object", "maxProperties": 0}}},
            },
            **_errors(*extra),
        },
    }
    if body is not None:
        operation["requestBody"] = body
    return {"post": operation}


def ok(ref: str, text: str, links: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": text,
        "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{ref}"}}},
    }
    if links:
        response["links"] = links
    return response


# What a client can do with the instance a start returns (and schemathesis's stateful phase).
_INSTANCE_LINKS = {
    op: {
        "operationId": op,
        "parameters": {"component": "dapr", "instanceID": "$response.body#/instanceID"},
    }
    for op in (
        "getWorkflow",
        "getWorkflowHistory",
        "raiseEventWorkflow",
        "pauseWorkflow",
        "resumeWorkflow",
        "terminateWorkflow",
        "purgeWorkflow",
    )
}


def _paths() -> dict[str, Any]:
    base = "/v1.0/workflows/{component}"
    one = f"{base}/{{instanceID}}"
    list_params: list[dict[str, Any]] = [
        _COMPONENT,
        {
            "name": "runtimeStatus",
            "in": "query",
            "style": "form",
            "explode": True,
            "description": "Only these statuses (repeat, or separate with commas).",
            "schema": {
                "type": "array",
                "items": {"type": "string", "enum": [s.value for s in RuntimeStatus]},
            },
        },
        {"name": "workflowName", "in": "query", "schema": {"type": "string"}},
        {
            "name": "createdAfter",
            "in": "query",
            "schema": {"type": "string", "format": "date-time"},
        },
        {
            "name": "createdBefore",
            "in": "query",
            "schema": {"type": "string", "format": "date-time"},
        },
        {
            "name": "pageSize",
            "in": "query",
            "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
        },
        {"name": "continuationToken", "in": "query", "schema": {"type": "string"}},
        {
            "name": "order",
            "in": "query",
            "description": "`asc` (oldest first) or `desc` (newest first); pass the same with "
            "a `continuationToken`.",
            "schema": {"type": "string", "enum": ["asc", "desc"], "default": "asc"},
        },
    ]
    filters = [p for p in list_params if p["name"] in _FILTERS]
    return {
        **overview_paths(filters, _errors()),
        base: {
            "get": {
                "operationId": "listWorkflows",
                "summary": "List instances (Headrace; not in Dapr's HTTP API)",
                "description": "Ordered by (createdAt, instanceID); filters combine with AND. "
                "Backend failures: "
                "`ERR_LIST_WORKFLOWS`.",
                "parameters": list_params,
                "responses": {"200": ok("WorkflowList", "One page of instances."), **_errors()},
            }
        },
        f"{base}/{{workflowName}}/start": {
            "post": {
                "operationId": "startWorkflow",
                "summary": "Start a workflow instance",
                "description": "The body is the workflow input as-is: a JSON body reaches the "
                "workflow as its value, "
                "any other text as a string, no body as no input. Answered once the engine started "
                "the instance, or refused the start: over a running instance (also another start "
                "of the same ID at the same moment), or over a finished one whose child workflow "
                "still runs, it is a 409; over a finished one it replaces it. "
                "Backend failures: `ERR_START_WORKFLOW`.",
                "parameters": [
                    _COMPONENT,
                    {
                        "name": "workflowName",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "instanceID",
                        "in": "query",
                        "required": False,
                        "description": "At most 64 (UTF-8 bytes) letters, digits, `_` or `-`; "
                        "a UUID when absent.",
                        "schema": {"type": "string"},
                    },
                    _APP_ID,
                ],
                "requestBody": _body("The workflow input."),
                "responses": {
                    "202": ok(
                        "StartResponse",
                        "Started: the instance exists (RUNNING or later; PENDING if the "
                        "engine did not apply the start within `HEADRACE_API_APPLY_WAIT_S`) for "
                        "every later GET, on any replica.",
                        links=_INSTANCE_LINKS,
                    ),
                    **_errors(
                        (
                            409,
                            "An instance with this ID is running, or a child workflow of the "
                            "finished one still runs (`ERR_START_WORKFLOW`).",
                        )
                    ),
                },
            }
        },
        one: {
            "get": {
                "operationId": "getWorkflow",
                "summary": "Get a workflow instance",
                "description": "Exactly daprd's fields. Backend failures: `ERR_GET_WORKFLOW`.",
                "parameters": [_COMPONENT, _ID, _APP_ID],
                "responses": {"200": ok("Workflow", "The instance."), **_errors()},
            }
        },
        f"{one}/history": {
            "get": {
                "operationId": "getWorkflowHistory",
                "summary": "The history events of the instance's current execution "
                "(Headrace; not in Dapr's HTTP API)",
                "description": "Backend failures: `ERR_GET_WORKFLOW_HISTORY`.",
                "parameters": [_COMPONENT, _ID],
                "responses": {"200": ok("History", "The events."), **_errors()},
            }
        },
        f"{one}/terminate": _command(
            "Terminate an instance and its children",
            "Recursive. A finished instance is left as it is (still 202).",
            "terminateWorkflow",
            "ERR_TERMINATE_WORKFLOW",
        ),
        f"{one}/raiseEvent/{{eventName}}": _command(
            "Raise an event",
            "The body is the event payload, as for start.",
            "raiseEventWorkflow",
            "ERR_RAISE_EVENT_WORKFLOW",
            params=(
                {"name": "eventName", "in": "path", "required": True, "schema": {"type": "string"}},
            ),
            body=_body("The event payload."),
        ),
        f"{one}/pause": _command(
            "Pause (suspend) an instance",
            "Events raised meanwhile wait for the resume.",
            "pauseWorkflow",
            "ERR_PAUSE_WORKFLOW",
        ),
        f"{one}/resume": _command(
            "Resume a paused instance",
            "Buffered events are delivered.",
            "resumeWorkflow",
            "ERR_RESUME_WORKFLOW",
        ),
        f"{one}/purge": _command(
            "Purge a finished instance and its children",
            "Only COMPLETED, FAILED or TERMINATED instances; "
            "anything else is refused with a 409 and nothing is removed.",
            "purgeWorkflow",
            "ERR_PURGE_WORKFLOW",
            (409, "The instance is not finished (`ERR_PURGE_WORKFLOW`)."),
        ),
        "/v1.0/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness",
                "security": [],
                "responses": {"204": {"description": "The process answers."}},
            }
        },
        "/v1.0/healthz/ready": {
            "get": {
                "operationId": "ready",
                "summary": "Readiness: Kafka answers and the status view follows it",
                "security": [],
                "responses": {
                    "204": {"description": "Ready."},
                    "503": _error("Not ready (`ERR_HEALTH_NOT_READY`)."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _error("Token missing or wrong."),
                },
            }
        },
    }


@functools.cache
def document_bytes() -> bytes:
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "Headrace workflow API",
            "version": "1.0.0",
            "description": "Dapr Workflow's HTTP API (also under /v1.0-beta1 and /v1.0-alpha1), "
            "plus listing, "
            'history, health and metrics. Every error body is `{"errorCode", "message"}`.',
        },
        "servers": [{"url": "http://localhost:3500"}],
        "security": [{}, {"daprApiToken": []}],
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                "daprApiToken": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "dapr-api-token",
                    "description": "Needed when the API runs with DAPR_API_TOKEN set.",
                }
            },
        },
    }
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


def document() -> Any:
    return orjson.loads(document_bytes())


def main() -> None:
    sys.stdout.write(document_bytes().decode() + "\n")


if __name__ == "__main__":
    main()
