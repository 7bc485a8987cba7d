"""The load generator: StartWorkflow commands straight to Kafka, completions from the status topic.

`DaprWorkflowClient` is synchronous and waits for each send (~5 ms a call): fine for an app, too
slow for thousands of workflows a second. Here sends are pipelined on one idempotent producer, and
the engine's status follower (`engine.read.status`) tells this generator of every state it reads.

Start-to-completion is measured from just before the send to the moment this process reads the
terminal status record; the engine's own view (completed_at - created_at) is kept beside it.

Through the REST API (`--via api`) the POSTs are made by the compiled load generator of
`httpload.py` when Go is there (this process still decides what to start when, and follows the
completions), else by httpx here.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
from aiokafka import AIOKafkaProducer

from engine.core.codec import encode
from engine.core.commands import StartWorkflow
from engine.core.payload import dump_payload
from engine.core.state import InstanceState
from engine.read.status import StatusFollower
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import decode_partial_state

from .httpload import GoStarter, Reply
from .scenarios import Scenario

__all__ = ["Instance", "LoadGenerator", "LoadResult", "Stalled", "fixed_input"]


class Stalled(Exception):
    """No workflow completed for too long while some were still running."""


@dataclass(slots=True)
class Instance:
    sent: float  # monotonic time just before the send
    measured: bool  # started after the warm-up
    done: float = 0.0  # monotonic time the terminal status was read
    status: str = ""
    engine_s: float | None = None  # completed_at - created_at, from the engine's clock
    output: str | None = None
    responded: float = 0.0  # monotonic time the API answered the start (through the API only)


def fixed_input(scenario: Scenario) -> str | None:
    """The input every start of the scenario carries (encoded once, not per send); None where each
    start has its own (the timer scenarios' random delays)."""
    if scenario.workflow == "bench_timer":
        return None
    return dump_payload(scenario.workflow_input(random.Random(0)))  # noqa: S311 - not random here


@dataclass
class LoadResult:
    instances: dict[str, Instance]
    t0: float  # monotonic time of the first start (after the probe)
    window: tuple[float, float]
    probe_s: float
    peak_running: int
    stalled: str | None = None
    send_errors: list[str] = field(default_factory=list)


Hook = Callable[[], None]
Progress = Callable[[str, int, int, int, float], None]  # phase, done, started, measured done, s in phase


#: What `_Completions` and `LoadGenerator._on_done` read of a state.
_COMPLETION_FIELDS = ("status", "created_at", "completed_at", "output")


class _Completions:
    """Reports each instance's first running and first terminal state, from the status follower."""

    def __init__(
        self,
        settings: Settings,
        on_running: Callable[[str], None],
        on_done: Callable[[str, InstanceState, float], None],
    ) -> None:
        self.on_running = on_running
        self.on_done = on_done
        self.follower = StatusFollower(settings, observer=self._applied,
                                       decode=functools.partial(decode_partial_state, fields=_COMPLETION_FIELDS))
        self._seen: set[str] = set()
        self._finished: set[str] = set()

    async def start(self) -> None:
        await self.follower.start()

    async def stop(self) -> None:
        await self.follower.stop()

    def _applied(self, iid: str, state: InstanceState | None) -> None:
        if state is None or iid in self._finished:
            return
        if state.is_terminal:
            self._finished.add(iid)
            self.on_done(iid, state, time.monotonic())
        elif iid not in self._seen:
            self._seen.add(iid)
            self.on_running(iid)


def _engine_seconds(state: InstanceState) -> float | None:
    if state.created_at is None or state.completed_at is None:
        return None
    return (state.completed_at - state.created_at).total_seconds()


class LoadGenerator:
    """Runs one scenario's load shape; `on_window_start`/`on_window_end` mark the measurement."""

    def __init__(
        self,
        scenario: Scenario,
        settings: Settings,
        *,
        on_window_start: Hook,
        on_window_end: Hook,
        progress: Progress,
        seed: int = 1,
        stall_s: float = 60.0,
        probe_timeout_s: float | None = None,
        api_urls: list[str] | None = None,
        go: GoStarter | None = None,
    ) -> None:
        self.scenario = scenario
        self.settings = settings
        self.topic = Topics.for_settings(settings).commands
        self.on_window_start = on_window_start
        self.on_window_end = on_window_end
        self.progress = progress
        self.rng = random.Random(seed)  # noqa: S311 - timer delays, not secrets
        self.stall_s = stall_s
        # The probe waits for the workers to join their group, which takes seconds, not minutes.
        self.probe_timeout_s = probe_timeout_s or max(stall_s, 30.0)
        self.instances: dict[str, Instance] = {}
        self.done_count = 0
        self.running = 0
        self.peak_running = 0
        self.measured_started = 0
        self.measured_done = 0
        self.last_progress = time.monotonic()
        self.send_errors: list[str] = []
        self._slots = asyncio.Semaphore(0)
        self._changed = asyncio.Event()
        self._measuring = False
        self._window: list[float] = [0.0, 0.0]
        self._producer: AIOKafkaProducer | None = None
        self.api_urls = api_urls or []
        self._http: httpx.AsyncClient | None = None
        self._http_slots = asyncio.Semaphore(64)
        self._posts: set[asyncio.Task[None]] = set()
        #: The compiled load generator making the POSTs (with `api_urls`), else httpx here.
        self._go = go
        self._fixed_input = fixed_input(scenario)

    # -- completions ---------------------------------------------------------------------------

    def _replied(self, reply: Reply) -> None:
        """The Go load generator's result for one start."""
        inst = self.instances.get(reply.instance_id)
        if inst is None:
            return
        # Its own clock reading: the moment the request went out, not when this process asked.
        inst.sent = reply.sent
        inst.responded = reply.done
        if reply.status != 202:
            self._start_failed(reply.instance_id, f"HTTP {reply.status}: {reply.error[:200]}")

    def _on_running(self, iid: str) -> None:
        if iid in self.instances:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)

    def _on_done(self, iid: str, state: InstanceState, now: float) -> None:
        output = state.output
        self._finish(iid, now, state.status.value, _engine_seconds(state),
                     output if output is not None and len(output) < 64 else None)

    def _finish(self, iid: str, now: float, status: str, engine_s: float | None, output: str | None) -> None:
        inst = self.instances.get(iid)
        if inst is None or inst.done:
            return
        inst.done = now
        inst.status = status
        inst.engine_s = engine_s
        inst.output = output
        self.done_count += 1
        self.running = max(0, self.running - 1)
        if inst.measured:
            self.measured_done += 1
        self.last_progress = now
        self._slots.release()
        self._changed.set()

    # -- starts --------------------------------------------------------------------------------

    async def _start(self, iid: str) -> None:
        assert self._producer is not None
        text = (
            self._fixed_input if self._fixed_input is not None else dump_payload(self.scenario.workflow_input(self.rng))
        )
        message = StartWorkflow(instance_id=iid, command_id=uuid.uuid4().hex, name=self.scenario.workflow, input=text)
        now = time.monotonic()
        self.instances[iid] = Instance(sent=now, measured=self._measuring)
        if self._measuring:
            self.measured_started += 1
        self.last_progress = now
        if self._go is not None:
            self._go.start(iid, None if self._fixed_input is not None else text)
            return
        if self._http is not None:
            # Through the REST API: the POST runs beside the starter, so a slow response delays
            # this start only, as with independent clients.
            task = asyncio.create_task(self._post(iid, text))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
            return
        future = await self._producer.send(self.topic, encode(message), key=iid.encode())
        future.add_done_callback(lambda f: self._check_send(iid, f))

    async def _post(self, iid: str, text: str | None) -> None:
        assert self._http is not None
        url = self.api_urls[len(self.instances) % len(self.api_urls)]
        async with self._http_slots:
            try:
                response = await self._http.post(
                    f"{url}/v1.0/workflows/dapr/{self.scenario.workflow}/start",
                    params={"instanceID": iid},
                    content=(text or "").encode(),
                    headers={"content-type": "application/json"},
                )
            except httpx.HTTPError as exc:
                self._start_failed(iid, repr(exc))
                return
        inst = self.instances.get(iid)
        if inst is not None:
            inst.responded = time.monotonic()
        if response.status_code != 202:
            self._start_failed(iid, f"HTTP {response.status_code}: {response.text[:200]}")

    def _check_send(self, iid: str, future: asyncio.Future[object]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._start_failed(iid, repr(future.exception()))

    def _start_failed(self, iid: str, why: str) -> None:
        # Counted as finished (and failed), so the run does not wait for it to stall.
        self.send_errors.append(f"{iid}: {why}")
        self._finish(iid, time.monotonic(), "START_FAILED", None, None)

    # -- the run -------------------------------------------------------------------------------

    async def run(self) -> LoadResult:
        s = self.scenario
        follower = _Completions(self.settings, self._on_running, self._on_done)
        await follower.start()
        self._producer = AIOKafkaProducer(
            **self.settings.client_kwargs(),
            enable_idempotence=True,
            # A short linger batches bursts of starts; the latency scenario sends one at a time.
            linger_ms=0 if s.shape == "open" else 2,
            max_request_size=max(4 * 1024 * 1024, 2 * self.settings.max_payload_bytes),
        )
        await self._producer.start()
        if self._go is not None:
            self._go.follow(self._replied)
        elif self.api_urls:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(60.0, pool=None),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
            )
        stalled: str | None = None
        probe_s = math.nan
        t0 = time.monotonic()
        try:
            try:
                probe_s = await self._probe()
                t0 = time.monotonic()
                ticker = asyncio.create_task(self._tick(t0))
                try:
                    await self._drive(t0)
                    await self._drain()
                finally:
                    ticker.cancel()
                    await asyncio.gather(ticker, return_exceptions=True)
            except Stalled as exc:
                stalled = str(exc)
            if not self._window[0]:
                self._begin_window(t0)
            if not self._window[1]:
                self._end_window(time.monotonic())
        finally:
            if self._go is not None:
                await self._go.close()
            for task in list(self._posts):
                task.cancel()
            await asyncio.gather(*self._posts, return_exceptions=True)
            if self._http is not None:
                await self._http.aclose()
            await self._producer.stop()
            await follower.stop()
        return LoadResult(
            self.instances,
            t0,
            (self._window[0], self._window[1]),
            probe_s,
            self.peak_running,
            stalled,
            self.send_errors,
        )

    async def _probe(self) -> float:
        """One workflow end to end before anything counts: every process has joined its group."""
        t0 = time.monotonic()
        await self._start("probe")
        self._slots = asyncio.Semaphore(0)
        deadline = t0 + self.probe_timeout_s
        while not self.instances["probe"].done:
            if time.monotonic() > deadline:
                raise Stalled(f"the probe workflow did not complete in {self.probe_timeout_s:.0f} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.5)
        self._slots = asyncio.Semaphore(0)
        return time.monotonic() - t0

    def _begin_window(self, now: float) -> None:
        self._measuring = True
        self._window[0] = now
        self.on_window_start()

    def _end_window(self, now: float) -> None:
        if not self._window[1]:
            self._window[1] = now
            self.on_window_end()

    def _more(self, t0: float) -> bool:
        s = self.scenario
        if not self._measuring:
            if time.monotonic() - t0 >= s.warmup_s:
                self._begin_window(time.monotonic())
            else:
                return True
        if s.workflows:
            return self.measured_started < s.workflows
        return time.monotonic() < self._window[0] + s.duration_s

    async def _drive(self, t0: float) -> None:
        s = self.scenario
        if s.shape == "batch":
            self._begin_window(t0)
            for n in range(s.workflows):
                await self._start(f"b{n}")
            return
        if s.shape == "open":
            interval = 1.0 / s.rate
            n = 0
            while self._more(t0):
                await self._start(f"b{n}")
                n += 1
                await asyncio.sleep(max(0.0, t0 + n * interval - time.monotonic()))
                self._check_stall()
            return
        self._slots = asyncio.Semaphore(s.concurrency)
        n = 0
        while True:
            while True:
                try:
                    await asyncio.wait_for(self._slots.acquire(), 1.0)
                    break
                except TimeoutError:
                    self._check_stall()
                    if s.duration_s and self._measuring and not self._more(t0):
                        return
            if not self._more(t0):
                return
            await self._start(f"b{n}")
            n += 1

    async def _drain(self) -> None:
        s = self.scenario
        while True:
            now = time.monotonic()
            if s.duration_s and self._window[0] and now >= self._window[0] + s.duration_s:
                self._end_window(self._window[0] + s.duration_s)
            if not s.duration_s and self.measured_done >= self.measured_started:
                self._end_window(max((i.done for i in self.instances.values() if i.measured), default=now))
            if self.done_count >= len(self.instances):
                return
            self._check_stall()
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), 0.2)

    def _check_stall(self) -> None:
        idle = time.monotonic() - self.last_progress
        if self.done_count < len(self.instances) and idle > self.stall_s:
            missing = len(self.instances) - self.done_count
            raise Stalled(f"no workflow completed for {idle:.0f} s; {missing} still not finished")

    async def _tick(self, t0: float) -> None:
        s = self.scenario
        while True:
            now = time.monotonic()
            if s.duration_s and self._window[0] and now >= self._window[0] + s.duration_s:
                self._end_window(self._window[0] + s.duration_s)
            if not self._measuring:
                phase, since = "warm-up", now - t0
            elif not self._window[1]:
                phase, since = "measure", now - self._window[0]
            else:
                phase, since = "drain", now - self._window[1]
            self.progress(phase, self.done_count, len(self.instances), self.measured_done, since)
            await asyncio.sleep(0.25)
