"""Runs under Dapr's own Python SDK (dapr-ext-workflow from PyPI, unmodified) in a venv of its own,
never in the test suite's: it drives Headrace's gRPC front end exactly as an app drives daprd, found
through the environment only (DAPR_GRPC_ENDPOINT, DAPR_API_TOKEN), and prints one JSON object of
what it saw for the test to check.

Usage: python sdk_client.py <prefix>   (instance IDs start with the prefix)
"""

import json
import sys

import grpc
from dapr.ext.workflow import DaprWorkflowClient

prefix = sys.argv[1]
seen = {}
client = DaprWorkflowClient()

# Start, wait for the start, suspend, resume, raise the event it waits for, wait for the end.
gate = client.schedule_new_workflow("api_gate", input=21, instance_id=f"{prefix}_gate")
started = client.wait_for_workflow_start(gate, timeout_in_seconds=30)
seen["gate_started"] = started.runtime_status.name
seen["gate_input"] = started.serialized_input  # the start wait asks for no payloads
try:
    client.schedule_new_workflow("api_gate", input=1, instance_id=gate)
    seen["duplicate_start"] = "accepted"
except grpc.RpcError as error:
    seen["duplicate_start"] = [error.code().name, error.details()]
client.pause_workflow(gate)
seen["gate_paused"] = client.get_workflow_state(gate).runtime_status.name
client.resume_workflow(gate)
seen["gate_resumed"] = client.get_workflow_state(gate).runtime_status.name
client.raise_workflow_event(gate, "go", data=5)
done = client.wait_for_workflow_completion(gate, timeout_in_seconds=30)
seen["gate_done"] = [done.runtime_status.name, json.loads(done.serialized_output), done.serialized_custom_status]
seen["gate_name"] = done.name

# Terminate a waiting run, with recursion to its child.
parent = client.schedule_new_workflow("api_parent", input=3, instance_id=f"{prefix}_parent")
client.wait_for_workflow_start(parent, timeout_in_seconds=30)
client.terminate_workflow(parent, output="stopped")
ended = client.wait_for_workflow_completion(parent, timeout_in_seconds=30)
seen["parent_terminated"] = [ended.runtime_status.name, ended.serialized_output]

# A failing workflow: its failure details reach the SDK's state.
fail = client.schedule_new_workflow("api_fail", input="x", instance_id=f"{prefix}_fail")
failed = client.wait_for_workflow_completion(fail, timeout_in_seconds=30)
seen["fail"] = [failed.runtime_status.name, failed.failure_details.error_type, failed.failure_details.message]

# Purge the finished gate: gone afterwards.
client.purge_workflow(gate)
seen["gate_after_purge"] = client.get_workflow_state(gate) is None
seen["unknown"] = client.get_workflow_state(f"{prefix}_never") is None
try:
    client.raise_workflow_event(f"{prefix}_never", "go", data=1)
    seen["event_to_unknown"] = "accepted"
except grpc.RpcError as error:
    seen["event_to_unknown"] = [error.code().name, error.details()]
client.close()
print(json.dumps(seen))
