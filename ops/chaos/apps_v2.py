"""Version 2 of the chaos app: `chaos_versioned` takes a different first step; nothing else changes.

An engine restarted with `--app ops.chaos.apps_v2:runtime` replays the histories version 1 wrote:
a running `chaos_versioned` instance then fails with a NonDeterminismError (its first step was
`chaos_add`, the code now calls `chaos_double`), and every other workflow carries on.
"""

from __future__ import annotations

from typing import Any

from engine import DaprWorkflowContext, WorkflowRuntime

from . import apps

runtime = WorkflowRuntime()
for _name, _fn in apps.runtime.registry.activities.items():
    runtime.register_activity(_fn, name=_name)
for _name, _fn in apps.runtime.registry.workflows.items():
    if _name != "chaos_versioned":
        runtime.register_workflow(_fn, name=_name)


@runtime.workflow(name="chaos_versioned")
def versioned(ctx: DaprWorkflowContext, args: dict[str, Any]) -> Any:
    first = yield ctx.call_activity(apps.double, input=int(args["x"]))
    got = yield ctx.wait_for_external_event("go")
    return first + int(got["v"])
