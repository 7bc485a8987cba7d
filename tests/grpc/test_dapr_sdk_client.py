"""`headrace grpc` against Dapr's Python SDK, unmodified (issue 14, step 1): the SDK's
`DaprWorkflowClient`, pointed at the front end by environment only, starts, waits, suspends,
resumes, raises events, terminates and purges instances that Headrace's engine runs; they show in
the REST API. Plus the protocol's edges with the generated stubs: the token, errors, what is not
served yet."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import empty_pb2, wrappers_pb2

from api.grpc.protos import orchestration_pb2 as opb
from api.grpc.protos import orchestrator_service_pb2 as pb
from tests.api.support import ApiServer
from tests.grpc.conftest import TOKEN, GrpcProcess

pytestmark = pytest.mark.kafka

SCRIPT = Path(__file__).with_name("sdk_client.py")
AUTH = [("dapr-api-token", TOKEN)]


def test_dapr_sdk_client_drives_instances(sdk_python: Path, grpc_server: GrpcProcess, api: ApiServer) -> None:
    prefix = f"sdk{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAPR_", "PYTHON"))}
    env |= {"DAPR_GRPC_ENDPOINT": grpc_server.address, "DAPR_API_TOKEN": TOKEN}
    # -W ignore: the SDK's own FutureWarnings are its business; the test reads only stdout.
    run = subprocess.run(
        [str(sdk_python), "-W", "ignore", str(SCRIPT), prefix],
        env=env, capture_output=True, text=True, timeout=180, check=False,
    )
    assert run.returncode == 0, f"{run.stderr}\n--- server log ---\n{grpc_server.child.log_tail(40)}"
    seen = json.loads(run.stdout.strip().splitlines()[-1])

    assert seen["gate_started"] == "RUNNING"
    assert seen["gate_input"] is None  # WaitForInstanceStart without getInputsAndOutputs
    assert seen["duplicate_start"] == [
        "ALREADY_EXISTS", f"an active workflow with ID '{prefix}_gate' already exists"
    ]
    assert seen["gate_paused"] == "SUSPENDED"
    assert seen["gate_resumed"] == "RUNNING"
    # A str custom status is kept as it is, as Dapr's SDK keeps it (not JSON-encoded).
    assert seen["gate_done"] == ["COMPLETED", {"input": 21, "doubled": 10}, "going"]
    assert seen["gate_name"] == "api_gate"
    assert seen["parent_terminated"] == ["TERMINATED", '"stopped"']
    assert seen["fail"][0] == "FAILED"
    assert seen["fail"][1] == "ValueError"
    assert "bad input: x" in seen["fail"][2]
    assert seen["gate_after_purge"] is True
    assert seen["unknown"] is True
    assert seen["event_to_unknown"] == [
        "NOT_FOUND", f"unable to find workflow with the provided instance ID: {prefix}_never"
    ]

    # The same instances, through the REST API.
    with httpx.Client(base_url=api.url, headers={"dapr-api-token": TOKEN}, timeout=30) as http:
        parent = http.get(f"/v1.0/workflows/dapr/{prefix}_parent")
        assert parent.status_code == 200, parent.text
        assert parent.json()["runtimeStatus"] == "TERMINATED"
        child = http.get(f"/v1.0/workflows/dapr/{prefix}_parent-child")
        assert child.json()["runtimeStatus"] == "TERMINATED"  # terminate was recursive
        assert http.get(f"/v1.0/workflows/dapr/{prefix}_gate").status_code == 404  # purged
        assert http.get(f"/v1.0/workflows/dapr/{prefix}_fail").json()["runtimeStatus"] == "FAILED"


def test_token_is_required(grpc_server: GrpcProcess) -> None:
    with grpc.insecure_channel(grpc_server.address) as channel:
        stub = grpc_server.stub(channel)
        for metadata in ([], [("dapr-api-token", "wrong")]):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Hello(empty_pb2.Empty(), metadata=metadata, timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert stub.Hello(empty_pb2.Empty(), metadata=AUTH, timeout=10) == empty_pb2.Empty()
        # A streaming call is refused the same way.
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.GetWorkItems(pb.GetWorkItemsRequest(), timeout=10))
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_protocol_edges(grpc_server: GrpcProcess) -> None:
    iid = f"edge{uuid.uuid4().hex[:10]}"
    with grpc.insecure_channel(grpc_server.address) as channel:
        stub = grpc_server.stub(channel)
        missing = stub.GetInstance(pb.GetInstanceRequest(instanceId=iid), metadata=AUTH, timeout=10)
        assert missing.exists is False

        with pytest.raises(grpc.RpcError) as invalid:
            stub.StartInstance(pb.CreateInstanceRequest(instanceId="a b", name="api_echo"), metadata=AUTH, timeout=10)
        assert invalid.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        started = stub.StartInstance(
            pb.CreateInstanceRequest(instanceId=iid, name="api_echo", input=wrappers_pb2.StringValue(value='{"a": 1}')),
            metadata=AUTH, timeout=10,
        )
        assert started.instanceId == iid
        done = stub.WaitForInstanceCompletion(
            pb.GetInstanceRequest(instanceId=iid, getInputsAndOutputs=True), metadata=AUTH, timeout=30
        )
        assert done.exists
        state = done.workflowState
        assert state.workflowStatus == opb.ORCHESTRATION_STATUS_COMPLETED
        assert json.loads(state.output.value) == {"received": {"a": 1}}
        assert state.input.value == '{"a": 1}'
        assert state.createdTimestamp.seconds > 0

        history = stub.GetInstanceHistory(pb.GetInstanceHistoryRequest(instanceId=iid), metadata=AUTH, timeout=30)
        kinds = [e.WhichOneof("eventType") for e in history.events]
        assert kinds[:2] == ["workflowStarted", "executionStarted"] and kinds[-1] == "executionCompleted"
        assert history.events[-1].executionCompleted.workflowStatus == opb.ORCHESTRATION_STATUS_COMPLETED
        with pytest.raises(grpc.RpcError) as unknown:
            stub.GetInstanceHistory(pb.GetInstanceHistoryRequest(instanceId="no-such-instance"), metadata=AUTH,
                                    timeout=30)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND

        with pytest.raises(grpc.RpcError) as running_purge:
            stub.PurgeInstances(
                pb.PurgeInstancesRequest(purgeInstanceFilter=pb.PurgeInstanceFilter()), metadata=AUTH, timeout=10
            )
        assert running_purge.value.code() is grpc.StatusCode.UNIMPLEMENTED

        listed: list[str] = []
        token: str | None = None
        while True:
            page = stub.ListInstanceIDs(
                pb.ListInstanceIDsRequest(pageSize=50, continuationToken=token), metadata=AUTH, timeout=10
            )
            listed += page.instanceIds
            if not page.HasField("continuationToken"):
                break
            token = page.continuationToken
        assert iid in listed

        with pytest.raises(grpc.RpcError) as unserved:
            list(stub.GetWorkItems(pb.GetWorkItemsRequest(), metadata=AUTH, timeout=10))
        assert unserved.value.code() is grpc.StatusCode.UNIMPLEMENTED
