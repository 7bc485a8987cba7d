"""Hostile records for the engine's and the worker's input topics (the poison fuzzer's strategies).

A `Poison` is one record as a producer outside our control might write it: to `commands`,
`results` or `tasks.<queue>`, with any key (the instance ID, none, another one) and any partition.
Its body is either raw bytes (not JSON, JSON that is not an object, nesting deeper than any parser
allows, …) or a JSON tree built from the messages' JSON Schemas (`schemas/messages/*.json`): every
field present with a value of its schema type, but hostile — payload strings that are not JSON
text or are nested past what an encoder allows, IDs with NUL, control characters, lone surrogates
or a kilobyte of text, integers at and past the signed 64-bit range, dates at the ends of the
calendar — and sometimes mutated out of the schema (a field missing, of another type, unknown).

Values that only exist at send time (the execution ID or a pending task of an instance that is
running) are `Ref`s, resolved when the record is rendered, so a drawn record stays plain data that
prints as Python and can be pasted back as a regression case.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text()) for path in sorted((ROOT / "schemas" / "messages").glob("*.json"))
}
#: Messages the engine reads from `commands` and `results`, and the worker's work item.
ENGINE_TYPES = tuple(name for name in SCHEMAS if name != "ActivityWorkItem")
WORK_ITEM = "ActivityWorkItem"

Topic = Literal["commands", "results", "tasks"]


@dataclass(frozen=True, slots=True)
class Ref:
    """A value of a live victim instance, read when the record is rendered.

    `what` is "instance" (its ID), "execution" (its execution ID), "task" (a pending task ID) or
    "timer" (a pending timer ID); `victim` picks one of the victims the test keeps running.
    """

    what: str
    victim: int


@dataclass(frozen=True, slots=True)
class DeepFailure:
    """FailureDetails nested `depth` levels through `inner` (past what encoders and decoders recurse)."""

    depth: int


@dataclass(frozen=True, slots=True)
class Poison:
    """One record: `body` is a JSON tree (dicts, lists, scalars, `Ref`, `DeepFailure`), raw bytes, or None
    (a null value). `key` "instance" means the body's instance ID as bytes, a `Ref` a victim's ID.
    `partition` None leaves the choice to the producer's partitioner; an int is taken modulo the
    partition count. `ascii` writes non-ASCII text as JSON escapes (the only way a lone surrogate fits
    in JSON), else as raw UTF-8 (surrogates then as invalid bytes)."""

    topic: Topic
    body: Any
    key: bytes | Ref | Literal["instance"] | None = "instance"
    partition: int | None = None
    ascii: bool = True

    @property
    def certainly_invalid(self) -> bool:
        """No engine may read this as a message: it must be dead-lettered where it was read."""
        if self.body is None or isinstance(self.body, bytes):
            return True
        if not isinstance(self.body, dict):
            return True
        kind = self.body.get("type")
        schema = SCHEMAS.get(kind) if isinstance(kind, str) else None
        if schema is None or self.body.get("version") != 1 or isinstance(self.body.get("version"), bool):
            return True
        if self.topic == "tasks" and self.body.get("type") != WORK_ITEM:
            return True
        if self.topic != "tasks" and self.body.get("type") == WORK_ITEM:
            return True
        return bool(set(schema["required"]) - set(self.body)) or bool(set(self.body) - set(schema["properties"]))


Resolve = Callable[[Ref], Any]


def render(poison: Poison, resolve: Resolve) -> tuple[bytes | None, bytes | None]:
    """The record's key and value, with every `Ref` resolved."""
    if poison.body is None or isinstance(poison.body, bytes):
        value = poison.body
        instance: Any = None
    else:
        text = _dump(poison.body, resolve, poison.ascii)
        value = text.encode("utf-8", "surrogatepass")
        instance = poison.body.get("instance_id") if isinstance(poison.body, dict) else None
        if isinstance(instance, Ref):
            instance = resolve(instance)
    key: bytes | None
    if poison.key == "instance":
        key = instance.encode("utf-8", "surrogatepass") if isinstance(instance, str) else b"no-instance"
    elif isinstance(poison.key, Ref):
        key = str(resolve(poison.key)).encode("utf-8", "surrogatepass")
    else:
        key = poison.key
    return key, value


