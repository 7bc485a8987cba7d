"""The JSON Schemas in `schemas/`: in sync with the code, valid, and agreeing with the decoder."""

from __future__ import annotations

import copy
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from samples import ACTIONS, EVENTS, MESSAGES, STATES

from engine.core import schema
from engine.core.codec import Codec, encode
from engine.errors import DecodeError

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
ALL_SAMPLES = [*EVENTS, *ACTIONS, *MESSAGES, *STATES]

# jsonschema checks "date-time" only when the optional rfc3339-validator is installed; this is the
# RFC 3339 `date-time` production, checked here so the test does not depend on that extra.
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True  # formats only constrain strings
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))  # raises on 2026-02-30 etc.
    return True


def family_of(value: object) -> str:
    return next(f for f, classes in schema.FAMILIES.items() if type(value) in classes)


def validator_for(value: object) -> Draft202012Validator:
    path = SCHEMAS / family_of(value) / f"{type(value).__name__}.json"
    return Draft202012Validator(orjson.loads(path.read_bytes()), format_checker=FORMATS)


def codec_for(value: object) -> Codec:
    return Codec(schema.FAMILIES[family_of(value)])


class Test_files:
    def test_schemas_folder_is_in_sync_with_the_code(self):
        rendered = schema.rendered()
        stale = [
            str(rel)
            for rel, data in rendered.items()
            if not (SCHEMAS / rel).exists() or (SCHEMAS / rel).read_bytes() != data
        ]
        assert not stale, f"regenerate with `python -m engine.core.schema schemas`: {stale}"
        on_disk = {
            p.relative_to(SCHEMAS)
            for family in schema.FAMILIES
            for p in (SCHEMAS / family).glob("*.json")
        }
        extra = sorted(str(p) for p in on_disk - set(rendered))
        assert not extra, f"schema files for types the code no longer has: {extra}"

    def test_one_file_per_type(self):
        assert len(schema.rendered()) == sum(len(c) for c in schema.FAMILIES.values())

    @pytest.mark.parametrize("rel", sorted(str(p) for p in schema.rendered()))
    def test_each_file_is_a_valid_draft_2020_12_schema(self, rel):
        document = orjson.loads((SCHEMAS / rel).read_bytes())
        Draft202012Validator.check_schema(document)
        assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert document["$id"].endswith(rel)
        assert document["additionalProperties"] is False
        assert {"type", "version"} <= set(document["required"])
        assert document["description"]

    def test_write_schemas_writes_only_what_changed(self, tmp_path):
        first = schema.write_schemas(tmp_path)
        assert len(first) == len(schema.rendered())
        assert schema.write_schemas(tmp_path) == []
        (tmp_path / "events" / "TaskScheduled.json").write_text("{}")
        assert schema.write_schemas(tmp_path) == [tmp_path / "events" / "TaskScheduled.json"]


@pytest.mark.parametrize("value", ALL_SAMPLES, ids=lambda v: type(v).__name__)
def test_schema_accepts_what_the_code_writes(value):
    errors = [e.message for e in validator_for(value).iter_errors(orjson.loads(encode(value)))]
    assert errors == []


def test_date_time_format_is_really_checked():
    scheduled = EVENTS[8]
    wire = orjson.loads(encode(scheduled))
    wire["timestamp"] = "2026-01-01 noon"
    assert not validator_for(scheduled).is_valid(wire)
    wire["timestamp"] = "2026-01-01T00:00:00Z"
    assert validator_for(scheduled).is_valid(wire)


# -- the schema and the decoder must agree on what is valid ------------------------------------

WRONG_VALUES: list[Any] = ["text", 7, None, True, {}, [], 1.5]


def mutations(wire: dict[str, Any]):
    """Documents near a valid one: each field dropped, retyped, and an unknown field added, also
    inside nested objects (failure details, parents, carried-over events)."""
    for name in list(wire):
        dropped = copy.deepcopy(wire)
        del dropped[name]
        yield f"without {name}", dropped
        for wrong in WRONG_VALUES:
            changed = copy.deepcopy(wire)
            changed[name] = wrong
            yield f"{name}={wrong!r}", changed
    extra = copy.deepcopy(wire)
    extra["unexpected"] = 1
    yield "unknown field", extra
    for name, item in wire.items():
        if isinstance(item, dict):
            for label, nested in mutations(item):
                changed = copy.deepcopy(wire)
                changed[name] = nested
                yield f"{name}: {label}", changed
        if isinstance(item, list) and item and isinstance(item[0], dict):
            for label, nested in mutations(item[0]):
                changed = copy.deepcopy(wire)
                changed[name] = [nested, *item[1:]]
                yield f"{name}[0]: {label}", changed
            tagged = copy.deepcopy(wire)
            tagged[name] = [{"type": "EventRaised", "version": 1, **item[0]}]
            yield f"{name}[0] with type and version", tagged


@pytest.mark.parametrize("value", ALL_SAMPLES, ids=lambda v: type(v).__name__)
def test_schema_and_decoder_agree_on_near_misses(value):
    validator = validator_for(value)
    codec = codec_for(value)
    disagreements = []
    for label, document in mutations(orjson.loads(encode(value))):
        schema_ok = validator.is_valid(document)
        try:
            codec.decode(document)
            decoder_ok = True
        except DecodeError:
            decoder_ok = False
        if schema_ok != decoder_ok:
            disagreements.append(
                f"{label}: schema {'accepts' if schema_ok else 'rejects'}, "
                f"decoder {'accepts' if decoder_ok else 'rejects'}"
            )
    assert disagreements == []
