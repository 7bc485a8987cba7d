"""The REST routes: Dapr's workflow API under /v1.0, /v1.0-beta1 and /v1.0-alpha1, plus list,
history, health, metrics and the OpenAPI document. One set of handlers serves every version.

Handlers validate, call the gateway and shape the answer; they never build an error response
(errors.py does, from what they raise).
"""

from __future__ import annotations

from typing import Any

from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from engine.core.codec import to_jsonable

from .errors import NotReady, operation
from .gateway import Gateway
from .kafka import KafkaLink
from .listing import parse_query
from .metrics import CONTENT_TYPE_LATEST, ApiMetrics
from .middleware import is_authenticated
from .openapi import document_bytes
from .responses import instance_body, json_response, summary_body
from .validation import (
    check_component,
    check_event_name,
    check_instance_id,
    check_new_instance_id,
    check_workflow_name,
    first_query_value,
    payload_from_body,
)

__all__ = ["VERSIONS", "routes"]

VERSIONS = ("v1.0", "v1.0-beta1", "v1.0-alpha1")


class _Segment(Convertor[str]):
    """One path segment that may be empty, so `/workflows/dapr//start` is a 400 naming what is
    missing (as in daprd) rather than a bare 404."""

    regex = "[^/]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("segment", _Segment())


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


def _instance_id(request: Request) -> str:
    check_component(request.path_params["component"])
    instance_id: str = request.path_params["instanceID"]
    check_instance_id(instance_id)
    return instance_id


_ACCEPTED = b"{}"


def _accepted() -> Response:
    # Dapr writes the empty proto it returns as `{}` with a 202.
    return Response(_ACCEPTED, status_code=202, media_type="application/json")


# -- Dapr's workflow API ------------------------------------------------------------------------


@operation("ERR_START_WORKFLOW")
async def start_workflow(request: Request) -> Response:
    check_component(request.path_params["component"])
    name: str = request.path_params["workflowName"]
    check_workflow_name(name)
    instance_id = first_query_value(request.query_params, "instanceID") or None
    if instance_id is not None:
        check_new_instance_id(instance_id)
    payload = payload_from_body(await request.body())
    instance_id = await _gateway(request).start(name, instance_id, payload)
    return json_response({"instanceID": instance_id}, 202)


@operation("ERR_GET_WORKFLOW")
async def get_workflow(request: Request) -> Response:
    instance = await _gateway(request).get(_instance_id(request))
    return json_response(instance_body(instance))


@operation("ERR_TERMINATE_WORKFLOW")
async def terminate_workflow(request: Request) -> Response:
    await _gateway(request).terminate(_instance_id(request))
    return _accepted()


@operation("ERR_RAISE_EVENT_WORKFLOW")
async def raise_event(request: Request) -> Response:
    instance_id = _instance_id(request)
    event_name: str = request.path_params.get("eventName", "")
    check_event_name(event_name)
    payload = payload_from_body(await request.body())
    await _gateway(request).raise_event(instance_id, event_name, payload)
    return _accepted()


@operation("ERR_PAUSE_WORKFLOW")
async def pause_workflow(request: Request) -> Response:
    await _gateway(request).pause(_instance_id(request))
    return _accepted()


@operation("ERR_RESUME_WORKFLOW")
async def resume_workflow(request: Request) -> Response:
    await _gateway(request).resume(_instance_id(request))
    return _accepted()


@operation("ERR_PURGE_WORKFLOW")
async def purge_workflow(request: Request) -> Response:
    await _gateway(request).purge(_instance_id(request))
    return _accepted()


# -- beyond Dapr: list and history --------------------------------------------------------------


@operation("ERR_LIST_WORKFLOWS")
async def list_workflows(request: Request) -> Response:
    check_component(request.path_params["component"])
    query = parse_query(request.query_params, request.query_params.getlist("runtimeStatus"))
    page = _gateway(request).list_page(query)
    body: dict[str, Any] = {"instances": [summary_body(i) for i in page.instances]}
    if page.continuation_token is not None:
        body["continuationToken"] = page.continuation_token
    return json_response(body)


@operation("ERR_GET_WORKFLOW_HISTORY")
async def workflow_history(request: Request) -> Response:
    instance, events = await _gateway(request).history(_instance_id(request))
    return json_response(
        {
            "instanceID": instance.instance_id,
            "executionID": instance.execution_id,
            "events": [to_jsonable(e) for e in events],
        }
    )


# -- operations -----------------------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """Liveness: the process answers (daprd's /v1.0/healthz answers 204)."""
    return Response(status_code=204)


@operation("ERR_HEALTH_NOT_READY")
async def ready(request: Request) -> Response:
    """Readiness: connected to Kafka, the probe succeeds and the view follows the status topic."""
    link: KafkaLink = request.app.state.link
    if not link.ready:
        if not is_authenticated(request.scope):
            # An open route: Kafka's address and client errors are for operators, not anyone.
            raise NotReady("not ready")
        raise NotReady(
            f"not ready: {link.last_error}"
            if not link.reachable or not link.connected.is_set()
            else "not ready: the status view is not following Kafka"
        )
    return Response(status_code=204)


async def metrics(request: Request) -> Response:
    registry: ApiMetrics = request.app.state.metrics
    link: KafkaLink = request.app.state.link
    lag = await link.view.lag() if link.connected.is_set() else 0
    registry.view_lag.set(lag)
    registry.view_instances.set(link.view.instance_count())
    registry.kafka_reachable.set(1 if link.reachable else 0)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)


async def openapi(request: Request) -> Response:
    return Response(document_bytes(), media_type="application/json")


def _workflow_routes(version: str) -> list[BaseRoute]:
    base = f"/{version}/workflows/{{component:segment}}"
    one = f"{base}/{{instanceID:segment}}"
    return [
        Route(base, list_workflows, methods=["GET"]),
        Route(f"{base}/{{workflowName:segment}}/start", start_workflow, methods=["POST"]),
        Route(one, get_workflow, methods=["GET"]),
        Route(f"{one}/history", workflow_history, methods=["GET"]),
        Route(f"{one}/terminate", terminate_workflow, methods=["POST"]),
        Route(f"{one}/raiseEvent/{{eventName:segment}}", raise_event, methods=["POST"]),
        # No event name at all: daprd's ERR_WORKFLOW_EVENT_NAME_MISSING rather than a 404.
        Route(f"{one}/raiseEvent", raise_event, methods=["POST"]),
        Route(f"{one}/pause", pause_workflow, methods=["POST"]),
        Route(f"{one}/resume", resume_workflow, methods=["POST"]),
        Route(f"{one}/purge", purge_workflow, methods=["POST"]),
    ]


def routes() -> list[BaseRoute]:
    found: list[BaseRoute] = [
        Route("/v1.0/healthz", healthz, methods=["GET"]),
        Route("/v1.0/healthz/ready", ready, methods=["GET"]),
        # daprd's name for "my dependencies are reachable".
        Route("/v1.0/healthz/outbound", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    for version in VERSIONS:
        found.extend(_workflow_routes(version))
    return found
