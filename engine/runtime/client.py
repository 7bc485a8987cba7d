"""`DaprWorkflowClient`: Dapr's client methods, over Kafka (commands out, status view in).

One implementation serves both clients: `ClientCore` holds the producer and the status view on a
private event loop in a daemon thread, and does every operation as a coroutine there. The sync
`DaprWorkflowClient` (here) blocks on it; the async one (`engine.aio.DaprWorkflowClient`) awaits
it from whatever loop the caller runs. A client that is never closed (every Dapr example) is
closed when it is garbage-collected or when the program exits, so no Kafka client is left open.

Read your writes: a client's reads see its own commands. A start waits (bounded) until the view
shows its run or its refusal (raised, as daprd's AlreadyExists), and is remembered until the view
shows it; every other command waits (bounded by `apply_timeout`) until the view shows it applied
(its command ID among the instance's recent commands) or shows that it cannot apply.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import uuid
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from ..core import commands as cmd
from ..core.codec import encode
from ..core.context import registered_name
from ..core.ids import check_id, check_new_instance_id
from ..core.serializer import to_json
from ..core.state import InstanceState
from ..core.values import RuntimeStatus
from ..errors import (
    ChildrenRunningError,
    InstanceExistsError,
    InstanceNotFoundError,
    InstanceNotTerminalError,
    PayloadTooLargeError,
)
from ..sdk.state import WorkflowState
from .settings import Settings
from .topics import Topics, ensure_topics, record_limit
from .view import StatusView

__all__ = ["ClientCore", "DaprWorkflowClient", "start_refusal", "start_settled"]

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
    view: StatusView
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
    """The client's state and operations, run as coroutines on a private loop (see the module docstring)."""

    def __init__(self, settings: Settings, apply_timeout: float = APPLY_TIMEOUT) -> None:
        self.settings = settings
        self.topics = Topics.for_settings(settings)
        self.apply_timeout = apply_timeout
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="headrace-client", daemon=True)
        thread.start()
        self.view = StatusView(settings)
        self._res = _Resources(loop, thread, self.view)
        # Closed when collected, or at exit (weakref.finalize runs pending finalizers atexit).
        self._finalizer = weakref.finalize(self, _close, self._res)
        #: Starts this client sent that the view has not shown yet (read-your-writes).
        self._sent: dict[str, InstanceState] = {}

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
        producer = AIOKafkaProducer(**self.settings.client_kwargs(), enable_idempotence=True, linger_ms=0,
                                    max_request_size=record_limit(self.settings))
        self._res.producer = producer
        await producer.start()
        await self.view.start()
        await self.view.caught_up.wait()

    def close(self) -> None:
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._res.closed

    # -- sending and reading -----------------------------------------------------------------

    def _payload(self, what: str, value: Any) -> str | None:
        text = to_json(value)
        if text is not None and len(text.encode()) > self.settings.max_payload_bytes:
            raise PayloadTooLargeError(what, len(text.encode()), self.settings.max_payload_bytes)
        return text

    async def _send(self, message: cmd.InstanceMessage) -> None:
        check_id(message.instance_id)
        producer = self._res.producer
        assert producer is not None
        await producer.send_and_wait(self.topics.commands, encode(message), key=message.instance_id.encode())

    def _state(self, instance_id: str) -> InstanceState | None:
        seen = self.view.states.get(instance_id)
        sent = self._sent.get(instance_id)
        if sent is not None and (seen is None or seen.run_id != sent.run_id):
            return sent
        self._sent.pop(instance_id, None)
        return seen

    def _existing(self, instance_id: str) -> InstanceState:
        check_id(instance_id)
        state = self._state(instance_id)
        if state is None:
            raise InstanceNotFoundError(instance_id)
        return state

    async def _until_applied(self, instance_id: str, done: Callable[[InstanceState | None], bool]) -> None:
        """Wait (bounded) until the view shows this client's command took effect, or cannot."""
        try:
            await self.view.wait_for(instance_id, done, self.apply_timeout)
        except TimeoutError:
            log.warning("the status of workflow '%s' did not show the command within %.0fs; it applies when the "
                        "engine gets to it", instance_id, self.apply_timeout)

    async def _command(self, message: cmd.Command, settled: Callable[[InstanceState], bool]) -> None:
        """Send a command to a running instance and wait until the view shows it applied or ignored.

        `settled(state)` says the command changes nothing more in that state (e.g. a pause when the
        instance is suspended): the engine ignored it, or someone else's command got there first.
        """
        before = self._existing(message.instance_id)
        run_id = before.run_id
        await self._send(message)

        def done(state: InstanceState | None) -> bool:
            if state is None or state.run_id != run_id:
                return False  # not (yet) showing the run the command was sent to
            if message.command_id in state.recent_commands:
                return True
            # The engine ignores a command for an instance that is finished or not started yet.
            return state.is_terminal or state.status is RuntimeStatus.PENDING or settled(state)

        await self._until_applied(message.instance_id, done)

    # -- Dapr's methods, as coroutines ---------------------------------------------------------

    async def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                                    instance_id: str | None = None, start_at: datetime | None = None) -> str:
        # daprd's rule for a new instance's ID (IdError, a ValueError, says which part is wrong).
        iid = check_new_instance_id(instance_id) if instance_id else str(uuid.uuid4())
        current = self._state(iid)
        if current is not None and not current.is_terminal:
            raise InstanceExistsError(iid)
        command_id = uuid.uuid4().hex
        name = registered_name(workflow)
        await self._send(cmd.StartWorkflow(instance_id=iid, command_id=command_id, name=name,
                                           input=self._payload("workflow input", input), scheduled_start=start_at))
        self._sent[iid] = InstanceState(instance_id=iid, name=name, execution_id=command_id, run_id=command_id)
        # As daprd, answer once the engine has started the run or refused the start (another start
        # won, or a child of the finished run still runs).
        try:
            state = await self.view.wait_for(iid, lambda s: start_settled(s, command_id), self.apply_timeout)
        except TimeoutError:
            log.warning("the status of workflow '%s' did not show its start within %.0fs; it starts when the engine "
                        "gets to it", iid, self.apply_timeout)
            return iid
        refused = start_refusal(state, command_id)
        if refused is not None:
            self._sent.pop(iid, None)
            raise refused
        return iid

    async def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        state = self._state(instance_id)
        return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)

    async def wait(self, instance_id: str, done: Callable[[InstanceState], bool], timeout_in_seconds: float,
                   fetch_payloads: bool) -> WorkflowState | None:
        sent = self._sent.get(instance_id)

        def matches(state: InstanceState | None) -> bool:
            if state is None or (sent is not None and state.run_id != sent.run_id):
                return False
            return done(state)

        try:
            state = await self.view.wait_for(instance_id, matches, timeout_in_seconds or None)
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for workflow '{instance_id}'") from None
        return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)

    async def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        payload = self._payload("event data", data)
        await self._command(cmd.RaiseEvent(instance_id=instance_id, command_id=uuid.uuid4().hex, name=event_name,
                                           input=payload), lambda state: False)

    async def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        payload = self._payload("output", output)
        await self._command(cmd.TerminateWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex,
                                                  output=payload, recursive=recursive), lambda state: False)

    async def pause_workflow(self, instance_id: str) -> None:
        await self._command(cmd.SuspendWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex),
                            lambda state: state.status is RuntimeStatus.SUSPENDED)

    async def resume_workflow(self, instance_id: str) -> None:
        await self._command(cmd.ResumeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex),
                            lambda state: state.status is not RuntimeStatus.SUSPENDED)

    async def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        state = self._existing(instance_id)
        if not state.is_terminal:
            raise InstanceNotTerminalError(instance_id, state.status.value)
        run_id = state.run_id
        await self._send(cmd.PurgeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex,
                                           recursive=recursive))
        self._sent.pop(instance_id, None)
        # Done when the instance is gone from the view (or a newer run replaced it).
        await self._until_applied(instance_id, lambda s: s is None or s.run_id != run_id)


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
    def _view(self) -> StatusView:
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
        return self._core.call(self._core.wait(instance_id, _started, timeout_in_seconds, fetch_payloads))

    def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                     timeout_in_seconds: int = 0) -> WorkflowState | None:
        return self._core.call(self._core.wait(instance_id, _finished, timeout_in_seconds, fetch_payloads))

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


def start_settled(state: InstanceState | None, command_id: str) -> bool:
    """The status shows what became of the start `command_id`: its run, or its refusal."""
    return state is not None and (state.run_id == command_id or command_id in state.recent_commands)


def start_refusal(state: InstanceState | None, command_id: str) -> InstanceExistsError | None:
    """The error for a start the engine refused (`start_settled` holds), or None if it started."""
    if state is None or state.run_id == command_id or command_id not in state.recent_commands:
        return None
    if not state.is_terminal:
        return InstanceExistsError(state.instance_id)
    # Refused over a finished run: one of its children still ran (it may have ended since).
    unfinished = state.unfinished_children
    return ChildrenRunningError(state.instance_id, unfinished[min(unfinished)] if unfinished else None)


def _started(state: InstanceState) -> bool:
    return state.status is not RuntimeStatus.PENDING


def _finished(state: InstanceState) -> bool:
    return state.is_terminal
