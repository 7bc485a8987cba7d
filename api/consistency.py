"""Read-your-writes across API replicas: what an instance is *now*, not what the view shows yet.

`Consistency` is the REST API's `LookUp` port of `engine.client.WorkflowCommands` (its `Send`
port is `LinkSend`, below): the service decides what to check, send and wait for; this module
decides how a replica sees every write acknowledged before a request, its own and other replicas'.

The status view lags the engine, and the engine lags the commands topic. A GET right after a 202
from start, sent to any replica, must still find the instance, so when the view cannot be trusted
(it has no such instance, or shows a finished run that a new start may be replacing) the API asks
Kafka, with a barrier built from three offsets of the instance's partition `p`:

1. `C`, the engine group's committed offset on `commands[p]`. The engine commits it in the
   transaction that holds the status records those commands produced, or right after it
   (`engine.runtime.poll_transactions`, `engine.runtime.group_offsets`), so every command below `C`
   is reflected in the status topic. A command at or above `C` may be applied already (the offset
   follows its transaction by one request): its start then shows as settled in the status the
   barrier syncs to, and `fold_starts` skips it.
2. `S`, the end of everything written to `status[p]` (its high watermark, read_uncommitted), read
   *after* `C`: it covers every record of every transaction that committed offsets up to `C`. Not
   the last stable offset: a transaction's commit markers reach its partitions one at a time
   (`EndTxn` returns once the coordinator has logged the commit, and it writes the markers after;
   KIP-98, "Transaction Coordinator"), so the group's offset can be visible before the marker on
   `status[p]`, and an LSO read then would stop short of that transaction's records. The barrier
   waits until the view (read_committed) has read `status[p]` up to `S`: until every transaction
   open when `S` was read has ended, usually a few milliseconds. A transaction still open after
   half the budget the barrier has left (at most `_STALLED_AFTER_S`) is taken for one whose
   writer died or stalls, which only its abort ends (the partition's next owner, or the
   transaction timeout), not one `C` depends on (those have committed, and their markers follow
   within milliseconds; a leader failover can delay them longer, and the answer is then what the
   LSO alone gave before this rule). The barrier then settles for the LSO read at that point (at
   most `S`), which holds every transaction that has committed by then. Later barriers on that
   partition settle for it at once while the view still stands there: nothing past an open
   transaction is readable, so the view moves on only once it has ended.
3. `E`, the end of `commands[p]`, read after the client's 202 (it happened before this request):
   every start a replica acknowledged lies below `E`. The API scans `commands[p]` from `C` to `E`
   for starts of the instance (read_uncommitted, so another replica's start is seen as soon as the
   broker acknowledged it).

The instance is then the view's state with the unapplied starts folded over it, as the engine
will: a start over nothing or over a finished run makes it PENDING; a start over a live run will
be refused.

Cost: three small broker requests, plus a scan of the engine's backlog on that partition, which is
usually empty. Barriers asked for at the same time share their requests (`_Rounds`): a round reads
the three offsets of every partition its requests need, three requests in all, and scans those
partitions' backlogs in one pass of the consumer; a request only joins a round that has not read
anything yet, so its offsets are still read after it arrived. Under load (many starts with IDs of
their own at once) the cost per request falls with their number. Starts found by a scan are cached
per partition with the offset reached, so the next barrier only reads what arrived since; entries
below the engine's committed offset are dropped.
The whole barrier is bounded by `consistency_timeout_s`; past it the request fails with a 500 that
says the view is lagging, rather than answering something stale.

A live instance needs less: a GET of an instance the view shows running first waits until the view
has read the instance's `status` partition up to its end (`sync`, one broker request), so it sees
every command another replica answered before this request (that replica answered only once its
own view showed the command applied, so its status record was committed).

Commands wait for their effect (`watch`): a waiter registered before the command is produced is
told of every state the view applies for the instance, and the API answers once one shows the
command applied, refused, or moot (`engine.core.preconditions`).

A replica also remembers the starts it accepted itself (`accepted`) for `sent_ttl_s`, so a client
that polls the replica it started on gets PENDING with no Kafka round trip at all. It forgets one as
soon as its view shows that run or removes the instance (a purge, from any replica or client), and
when it accepts a purge itself: what it remembers must never outlive the instance, or a purged
instance would come back as PENDING and refuse a new start with its ID.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from engine.client.ports import Watch
from engine.client.sent import SentStarts
from engine.client.watches import Watches
from engine.core.commands import Command, StartWorkflow
from engine.core.preconditions import Settled, fold_starts
from engine.core.state import InstanceState
from engine.errors import DecodeError
from engine.wire.records import MESSAGES

from .errors import BackendError
from .kafka import KafkaLink
from .metrics import ApiMetrics

__all__ = ["Consistency", "LinkSend", "PendingStart"]

#: A status transaction still open this long into a barrier (or half its budget, if less) is a
#: stalled or dead writer's, not one whose offsets the barrier read (see the module docstring).
_STALLED_AFTER_S = 5.0


@dataclass(frozen=True, slots=True)
class PendingStart:
    offset: int
    start: StartWorkflow
    accepted_at: datetime


@dataclass(slots=True)
class _Backlog:
    """Starts seen in `commands[p]` from the engine's committed offset up to `scanned_to`."""

    scanned_to: int = -1
    starts: dict[str, list[PendingStart]] = field(default_factory=dict)

    def prune(self, committed: int) -> None:
        if self.scanned_to < committed:
            self.scanned_to = committed
            self.starts.clear()
            return
        for iid in [i for i, found in self.starts.items() if found[-1].offset < committed]:
            del self.starts[iid]
        for iid, found in self.starts.items():
            if found[0].offset < committed:
                self.starts[iid] = [s for s in found if s.offset >= committed]


