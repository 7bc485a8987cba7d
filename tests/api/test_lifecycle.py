"""Dapr's workflow routes end to end over real HTTP: start, get, raise event, pause, resume,
terminate, purge, with the exact bodies daprd answers."""

from __future__ import annotations

import re

import httpx
import orjson
import pytest

from tests.api.conftest import new_id, wait_status
from tests.api.support import eventually

pytestmark = pytest.mark.kafka

RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$")
FIELDS = {"instanceID", "workflowName", "createdAt", "lastUpdatedAt", "runtimeStatus", "properties"}


def start(
    http: httpx.Client,
    name: str,
    body: bytes | None = None,
    instance_id: str | None = None,
    version: str = "v1.0",
    **kwargs,
) -> httpx.Response:
    params = {"instanceID": instance_id} if instance_id is not None else None
    return http.post(
        f"/{version}/workflows/dapr/{name}/start", params=params, content=body, **kwargs
    )


def test_full_lifecycle_with_events(http: httpx.Client) -> None:
    iid = new_id()
    response = start(http, "api_gate", b'{"order": 7}', iid)
    assert response.status_code == 202
    assert response.json() == {"instanceID": iid}

    body = wait_status(http, iid, "RUNNING")
    assert set(body) == FIELDS
    assert body["workflowName"] == "api_gate"
    assert RFC3339_UTC.match(body["createdAt"])
    assert RFC3339_UTC.match(body["lastUpdatedAt"])
    assert body["properties"]["dapr.workflow.input"] == '{"order": 7}'
    body = wait_status(http, iid, "RUNNING")
    assert "dapr.workflow.output" not in body["properties"]

    assert http.post(f"/v1.0/workflows/dapr/{iid}/pause").status_code == 202
    wait_status(http, iid, "SUSPENDED")
    raised = http.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", content=b"21")
    assert raised.status_code == 202
    assert raised.content == b"{}"
    # Paused: the event waits for the resume.
    assert (
        wait_status(http, iid, "SUSPENDED")["properties"]["dapr.workflow.custom_status"]
        == "waiting"  # stored as written, as Dapr's SDK does
    )
    assert http.post(f"/v1.0/workflows/dapr/{iid}/resume").status_code == 202

    done = wait_status(http, iid, "COMPLETED")
    assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {
        "input": {"order": 7},
        "doubled": 42,
    }
    assert done["properties"]["dapr.workflow.custom_status"] == "going"

    purged = http.post(f"/v1.0/workflows/dapr/{iid}/purge")
    assert purged.status_code == 202
    assert purged.json() == {}

    def gone() -> bool:
        return http.get(f"/v1.0/workflows/dapr/{iid}").status_code == 404

    eventually(gone, what="purged instance gone")
    assert http.get(f"/v1.0/workflows/dapr/{iid}").json() == {
        "errorCode": "ERR_INSTANCE_ID_NOT_FOUND",
        "message": f"unable to find workflow with the provided instance ID: {iid}",
    }


@pytest.mark.parametrize("version", ["v1.0", "v1.0-beta1", "v1.0-alpha1"])
def test_every_api_version_serves_the_same_routes(http: httpx.Client, version: str) -> None:
    iid = new_id(version.replace(".", ""))
    assert start(http, "api_gate", b'"x"', iid, version=version).json() == {"instanceID": iid}
    assert http.get(f"/{version}/workflows/dapr/{iid}").status_code == 200
    assert (
        http.post(f"/{version}/workflows/dapr/{iid}/raiseEvent/go", content=b"1").status_code == 202
    )
    wait_status(http, iid, "COMPLETED")
    assert http.post(f"/{version}/workflows/dapr/{iid}/terminate").status_code == 202
    assert http.post(f"/{version}/workflows/dapr/{iid}/purge").status_code == 202


@pytest.mark.parametrize(
    ("body", "received", "input_property"),
    [
        (b'{"a": [1, 2]}', {"a": [1, 2]}, '{"a": [1, 2]}'),
        (b"42", 42, "42"),
        (b"hello there", "hello there", '"hello there"'),
        (b"", None, None),
    ],
    ids=["json-object", "json-number", "plain-text", "no-body"],
)
def test_start_body_is_the_workflow_input(
    http: httpx.Client, body: bytes, received: object, input_property: str | None
) -> None:
    iid = start(http, "api_echo", body).json()["instanceID"]
    done = wait_status(http, iid, "COMPLETED")
    assert done["properties"].get("dapr.workflow.input") == input_property
    assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {"received": received}


