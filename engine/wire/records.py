"""Record formats of the engine's own topics: instance state, history chunks, audit turns, dead letters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from ..core.codec import Codec, encode, to_jsonable
from ..core.commands import MESSAGE_TYPES, ActivityWorkItem
from ..core.events import EVENT_TYPES, HistoryEvent
from ..core.frozen import quick_init
from ..core.remote import WorkflowAnswer, WorkflowWorkItem
from ..core.state import InstanceState, shown_status
from ..core.values import RuntimeStatus
from ..errors import DecodeError

__all__ = [
    "EVENTS",
    "MESSAGES",
    "POSITIONS_HEADER",
    "POSITIONS_KEY",
    "SNAPSHOTS_MARKER",
    "SNAPSHOT_SUFFIX",
    "STATES",
    "STORE_HEADER",
    "WORK_ITEMS",
    "StateSummary",
    "StoredChunk",
    "decode_chunk",
    "decode_events",
    "decode_partial_state",
    "decode_positions",
    "decode_state",
    "decode_workflow_item",
    "encode_dead_letter",
    "encode_event",
    "encode_events",
    "encode_positions",
    "encode_state",
    "encode_workflow_item",
    "history_chunk_key",
    "join_chunk",
    "join_events",
    "parse_history_chunk_key",
    "state_snapshot_key",
    "summarize_state",
]

#: Everything the engine reads from its input topics: commands, results, and connected apps' turns.
MESSAGES = Codec((*MESSAGE_TYPES, WorkflowAnswer))
WORK_ITEMS = Codec((ActivityWorkItem,))
EVENTS = Codec(EVENT_TYPES)

#: Longest key copied into a dead letter (IDs the engine accepts are at most 1 KiB).
DEAD_LETTER_KEY_BYTES = 1024

#: The status record's value: `InstanceState` in the codec's wire form, described by
#: `schemas/state/InstanceState.json`. Records written before the codec wrote it (the same fields,
#: hand-listed) decode unchanged.
STATES = Codec((InstanceState,))


def encode_state(state: InstanceState) -> bytes:
    return encode(state)


def decode_state(data: bytes | Mapping[str, Any]) -> InstanceState:
    state: InstanceState = STATES.decode(data)
    return state


def decode_partial_state(data: bytes, fields: Sequence[str]) -> InstanceState:
    """An `InstanceState` with its ID and `fields` read from a status record, each checked as
    `decode_state` checks it, and every other field at its default: for a reader that looks at a
    few fields of every record (the bench's load generator, which follows every state of every
    workflow it starts: a full decode was 38 % of its CPU). Raises `DecodeError`."""
    found = STATES.decode_fields(data, ("instance_id", *fields))
    return InstanceState(**found)


@quick_init
@dataclass(frozen=True, slots=True, kw_only=True)
class StateSummary:
    """What a reader files a status record under without building its `InstanceState`
    (`summarize_state`): the shown status, the name and the two times a listing sorts on."""

    shown_status: RuntimeStatus
    name: str
    created_at: datetime | None
    last_updated_at: datetime | None


_SUMMARY_FIELDS = ("status", "waiting_for_code", "name", "created_at", "last_updated_at")


def summarize_state(data: bytes) -> StateSummary:
    """A status record's `StateSummary`, its fields checked as `decode_state` checks them: a
    tenth of a full decode, which was a fifth of the REST API's CPU per start (issue 17) because
    the API's status index reads every record and needs only these. Raises `DecodeError`."""
    found = STATES.decode_fields(data, _SUMMARY_FIELDS)
    return StateSummary(shown_status=shown_status(found["status"], found["waiting_for_code"]), name=found["name"],
                        created_at=found["created_at"], last_updated_at=found["last_updated_at"])


def encode_events(instance_id: str, execution_id: str, events: Sequence[HistoryEvent]) -> bytes:
    return orjson.dumps(
        {"instance_id": instance_id, "execution_id": execution_id, "events": [to_jsonable(e) for e in events]}
    )


def encode_event(event: HistoryEvent) -> bytes:
    return orjson.dumps(to_jsonable(event))


