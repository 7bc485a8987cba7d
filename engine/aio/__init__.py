"""Dapr's `dapr.ext.workflow.aio`: the async `DaprWorkflowClient`.

    from engine.aio import DaprWorkflowClient

    client = DaprWorkflowClient()
    iid = await client.schedule_new_workflow(my_workflow, input=1)
    state = await client.wait_for_workflow_completion(iid, timeout_in_seconds=30)
"""

from __future__ import annotations

from .client import DaprWorkflowClient

__all__ = ["DaprWorkflowClient"]
