"""The async `DaprWorkflowClient`: the same `ClientCore` (and so the same `WorkflowCommands`) as
the sync client, awaited.

The core runs on its own loop in a daemon thread, so this client works from any event loop (and
from several `asyncio.run` calls in turn); each method awaits the core's coroutine there. It
connects on the first call, since Dapr's constructor is synchronous and takes no loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from ..client.dapr import ClientCore
from ..sdk.state import WorkflowState
from ..settings import Settings

__all__ = ["DaprWorkflowClient"]

T = TypeVar("T")


class DaprWorkflowClient:
    """Dapr's async workflow client (`dapr.ext.workflow.aio.DaprWorkflowClient`), over Kafka.

    `host`/`port` are accepted for Dapr compatibility and ignored, as in the sync client. Closing
    (`await client.close()`, or `async with`) is optional: an unclosed client is closed when it
    is garbage-collected or when the program exits.
    """

    def __init__(self, host: str | None = None, port: str | None = None, logger_options: Any = None,
                 max_grpc_message_length: int | None = None, *, settings: Settings | None = None) -> None:
        self._core = ClientCore(settings or Settings.from_env())
        self._opened: concurrent.futures.Future[None] | None = None

    @property
    def settings(self) -> Settings:
        return self._core.settings

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        # The connection is made once, on the core's loop; each caller's loop awaits its own
        # wrapper of it, so the client works across event loops (e.g. several asyncio.run calls).
        try:
            opened = self._opened
            if opened is None or (opened.done() and opened.exception() is not None):
                opened = self._opened = self._core.submit(self._core.open())
            await asyncio.shield(asyncio.wrap_future(opened))  # one caller cancelled must not cancel it
        except BaseException:
            coro.close()
            raise
        return await asyncio.wrap_future(self._core.submit(coro))

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._core.close)

    async def __aenter__(self) -> DaprWorkflowClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- Dapr's methods ----------------------------------------------------------------------

    async def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                                    instance_id: str | None = None, start_at: datetime | None = None,
                                    reuse_id_policy: Any = None) -> str:
        return await self._run(self._core.schedule_new_workflow(workflow, input=input, instance_id=instance_id,
                                                                start_at=start_at))

    async def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        return await self._run(self._core.get_workflow_state(instance_id, fetch_payloads=fetch_payloads))

    async def wait_for_workflow_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                      timeout_in_seconds: int = 0) -> WorkflowState | None:
        return await self._run(self._core.wait_for_workflow_start(instance_id, timeout_in_seconds, fetch_payloads))

    async def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                           timeout_in_seconds: int = 0) -> WorkflowState | None:
        return await self._run(self._core.wait_for_workflow_completion(instance_id, timeout_in_seconds,
                                                                       fetch_payloads))

    async def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        await self._run(self._core.raise_workflow_event(instance_id, event_name, data=data))

    async def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        await self._run(self._core.terminate_workflow(instance_id, output=output, recursive=recursive))

    async def pause_workflow(self, instance_id: str) -> None:
        await self._run(self._core.pause_workflow(instance_id))

    async def resume_workflow(self, instance_id: str) -> None:
        await self._run(self._core.resume_workflow(instance_id))

    async def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        await self._run(self._core.purge_workflow(instance_id, recursive))
