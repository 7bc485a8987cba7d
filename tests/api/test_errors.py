"""Every error path of Dapr's routes, over real HTTP: status, `errorCode` and message."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import new_id

pytestmark = pytest.mark.kafka

OPS = ["terminate", "raiseEvent/go", "pause", "resume", "purge"]


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errorCode", "message"}
    assert body["errorCode"] == code
    return str(body["message"])


def test_unknown_component_is_a_400_on_every_route(http: httpx.Client) -> None:
    message = error(
        http.post("/v1.0/workflows/other/api_echo/start"), 400, "ERR_WORKFLOW_COMPONENT_NOT_FOUND"
    )
    assert message == "workflow component 'other' does not exist"
    error(http.get("/v1.0/workflows/other/some-id"), 400, "ERR_WORKFLOW_COMPONENT_NOT_FOUND")
    error(http.get("/v1.0/workflows/other"), 400, "ERR_WORKFLOW_COMPONENT_NOT_FOUND")
    error(
        http.get("/v1.0/workflows/other/some-id/history"), 400, "ERR_WORKFLOW_COMPONENT_NOT_FOUND"
    )
    for op in OPS:
        error(
            http.post(f"/v1.0-beta1/workflows/other/some-id/{op}"),
            400,
            "ERR_WORKFLOW_COMPONENT_NOT_FOUND",
        )


def test_instance_id_too_long(http: httpx.Client) -> None:
    response = http.post("/v1.0/workflows/dapr/api_echo/start", params={"instanceID": "a" * 65})
    assert (
        error(response, 400, "ERR_INSTANCE_ID_TOO_LONG")
        == "workflow instance ID exceeds the max length of 64 characters"
    )
    # 64 is fine.
    iid = "b" * 56 + new_id("")[-8:]
    assert (
        http.post("/v1.0/workflows/dapr/api_echo/start", params={"instanceID": iid}).status_code
        == 202
    )


@pytest.mark.parametrize("bad", ["invalid$ID", "has space", "dot.ted", "slash\\", "a:b"])
def test_instance_id_with_invalid_characters(http: httpx.Client, bad: str) -> None:
    response = http.post("/v1.0/workflows/dapr/api_echo/start", params={"instanceID": bad})
    assert (
        error(response, 400, "ERR_INSTANCE_ID_INVALID")
        == f"workflow instance ID '{bad}' is invalid: "
        "only alphanumeric and underscore characters are allowed"
    )


def test_unicode_letters_and_digits_are_valid_ids(http: httpx.Client) -> None:
    iid = f"Zürich_٣-{new_id('')[-6:]}"
    response = http.post("/v1.0/workflows/dapr/api_echo/start", params={"instanceID": iid})
    assert response.json() == {"instanceID": iid}


def test_unknown_instance_is_a_404_on_every_route(http: httpx.Client) -> None:
    iid = new_id("missing")
    expected = {
        "errorCode": "ERR_INSTANCE_ID_NOT_FOUND",
        "message": f"unable to find workflow with the provided instance ID: {iid}",
    }
    assert http.get(f"/v1.0/workflows/dapr/{iid}").status_code == 404
    assert http.get(f"/v1.0/workflows/dapr/{iid}").json() == expected
    assert http.get(f"/v1.0/workflows/dapr/{iid}/history").json() == expected
    for op in OPS:
        response = http.post(f"/v1.0/workflows/dapr/{iid}/{op}")
        assert response.status_code == 404, op
        assert response.json() == expected, op


def test_dapr_not_found_body_exactly(http: httpx.Client) -> None:
    # The body daprd's integration test (workflow/getnotfound.go) asserts, byte for byte.
    response = http.get("/v1.0/workflows/dapr/not-found")
    assert response.status_code == 404
    assert response.content == (
        b'{"errorCode":"ERR_INSTANCE_ID_NOT_FOUND","message":'
        b'"unable to find workflow with the provided instance ID: not-found"}'
    )
    assert response.headers["content-type"] == "application/json"


def test_missing_event_name(http: httpx.Client) -> None:
    iid = http.post("/v1.0/workflows/dapr/api_gate/start").json()["instanceID"]
    for path in (
        f"/v1.0/workflows/dapr/{iid}/raiseEvent",
        f"/v1.0/workflows/dapr/{iid}/raiseEvent/",
    ):
        assert (
            error(http.post(path), 400, "ERR_WORKFLOW_EVENT_NAME_MISSING")
            == "missing workflow event name"
        )
    http.post(f"/v1.0/workflows/dapr/{iid}/terminate")


def test_missing_instance_id_and_workflow_name(http: httpx.Client) -> None:
    error(http.get("/v1.0/workflows/dapr/"), 400, "ERR_INSTANCE_ID_PROVIDED_MISSING")
    error(http.post("/v1.0/workflows/dapr//terminate"), 400, "ERR_INSTANCE_ID_PROVIDED_MISSING")
    error(http.post("/v1.0/workflows/dapr//start"), 400, "ERR_WORKFLOW_NAME_MISSING")


def test_body_that_is_not_utf8_is_a_400(http: httpx.Client) -> None:
    message = error(
        http.post("/v1.0/workflows/dapr/api_echo/start", content=b"\xff\xfe\x00"),
        400,
        "ERR_MALFORMED_REQUEST",
    )
    assert "UTF-8" in message


def test_unknown_route_and_method_answer_json_errors(http: httpx.Client) -> None:
    error(http.get("/v1.0/nothing/here"), 404, "ERR_ROUTE_NOT_FOUND")
    error(http.get("/v1.0/workflows/dapr/x/terminate"), 405, "ERR_METHOD_NOT_ALLOWED")


def test_body_over_the_limit_is_a_413(http: httpx.Client) -> None:
    too_big = b"x" * (4 * 1024 * 1024 + 1)
    message = error(
        http.post("/v1.0/workflows/dapr/api_echo/start", content=too_big),
        413,
        "ERR_REQUEST_BODY_TOO_LARGE",
    )
    assert "4194304" in message

    def chunks():  # no Content-Length: counted while it streams in
        for _ in range(5):
            yield b"y" * (1024 * 1024)

    error(
        http.post("/v1.0/workflows/dapr/api_echo/start", content=chunks()),
        413,
        "ERR_REQUEST_BODY_TOO_LARGE",
    )
    # Under the HTTP limit but over the engine's payload limit (1 MiB): also a 413, nothing started.
    iid = new_id()
    response = http.post(
        "/v1.0/workflows/dapr/api_echo/start",
        params={"instanceID": iid},
        content=b'"' + b"z" * (2 * 1024 * 1024) + b'"',
    )
    assert "over the limit" in error(response, 413, "ERR_REQUEST_BODY_TOO_LARGE")
    assert http.get(f"/v1.0/workflows/dapr/{iid}").status_code == 404