def describe(poison: Poison, resolve: Resolve, limit: int = 400) -> str:
    """One line for a failure message: topic, key, partition and the start of the value."""
    try:
        key, value = render(poison, resolve)
    except Exception as exc:  # a victim's state may be gone by now
        return f"{poison!r:.{limit}} (cannot render: {exc!r})"
    shown = "null" if value is None else repr(value[:limit])
    if value is not None and len(value) > limit:
        shown += f"... ({len(value)} bytes)"
    return f"{poison.topic} key={key if key is None else key[:80]!r} partition={poison.partition} value={shown}"


def _dump(tree: Any, resolve: Resolve, ascii: bool) -> str:
    if isinstance(tree, Ref):
        tree = resolve(tree)
    if isinstance(tree, DeepFailure):
        # Built as text: json.dumps itself recurses once per level and would stop first.
        head = '{"error_type":"Deep","message":"m","inner":' * tree.depth
        return head + "null" + "}" * tree.depth
    if isinstance(tree, Mapping):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=ascii)}:{_dump(v, resolve, ascii)}"
                              for k, v in tree.items()) + "}"
    if isinstance(tree, list | tuple):
        return "[" + ",".join(_dump(v, resolve, ascii) for v in tree) + "]"
    if isinstance(tree, float) and tree != tree:  # NaN: json.dumps writes it, JSON has no such token
        return "NaN"
    return json.dumps(tree, ensure_ascii=ascii)


# -- values -----------------------------------------------------------------------------------------

#: Characters that break keys, logs, terminals and encoders.
NASTY_CHARS = ["\x00", "\x01", "\x1b", "\x7f", "\n", "\t", " ", "\u200b", "\u202e", "\ufeff", "\ud800", "\udfff",
               "\U0010ffff", "\\", '"', "/", ":", "\x85", "\u2028"]
_char = st.one_of(st.characters(exclude_categories=()), st.sampled_from(NASTY_CHARS))
hostile_text = st.text(_char, max_size=24)


def id_values(payload_limit: int, victims: int) -> st.SearchStrategy[Any]:
    """Instance, command and execution IDs: ordinary unknown ones, hostile ones, and live victims'."""
    fixed = st.sampled_from([
        "", "\x00", "a\x00b", "\ud800", "x\udfff", " ", "a b", "\t", "ok\n", "\u200b", "\x7f", "../..", "a:0001",
    ])
    long = st.sampled_from([("a", 1024), ("a", 1025), ("\u00e9", 512), ("\u00e9", 513), ("x", payload_limit)]).map(
        _times)
    unknown = st.uuids().map(lambda u: f"unknown-{u.hex[:12]}")
    return st.one_of(fixed, long, unknown, hostile_text,
                     st.builds(Ref, st.just("instance"), st.integers(0, victims - 1)))


#: Integers at, inside and past the signed 64-bit range.
EXTREME_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, 2**64, -(2**64) - 1, 10**30, 2**200]


def int_values(ref: str, victims: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(EXTREME_INTS), st.integers(-(2**70), 2**70),
                     st.builds(Ref, st.just(ref), st.integers(0, victims - 1)))


def payload_values(payload_limit: int) -> st.SearchStrategy[str | None]:
    """Payload fields (input, result, output): JSON text, hostile JSON text, and text that is not JSON."""
    json_leaves = st.one_of(st.none(), st.booleans(), st.sampled_from(EXTREME_INTS), st.integers(),
                            st.floats(allow_nan=False, allow_infinity=False), hostile_text)
    json_values = st.recursive(json_leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)), max_leaves=12)
    as_text = st.builds(lambda v, a: json.dumps(v, ensure_ascii=a), json_values, st.booleans())
    fixed = st.sampled_from([
        # not JSON text: what a producer that forgot to JSON-encode sends, and worse
        "approved", "hello", "", " ", "{", "}", "'single'", "nul\x00", "\ud800", "1 2", "\ufeff1", "True",
        "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "0x10", "01", "[1,]", '{"a":1,}',
        # JSON text that is hard on whoever decodes or re-encodes it
        "null", "-0", "1e308", "-1e308", "5e-324", str(2**63), str(2**64), str(-(2**63) - 1), str(2**200),
        '"\\ud800"', '"\\udfff\\ud800"', '["\\ud800", 12345678901234567890123]', '"\\u0000"',
    ])
    # Built when drawn, so that the strategy's repr (printed by hypothesis) stays short.
    deep = st.sampled_from([
        ("[", "", "]", 254), ("[", "", "]", 255), ("[", "", "]", 300), ("[", "", "]", 1000), ("[", "", "]", 1100),
        ("[", "", "]", 5000), ('{"a":', "1", "}", 300), ("[", "12345678901234567890123", "]", 300),
        ("[", "", "", 5000), ('{"id":', "1", "}", 300), ('{"id":', "1", "}", 256),
    ]).map(_nested)
    huge = st.sampled_from([
        ('"', "x", payload_limit - 2, '"'), ('"', "x", payload_limit - 1, '"'), ("", "1", payload_limit, ""),
        ('"', "x", payload_limit + 10, '"'), ('"', "\\u0000", payload_limit // 6, '"'),
    ]).map(lambda t: t[0] + t[1] * t[2] + t[3])
    return st.one_of(st.none(), as_text, fixed, deep, huge, hostile_text)


def _times(t: tuple[str, int]) -> str:
    return t[0] * t[1]


def _nested(t: tuple[str, str, str, int]) -> str:
    open_, middle, close, depth = t
    return open_ * depth + middle + close * depth


DATES = ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00", "1970-01-01T00:00:00+00:00", "0001-01-01T00:00:00",
         "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999+00:00", "9999-12-31T23:59:59-23:59", "2026-01-01",
         "not a date", "", "2026-13-45T99:99:99Z", "2026-01-01T00:00:00+99:00", "\x00"]

