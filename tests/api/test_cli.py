"""`headrace workflow ...` against the running API: tables by default, the API's JSON with
`-o json`."""

from __future__ import annotations

import json

import httpx
import pytest

from ops.cli import main
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer

pytestmark = pytest.mark.kafka


def run(api: ApiServer, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["workflow", "--api-url", api.url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_drives_a_full_lifecycle(api: ApiServer, http: httpx.Client, capsys) -> None:
    iid = new_id("cli")
    code, out, _ = run(
        api, capsys, "start", "api_gate", "--instance-id", iid, "--input", '{"n": 1}'
    )
    assert code == 0
    assert out.strip() == f"Started workflow 'api_gate' as instance {iid}"
    wait_status(http, iid, "RUNNING")

    code, out, _ = run(api, capsys, "get", iid)
    assert code == 0
    assert "Status         RUNNING" in out
    assert 'Input          {"n": 1}' in out
    code, out, _ = run(api, capsys, "-o", "json", "get", iid)
    assert json.loads(out)["runtimeStatus"] == "RUNNING"

    assert run(api, capsys, "pause", iid)[1].strip() == f"Pause accepted for {iid}"
    wait_status(http, iid, "SUSPENDED")
    assert run(api, capsys, "resume", iid)[0] == 0
    wait_status(http, iid, "RUNNING")
    code, out, _ = run(api, capsys, "raise-event", iid, "go", "--data", "5")
    assert code == 0
    assert out.strip() == f"Event accepted for {iid} ('go')"
    wait_status(http, iid, "COMPLETED")

    code, out, _ = run(api, capsys, "list", "--name", "api_gate", "--status", "completed")
    assert code == 0
    header, *rows = out.strip().splitlines()
    assert header.split() == ["INSTANCE", "ID", "WORKFLOW", "STATUS", "CREATED", "AGE"]
    assert any(row.startswith(iid) and "COMPLETED" in row for row in rows)
    code, out, _ = run(
        api, capsys, "-o", "json", "list", "--all", "--page-size", "1", "--name", "api_gate"
    )
    assert iid in [i["instanceID"] for i in json.loads(out)["instances"]]

    code, out, _ = run(api, capsys, "history", iid)
    assert code == 0
    assert "ExecutionStarted" in out
    assert "EventRaised" in out
    code, out, _ = run(api, capsys, "-o", "json", "history", iid)
    assert json.loads(out)["events"][0]["seq"] == 0

    assert run(api, capsys, "terminate", iid)[0] == 0
    assert run(api, capsys, "-o", "json", "purge", iid)[1].strip() == "{}"


def test_cli_reports_api_errors_and_unreachable_apis(api: ApiServer, capsys) -> None:
    code, _, err = run(api, capsys, "get", "no-such-instance")
    assert code == 1
    assert err.strip() == (
        "headrace: error: unable to find workflow with the provided instance ID: "
        "no-such-instance [ERR_INSTANCE_ID_NOT_FOUND, HTTP 404]"
    )
    code, _, err = run(api, capsys, "start", "api_echo", "--instance-id", "bad id")
    assert code == 1
    assert "ERR_INSTANCE_ID_INVALID" in err
    code = main(["workflow", "--api-url", "http://127.0.0.1:9", "get", "x"])
    assert code == 2
    assert "cannot reach the Headrace API at http://127.0.0.1:9" in capsys.readouterr().err
