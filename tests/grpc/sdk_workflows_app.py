"""A Dapr app under Dapr's own Python SDK (dapr-ext-workflow from PyPI, unmodified), run in a venv of
its own: its `WorkflowRuntime` registers workflows and activities and connects to Headrace's gRPC
front end (found by DAPR_GRPC_ENDPOINT and DAPR_API_TOKEN only), which hands it the turns of those
workflows and their activities; Headrace's engine keeps their history, timers and work items.
Its `DaprWorkflowClient` runs each pattern and prints one JSON line per pattern, then "done".

Usage: python sdk_workflows_app.py <instance ID prefix>
"""

import json
import sys
import time
from datetime import timedelta

from dapr.ext.workflow import (
    DaprWorkflowClient,
    DaprWorkflowContext,
    RetryPolicy,
    WorkflowActivityContext,
    WorkflowRuntime,
    when_all,
)

runtime = WorkflowRuntime()
attempts = {}


@runtime.activity(name="r_inc")
def inc(ctx: WorkflowActivityContext, x: int) -> int:
    return x + 1


@runtime.activity(name="r_double")
def double(ctx: WorkflowActivityContext, x: int) -> int:
    return x * 2


@runtime.activity(name="r_flaky")
def flaky(ctx: WorkflowActivityContext, key: str) -> str:
    attempts[key] = attempts.get(key, 0) + 1
    if attempts[key] < 3:
        raise RuntimeError(f"attempt {attempts[key]} fails")
    return f"ok after {attempts[key]}"


@runtime.workflow(name="r_chain")
def chain(ctx: DaprWorkflowContext, x: int):
    x = yield ctx.call_activity(inc, input=x)
    x = yield ctx.call_activity(double, input=x)
    ctx.set_custom_status("halfway")
    x = yield ctx.call_activity(inc, input=x)
    return x


@runtime.workflow(name="r_fan")
def fan(ctx: DaprWorkflowContext, n: int):
    results = yield when_all([ctx.call_activity(double, input=i) for i in range(n)])
    return sum(results)


@runtime.workflow(name="r_parent")
def parent(ctx: DaprWorkflowContext, x: int):
    a = yield ctx.call_child_workflow(chain, input=x)
    b = yield ctx.call_child_workflow(chain, input=x, instance_id=f"{ctx.instance_id}-named-child")
    return [a, b]


@runtime.workflow(name="r_event")
def event(ctx: DaprWorkflowContext, _):
    approval = yield ctx.wait_for_external_event("approval")
    return {"approved": approval}


@runtime.workflow(name="r_timer")
def timer(ctx: DaprWorkflowContext, seconds: int):
    start = ctx.current_utc_datetime
    yield ctx.create_timer(timedelta(seconds=seconds))
    return (ctx.current_utc_datetime - start).total_seconds()


@runtime.workflow(name="r_retry")
def retry(ctx: DaprWorkflowContext, key: str):
    policy = RetryPolicy(first_retry_interval=timedelta(seconds=1), max_number_of_attempts=3)
    return (yield ctx.call_activity(flaky, input=key, retry_policy=policy))


@runtime.workflow(name="r_counter")
def counter(ctx: DaprWorkflowContext, n: int):
    if n < 3:
        yield ctx.call_activity(inc, input=n)
        ctx.continue_as_new(n + 1)
        return None
    return f"counted to {n}"


@runtime.workflow(name="r_patched")
def patched(ctx: DaprWorkflowContext, x: int):
    # Met live in the first turn (True), then replayed in every later turn: the replay must answer True.
    if ctx.is_patched("add-instead-of-double"):
        x = yield ctx.call_activity(inc, input=x)
    else:
        x = yield ctx.call_activity(double, input=x)
    x = yield ctx.call_activity(inc, input=x)
    return x


@runtime.workflow(name="r_sleeper")
def sleeper(ctx: DaprWorkflowContext, _):
    yield ctx.create_timer(timedelta(hours=1))
    return "woke"


def emit(pattern: str, state, **extra) -> None:
    print(json.dumps({
        "pattern": pattern,
        "status": state.runtime_status.name if state is not None else None,
        "output": json.loads(state.serialized_output) if state is not None and state.serialized_output else None,
        "custom_status": state.serialized_custom_status if state is not None else None,
        **extra,
    }), flush=True)


def main(prefix: str) -> None:
    client = DaprWorkflowClient()
    wait = 90

    def run(pattern, workflow, data, **extra):
        iid = client.schedule_new_workflow(workflow, input=data, instance_id=f"{prefix}-{pattern}")
        emit(pattern, client.wait_for_workflow_completion(iid, timeout_in_seconds=wait), instance_id=iid, **extra)
        return iid

    run("chain", chain, 1)
    run("fan", fan, 5)
    run("child", parent, 1)
    run("timer", timer, 1)
    run("retry", retry, f"{prefix}-retry")
    run("continue_as_new", counter, 0)
    run("patched", patched, 10)

    iid = client.schedule_new_workflow(event, instance_id=f"{prefix}-event")
    client.wait_for_workflow_start(iid, timeout_in_seconds=wait)
    client.raise_workflow_event(iid, "approval", data=True)
    emit("event", client.wait_for_workflow_completion(iid, timeout_in_seconds=wait), instance_id=iid)

    iid = client.schedule_new_workflow(event, instance_id=f"{prefix}-suspend")
    client.wait_for_workflow_start(iid, timeout_in_seconds=wait)
    client.pause_workflow(iid)
    paused = client.get_workflow_state(iid).runtime_status.name
    client.raise_workflow_event(iid, "approval", data="while paused")
    time.sleep(1)  # the app's own pacing: a paused workflow must not run the event meanwhile
    still = client.get_workflow_state(iid).runtime_status.name
    client.resume_workflow(iid)
    emit("suspend", client.wait_for_workflow_completion(iid, timeout_in_seconds=wait), instance_id=iid,
         paused=paused, still=still)

    iid = client.schedule_new_workflow(sleeper, instance_id=f"{prefix}-terminate")
    client.wait_for_workflow_start(iid, timeout_in_seconds=wait)
    client.terminate_workflow(iid, output="stopped")
    emit("terminate", client.wait_for_workflow_completion(iid, timeout_in_seconds=wait), instance_id=iid)

    iid = f"{prefix}-chain"
    client.purge_workflow(iid)
    emit("purge", client.get_workflow_state(iid), instance_id=iid)
    print("done", flush=True)


runtime.start()
try:
    main(sys.argv[1])
finally:
    runtime.shutdown()
