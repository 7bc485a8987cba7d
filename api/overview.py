"""Beyond Dapr, for the dashboard and scripts: instance counts by status, and workflow names.

`GET /v1.0/headrace/counts` counts the view's instances by runtime status, with the list route's
name and time filters (not its status filter: the counts are what a status filter chooses from).
`GET /v1.0/headrace/workflow-names` answers the names a start form can offer: the registered ones
when the API was started with `--app` (`HEADRACE_API_APP`), and the names of instances it has seen.

These routes live under `/v1.0/headrace/` rather than `/v1.0/workflows/{component}/...`, where a
literal segment would shadow an instance of the same ID.
"""

from __future__ import annotations

import importlib
import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus

from .errors import operation
from .gateway import Gateway
from .listing import index_filter, matching, parse_query
from .responses import json_response

__all__ = [
    "load_registered_names",
    "overview_paths",
    "overview_routes",
    "status_counts",
    "workflow_names",
]

log = logging.getLogger(__name__)


def status_counts(states: Iterable[InstanceState]) -> dict[str, int]:
    """Instances per runtime status, every status present (zeros included)."""
    # STALLED counted as shown, not RUNNING (`shown_status` only when it can differ: it costs 8x a read).
    counted = Counter(state.status if state.waiting_for_code is None else state.shown_status for state in states)
    return {status.value: counted.get(status, 0) for status in RuntimeStatus}


def workflow_names(states: Iterable[InstanceState], registered: tuple[str, ...] | None) -> dict[str, object]:
    return _names_body(sorted({state.name for state in list(states) if state.name}), registered)


def _names_body(seen: list[str], registered: tuple[str, ...] | None) -> dict[str, object]:
    body: dict[str, object] = {"registryKnown": registered is not None, "seen": seen}
    body["registered"] = sorted(registered) if registered is not None else []
    return body


def load_registered_names(reference: str | None) -> tuple[str, ...] | None:
    """The workflow names of the WorkflowRuntime `module:attribute` names (None when unknown).

    The names only fill the dashboard's start form, so an app that cannot be imported is logged
    and the API runs on: the form then takes any name as free text.
    """
    if not reference:
        return None
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        log.warning("--app %r: cannot import %r (%s); workflow names unknown", reference, module_name, exc)
        return None
    runtime = getattr(module, attribute or "runtime", None)
    registry = getattr(runtime, "registry", None)
    workflows = getattr(registry, "workflows", None)
    if not isinstance(workflows, dict):
        log.warning("--app %r does not name a WorkflowRuntime; workflow names unknown", reference)
        return None
    return tuple(str(name) for name in workflows)


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


@operation("ERR_LIST_WORKFLOWS")
async def counts(request: Request) -> Response:
    query = parse_query(request.query_params, [])
    link = _gateway(request).link
    link.require()
    index = link.view.index
    if index is not None:
        found = index.counts(index_filter(query))
        by_status = {status.value: found.get(status, 0) for status in RuntimeStatus}
    else:
        by_status = status_counts(matching(link.view.states.values(), query))
    return json_response({"total": sum(by_status.values()), "counts": by_status})


@operation("ERR_LIST_WORKFLOWS")
async def names(request: Request) -> Response:
    link = _gateway(request).link
    link.require()
    registered: tuple[str, ...] | None = request.app.state.workflow_names
    index = link.view.index
    if index is not None:
        return json_response(_names_body(index.names(), registered))
    return json_response(workflow_names(link.view.states.values(), registered))


def overview_routes() -> list[BaseRoute]:
    return [
        Route("/v1.0/headrace/counts", counts, methods=["GET"]),
        Route("/v1.0/headrace/workflow-names", names, methods=["GET"]),
    ]


def overview_paths(filters: list[dict[str, Any]], errors: dict[str, Any]) -> dict[str, Any]:
    """These routes in the OpenAPI document (api/openapi.py): `filters` are the list route's
    name and time parameters, `errors` its error responses."""
    names = {"type": "array", "items": {"type": "string"}}
    counts_body = {
        "type": "object",
        "required": ["total", "counts"],
        "additionalProperties": False,
        "properties": {
            "total": {"type": "integer", "minimum": 0},
            "counts": {
                "type": "object",
                "required": [s.value for s in RuntimeStatus],
                "additionalProperties": False,
                "properties": {s.value: {"type": "integer", "minimum": 0} for s in RuntimeStatus},
            },
        },
    }
    names_body = {
        "type": "object",
        "required": ["registryKnown", "registered", "seen"],
        "additionalProperties": False,
        "properties": {
            "registryKnown": {
                "type": "boolean",
                "description": "The API was started with `--app`; `registered` is its names.",
            },
            "registered": names,
            "seen": {**names, "description": "The workflow names of the instances it holds."},
        },
    }

    def get(op_id: str, summary: str, body: dict[str, Any], params: list[Any]) -> dict[str, Any]:
        json = {"application/json": {"schema": body}}
        return {
            "get": {
                "operationId": op_id,
                "summary": f"{summary} (Headrace; not in Dapr's HTTP API)",
                "description": "Backend failures: `ERR_LIST_WORKFLOWS`.",
                "parameters": params,
                "responses": {"200": {"description": summary, "content": json}, **errors},
            }
        }

    return {
        "/v1.0/headrace/counts": get("countWorkflows", "Instances by runtime status", counts_body, filters),
        "/v1.0/headrace/workflow-names": get("workflowNames", "Workflow names a start can use", names_body, []),
    }