def join_events(instance_id: str, execution_id: str, encoded: Sequence[bytes]) -> bytes:
    """The record of `encode_events`, from events encoded once with `encode_event`."""
    head = orjson.dumps({"instance_id": instance_id, "execution_id": execution_id})
    return b"".join((head[:-1], b',"events":[', b",".join(encoded), b"]}"))


def join_chunk(instance_id: str, execution_id: str, encoded: Sequence[bytes], state: bytes | None) -> bytes:
    """A history-store chunk: `join_events`' record, and for the open chunk of a running instance
    its encoded state (`encode_state`) under "state", which makes it the instance's restore snapshot
    too (issue 17: one record per turn instead of a chunk and a snapshot). Readers of chunks that
    predate the field read the events and ignore it."""
    record = join_events(instance_id, execution_id, encoded)
    if state is None:
        return record
    return b"".join((record[:-1], b',"state":', state, b"}"))


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A decoded history-store chunk; `state` is the raw state it carries (`join_chunk`), if any."""

    instance_id: str
    execution_id: str
    events: list[HistoryEvent]
    state: dict[str, Any] | None


def _ids(raw: Any, what: str) -> tuple[str, str]:
    """A record's instance and execution IDs, each checked to be a string (a `DecodeError` naming
    the field otherwise, in the pure and the native build alike)."""
    instance_id, execution_id = raw["instance_id"], raw["execution_id"]
    for name, value in (("instance_id", instance_id), ("execution_id", execution_id)):
        if type(value) is not str:
            raise DecodeError(f"{what}: {name} is a {type(value).__name__}, not a string")
    return instance_id, execution_id


def decode_chunk(data: bytes) -> StoredChunk:
    try:
        raw = orjson.loads(data)
        state = raw.get("state")
        if state is not None and type(state) is not dict:
            raise DecodeError(f"a history chunk's state is a {type(state).__name__}, not an object")
        instance_id, execution_id = _ids(raw, "history chunk")
        return StoredChunk(instance_id, execution_id, [EVENTS.decode(e) for e in raw["events"]], state)
    except DecodeError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"invalid history chunk: {exc!r}") from None


def decode_events(data: bytes) -> tuple[str, str, list[HistoryEvent]]:
    try:
        raw = orjson.loads(data)
        instance_id, execution_id = _ids(raw, "history record")
        return instance_id, execution_id, [EVENTS.decode(e) for e in raw["events"]]
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise DecodeError(f"invalid history record: {exc!r}") from None


def encode_workflow_item(item: WorkflowWorkItem) -> bytes:
    """A remote workflow's turn on the orchestrations topic: its fields, events as in `encode_events`."""
    return orjson.dumps({"type": "WorkflowWorkItem", "version": item.VERSION, "instance_id": item.instance_id,
                         "execution_id": item.execution_id, "name": item.name, "turn": item.turn,
                         "new_from": item.new_from, "workflow_version": item.workflow_version,
                         "events": [to_jsonable(e) for e in item.events]})


def decode_workflow_item(data: bytes) -> WorkflowWorkItem:
    try:
        raw = orjson.loads(data)
        if raw.get("type") != "WorkflowWorkItem":
            raise DecodeError(f"not a WorkflowWorkItem: {str(raw.get('type'))[:100]!r}")
        # Checked before the item is built: the native build would refuse a wrong type with a
        # message of its own (the fields are typed), the pure one would build the item anyway.
        fields = {"instance_id": raw["instance_id"], "execution_id": raw["execution_id"], "name": raw["name"],
                  "turn": raw["turn"], "new_from": raw["new_from"], "workflow_version": raw.get("workflow_version")}
        if not all(isinstance(fields[k], str) for k in ("instance_id", "execution_id", "name")) or \
                not isinstance(fields["workflow_version"], str | None) or \
                not all(type(fields[k]) is int for k in ("turn", "new_from")):
            raise DecodeError("WorkflowWorkItem: a field has the wrong type")
        return WorkflowWorkItem(**fields, events=tuple(EVENTS.decode(e) for e in raw["events"]))
    except DecodeError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DecodeError(f"invalid workflow work item: {exc!r}") from None