WORKFLOW_NAMES = ["waiter", "sleeper", "chain", "missing_activity", "order_approval", "no_such_workflow"]
ACTIVITY_NAMES = ["greet", "square", "charge", "check_health", "step", "measure", "no_such_activity"]
EVENT_NAMES = ["go", "approval", "never"]


def _names(known: list[str]) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), hostile_text, st.sampled_from(["", "\x00"]),
                     st.just(("x", 70_000)).map(_times))


@dataclass(frozen=True, slots=True)
class Values:
    """The strategies for one field of a message, by what the field means."""

    ids: st.SearchStrategy[Any]
    payloads: st.SearchStrategy[str | None]
    victims: int

    def for_field(self, message: str, name: str, schema: Mapping[str, Any], defs: Mapping[str, Any],
                  depth: int = 0) -> st.SearchStrategy[Any]:
        if "const" in schema:
            return st.just(schema["const"])
        if "anyOf" in schema:
            return st.one_of(*(self.for_field(message, name, s, defs, depth) for s in schema["anyOf"]))
        if "$ref" in schema:
            ref = schema["$ref"].rsplit("/", 1)[-1]
            if ref == "FailureDetails":
                return failures(self, defs)
            return objects(self, message, defs[ref], defs, depth + 1)
        kind = schema.get("type")
        if kind == "null":
            return st.none()
        if kind == "boolean":
            return st.booleans()
        if kind == "integer":
            return int_values("timer" if name == "timer_id" else "task", self.victims)
        if kind == "string":
            if schema.get("format") == "date-time":
                return st.one_of(st.sampled_from(DATES), st.datetimes().map(lambda d: d.isoformat()))
            if name in ("input", "result", "output") or name.endswith("history"):
                return self.payloads
            if name == "execution_id":
                return st.one_of(st.builds(Ref, st.just("execution"), st.integers(0, self.victims - 1)), self.ids)
            if name.endswith("_id"):
                return self.ids
            if name == "name":
                known = {"StartWorkflow": WORKFLOW_NAMES, "RaiseEvent": EVENT_NAMES,
                         "ActivityWorkItem": ACTIVITY_NAMES}.get(message, WORKFLOW_NAMES)
                return _names(known)
            return st.one_of(hostile_text, st.just(""), st.just(("x", 70_000)).map(_times))
        raise AssertionError(f"no strategy for {message}.{name}: {schema}")


