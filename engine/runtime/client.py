"""`DaprWorkflowClient`: Dapr's client methods, over Kafka (commands out, status view in)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any, TypeVar

from aiokafka import AIOKafkaProducer

from ..core import commands as cmd
from ..core.codec import encode
from ..core.context import registered_name
from ..core.ids import check_id, check_new_instance_id
from ..core.payload import dump_payload
from ..core.state import InstanceState
from ..errors import InstanceExistsError, InstanceNotFoundError, InstanceNotTerminalError, PayloadTooLargeError
from ..sdk.state import WorkflowState
from .settings import Settings
from .topics import Topics, ensure_topics, record_limit
from .view import StatusView

__all__ = ["DaprWorkflowClient"]

T = TypeVar("T")


class DaprWorkflowClient:
    """Start, query and steer workflows. Works in any program that can reach the broker.

    `host`/`port` are accepted for Dapr compatibility and ignored: the broker comes from
    `KAFKA_BOOTSTRAP_SERVERS` (or `settings`).
    """

    def __init__(self, host: str | None = None, port: str | None = None, logger_options: Any = None,
                 max_grpc_message_length: int | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.from_env()
        self.topics = Topics.for_settings(self.settings)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="headrace-client", daemon=True)
        self._thread.start()
        #: Starts this client sent that the view has not shown yet (read-your-writes).
        self._sent: dict[str, InstanceState] = {}
        self._producer: AIOKafkaProducer | None = None
        self._view = StatusView(self.settings)
        self._call(self._open())

    async def _open(self) -> None:
        await ensure_topics(self.settings)
        self._producer = AIOKafkaProducer(**self.settings.client_kwargs(), enable_idempotence=True, linger_ms=0,
                                          max_request_size=record_limit(self.settings))
        await self._producer.start()
        await self._view.start()
        await self._view.caught_up.wait()

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def shut() -> None:
            await self._view.stop()
            if self._producer is not None:
                await self._producer.stop()

        self._call(shut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> DaprWorkflowClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending ---------------------------------------------------------------------------

    def _payload(self, what: str, value: Any) -> str | None:
        text = dump_payload(value)
        if text is not None and len(text.encode()) > self.settings.max_payload_bytes:
            raise PayloadTooLargeError(what, len(text.encode()), self.settings.max_payload_bytes)
        return text

    def _send(self, message: cmd.InstanceMessage) -> None:
        check_id(message.instance_id)

        async def send() -> None:
            assert self._producer is not None
            await self._producer.send_and_wait(self.topics.commands, encode(message),
                                               key=message.instance_id.encode())

        self._call(send())

    def _state(self, instance_id: str) -> InstanceState | None:
        seen = self._view.states.get(instance_id)
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

    # -- Dapr's methods ----------------------------------------------------------------------

    def schedule_new_workflow(self, workflow: Callable[..., Any] | str, *, input: Any = None,
                              instance_id: str | None = None, start_at: datetime | None = None,
                              reuse_id_policy: Any = None) -> str:
        # daprd's rule for a new instance's ID (IdError, a ValueError, says which part is wrong).
        iid = check_new_instance_id(instance_id) if instance_id else str(uuid.uuid4())
        current = self._state(iid)
        if current is not None and not current.is_terminal:
            raise InstanceExistsError(iid)
        command_id = uuid.uuid4().hex
        name = registered_name(workflow)
        self._send(cmd.StartWorkflow(instance_id=iid, command_id=command_id, name=name,
                                     input=self._payload("workflow input", input), scheduled_start=start_at))
        self._sent[iid] = InstanceState(instance_id=iid, name=name, execution_id=command_id, run_id=command_id)
        return iid

    def get_workflow_state(self, instance_id: str, *, fetch_payloads: bool = True) -> WorkflowState | None:
        state = self._state(instance_id)
        return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)

    def _wait(self, instance_id: str, done: Callable[[InstanceState], bool], timeout_in_seconds: float,
              fetch_payloads: bool) -> WorkflowState | None:
        sent = self._sent.get(instance_id)

        def matches(state: InstanceState | None) -> bool:
            if state is None or (sent is not None and state.run_id != sent.run_id):
                return False
            return done(state)

        timeout = timeout_in_seconds or None
        try:
            state = self._call(self._view.wait_for(instance_id, matches, timeout))
        except TimeoutError:
            raise TimeoutError(f"timed out waiting for workflow '{instance_id}'") from None
        return None if state is None else WorkflowState.from_instance(state, fetch_payloads=fetch_payloads)

    def wait_for_workflow_start(self, instance_id: str, *, fetch_payloads: bool = False,
                                timeout_in_seconds: int = 0) -> WorkflowState | None:
        return self._wait(instance_id, lambda s: s.status.value != "PENDING", timeout_in_seconds, fetch_payloads)

    def wait_for_workflow_completion(self, instance_id: str, *, fetch_payloads: bool = True,
                                     timeout_in_seconds: int = 0) -> WorkflowState | None:
        return self._wait(instance_id, lambda s: s.is_terminal, timeout_in_seconds, fetch_payloads)

    def raise_workflow_event(self, instance_id: str, event_name: str, *, data: Any = None) -> None:
        self._existing(instance_id)
        self._send(cmd.RaiseEvent(instance_id=instance_id, command_id=uuid.uuid4().hex, name=event_name,
                                  input=self._payload("event data", data)))

    def terminate_workflow(self, instance_id: str, *, output: Any = None, recursive: bool = True) -> None:
        self._existing(instance_id)
        self._send(cmd.TerminateWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex,
                                         output=self._payload("output", output), recursive=recursive))

    def pause_workflow(self, instance_id: str) -> None:
        self._existing(instance_id)
        self._send(cmd.SuspendWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex))

    def resume_workflow(self, instance_id: str) -> None:
        self._existing(instance_id)
        self._send(cmd.ResumeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex))

    def purge_workflow(self, instance_id: str, recursive: bool = True) -> None:
        state = self._existing(instance_id)
        if not state.is_terminal:
            raise InstanceNotTerminalError(instance_id, state.status.value)
        self._send(cmd.PurgeWorkflow(instance_id=instance_id, command_id=uuid.uuid4().hex, recursive=recursive))