@dataclass(frozen=True, slots=True)
class _Offsets:
    """The barrier's three offsets of one partition (see the module docstring)."""

    committed: int  # C: the engine group's committed offset on commands[p] (its start if none)
    status_written: int  # S
    commands_end: int  # E


@dataclass(frozen=True, slots=True)
class _Found:
    """What one request's barrier found: the view must reach `status_written` of the instance's
    partition, and these starts of the instance are not applied yet."""

    status_written: int
    pending: tuple[PendingStart, ...]


#: A barrier round: the instance IDs asked for, by partition -> what each request gets.
_Round = Callable[[dict[int, set[str]]], Awaitable[dict[tuple[int, str], _Found]]]


class _Rounds:
    """Barriers for every request waiting, done in rounds: one round at a time, each for all the
    partitions (and instances) its requests asked for, each request in the first round that starts
    after it asked (see the module docstring)."""

    def __init__(self, run_round: _Round) -> None:
        self._round = run_round
        self._waiting: dict[tuple[int, str], list[asyncio.Future[_Found]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def ask(self, p: int, instance_id: str) -> _Found:
        future: asyncio.Future[_Found] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault((p, instance_id), []).append(future)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="headrace-api-barrier")
        return await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        batch: dict[tuple[int, str], list[asyncio.Future[_Found]]] = {}
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                wanted: dict[int, set[str]] = {}
                for p, iid in batch:
                    wanted.setdefault(p, set()).add(iid)
                try:
                    found = await self._round(wanted)
                except Exception as exc:  # every waiter gets the failure as its own
                    for futures in batch.values():
                        for future in futures:
                            if not future.done():
                                future.set_exception(exc)
                    continue
                for key, futures in batch.items():
                    for future in futures:
                        if not future.done():  # not given up (its request's budget ran out)
                            future.set_result(found[key])
        finally:
            self._task = None
            # Cancelled (the link stops): the round's requests and those waiting fail as cancelled.
            for futures in [*batch.values(), *self._waiting.values()]:
                for future in futures:
                    if not future.done():
                        future.cancel()
            self._waiting = {}


class LinkSend:
    """The API's `Send` port: the link's idempotent producer, counted per command type."""

    def __init__(self, link: KafkaLink, metrics: ApiMetrics) -> None:
        self.link = link
        self.metrics = metrics

    async def send(self, command: Command) -> int:
        metadata = await self.link.send(command)
        self.metrics.commands.labels(type(command).__name__).inc()
        return int(metadata.offset)


class Consistency:
    """The API's `LookUp` port (see the module docstring)."""

    def __init__(self, link: KafkaLink) -> None:
        self.link = link
        self._backlogs: dict[int, _Backlog] = {}
        #: Status partitions where a barrier gave up waiting for an open transaction: the LSO it
        #: settled for (`_settle`).
        self._stuck: dict[int, int] = {}
        self._rounds = _Rounds(self._round)
        self._sent = SentStarts(ttl_s=link.settings.sent_ttl_s)
        self._watches = Watches(self.shown)
        link.observe_view(self._view_changed, self._interested)

    async def close(self) -> None:
        """Stop a barrier round still reading (its requests fail as cancelled)."""
        await self._rounds.close()

    # -- waiting for a command's effect ---------------------------------------------------------

    def watch(self, done: Mapping[str, Settled]) -> contextlib.AbstractAsyncContextManager[Sequence[Watch]]:
        """Watch instances (ID -> `done`) for as long as the block runs: each watch is offered the
        view's current state at once and then every state the view applies, so no transient state
        (a run that starts and ends within one fetch) is missed. Register before producing."""
        return self._watches.watching(done)

    async def sync(self, instance_id: str) -> None:
        """Wait (bounded) until the view has read everything the engine committed to the
        instance's status partition before this call: then it shows every command any replica
        answered before (see the module docstring)."""
        link = self.link
        link.require()
        budget = link.settings.consistency_timeout_s
        p = link.partition(instance_id)
        try:
            async with asyncio.timeout(budget):
                await self._catch_up(p, await link.status_end(p))
        except TimeoutError:
            raise BackendError(
                f"the status view did not catch up with Kafka within {budget:g}s (the view is "
                "lagging); try again"
            ) from None

    async def _catch_up(self, p: int, status_end: int) -> None:
        # Usually there already; otherwise a few records behind, milliseconds away. The follower
        # wakes waiters after every poll round: its position also moves over transaction markers.
        await self.link.view.wait_position(p, status_end, None)

    # -- this replica's own starts -------------------------------------------------------------

    def forget(self, instance_id: str) -> None:
        """Drop this replica's memory of a start of the instance (it is being purged). Always
        safe: a read that finds nothing here asks the barrier."""
        self._sent.forget(instance_id)

    def _interested(self, instance_id: str) -> bool:
        """Whether `_view_changed` needs the instance's new states (the rest are not decoded)."""
        return instance_id in self._sent or self._watches.watched(instance_id)

    def _view_changed(self, instance_id: str, state: InstanceState | None) -> None:
        self._watches.offer(instance_id, state)
        self._sent.viewed(instance_id, state)

    async def adopt(self, instance_id: str) -> None:
        return None  # the API's view follows every instance: nothing to read back

    def accepted(self, start: StartWorkflow, receipt: int) -> None:
        """Remember a start this replica accepted (`receipt`: its offset), see the module docstring."""
        self._sent.accepted(start, _now())

    def own_start(self, instance_id: str) -> str | None:
        return self._sent.own_start(instance_id)

    def local(self, instance_id: str, current: InstanceState | None) -> InstanceState | None:
        """The instance as this replica's own recent start makes it, if it accepted one."""
        return self._sent.shown(instance_id, current)

    # -- reads -----------------------------------------------------------------------------------

    def shown(self, instance_id: str) -> InstanceState | None:
        return self.link.view.get(instance_id)

    async def seen(self, instance_id: str) -> InstanceState | None:
        return self.shown(instance_id)  # the API's view follows every instance

    async def state(self, instance_id: str) -> InstanceState | None:
        """The instance as a client that just got a 202 from any replica expects to see it.

        A live instance in the view is answered once the view has caught up with its status
        partition (`sync`, one request): another replica may have answered a command (a pause, a
        terminate) this view has not read yet. A missing or finished one may be a start the view
        has not shown yet: the full barrier (`fresh`) decides.
        """
        current = self.local(instance_id, self.shown(instance_id))
        if current is not None and not current.is_terminal:
            # Live, but maybe older than what another replica already answered (a pause, ...).
            await self.sync(instance_id)
            current = self.local(instance_id, self.shown(instance_id))
            if current is not None and not current.is_terminal:
                return current
        return await self.fresh(instance_id)

    # -- the barrier ----------------------------------------------------------------------------

    async def fresh(self, instance_id: str) -> InstanceState | None:
        """The instance after every start acknowledged before this call (see module docstring)."""
        link = self.link
        link.require()
        budget = link.settings.consistency_timeout_s
        try:
            async with asyncio.timeout(budget) as scope:
                deadline = scope.when()
                assert deadline is not None  # set just above
                pending = await self._barrier(instance_id, deadline)
        except TimeoutError:
            raise BackendError(
                f"the status view did not catch up with Kafka within {budget:g}s (the engine or "
                "the view is lagging); try again"
            ) from None
        return fold_starts(self.shown(instance_id), [(p.start, p.accepted_at) for p in pending])

    async def _barrier(self, instance_id: str, deadline: float) -> list[PendingStart]:
        p = self.link.partition(instance_id)
        found = await self._rounds.ask(p, instance_id)
        await self._settle(p, found.status_written, deadline)
        return list(found.pending)

    async def _settle(self, p: int, written: int, deadline: float) -> None:
        """Wait until the view has read `status[p]` up to `written` (`S`), or, if a transaction is
        still open there after half the budget left (`deadline`, loop time), up to its LSO read
        then (see the module docstring)."""
        stuck = self._stuck.get(p)
        if stuck is not None and self.link.view.position(p) == stuck:
            # An earlier barrier gave up on a transaction there, and the view has not read past it
            # since: it cannot (nothing past an open transaction is readable), so it is still
            # open. Its answer, the LSO the view stands at, is this one's, without the grace.
            return
        left = deadline - asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(0.0, min(left / 2, _STALLED_AFTER_S))):
                await self._catch_up(p, written)
                self._stuck.pop(p, None)
                return
        except TimeoutError:
            pass
        stable = await self.link.status_end(p)
        self._stuck[p] = stable
        # Never past `written`: a view that only lags must not chase an end that moved on since.
        await self._catch_up(p, min(written, stable))

    async def _round(self, wanted: dict[int, set[str]]) -> dict[tuple[int, str], _Found]:
        """One barrier round (`_Rounds`): offsets of every partition asked for, then the scans."""
        offsets = await self._offsets(sorted(wanted))
        ends: dict[int, int] = {}
        for p, found in offsets.items():
            if found.committed >= found.commands_end:
                self._backlogs.pop(p, None)  # the engine applied everything acknowledged
                continue
            backlog = self._backlogs.setdefault(p, _Backlog())
            backlog.prune(found.committed)
            if backlog.scanned_to < found.commands_end:
                ends[p] = found.commands_end
        if ends:
            await self._read(ends)
        out: dict[tuple[int, str], _Found] = {}
        for p, ids in wanted.items():
            unapplied = self._backlogs.get(p) if offsets[p].committed < offsets[p].commands_end else None
            for iid in ids:
                # A copy: a later round prunes the backlog before this request's view caught up.
                pending = tuple(unapplied.starts.get(iid, ())) if unapplied is not None else ()
                out[(p, iid)] = _Found(offsets[p].status_written, pending)
        return out

    async def _offsets(self, partitions: list[int]) -> dict[int, _Offsets]:
        link = self.link
        committed = await link.engine_committed_many(partitions)
        scanner = link.scanner
        assert scanner is not None
        commands = {p: TopicPartition(link.topics.commands, p) for p in partitions}
        # Both after `committed` (see the module docstring); independent of each other.
        status_ends, ends = await asyncio.gather(
            link.status_ends(partitions, written=True),
            link.call("reading the commands topic's end", scanner.end_offsets(list(commands.values()))),
        )
        never = [commands[p] for p, c in committed.items() if c is None]
        starts = (
            await link.call("reading the commands topic's start", scanner.beginning_offsets(never)) if never else {}
        )
        return {
            p: _Offsets(
                committed=c if (c := committed[p]) is not None else starts[commands[p]],
                status_written=status_ends[p],
                commands_end=ends[commands[p]],
            )
            for p in partitions
        }

    async def _read(self, ends: dict[int, int]) -> None:
        """Scan `commands[p]` from each backlog's `scanned_to` to at least `ends[p]`."""
        scanner = self.link.scanner
        assert scanner is not None
        tps = {TopicPartition(self.link.topics.commands, p): p for p in ends}
        self._assign_all(scanner)
        for tp, p in tps.items():
            scanner.seek(tp, self._backlogs[p].scanned_to)
        scanner.resume(*tps)
        try:
            left = set(tps)
            while left:
                batch = await scanner.getmany(*left, timeout_ms=100, max_records=5000)
                for tp, records in batch.items():
                    backlog = self._backlogs[tps[tp]]
                    for record in records:
                        start = _start_of(record.value)
                        if start is not None:
                            accepted = datetime.fromtimestamp(record.timestamp / 1000, UTC)
                            backlog.starts.setdefault(start.instance_id, []).append(
                                PendingStart(record.offset, start, accepted)
                            )
                for tp in list(left):
                    backlog = self._backlogs[tps[tp]]
                    backlog.scanned_to = max(backlog.scanned_to, await scanner.position(tp))
                    if backlog.scanned_to >= ends[tps[tp]]:
                        left.discard(tp)
        finally:
            # Paused, it stops prefetching: its next offsets request is not queued behind a
            # long-polling fetch on the same connection.
            scanner.pause(*tps)

    def _assign_all(self, scanner: AIOKafkaConsumer) -> None:
        """Every commands partition assigned to the scanner for good, paused until a scan: a change
        of assignment makes aiokafka refresh the cluster's metadata (it did twice a barrier)."""
        every = [TopicPartition(self.link.topics.commands, p) for p in range(self.link.partitions)]
        if scanner.assignment() == set(every):
            return
        scanner.assign(every)
        scanner.pause(*every)
        for tp in every:
            # A position, so the fetcher does not look one up (ListOffsets) for a paused partition;
            # every scan seeks where it starts.
            scanner.seek(tp, 0)


def _start_of(value: bytes | None) -> StartWorkflow | None:
    if not value or b'"StartWorkflow"' not in value:
        return None  # most commands are not starts: skip them without parsing
    try:
        message = MESSAGES.decode(value)
    except (DecodeError, orjson.JSONDecodeError):
        return None  # the engine dead-letters it; it will never start anything
    return message if isinstance(message, StartWorkflow) else None


def _now() -> datetime:
    return datetime.now(UTC)
