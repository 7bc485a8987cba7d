"""An on-disk index of the status topic: the latest state of every instance, in SQLite.

Why: the in-memory view (`status.StatusFollower.states`) holds every instance of the topic, so a
reader's memory and cold start grow with history (issue 16). This index keeps the same content on
disk, with indexes for the REST listing's filters, and the Kafka position reached per partition
in the same transaction as the rows it covers: a restart resumes from its checkpoint, reading only
what was written since, and a crash between two batches loses nothing (the batch is read again and
its rows written again: applying a status record is idempotent, the latest one per key wins).

SQLite (Python's standard library, https://docs.python.org/3/library/sqlite3.html) in WAL mode
(https://www.sqlite.org/wal.html): readers do not block the one writer and a commit is one append
to the log; `synchronous=NORMAL` is durable across a process crash, and after a power loss it can
lose the last commits only, which the checkpoint then reads again from Kafka.

Batches are applied at once but committed together, every `COMMIT_INTERVAL_S` or `COMMIT_ROWS`
rows (issue 17): a commit writes every B-tree page the open transaction touched to the log, and
the follower's batches under load (about a hundred records) touch nearly as many pages as ten of
them do. Measured on chain-5-like records (six per instance, a thousand instances interleaved,
batches of 100): 17.2 us per record committed each batch, 12.5 committed every tenth, 12.0 with
rows updated in place rather than replaced. Nothing is
less visible for it: reads go through the same connection, which sees its own open transaction
(https://www.sqlite.org/isolation.html), and what a crash loses is only what the checkpoint (the
positions, in the same transaction) reads again from Kafka. A batch that fails rolls back the
open transaction with it, so the index keeps every record applied since the last commit and
applies them again, first, with the next batch.

What a row holds: the encoded state (`engine.wire.records.encode_state`, the status record's value
as it came: no re-encoding) plus the columns the listing filters and orders on. The status column
is the *shown* status (STALLED for an instance waiting for its code), as the in-memory listing
filters on it. A tombstone (a purge) deletes the row.

Calls are synchronous and short (one indexed statement each); an asyncio caller may run them on
its loop (a GET is one primary-key look-up, a page one index range scan of `limit` rows).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..core.state import InstanceState
from ..core.values import RuntimeStatus
from ..errors import DecodeError
from ..wire.records import decode_state, summarize_state

__all__ = ["COMMIT_INTERVAL_S", "COMMIT_ROWS", "IndexFilter", "StatusIndex", "StatusRecord"]

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

#: The open transaction is committed once it is this old (seconds) or holds this many rows: what a
#: crash makes the index read again from Kafka, and what it keeps to apply again after a failure.
COMMIT_INTERVAL_S = 0.25
COMMIT_ROWS = 5_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    value BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS by_created ON instances (created_us, instance_id);
CREATE INDEX IF NOT EXISTS by_status ON instances (status, created_us, instance_id);
CREATE INDEX IF NOT EXISTS by_name ON instances (name, created_us, instance_id);
-- No query orders by updated_us: an index on it cost every write a B-tree update (issue 17).
DROP INDEX IF EXISTS by_updated;
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
) WITHOUT ROWID;
"""


_Row = tuple[str, str, int, int, bytes]