def test_start_without_id_generates_a_uuid(http: httpx.Client) -> None:
    iid = start(http, "api_echo", b"1").json()["instanceID"]
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", iid)
    wait_status(http, iid, "COMPLETED")


def test_start_over_a_running_instance_is_a_conflict(http: httpx.Client) -> None:
    iid = new_id()
    assert start(http, "api_gate", b"1", iid).status_code == 202
    again = start(http, "api_gate", b"2", iid)
    assert again.status_code == 409
    assert again.json() == {
        "errorCode": "ERR_START_WORKFLOW",
        "message": f"an active workflow with ID '{iid}' already exists",
    }
    body = wait_status(http, iid, "RUNNING")
    assert body["properties"]["dapr.workflow.input"] == "1"


def test_start_over_a_finished_instance_replaces_it(http: httpx.Client) -> None:
    iid = new_id()
    start(http, "api_echo", b'"first"', iid)
    first = wait_status(http, iid, "COMPLETED")
    assert start(http, "api_echo", b'"second"', iid).status_code == 202
    # The very next GET shows the new run (PENDING or later), never the finished one.
    body = http.get(f"/v1.0/workflows/dapr/{iid}").json()
    assert body["properties"]["dapr.workflow.input"] == '"second"'
    done = wait_status(http, iid, "COMPLETED")
    assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {"received": "second"}
    assert done["createdAt"] >= first["createdAt"]


def test_failed_instance_shows_failure_and_no_output(http: httpx.Client) -> None:
    iid = start(http, "api_fail", b'"boom"').json()["instanceID"]
    body = wait_status(http, iid, "FAILED")
    props = body["properties"]
    assert "dapr.workflow.output" not in props
    assert props["dapr.workflow.failure.error_type"] == "ValueError"
    assert props["dapr.workflow.failure.error_message"] == "bad input: boom"
    assert "ValueError" in props["dapr.workflow.failure.stack_trace"]
    assert set(props) <= {
        "dapr.workflow.input",
        "dapr.workflow.custom_status",
        "dapr.workflow.failure.error_type",
        "dapr.workflow.failure.error_message",
        "dapr.workflow.failure.stack_trace",
    }


def test_terminate_is_recursive_and_a_no_op_on_finished_instances(http: httpx.Client) -> None:
    iid = new_id("parent")
    start(http, "api_parent", b"3", iid)
    wait_status(http, f"{iid}-child", "RUNNING")
    assert http.post(f"/v1.0/workflows/dapr/{iid}/terminate").json() == {}
    wait_status(http, iid, "TERMINATED")
    wait_status(http, f"{iid}-child", "TERMINATED")
    # Terminating a finished instance changes nothing and is still accepted (as in Dapr).
    assert http.post(f"/v1.0/workflows/dapr/{iid}/terminate").status_code == 202
    assert http.get(f"/v1.0/workflows/dapr/{iid}").json()["runtimeStatus"] == "TERMINATED"


def test_purge_refuses_unfinished_instances_and_recurses(http: httpx.Client) -> None:
    iid = new_id("parent")
    start(http, "api_parent", b"3", iid)
    wait_status(http, f"{iid}-child", "RUNNING")
    refused = http.post(f"/v1.0/workflows/dapr/{iid}/purge")
    assert refused.status_code == 409
    assert refused.json()["errorCode"] == "ERR_PURGE_WORKFLOW"
    assert "only COMPLETED, FAILED or TERMINATED" in refused.json()["message"]
    assert http.get(f"/v1.0/workflows/dapr/{iid}").json()["runtimeStatus"] == "RUNNING"

    http.post(f"/v1.0/workflows/dapr/{iid}/raiseEvent/go", content=b"5")  # to the parent: ignored
    http.post(f"/v1.0/workflows/dapr/{iid}-child/raiseEvent/go", content=b"5")
    wait_status(http, iid, "COMPLETED")
    assert http.post(f"/v1.0/workflows/dapr/{iid}/purge").status_code == 202

    def both_gone() -> bool:
        return all(
            http.get(f"/v1.0/workflows/dapr/{i}").status_code == 404 for i in (iid, f"{iid}-child")
        )

    eventually(both_gone, what="parent and child purged")
