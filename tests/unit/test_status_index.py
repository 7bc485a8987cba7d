"""The on-disk status index (`engine.read.index`): checkpoint and resume, filters, order and
cursors as the in-memory listing's, tombstones, and agreement with `api.listing` on the same states."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

import engine.read.index as index_module
from api.listing import Cursor, Query, list_instances
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.read.index import IndexFilter, StatusIndex, StatusRecord
from engine.wire.records import encode_state

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOPIC = "t.status"


def _state(i: int, status: RuntimeStatus = RuntimeStatus.COMPLETED, name: str = "wf",
           stalled: bool = False) -> InstanceState:
    return InstanceState(instance_id=f"i-{i:04d}", name=name, status=status,
                         created_at=T0 + timedelta(seconds=i // 2),  # pairs share a time: ties by ID
                         last_updated_at=T0 + timedelta(seconds=i),
                         waiting_for_code=T0 if stalled else None)


def _record(partition: int, offset: int, state: InstanceState) -> StatusRecord:
    return StatusRecord(partition, offset, state.instance_id.encode(), encode_state(state))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[StatusIndex]:
    opened = StatusIndex(tmp_path / "idx" / "status.sqlite", TOPIC)
    yield opened
    opened.close()  # Python 3.13 warns of a connection left to the garbage collector


def test_checkpoint_is_kept_with_the_rows_and_resumed(tmp_path: Path) -> None:
    path = tmp_path / "status.sqlite"
    first = StatusIndex(path, TOPIC)
    assert first.positions() == {}
    first.apply([_record(0, 0, _state(1)), _record(1, 4, _state(2))], {0: 1, 1: 6})
    first.close()

    again = StatusIndex(path, TOPIC)
    assert again.positions() == {0: 1, 1: 6}
    assert again.get("i-0001") == _state(1)
    assert again.get("i-0002") == _state(2)
    # Another topic's checkpoint (another prefix) is its own.
    other = StatusIndex(path, "other.status")
    assert other.positions() == {}
    other.close()
    again.close()


def _committed(index: StatusIndex) -> tuple[dict[int, int], int]:
    """What another reader of the file (a restart after a crash) finds: positions and rows."""
    other = StatusIndex(index.path, TOPIC)
    try:
        return other.positions(), len(other)
    finally:
        other._db.close()  # not `close`: that would commit (nothing here) and is not the point


def test_rows_are_seen_at_once_and_committed_with_their_positions(
        index: StatusIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "COMMIT_INTERVAL_S", 3600.0)
    index.apply([_record(0, 0, _state(1))], {0: 1})
    index.commit()
    index.apply([_record(0, 1, _state(2)), _record(0, 2, _state(3))], {0: 3})
    # The index's own reads see the open transaction; the file holds the last commit, positions
    # and rows together: a crash now reads offsets 1 and 2 again.
    assert index.get("i-0002") == _state(2)
    assert index.positions() == {0: 3}
    assert _committed(index) == ({0: 1}, 1)
    monkeypatch.setattr(index_module, "COMMIT_ROWS", 3)
    index.apply([_record(0, 3, _state(4))], {0: 4})  # the third row since the commit: commits
    assert _committed(index) == ({0: 4}, 4)


def test_closing_commits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "COMMIT_INTERVAL_S", 3600.0)
    index = StatusIndex(tmp_path / "status.sqlite", TOPIC)
    index.apply([_record(0, 0, _state(1))], {0: 1})
    index.close()
    again = StatusIndex(tmp_path / "status.sqlite", TOPIC)
    assert again.positions() == {0: 1}
    assert again.get("i-0001") == _state(1)
    again.close()


class _FailingWrites:
    """The index's connection, whose next `executemany` on `instances` fails once."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.armed = True

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)

    def executemany(self, sql: str, rows: object) -> sqlite3.Cursor:
        if self.armed and "instances" in sql:
            self.armed = False
            raise sqlite3.OperationalError("disk I/O error")
        return self.db.executemany(sql, rows)  # type: ignore[arg-type]


