"""Record formats of the engine's own topics: instance state, history chunks, audit turns, dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson

from ..core.codec import Codec, to_jsonable
from ..core.commands import MESSAGE_TYPES, ActivityWorkItem
from ..core.events import EVENT_TYPES, HistoryEvent
from ..core.state import InstanceState
from ..core.values import FailureDetails, ParentInstance, RuntimeStatus
from ..errors import DecodeError

__all__ = [
    "EVENTS",
    "MESSAGES",
    "WORK_ITEMS",
    "decode_events",
    "decode_state",
    "encode_dead_letter",
    "encode_event",
    "encode_events",
    "encode_state",
    "history_chunk_key",
    "join_events",
    "parse_history_chunk_key",
]

MESSAGES = Codec(MESSAGE_TYPES)
WORK_ITEMS = Codec((ActivityWorkItem,))
EVENTS = Codec(EVENT_TYPES)

_STATE_VERSION = 1

#: Longest key copied into a dead letter (IDs the engine accepts are at most 1 KiB).
DEAD_LETTER_KEY_BYTES = 1024


def encode_state(state: InstanceState) -> bytes:
    return orjson.dumps(
        {
            "type": "InstanceState",
            "version": _STATE_VERSION,
            "instance_id": state.instance_id,
            "name": state.name,
            "status": state.status,
            "execution_id": state.execution_id,
            "run_id": state.run_id,
            "input": state.input,
            "output": state.output,
            "custom_status": state.custom_status,
            "failure": state.failure,
            "created_at": state.created_at,
            "last_updated_at": state.last_updated_at,
            "completed_at": state.completed_at,
            "parent": state.parent,
            "history_length": state.history_length,
            "generation": state.generation,
            "pending_tasks": dict(state.pending_tasks),
            "pending_timers": dict(state.pending_timers),
            "pending_children": dict(state.pending_children),
            "buffered_events": state.buffered_events,
            "children": state.children,
            "recent_commands": state.recent_commands,
            "scheduled_start": state.scheduled_start,
            "unfinished_children": dict(state.unfinished_children),
        },
        option=orjson.OPT_NON_STR_KEYS,
    )


def _dt(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def _failure(value: Any) -> FailureDetails | None:
    if value is None:
        return None
    return FailureDetails(
        error_type=value["error_type"],
        message=value["message"],
        stack_trace=value.get("stack_trace"),
        inner=_failure(value.get("inner")),
        non_retriable=value.get("non_retriable", False),
    )


def decode_state(data: bytes) -> InstanceState:
    try:
        raw = orjson.loads(data)
        if raw.get("version") != _STATE_VERSION:
            raise DecodeError(f"unsupported InstanceState version {raw.get('version')!r}")
        parent = raw["parent"]
        return InstanceState(
            instance_id=raw["instance_id"],
            name=raw["name"],
            status=RuntimeStatus(raw["status"]),
            execution_id=raw["execution_id"],
            run_id=raw["run_id"],
            input=raw["input"],
            output=raw["output"],
            custom_status=raw["custom_status"],
            failure=_failure(raw["failure"]),
            created_at=_dt(raw["created_at"]),
            last_updated_at=_dt(raw["last_updated_at"]),
            completed_at=_dt(raw["completed_at"]),
            parent=None if parent is None else ParentInstance(**parent),
            history_length=raw["history_length"],
            generation=raw["generation"],
            pending_tasks=MappingProxyType({int(k): v for k, v in raw["pending_tasks"].items()}),
            pending_timers=MappingProxyType(
                {int(k): datetime.fromisoformat(v) for k, v in raw["pending_timers"].items()}
            ),
            pending_children=MappingProxyType({int(k): v for k, v in raw["pending_children"].items()}),
            buffered_events=raw["buffered_events"],
            children=tuple(raw["children"]),
            recent_commands=tuple(raw.get("recent_commands", ())),
            scheduled_start=_dt(raw.get("scheduled_start")),
            unfinished_children=MappingProxyType(
                {int(k): v for k, v in raw.get("unfinished_children", {}).items()}
            ),
        )
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, orjson.JSONDecodeError) as exc:
        raise DecodeError(f"invalid InstanceState record: {exc}") from None


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


def decode_events(data: bytes) -> tuple[str, str, list[HistoryEvent]]:
    try:
        raw = orjson.loads(data)
        return raw["instance_id"], raw["execution_id"], [EVENTS.decode(e) for e in raw["events"]]
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise DecodeError(f"invalid history record: {exc!r}") from None


def history_chunk_key(instance_id: str, execution_id: str, chunk: int) -> bytes:
    return f"{instance_id}\x00{execution_id}\x00{chunk:08d}".encode()


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
