"""Runs an engine and an activity worker in a background thread of the calling program."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from ..sdk.registry import Registry
from ..settings import Settings
from .engine import Engine
from .worker import ActivityWorker

__all__ = ["RuntimeHost"]

log = logging.getLogger(__name__)


class RuntimeHost:
    """What `WorkflowRuntime.start()` starts: both roles, one event loop, one thread."""

    def __init__(self, registry: Registry, settings: Settings | None = None, **overrides: Any) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self.engine = Engine(registry, self.settings)
        self.worker = ActivityWorker(registry, self.settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 60) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name="headrace-runtime", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError(f"the runtime did not join Kafka at {self.settings.bootstrap_servers} within {timeout}s")
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        # A Runner, not a bare loop closed after `_serve`: on the way out it cancels the tasks still
        # pending (a Kafka client's connection attempt, a background retry) and lets them finish,
        # so their sockets are closed here rather than left to the garbage collector, which closes
        # them with a ResourceWarning whenever it runs (in some later test, which then failed).
        with asyncio.Runner() as runner:
            self._loop = runner.get_loop()
            try:
                runner.run(self._serve())
            except BaseException as exc:
                self._error = exc
                self._started.set()
                log.exception("runtime stopped with an error")

    async def _serve(self) -> None:
        tasks = [asyncio.create_task(self.engine.run()), asyncio.create_task(self.worker.run())]

        async def ready() -> None:
            await self.engine.ready.wait()
            await self.worker.ready.wait()
            self._started.set()

        waiter = asyncio.create_task(ready())
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        waiter.cancel()
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]

    def stop(self, timeout: float | None = None) -> None:
        """Stops both roles; waits the worker's grace period for running activities, plus a margin."""
        if self._loop is None or self._thread is None:
            return
        if timeout is None:
            timeout = self.settings.shutdown_grace_seconds + 30
        self._loop.call_soon_threadsafe(self.engine.stop)
        self._loop.call_soon_threadsafe(self.worker.stop)
        self._thread.join(timeout)
        self._thread = None