def test_a_failed_batch_loses_nothing_applied_since_the_commit(
        index: StatusIndex, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_module, "COMMIT_INTERVAL_S", 3600.0)
    index.apply([_record(0, 0, _state(1))], {0: 1})
    index.commit()
    index.apply([_record(0, 1, _state(2))], {0: 2})  # in the open transaction
    failing = _FailingWrites(index._db)
    monkeypatch.setattr(index, "_db", failing)
    with pytest.raises(sqlite3.OperationalError):
        index.apply([_record(0, 2, _state(3))], {0: 3})
    # The failure rolled the open transaction back, the row of offset 1 with it ...
    assert index.positions() == {0: 1}
    assert index.get("i-0002") is None
    # ... and the next batch brings both back, before its own.
    index.apply([_record(0, 3, _state(4))], {0: 4})
    assert [index.get(f"i-{i:04d}") for i in (1, 2, 3, 4)] == [_state(1), _state(2), _state(3), _state(4)]
    index.commit()
    assert _committed(index) == ({0: 4}, 4)


def test_latest_record_wins_and_a_tombstone_removes_the_row(index: StatusIndex) -> None:
    running = _state(1, RuntimeStatus.RUNNING)
    done = _state(1, RuntimeStatus.COMPLETED)
    index.apply([_record(0, 0, running), _record(0, 1, done), _record(0, 2, _state(2))], {0: 3})
    assert index.get("i-0001") == done
    assert index.counts() == {RuntimeStatus.COMPLETED: 2}

    index.apply([StatusRecord(0, 3, b"i-0001", None)], {0: 4})
    assert index.get("i-0001") is None
    assert len(index) == 1
    assert [s.instance_id for s in index.page(IndexFilter(), 10)] == ["i-0002"]
    # A purge and a restart within one batch: the last record wins.
    index.apply([StatusRecord(0, 4, b"i-0002", None), _record(0, 5, _state(2, RuntimeStatus.RUNNING))], {0: 6})
    assert index.counts() == {RuntimeStatus.RUNNING: 1}


