"""The load driver: a mixed workload started through the REST API, with the client's own records.

Every start the API acknowledged (202) is recorded with its input and the output it must produce.
A start whose answer never came (the API died mid-request, Kafka was away: a transport error or a
5xx) is *ambiguous*: it may or may not have been produced. The driver retries it with the same
instance ID on another API, as a careful client would; a 409 then means an earlier attempt landed,
and the start counts as acknowledged. A start that was never acknowledged after `give_up_s` is
reported, not expected to complete. Instances of `chaos_event` get their `go` event raised after a
short random delay, also retried until acknowledged.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from .follower import StatusFollower

__all__ = ["KINDS", "LoadDriver", "Start", "expected_output", "plan"]

#: Workflow kind → (registered name, weight in the mix).
KINDS: dict[str, tuple[str, int]] = {
    "chain": ("chaos_chain", 30),
    "fan_out": ("chaos_fan_out", 15),
    "timer": ("chaos_timer", 15),
    "event": ("chaos_event", 15),
    "parent": ("chaos_parent", 10),
    "retry": ("chaos_retry", 15),
    "versioned": ("chaos_versioned", 0),
    # The rolling-deploy scenario's (ops/chaos/rolling.py): outputs name the branch taken.
    "patched": ("chaos_patched", 0),
    "named": ("chaos_named", 0),
    "new": ("chaos_new", 0),
}
#: Kinds that wait for a `go` event, and how long after the start the driver raises it (seconds):
#: the rolling-deploy kinds wait longer, so more of them cross from a v1 process to a v2 one.
EVENT_DELAY_S: dict[str, tuple[float, float]] = {
    "event": (0.1, 1.5), "versioned": (0.1, 1.5), "patched": (1.0, 8.0), "named": (1.0, 8.0),
}


def plan(kind: str, rng: random.Random) -> dict[str, Any]:
    """A random input for one workflow of `kind`."""
    x = rng.randint(0, 1_000_000)
    if kind == "chain":
        return {"x": x, "n": rng.randint(1, 4)}
    if kind == "fan_out":
        return {"x": x, "width": rng.randint(2, 5)}
    if kind == "timer":
        return {"x": x, "delay_s": round(rng.uniform(0.5, 3.0), 3)}
    if kind == "parent":
        return {"x": x, "children": rng.randint(1, 3)}
    if kind == "retry":
        return {"x": x, "fail": rng.randint(0, 2)}
    return {"x": x}  # event, versioned


def expected_output(kind: str, args: dict[str, Any], event: int | None = None, version: int = 1) -> int:
    """What the workflow in ops/chaos/apps.py returns for `args` (and the `go` event's value)."""
    x = int(args["x"])
    if kind == "chain":
        return x + int(args["n"])
    if kind == "fan_out":
        return sum(x + i + 1 for i in range(int(args["width"])))
    if kind in ("timer", "retry"):
        return x + 1
    if kind == "event":
        assert event is not None
        return x + event
    if kind == "parent":
        return sum(x + i + 1 for i in range(int(args["children"])))
    if kind == "versioned":
        assert event is not None
        return (x + 1 if version == 1 else 2 * x) + event
    raise ValueError(f"unknown kind {kind!r}")


@dataclass
class Start:
    """One workflow the driver started (or tried to), and what it must end as."""

    instance_id: str
    kind: str
    args: dict[str, Any]
    event: int | None = None
    #: The app version that runs it (non-determinism scenario).
    version: int = 1
    #: When set, the instance must end FAILED with this error type instead.
    expect_failure: str | None = None
    #: ...or completing with the output of `version` is right too.
    either: bool = False
    #: The driver raises `go` itself after a random delay (False: a fault raises it).
    auto_event: bool = True
    attempts: int = 0
    acked: bool = False
    ack: str = ""  # "202", or "409" when an ambiguous earlier attempt had landed
    ambiguous: int = 0  # attempts whose outcome was unknown
    raised: bool = False
    raise_attempts: int = 0
    sent_at: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return KINDS[self.kind][0]

    @property
    def expected(self) -> int:
        return expected_output(self.kind, self.args, self.event, self.version)

    def to_json(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "kind": self.kind,
            "args": self.args,
            "event": self.event,
            "version": self.version,
            "expect_failure": self.expect_failure,
            "attempts": self.attempts,
            "acked": self.acked,
            "ack": self.ack,
            "ambiguous": self.ambiguous,
            "raised": self.raised,
            "errors": self.errors,
        }


class LoadDriver:
    """Starts workflows through the APIs at `rate` per second, at most `max_inflight` unfinished."""

    def __init__(
        self,
        urls: list[str],
        follower: StatusFollower,
        rng: random.Random,
        *,
        prefix: str,
        rate: float,
        max_inflight: int = 200,
        give_up_s: float = 180.0,
    ) -> None:
        self.urls = urls
        self.follower = follower
        self.rng = rng
        self.prefix = prefix
        self.rate = rate
        self.max_inflight = max_inflight
        self.give_up_s = give_up_s
        self.starts: dict[str, Start] = {}
        #: The mix: kind -> weight, read at every start, so a scenario may change it while the load runs.
        self.weights: dict[str, int] = {k: w for k, (_, w) in KINDS.items() if w > 0}
        #: Requests now waiting for an answer, per API URL (the API-kill fault aims at these).
        self.in_flight: dict[str, int] = dict.fromkeys(urls, 0)
        self._acked = 0
        self._acked_done = 0
        follower.on_done.append(self._on_done)
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_api = 0
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(15.0, connect=3.0),
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    # -- the load ------------------------------------------------------------------------------

    def unfinished(self) -> int:
        """Acknowledged starts not finished yet (kept as counters: this is asked very often)."""
        return self._acked - self._acked_done

    def _on_done(self, instance_id: str) -> None:
        start = self.starts.get(instance_id)
        if start is not None and start.acked:
            self._acked_done += 1

    def _acknowledge(self, start: Start, how: str) -> None:
        start.acked, start.ack = True, how
        self._acked += 1
        if self.follower.is_done(start.instance_id):
            self._acked_done += 1

    async def run(
        self, count: int, kinds: dict[str, tuple[str, int]] | None = None, stop: Callable[[], bool] = lambda: False
    ) -> None:
        """Start `count` workflows of the weighted `kinds` (default: `self.weights`, as it is at each
        start), then wait until every start is answered."""
        mix = self.weights if kinds is None else {k: w for k, (_, w) in kinds.items() if w > 0}
        t0 = time.monotonic()
        for n in range(count):
            if stop():
                break
            while self.unfinished() >= self.max_inflight:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.follower.changed(), 0.5)
            kind = self.rng.choices(list(mix), list(mix.values()))[0]
            self.launch(self.new_start(kind))
            await asyncio.sleep(max(0.0, t0 + (n + 1) / self.rate - time.monotonic()))
        await self.settle()

    def new_start(self, kind: str, *, version: int = 1, auto_event: bool = True) -> Start:
        iid = f"{self.prefix}{len(self.starts):06d}-{kind}"
        start = Start(iid, kind, plan(kind, self.rng), version=version, auto_event=auto_event)
        if kind in EVENT_DELAY_S:
            start.event = self.rng.randint(1, 1000)
        self.starts[iid] = start
        return start

    def launch(self, start: Start) -> None:
        task = asyncio.create_task(self._start(start))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def settle(self) -> None:
        """Until every start and event request so far has its answer (or gave up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- one start -----------------------------------------------------------------------------

    async def _start(self, start: Start) -> None:
        start.sent_at = time.monotonic()
        body = orjson.dumps(start.args)
        deadline = start.sent_at + self.give_up_s
        while time.monotonic() < deadline:
            start.attempts += 1
            url = self._pick()
            path = f"/v1.0/workflows/dapr/{start.name}/start"
            status, text = await self._post(url, path, body, {"instanceID": start.instance_id})
            if status == 202:
                self._acknowledge(start, "202")
                break
            if status == 409 and start.ambiguous:
                self._acknowledge(start, "409")
                break
            if status is not None and 400 <= status < 500:
                start.errors.append(f"{status}: {text[:200]}")
                return  # a refused start: the driver's bug, reported by the checker
            start.ambiguous += 1
            await asyncio.sleep(self.rng.uniform(0.1, 0.5) * min(start.ambiguous, 4))
        if start.acked and start.event is not None and start.auto_event:
            await asyncio.sleep(self.rng.uniform(*EVENT_DELAY_S[start.kind]))
            await self.raise_event(start)

    async def raise_event(self, start: Start) -> None:
        """POST the `go` event until an API acknowledges it (the instance must exist by now)."""
        body = orjson.dumps({"v": start.event})
        deadline = time.monotonic() + self.give_up_s
        while time.monotonic() < deadline:
            start.raise_attempts += 1
            path = f"/v1.0/workflows/dapr/{start.instance_id}/raiseEvent/go"
            status, text = await self._post(self._pick(), path, body, None)
            if status == 202:
                start.raised = True
                return
            if status is not None and 400 <= status < 500 and status != 404:
                start.errors.append(f"raise {status}: {text[:200]}")
                return
            await asyncio.sleep(self.rng.uniform(0.1, 0.5) * min(start.raise_attempts, 4))
        start.errors.append("raise: gave up")

    async def _post(self, url: str, path: str, body: bytes, params: dict[str, str] | None) -> tuple[int | None, str]:
        self.in_flight[url] += 1
        try:
            response = await self._http.post(
                url + path, content=body, params=params, headers={"content-type": "application/json"}
            )
            return response.status_code, response.text
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            self.in_flight[url] -= 1

    def _pick(self) -> str:
        self._next_api = (self._next_api + 1) % len(self.urls)
        return self.urls[self._next_api]

    async def wait_done(self, timeout_s: float, progress: Callable[[], None] | None = None) -> bool:
        """Until every acknowledged start is finished (per the status topic), or `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while self.unfinished():
            if time.monotonic() > deadline:
                return False
            if progress is not None:
                progress()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.follower.changed(), 1.0)
        return True
