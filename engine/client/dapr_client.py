"""The few names of Dapr's `dapr.clients` and `dapr.conf` that its workflow examples import.

Dapr's examples import `DaprInternalError` (`dapr.clients.exceptions`), `Settings`
(`dapr.conf`) and, in human_approval, `DaprClient` for its `raise_workflow_event`. Here they are,
so such a program runs with its imports pointed at `engine.client.dapr_client`:

- `DaprClient`: the workflow methods of Dapr's older `DaprClient` (`raise_workflow_event`,
  `pause_workflow`, `resume_workflow`, `terminate_workflow`, `purge_workflow`), over a
  `DaprWorkflowClient`. `workflow_component` is accepted and ignored (one engine).
- `DaprInternalError`: Dapr's error type, with its message and error code.
- `Settings`/`settings`: Dapr's settings object; it reads `DAPR_*` environment variables and
  means nothing to Headrace.
"""

from __future__ import annotations

import os
from typing import Any

import orjson

__all__ = ["DaprClient", "DaprInternalError", "Settings", "settings"]

ERROR_CODE_UNKNOWN = "UNKNOWN"


class DaprInternalError(Exception):
    """Dapr's error type (`dapr.clients.exceptions.DaprInternalError`)."""

    def __init__(self, message: str | None, error_code: str | None = ERROR_CODE_UNKNOWN,
                 raw_response_bytes: bytes | None = None) -> None:
        super().__init__(message)
        self._message = message
        self._error_code = error_code
        self._raw_response_bytes = raw_response_bytes

    @property
    def message(self) -> str | None:
        return self._message

    @property
    def error_code(self) -> str | None:
        return self._error_code

    def as_dict(self) -> dict[str, Any]:
        return {"message": self._message, "errorCode": self._error_code,
                "raw_response_bytes": self._raw_response_bytes}

    def __str__(self) -> str:
        if self._error_code != ERROR_CODE_UNKNOWN:
            return f"('{self._message}', '{self._error_code}')"
        return self._message or ""


class Settings:
    """Dapr's `dapr.conf.Settings`: the `DAPR_*` environment variables as attributes (unused here)."""

    def __init__(self) -> None:
        for name, value in os.environ.items():
            if name.startswith("DAPR_"):
                setattr(self, name, value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("DAPR_"):
            return None
        raise AttributeError(f"'Settings' object has no attribute '{name}'")


settings = Settings()


class DaprClient:
    """The workflow methods of Dapr's older `DaprClient`, over a Headrace `DaprWorkflowClient`."""

    def __init__(self, address: str | None = None, *args: Any, settings: Any = None, **kwargs: Any) -> None:
        """Dapr's arguments (address, headers, timeouts, …) are accepted and ignored; `settings` is Headrace's."""
        from .dapr import DaprWorkflowClient  # Kafka is only imported by programs that use it

        self._client = DaprWorkflowClient(settings=settings)

    def __enter__(self) -> DaprClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def raise_workflow_event(self, instance_id: str, workflow_component: str, event_name: str,
                             event_data: Any = None, send_raw_bytes: bool = False) -> None:
        # Dapr sends bytes as they are (JSON text, for a workflow to read) and JSON-encodes the rest.
        data = orjson.loads(event_data) if isinstance(event_data, bytes | bytearray) else event_data
        self._client.raise_workflow_event(instance_id, event_name, data=data)

    def pause_workflow(self, instance_id: str, workflow_component: str = "dapr") -> None:
        self._client.pause_workflow(instance_id)

    def resume_workflow(self, instance_id: str, workflow_component: str = "dapr") -> None:
        self._client.resume_workflow(instance_id)

    def terminate_workflow(self, instance_id: str, workflow_component: str = "dapr") -> None:
        self._client.terminate_workflow(instance_id)

    def purge_workflow(self, instance_id: str, workflow_component: str = "dapr") -> None:
        self._client.purge_workflow(instance_id)