def test_records_a_later_one_replaces_in_the_batch_are_not_summarized(
    index: StatusIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    summarized: list[bytes] = []
    summarize = index_module.summarize_state

    def counting(value: bytes):  # type: ignore[no-untyped-def]
        summarized.append(value)
        return summarize(value)

    monkeypatch.setattr(index_module, "summarize_state", counting)
    steps = [_state(1, RuntimeStatus.RUNNING), _state(2, RuntimeStatus.RUNNING), _state(1, RuntimeStatus.COMPLETED)]
    index.apply([_record(0, n, s) for n, s in enumerate(steps)], {0: 3})
    assert summarized == [encode_state(steps[2]), encode_state(steps[1])]
    assert index.get("i-0001") == steps[2]
    # A last record that does not decode leaves the instance's last one that does.
    index.apply([_record(0, 3, _state(2, RuntimeStatus.FAILED)), StatusRecord(0, 4, b"i-0002", b"not a state")],
                {0: 5})
    failed = index.get("i-0002")
    assert failed is not None and failed.status is RuntimeStatus.FAILED


def test_unreadable_records_are_skipped(index: StatusIndex) -> None:
    index.apply([StatusRecord(0, 0, b"\xff\xfe", encode_state(_state(1))),
                 StatusRecord(0, 1, b"bad", b"not a state"), StatusRecord(0, 2, None, b"x"),
                 _record(0, 3, _state(3))], {0: 4})
    assert len(index) == 1
    assert index.positions() == {0: 4}


def _fill(index: StatusIndex) -> list[InstanceState]:
    states = [_state(i, status, name, stalled)
              for i, (status, name, stalled) in enumerate(
                  [(RuntimeStatus.COMPLETED, "a", False), (RuntimeStatus.FAILED, "b", False),
                   (RuntimeStatus.RUNNING, "a", False), (RuntimeStatus.RUNNING, "b", True)] * 10)]
    index.apply([_record(0, n, s) for n, s in enumerate(states)], {0: len(states)})
    return states


QUERIES = [
    Query(),
    Query(statuses=frozenset({RuntimeStatus.RUNNING})),
    Query(statuses=frozenset({RuntimeStatus.STALLED})),
    Query(statuses=frozenset({RuntimeStatus.FAILED, RuntimeStatus.COMPLETED}), descending=True),
    Query(workflow_name="b"),
    Query(workflow_name="a", statuses=frozenset({RuntimeStatus.COMPLETED})),
    Query(created_after=T0 + timedelta(seconds=3), created_before=T0 + timedelta(seconds=12)),
    Query(created_after=T0 + timedelta(seconds=3), descending=True),
]


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("page_size", [1, 3, 7, 100])
def test_pages_match_the_in_memory_listing(index: StatusIndex, query: Query, page_size: int) -> None:
    states = _fill(index)
    where = IndexFilter(query.statuses, query.workflow_name, query.created_after, query.created_before)
    expected: list[str] = []
    seen: list[str] = []
    memory = Query(query.statuses, query.workflow_name, query.created_after, query.created_before,
                   page_size, None, query.descending)
    after: tuple[datetime | None, str] | None = None
    while True:
        page = list_instances(states, memory)
        expected += [s.instance_id for s in page.instances]
        if page.continuation_token is None:
            break
        memory = Query(memory.statuses, memory.workflow_name, memory.created_after,
                       memory.created_before, page_size, Cursor.decode(page.continuation_token),
                       memory.descending)
    while True:
        rows = index.page(where, page_size, after=after, descending=query.descending)
        seen += [s.instance_id for s in rows]
        if len(rows) < page_size:
            break
        after = (rows[-1].created_at, rows[-1].instance_id)
    assert seen == expected
    assert len(seen) == len(set(seen))


def test_counts_use_the_shown_status(index: StatusIndex) -> None:
    _fill(index)
    assert index.counts() == {RuntimeStatus.COMPLETED: 10, RuntimeStatus.FAILED: 10,
                              RuntimeStatus.RUNNING: 10, RuntimeStatus.STALLED: 10}


def test_filters_use_the_indexes(index: StatusIndex) -> None:
    """No list filter or GET scans the table (SQLite's EXPLAIN QUERY PLAN, https://www.sqlite.org/eqp.html)."""
    db = index._db
    plans = {
        "get": "SELECT value FROM instances WHERE instance_id = 'x'",
        "status": "SELECT value FROM instances WHERE status IN ('RUNNING') ORDER BY created_us, instance_id LIMIT 5",
        "name": "SELECT value FROM instances WHERE name = 'a' ORDER BY created_us, instance_id LIMIT 5",
        "page": "SELECT value FROM instances WHERE (created_us, instance_id) > (0, 'a')"
                " ORDER BY created_us, instance_id LIMIT 5",
    }
    for what, sql in plans.items():
        plan = " ".join(str(row[-1]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}"))
        assert "USING" in plan and "TEMP B-TREE" not in plan, (what, plan)


def test_a_row_the_whole_decode_refuses_reads_as_absent(index: StatusIndex) -> None:
    # Filed by its summary (the fields it reads are fine), refused whole: a record written by hand.
    wire = orjson.loads(encode_state(_state(1)))
    wire["pending_tasks"] = {"x": "charge"}
    index.apply([StatusRecord(0, 0, b"i-0001", orjson.dumps(wire)), _record(0, 1, _state(2))], {0: 2})
    assert len(index) == 2
    assert index.get("i-0001") is None
    assert index.page(IndexFilter(), 10) == [_state(2)]
