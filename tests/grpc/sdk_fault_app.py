"""A Dapr app under Dapr's own Python SDK (dapr-ext-workflow from PyPI, unmodified) for the fault tests
(tests/grpc/test_remote_faults.py): a worker only, its `WorkflowRuntime` registers a chain and its
activity, connects to `headrace grpc` by DAPR_GRPC_ENDPOINT / DAPR_API_TOKEN, and runs until killed.

The app's own behaviour, from its environment (not the SDK's):
- FAULT_MARKS: a folder; each activity run appends "<instance> <step>" to `act-start` when it starts
  and to `act-end` when it ends, each fresh turn of the workflow code appends to `turn`;
- FAULT_HOLD=activity: every activity blocks after its start mark (until the app is killed); with
  FAULT_HOLD_AFTER=N, only those after the first N this app runs, each marking `held` as it blocks;
- FAULT_HOLD=turn: the workflow code blocks in its first fresh turn (not a replay), after its mark;
- FAULT_STEP_SECONDS: how long each activity takes (default 0).
"""

import os
import threading
import time
from pathlib import Path

from dapr.ext.workflow import DaprWorkflowContext, WorkflowActivityContext, WorkflowRuntime

MARKS = Path(os.environ["FAULT_MARKS"])
HOLD = os.environ.get("FAULT_HOLD", "")
HOLD_AFTER = int(os.environ.get("FAULT_HOLD_AFTER", "0"))
STEP_SECONDS = float(os.environ.get("FAULT_STEP_SECONDS", "0"))
_lock = threading.Lock()
_runs = 0
runtime = WorkflowRuntime()


def mark(kind: str, text: str) -> None:
    with _lock, (MARKS / kind).open("a") as out:
        out.write(text + "\n")


@runtime.activity(name="f_step")
def step(ctx: WorkflowActivityContext, args: dict) -> int:
    global _runs
    mark("act-start", f"{ctx.workflow_id} {args['step']}")
    with _lock:
        _runs += 1
        hold = HOLD == "activity" and _runs > HOLD_AFTER
    if hold:
        if HOLD_AFTER:
            mark("held", f"{ctx.workflow_id} {args['step']}")
        threading.Event().wait()  # until the test kills this app
    time.sleep(STEP_SECONDS)
    mark("act-end", f"{ctx.workflow_id} {args['step']}")
    return args["value"] + 1


@runtime.workflow(name="f_chain")
def chain(ctx: DaprWorkflowContext, steps: int):
    if not ctx.is_replaying:
        mark("turn", ctx.instance_id)
        if HOLD == "turn":
            threading.Event().wait()  # until the test kills this app
    value = 0
    for i in range(steps):
        value = yield ctx.call_activity(step, input={"step": i, "value": value})
    return value


runtime.start()
threading.Event().wait()
