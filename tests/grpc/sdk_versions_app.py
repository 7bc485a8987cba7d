"""A Dapr app under Dapr's own Python SDK (unmodified, in its own venv) with named workflow versions
(`versioned_workflow`, Dapr 1.17+), in two deployments of one app:

- `v1 <id>`: only version v1 exists; starts workflow <id>, which waits for an event, and exits once
  the workflow has run its first turn (its custom status says so);
- `v2 <id> <new id>`: v1 and v2 exist, v2 the latest; raises the event to <id>, which must finish
  on v1, the version it started with, then starts <new id>, which takes v2. Prints both as JSON.
"""

import json
import sys
import time

from dapr.ext.workflow import DaprWorkflowClient, DaprWorkflowContext, WorkflowRuntime

runtime = WorkflowRuntime()
part = sys.argv[1]


@runtime.versioned_workflow(name="r_versioned", version_name="v1", is_latest=part == "v1")
def v1(ctx: DaprWorkflowContext, _):
    ctx.set_custom_status("v1 waiting")
    event = yield ctx.wait_for_external_event("go")
    return f"v1:{event}"


if part == "v2":
    @runtime.versioned_workflow(name="r_versioned", version_name="v2", is_latest=True)
    def v2(ctx: DaprWorkflowContext, _):
        ctx.set_custom_status("v2 waiting")
        event = yield ctx.wait_for_external_event("go")
        return f"v2:{event}"


runtime.start()
try:
    client = DaprWorkflowClient()
    if part == "v1":
        iid = client.schedule_new_workflow("r_versioned", instance_id=sys.argv[2])
        deadline = time.monotonic() + 60
        while (client.get_workflow_state(iid).serialized_custom_status or "") != "v1 waiting":
            assert time.monotonic() < deadline, "the first turn did not run"
            time.sleep(0.1)
        print(json.dumps({"started": iid}))
    else:
        old, new = sys.argv[2], sys.argv[3]
        client.raise_workflow_event(old, "go", data="a")
        first = client.wait_for_workflow_completion(old, timeout_in_seconds=60)
        client.schedule_new_workflow("r_versioned", instance_id=new)
        client.wait_for_workflow_start(new, timeout_in_seconds=60)
        deadline = time.monotonic() + 60
        while (client.get_workflow_state(new).serialized_custom_status or "") != "v2 waiting":
            assert time.monotonic() < deadline, "the new run's first turn did not run"
            time.sleep(0.1)
        client.raise_workflow_event(new, "go", data="b")
        second = client.wait_for_workflow_completion(new, timeout_in_seconds=60)
        print(json.dumps({"old": json.loads(first.serialized_output), "new": json.loads(second.serialized_output)}))
finally:
    runtime.shutdown()