def objects(values: Values, message: str, schema: Mapping[str, Any], defs: Mapping[str, Any],
            depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Objects valid by `schema`: every required field, and each optional one or not."""
    props: Mapping[str, Any] = schema["properties"]
    required = [p for p in props if p in schema.get("required", ())]
    optional = [p for p in props if p not in required]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        chosen = required + [p for p in optional if draw(st.booleans())]
        order = [p for p in props if p in chosen]  # the schema's order; the engine must not care anyway
        return {p: draw(values.for_field(message, p, props[p], defs, depth)) for p in order}

    return build()


def failures(values: Values, defs: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    shallow = objects(values, "FailureDetails", {**defs["FailureDetails"], "properties": {
        k: v for k, v in defs["FailureDetails"]["properties"].items() if k != "inner"}}, defs)
    return st.one_of(shallow, st.builds(DeepFailure, st.sampled_from([2, 100, 254, 256, 300, 400, 600, 1000])))


def message_bodies(values: Values, type_names: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(*(objects(values, name, SCHEMAS[name], SCHEMAS[name].get("$defs", {}))
                       for name in type_names))


#: Values of the wrong JSON type for any field.
WRONG_TYPES: list[Any] = [None, True, 0, 1.5, 1e308, -1e308, 2**64, "s", "", [], [1], {}, {"type": "RaiseEvent"}]


@st.composite
def mutated(draw: st.DrawFn, bodies: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    """A schema-valid body made invalid: a field missing, of another type, unknown, or a bad envelope."""
    body = dict(draw(bodies))
    how = draw(st.sampled_from(["drop", "retype", "unknown", "type", "version"]))
    fields = [k for k in body if k not in ("type", "version")]
    if how == "drop" and fields:
        del body[draw(st.sampled_from(fields))]
    elif how == "retype" and fields:
        body[draw(st.sampled_from(fields))] = draw(st.sampled_from(WRONG_TYPES))
    elif how == "unknown":
        body[draw(st.sampled_from(["extra", "", "\x00", "type ", "Type", "instanceID"]))] = draw(
            st.sampled_from(WRONG_TYPES))
    elif how == "type":
        body["type"] = draw(st.sampled_from(["LaunchMissiles", "", "startworkflow", "InstanceState",
                                             "HistoryEvent", "ExecutionStarted", None, 1, ["StartWorkflow"]]))
    else:
        body["version"] = draw(st.sampled_from([0, 2, 99, -1, True, "1", 1.0, None, 2**64]))
    return body


def raw_bodies(payload_limit: int) -> st.SearchStrategy[bytes | None]:
    """Values no JSON object reader accepts: not JSON, not an object, too deep, empty, null."""
    fixed = st.sampled_from([
        None, b"", b" ", b"{not json", b"{", b"null", b"1", b'"str"', b"true", b"[]", b"{}", b"\xff\xfe\x00",
        b'{"type":"StartWorkflow"',
        b'[{"type":"StartWorkflow","version":1,"instance_id":"i","command_id":"c","name":"chain"}]',
        b'{"type":"RaiseEvent","version":1,"instance_id":"\xff\xfe","command_id":"c","name":"go"}',
        b'{"type":"RaiseEvent","type":"StartWorkflow","version":1,"instance_id":"i","command_id":"c","name":"x"}',
    ])
    big = st.sampled_from([("[", "", "]", 100_000), ('{"a":', "1", "}", 2000),
                           ("x", "", "", payload_limit + 10_000)]).map(lambda t: _nested(t).encode())
    return st.one_of(fixed, big, st.binary(max_size=64))


def poisons(payload_limit: int, victims: int) -> st.SearchStrategy[Poison]:
    """Any record for any input topic: mostly schema-valid bodies with hostile values, some invalid."""
    values = Values(id_values(payload_limit, victims), payload_values(payload_limit), victims)
    engine_bodies = message_bodies(values, ENGINE_TYPES)
    work_items = message_bodies(values, (WORK_ITEM,))
    keys = st.one_of(st.just("instance"), st.just("instance"), st.none(), st.binary(max_size=16),
                     st.builds(Ref, st.just("instance"), st.integers(0, victims - 1)))
    partitions = st.one_of(st.none(), st.none(), st.integers(0, 63))

    def record(topics: st.SearchStrategy[Any], bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[Poison]:
        return st.builds(Poison, topics, bodies, keys, partitions, st.booleans())

    engine_topics = st.sampled_from(["commands", "results"])
    # Schema-valid messages with hostile values reach deepest (orchestrator, state, writes), so they
    # are the most frequent: (weight, strategy), drawn by weight.
    kinds: list[tuple[int, st.SearchStrategy[Poison]]] = [
        (8, record(engine_topics, engine_bodies)),
        (2, record(st.just("tasks"), work_items)),
        (2, record(engine_topics, mutated(engine_bodies))),
        (1, record(st.just("tasks"), mutated(work_items))),
        (2, record(st.sampled_from(["commands", "results", "tasks"]), raw_bodies(payload_limit))),
        # Each side's messages on the other's topic.
        (1, record(engine_topics, work_items)),
        (1, record(st.just("tasks"), engine_bodies)),
    ]
    weighted = [strategy for weight, strategy in kinds for _ in range(weight)]
    return st.integers(0, len(weighted) - 1).flatmap(lambda i: weighted[i])
