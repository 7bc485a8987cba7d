"""A Dapr app under Dapr's own Python SDK (dapr-ext-workflow from PyPI, unmodified), run in a venv of
its own: its `WorkflowRuntime` registers two activities and connects to Headrace's gRPC front end
(found by DAPR_GRPC_ENDPOINT and DAPR_API_TOKEN only), which hands it the work items of those
activities for a workflow Headrace's engine runs (`grpc_calls_app`, tests/grpc/app_workflows.py).
Its `DaprWorkflowClient` starts that workflow and prints the finished state as JSON.

Usage: python sdk_app.py <instance ID>
"""

import json
import sys

from dapr.ext.workflow import DaprWorkflowClient, WorkflowActivityContext, WorkflowRuntime

runtime = WorkflowRuntime()
calls = []


@runtime.activity(name="sdk_shout")
def shout(ctx: WorkflowActivityContext, text: str) -> str:
    calls.append([ctx.workflow_id, ctx.task_id])
    return text.upper() + "!"


@runtime.activity(name="sdk_fail")
def fail(ctx: WorkflowActivityContext, text: str) -> str:
    raise RuntimeError(f"cannot take {text}")


runtime.start()
try:
    client = DaprWorkflowClient()
    iid = client.schedule_new_workflow("grpc_calls_app", input="hello", instance_id=sys.argv[1])
    state = client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
    print(json.dumps({
        "status": state.runtime_status.name,
        "output": json.loads(state.serialized_output),
        "calls": calls,
    }))
finally:
    runtime.shutdown()