def history_chunk_key(instance_id: str, execution_id: str, chunk: int) -> bytes:
    return f"{instance_id}\x00{execution_id}\x00{chunk:08d}".encode()


#: Ends of the other keys of `history-store` (issue 16: restore proportional to running work): an
#: instance's restore snapshot (its state while an engine must hold it: running, pending, suspended,
#: waiting for children or for a retention purge), and the partition's marker that snapshots are
#: kept (absent: written before they were, and the restore reads `status` once and seeds them).
#: A chunk key ends with eight digits, so neither can be mistaken for one.
SNAPSHOT_SUFFIX = b"\x00\x00state"
SNAPSHOTS_MARKER = b"\x00\x00snapshots-kept"

#: Header on every `history-store` record an engine that keeps snapshots in chunks writes (issue 17),
#: tombstones included: a restore that finds a record without it (and not the marker) after the
#: last record with it knows an engine that keeps no snapshots wrote there since (`_restore`).
STORE_HEADER = ("headrace-store", b"2")


#: The input positions a partition's state includes (issue 17): the next offset of each input topic
#: of the partition, as `topic=offset;topic=offset`. Every `history-store` record a transaction
#: writes carries them in this header, and a transaction that consumed inputs but wrote no
#: `history-store` record writes them as the value of `POSITIONS_KEY`. A restore takes the highest
#: offset of each topic it finds, so the state and the place to read on from are one commit, as
#: `send_offsets_to_transaction` made them before, without its two round trips and its
#: transaction on the group coordinator. Compaction keeps the highest: it removes a record only
#: when a later one of its key, written by a later transaction, carries positions as high.
POSITIONS_HEADER = "headrace-positions"
POSITIONS_KEY = b"\x00\x00positions"


def encode_positions(positions: Mapping[str, int]) -> bytes:
    return ";".join(f"{topic}={offset}" for topic, offset in sorted(positions.items())).encode()


def decode_positions(raw: bytes | None) -> dict[str, int]:
    """The positions `encode_positions` wrote; raises `DecodeError` on anything else (a header with
    no value too: Kafka allows one, and aiokafka reads it as None)."""
    if raw is None:
        raise DecodeError("input positions header without a value")
    positions: dict[str, int] = {}
    try:
        for part in raw.decode().split(";"):
            if part:
                topic, _, offset = part.rpartition("=")
                if not topic:
                    raise ValueError(f"no topic in {part!r}")
                positions[topic] = int(offset)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"invalid input positions {raw[:100]!r}: {exc}") from None
    return positions


def state_snapshot_key(instance_id: str) -> bytes:
    return instance_id.encode() + SNAPSHOT_SUFFIX


def parse_history_chunk_key(key: bytes) -> tuple[str, str, int]:
    """Read `history_chunk_key`'s format; split from the right, so no instance ID can break it.

    Execution IDs are made by the engine (UUIDs) and chunk numbers are digits; the instance ID is
    whatever came first, NUL characters included (keys written before IDs were checked had them).
    """
    try:
        instance_id, execution_id, chunk = key.decode().rsplit("\x00", 2)
        return instance_id, execution_id, int(chunk)
    except ValueError:  # UnicodeDecodeError is a ValueError
        raise DecodeError(f"malformed history-store key {key[:200]!r}") from None


def encode_dead_letter(reason: str, topic: str, partition: int, offset: int, key: bytes | None,
                       value: bytes | None, value_limit: int = 64 * 1024) -> bytes:
    """A dead letter: why, where the record was, and a bounded copy of its key and value.

    The copy is for whoever produced the record to see what was refused; it is cut at
    `value_limit` bytes (HEADRACE_DEAD_LETTER_VALUE_BYTES) and the key at `DEAD_LETTER_KEY_BYTES`,
    so a dead letter never holds a whole large payload (see docs/data-retention.md).
    """
    return orjson.dumps(
        {
            "reason": reason[:4096],
            "topic": topic,
            "partition": partition,
            "offset": offset,
            "key": None if key is None else key[:DEAD_LETTER_KEY_BYTES].decode(errors="replace"),
            "value": None if value is None else value[:value_limit].decode(errors="replace"),
            "value_bytes": None if value is None else len(value),
        }
    )
