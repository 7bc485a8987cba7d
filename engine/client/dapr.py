"""`DaprWorkflowClient`: Dapr's client methods over `WorkflowCommands`, on Kafka.

One implementation serves both clients: `ClientCore` holds the producer, the status view and the
`WorkflowCommands` service on a private event loop in a daemon thread, and does every operation
as a coroutine there. The sync `DaprWorkflowClient` (here) blocks on it; the async one
(`engine.aio.DaprWorkflowClient`) awaits it from whatever loop the caller runs. A client that is
never closed (every Dapr example) is closed when it is garbage-collected or when the program
exits, so no Kafka client is left open.

Read your writes (`engine.client.kafka.ViewLookUp`): a start waits (bounded) until the status
shows its run or its refusal (raised, as daprd's AlreadyExists), and is shown PENDING until the
status shows it; every other command waits (bounded by `apply_timeout`) until the status shows
it applied or shows that it cannot apply. The view reads only the status partitions of the
instances this client touches (see `engine.client.kafka`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from ..core.context import registered_name
from ..core.serializer import to_json
from ..core.state import InstanceState
from ..read.status import StatusFollower
from ..sdk.state import WorkflowState
from ..settings import Settings
from ..topics import Topics, ensure_topics, producer_options
from .kafka import KafkaSend, ViewLookUp
from .service import WorkflowCommands

__all__ = ["ClientCore", "DaprWorkflowClient"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a command waits for the view to show it applied before the call returns anyway (the
#: command is written to Kafka by then and applies when the engine gets to it).
APPLY_TIMEOUT = 10.0
#: How long closing may take, at exit included.
CLOSE_TIMEOUT = 10.0


@dataclass
class _Resources:
    """What closing needs, kept apart from the client so a finalizer can hold it without the client."""

    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    view: StatusFollower
    producer: AIOKafkaProducer | None = None
    closed: bool = field(default=False)


def _close(res: _Resources) -> None:
    """Stop the Kafka clients on their loop, then the loop; safe to call twice and at interpreter exit."""
    if res.closed:
        return
    res.closed = True
    if not res.thread.is_alive() or res.loop.is_closed():
        return

    async def shut() -> None:
        await res.view.stop()
        if res.producer is not None:
            await res.producer.stop()

    if threading.current_thread() is res.thread:  # collected on its own loop: cannot wait for it here
        res.loop.create_task(shut()).add_done_callback(lambda _: res.loop.stop())
        return
    try:
        asyncio.run_coroutine_threadsafe(shut(), res.loop).result(CLOSE_TIMEOUT)
    except Exception as exc:  # closing must not raise out of a finalizer or an atexit hook
        log.warning("closing the workflow client: %s", exc)
    res.loop.call_soon_threadsafe(res.loop.stop)
    res.thread.join(timeout=CLOSE_TIMEOUT)
    if not res.thread.is_alive():
        res.loop.close()


class ClientCore:
    """The client's Kafka clients and its `WorkflowCommands`, run on a private loop (see the
    module docstring); Dapr's methods as coroutines, user values serialized as Dapr's SDK does."""

    def __init__(self, settings: Settings, apply_timeout: float = APPLY_TIMEOUT) -> None:
        self.settings = settings
        self.topics = Topics.for_settings(settings)
        self.apply_timeout = apply_timeout
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="headrace-client", daemon=True)
        thread.start()
        # Only the partitions of the instances this client is asked about (see engine.client.kafka),
        # from their end: older states are read back by key when asked for (`StatusFollower.look_up`).
        self.view = StatusFollower(settings, partitions=(), from_end=True)
        self.lookup = ViewLookUp(self.view)
        self._res = _Resources(loop, thread, self.view)
        self._commands: WorkflowCommands | None = None
        # Closed when collected, or at exit (weakref.finalize runs pending finalizers atexit).
        self._finalizer = weakref.finalize(self, _close, self._res)

    # -- running on the private loop ---------------------------------------------------------

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self._res.closed:
            coro.close()
            raise RuntimeError("the workflow client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._res.loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    async def open(self) -> None:
        await ensure_topics(self.settings)
        producer = AIOKafkaProducer(**producer_options(self.settings))
        self._res.producer = producer
        await producer.start()
        await self.view.start()
        self._commands = WorkflowCommands(self.lookup, KafkaSend(producer, self.topics.commands),
                                          apply_timeout=self.apply_timeout,
                                          max_payload_bytes=self.settings.max_payload_bytes)

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._res.closed

    @property
    def commands(self) -> WorkflowCommands:
        if self._commands is None:
            raise RuntimeError("the workflow client is not connected")
        return self._commands

    # -- Dapr's methods, as coroutines ---------------------------------------------------------

    async def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                                    instance_id: str | None = None, start_at: datetime | None = None) -> str:
        return await self.commands.start(registered_name(workflow), input=to_json(input), instance_id=instance_id,
                                         start_at=start_at)

    async def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        return _shown(await self.commands.get(instance_id), fetch_payloads)

    async def wait_for_workflow_start(self, instance_id: str, timeout_in_seconds: float,
                                      fetch_payloads: bool) -> WorkflowState | None:
        return _shown(await self.commands.wait_for_start(instance_id, timeout_in_seconds or None), fetch_payloads)

    async def wait_for_workflow_completion(self, instance_id: str, timeout_in_seconds: float,
                                           fetch_payloads: bool) -> WorkflowState | None:
        return _shown(await self.commands.wait_for_completion(instance_id, timeout_in_seconds or None),
                      fetch_payloads)

    async def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        await self.commands.raise_event(instance_id, event_name, to_json(data))

    async def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        await self.commands.terminate(instance_id, to_json(output), recursive=recursive)

    async def pause_workflow(self, instance_id: str) -> None:
        await self.commands.suspend(instance_id)

    async def resume_workflow(self, instance_id: str) -> None:
        await self.commands.resume(instance_id)

    async def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        await self.commands.purge(instance_id, recursive=recursive)


def _shown(state: InstanceState | None, fetch_payloads: bool) -> WorkflowState | None:
    return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)


class DaprWorkflowClient:
    """Start, query and steer workflows. Works in any program that can reach the broker.

    `host`/`port` are accepted for Dapr compatibility and ignored: the broker comes from
    `KAFKA_BOOTSTRAP_SERVERS` (or `settings`). `close()` is optional, as in Dapr.
    """

    def __init__(self, host: str | None = None, port: str | None = None, logger_options: Any = None,
                 max_grpc_message_length: int | None = None, *, settings: Settings | None = None) -> None:
        self._core = ClientCore(settings or Settings.from_env())
        try:
            self._core.call(self._core.open())
        except BaseException:
            self._core.close()
            raise

    @property
    def settings(self) -> Settings:
        return self._core.settings

    @property
    def topics(self) -> Topics:
        return self._core.topics

    @property
    def _view(self) -> StatusFollower:
        return self._core.view

    def close(self) -> None:
        self._core.close()

    def __enter__(self) -> DaprWorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- Dapr's methods ----------------------------------------------------------------------

    def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                              instance_id: str | None = None, start_at: datetime | None = None,
                              reuse_id_policy: Any = None) -> str:
        return self._core.call(self._core.schedule_new_workflow(workflow, input=input, instance_id=instance_id,
                                                                start_at=start_at))

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        return self._core.call(self._core.get_workflow_state(instance_id, fetch_payloads=fetch_payloads))

    def wait_for_workflow_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                timeout_in_seconds: int = 0) -> WorkflowState | None:
        return self._core.call(self._core.wait_for_workflow_start(instance_id, timeout_in_seconds, fetch_payloads))

    def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                     timeout_in_seconds: int = 0) -> WorkflowState | None:
        return self._core.call(self._core.wait_for_workflow_completion(instance_id, timeout_in_seconds,
                                                                       fetch_payloads))

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self._core.call(self._core.raise_workflow_event(instance_id, event_name, data=data))

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self._core.call(self._core.terminate_workflow(instance_id, output=output, recursive=recursive))

    def pause_workflow(self, instance_id: str) -> None:
        self._core.call(self._core.pause_workflow(instance_id))

    def resume_workflow(self, instance_id: str) -> None:
        self._core.call(self._core.resume_workflow(instance_id))

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        self._core.call(self._core.purge_workflow(instance_id, recursive))
