"""The command side, once for every front end: `WorkflowCommands` over two ports (`ports.py`).

`service.py` holds the rules of sending a command and reading its effect; `kafka.py` the Python
client's ports over Kafka, `watches.py` the watches the Kafka-backed ports share, `memory.py`
in-memory ports (the test environment's); `dapr.py` Dapr's `DaprWorkflowClient` over them. The
REST API's ports are in `api/consistency.py`.
"""

from __future__ import annotations

from .ports import LookUp, Send, Watch
from .service import WorkflowCommands

__all__ = ["LookUp", "Send", "Watch", "WorkflowCommands"]