def _rows(records: Sequence[StatusRecord]) -> dict[str, _Row | None]:
    """Each instance's last row in `records` (None: a tombstone). A key that is not UTF-8 or a
    value that does not decode is skipped and logged (a value a later record of its instance
    replaces is not read at all).

    Read from the last record back, so that an instance's earlier records in the batch, which its
    last one replaces, are not summarized: a replica catching up on a status partition reads about
    six records per `chain-5` workflow, and summarizing them was most of its time. A last record
    that does not decode leaves the instance's last one that does, as reading forward did."""
    upserts: dict[str, _Row | None] = {}
    for record in reversed(records):
        if record.key is None:
            continue
        try:
            iid = record.key.decode()
        except UnicodeDecodeError:
            log.error("status record with a key that is not UTF-8 (%r): not indexed", record.key[:100])
            continue
        if iid in upserts:
            continue  # a later record of the instance is already filed
        if record.value is None:
            upserts[iid] = None
            continue
        try:
            # The summary, not the whole state: it is all a row needs, at a tenth of the cost.
            row = record.state if record.state is not None else summarize_state(record.value)
        except Exception as exc:
            log.error("unreadable status record for %r: %s; not indexed", iid[:200], exc)
            continue
        upserts[iid] = (row.shown_status.value, row.name, _micros(row.created_at),
                        _micros(row.last_updated_at), record.value)
    return upserts


def _micros(moment: datetime | None) -> int:
    """Microseconds since the epoch; an unset time sorts first, as the in-memory listing's."""
    if moment is None:
        return 0
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """One record of the status topic as read: a None value is a tombstone."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: The value already decoded by the reader, if it did (saves decoding it twice).
    state: InstanceState | None = None


@dataclass(frozen=True, slots=True)
class IndexFilter:
    """The REST listing's filters (`api.listing.Query`): shown status, name, created range (exclusive)."""

    statuses: frozenset[RuntimeStatus] = frozenset()
    workflow_name: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class StatusIndex:
    """The index of one status topic in one SQLite file."""

    def __init__(self, path: Path | str, topic: str) -> None:
        self.path = Path(path)
        self.topic = topic
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN, then COMMIT after batches: `apply`).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        #: Records applied since the last commit, in order (applied again if the transaction fails).
        self._uncommitted: list[StatusRecord] = []
        self._opened_at = 0.0

    def close(self) -> None:
        try:
            self.commit()
        except sqlite3.Error as exc:
            log.warning("status index %s: the last rows were not committed (%s); they are read again", self.path, exc)
        finally:
            self._db.close()

    def commit(self) -> None:
        """Commit the rows applied so far (`apply` does, every `COMMIT_INTERVAL_S`)."""
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._uncommitted = []

    # -- writing -------------------------------------------------------------------------------

    def positions(self) -> dict[int, int]:
        """The next offset to read per partition, as of the last batch applied (the checkpoint)."""
        rows = self._db.execute(
            "SELECT partition, next_offset FROM positions WHERE topic = ?", (self.topic,))
        return {int(p): int(o) for p, o in rows}

    def apply(self, records: Iterable[StatusRecord], positions: Mapping[int, int]) -> int:
        """Apply a batch of records (in topic order per partition) and record `positions` (the next
        offsets reached, transaction markers included), in the open transaction (see the module
        docstring for when it commits); returns the records applied. A key that is not UTF-8 or a
        value that does not decode is skipped, as the in-memory follower does (it logs them). If
        it raises, the records are kept and applied before the next call's."""
        db = self._db
        if db.in_transaction:
            batch = list(records)
        else:  # a new transaction: first whatever the last one held when it failed
            batch, self._uncommitted = [*self._uncommitted, *records], []
            db.execute("BEGIN")
            self._opened_at = time.monotonic()
        kept = False
        try:
            upserts = _rows(batch)
            gone = [(iid,) for iid, row in upserts.items() if row is None]
            if gone:
                db.executemany("DELETE FROM instances WHERE instance_id = ?", gone)
            rows = [(iid, *row) for iid, row in upserts.items() if row is not None]
            if rows:
                # An update, not a replace: the indexes whose columns did not change (the name's,
                # the creation time's) are left alone; a replace deletes and re-inserts every entry.
                db.executemany(
                    "INSERT INTO instances (instance_id, status, name, created_us, updated_us, value)"
                    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (instance_id) DO UPDATE SET"
                    " status = excluded.status, name = excluded.name, created_us = excluded.created_us,"
                    " updated_us = excluded.updated_us, value = excluded.value",
                    rows)
            db.executemany(
                "INSERT OR REPLACE INTO positions (topic, partition, next_offset) VALUES (?, ?, ?)",
                [(self.topic, p, o) for p, o in positions.items()])
            self._uncommitted.extend(batch)
            kept = True
            if len(self._uncommitted) >= COMMIT_ROWS or time.monotonic() - self._opened_at >= COMMIT_INTERVAL_S:
                self.commit()
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            if not kept:
                self._uncommitted.extend(batch)
            raise
        return len(upserts)

    # -- reading -------------------------------------------------------------------------------

    def get(self, instance_id: str) -> InstanceState | None:
        """The latest state of the instance: one primary-key look-up."""
        row = self._db.execute(
            "SELECT value FROM instances WHERE instance_id = ?", (instance_id,)).fetchone()
        return None if row is None else _decoded(instance_id, row[0])

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM instances").fetchone()[0])

    def counts(self, where: IndexFilter | None = None) -> dict[RuntimeStatus, int]:
        """Instances per shown status that pass `where` (statuses with none left out)."""
        clauses, args = _where(where or IndexFilter())
        # Only fixed SQL text is joined; every value is a bound parameter.
        sql = f"SELECT status, count(*) FROM instances{_joined(clauses)} GROUP BY status"  # noqa: S608
        rows = self._db.execute(sql, args)
        return {RuntimeStatus(s): int(n) for s, n in rows}

    def names(self) -> list[str]:
        """The workflow names seen, sorted (the `by_name` index: no table scan)."""
        rows = self._db.execute("SELECT DISTINCT name FROM instances WHERE name != '' ORDER BY name")
        return [str(name) for (name,) in rows]

    def page(self, where: IndexFilter, limit: int, *, after: tuple[datetime | None, str] | None = None,
             descending: bool = False) -> list[InstanceState]:
        """Up to `limit` states that pass `where`, ordered by (createdAt, instanceID), strictly past
        `after` in that order: the listing's order and cursor (`api.listing`)."""
        clauses, args = _where(where)
        if after is not None:
            clauses.append(f"(created_us, instance_id) {'<' if descending else '>'} (?, ?)")
            args.extend((_micros(after[0]), after[1]))
        order = "DESC" if descending else "ASC"
        sql = ("SELECT instance_id, value FROM instances"  # noqa: S608 - fixed SQL text; values are bound parameters
               + _joined(clauses)
               + f" ORDER BY created_us {order}, instance_id {order} LIMIT ?")
        args.append(limit)
        rows = self._db.execute(sql, args)
        return [state for iid, value in rows if (state := _decoded(iid, value)) is not None]


def _decoded(instance_id: str, value: bytes) -> InstanceState | None:
    """A row's state. Rows are filed by `summarize_state`, which checks only the fields it reads:
    a record someone wrote to the topic by hand can pass it and still not decode whole. It reads
    as absent (logged), so it cannot fail every page of a listing."""
    try:
        return decode_state(value)
    except DecodeError as exc:
        log.error("unreadable status record for %r in the index: %s; read as absent", instance_id[:200], exc)
        return None


def _joined(clauses: list[str]) -> str:
    return f" WHERE {' AND '.join(clauses)}" if clauses else ""


def _where(where: IndexFilter) -> tuple[list[str], list[object]]:
    """The conditions of a filter and their arguments."""
    clauses: list[str] = []
    args: list[object] = []
    if where.statuses:
        clauses.append(f"status IN ({', '.join('?' * len(where.statuses))})")
        args.extend(sorted(s.value for s in where.statuses))
    if where.workflow_name is not None:
        clauses.append("name = ?")
        args.append(where.workflow_name)
    if where.created_after is not None:
        clauses.append("created_us > ?")
        args.append(_micros(where.created_after))
    if where.created_before is not None:
        clauses.append("created_us < ?")
        args.append(_micros(where.created_before))
    return clauses, args
