"""The API's pure parts, without a broker: validation, wire shapes, cursors, the start fold."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from api.consistency import PendingStart, _Backlog
from api.errors import BackendError, InstanceIdInvalid, InstanceIdTooLong, _classify
from api.listing import Cursor, Query, list_instances, parse_query
from api.openapi import document
from api.responses import instance_body, rfc3339
from api.settings import ApiSettings
from api.validation import check_instance_id, check_new_instance_id, payload_from_body
from engine.core.commands import StartWorkflow
from engine.core.preconditions import fold_starts
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import InstanceExistsError, InstanceNotFoundError, PayloadTooLargeError
from tests.api.support import ROOT

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize("iid", ["a", "A-b_9", "Zürich", "数字٣", "x" * 64])
def test_valid_new_instance_ids(iid: str) -> None:
    check_new_instance_id(iid)


@pytest.mark.parametrize("iid", ["a.b", "a b", "a/b", "a:b", "é$", "²"])
def test_invalid_new_instance_ids(iid: str) -> None:
    with pytest.raises(InstanceIdInvalid):
        check_new_instance_id(iid)


def test_length_is_counted_in_utf8_bytes_as_daprd_does() -> None:
    check_new_instance_id("é" * 32)
    with pytest.raises(Exception, match="max length of 64"):
        check_new_instance_id("é" * 33)


def test_a_new_id_too_long_and_invalid_is_too_long_as_in_daprd() -> None:
    with pytest.raises(InstanceIdTooLong):
        check_new_instance_id("$" * 65)
    with pytest.raises(InstanceIdInvalid):
        check_new_instance_id("a\x00b")


@pytest.mark.parametrize("iid", ["parent:0001", "a.b", "x" * 1024, "Zürich/1"])
def test_ids_of_existing_instances_follow_the_engine_rule(iid: str) -> None:
    check_instance_id(iid)


@pytest.mark.parametrize("iid", ["a\x00b", "\x01", "tab\there", "sp ace", "bidi\u202e", "\ud800"])
def test_ids_no_instance_can_have_are_invalid(iid: str) -> None:
    with pytest.raises(InstanceIdInvalid) as caught:
        check_instance_id(iid)
    assert caught.value.message.isprintable()  # the ID is shown escaped: safe to log


def test_ids_over_the_engine_limit_are_too_long() -> None:
    with pytest.raises(InstanceIdTooLong, match="1024"):
        check_instance_id("x" * 1025)


@pytest.mark.parametrize(
    ("body", "payload"),
    [
        (b"", None),
        (b"null", "null"),
        (b'{"a":1}', '{"a":1}'),
        (b"text", '"text"'),
        (b" 7 ", " 7 "),
        ('"ü"'.encode(), '"ü"'),
        ("naïve".encode(), '"naïve"'),
    ],
)
def test_payload_from_body(body: bytes, payload: str | None) -> None:
    assert payload_from_body(body) == payload


def test_rfc3339_is_utc_with_protojson_fractions() -> None:
    assert rfc3339(T0) == "2026-01-02T03:04:05Z"
    assert rfc3339(T0.replace(microsecond=120000)) == "2026-01-02T03:04:05.120Z"
    assert rfc3339(T0.replace(microsecond=123456)) == "2026-01-02T03:04:05.123456Z"
    assert (
        rfc3339(T0.astimezone(__import__("zoneinfo").ZoneInfo("Asia/Tokyo")))
        == "2026-01-02T03:04:05Z"
    )
    assert rfc3339(None) == "1970-01-01T00:00:00Z"


def state(
    iid: str, status: RuntimeStatus, created: datetime = T0, name: str = "wf", **kw
) -> InstanceState:
    kw.setdefault("execution_id", f"e-{iid}")
    return InstanceState(
        instance_id=iid, name=name, status=status, created_at=created, last_updated_at=created, **kw
    )


def test_instance_body_has_dapr_fields_and_no_output_on_failure() -> None:
    failure = FailureDetails(error_type="ValueError", message="no", stack_trace="trace")
    body = instance_body(
        state("i", RuntimeStatus.FAILED, input='"in"', output='"x"', failure=failure)
    )
    assert body == {
        "instanceID": "i",
        "workflowName": "wf",
        "createdAt": "2026-01-02T03:04:05Z",
        "lastUpdatedAt": "2026-01-02T03:04:05Z",
        "runtimeStatus": "FAILED",
        "properties": {
            "dapr.workflow.input": '"in"',
            "dapr.workflow.failure.error_type": "ValueError",
            "dapr.workflow.failure.error_message": "no",
            "dapr.workflow.failure.stack_trace": "trace",
        },
    }
    assert instance_body(state("j", RuntimeStatus.RUNNING))["properties"] == {}


def test_listing_orders_filters_and_pages() -> None:
    states = [
        state(
            f"i{n}",
            RuntimeStatus.COMPLETED if n % 2 else RuntimeStatus.RUNNING,
            T0 + timedelta(seconds=n // 2),
            name="a" if n < 6 else "b",
        )
        for n in range(10)
    ]
    page = list_instances(reversed(states), Query(page_size=3))
    assert [i.instance_id for i in page.instances] == ["i0", "i1", "i2"]
    rest = list_instances(
        states, Query(page_size=100, after=Cursor.decode(page.continuation_token or ""))
    )
    assert [i.instance_id for i in rest.instances] == [f"i{n}" for n in range(3, 10)]
    assert rest.continuation_token is None
    query = parse_query(
        {"workflowName": "a", "createdAfter": "2026-01-02T03:04:05Z"}, ["COMPLETED,running"]
    )
    assert [i.instance_id for i in list_instances(states, query).instances] == [
        "i2",
        "i3",
        "i4",
        "i5",
    ]



def test_listing_filters_stalled_instances_by_the_status_they_show() -> None:
    from dataclasses import replace

    from api.overview import status_counts

    running = state("r", RuntimeStatus.RUNNING, T0)
    stalled = replace(state("s", RuntimeStatus.RUNNING, T0), waiting_for_code=T0)  # waits for matching code
    rows = [running, stalled]
    only = list_instances(rows, parse_query({}, ["STALLED"]))
    assert [i.instance_id for i in only.instances] == ["s"]
    assert [i.instance_id for i in list_instances(rows, parse_query({}, ["RUNNING"])).instances] == ["r"]
    counts = status_counts(rows)
    assert (counts["RUNNING"], counts["STALLED"]) == (1, 1)

def start(iid: str, cid: str) -> PendingStart:
    return PendingStart(
        0, StartWorkflow(instance_id=iid, command_id=cid, name="new", input='"n"'), T0
    )


def accepted(iid: str, cid: str) -> tuple[StartWorkflow, datetime]:
    pending = start(iid, cid)
    return pending.start, pending.accepted_at


def test_unapplied_starts_fold_like_the_engine() -> None:
    running = state("i", RuntimeStatus.RUNNING)
    done = state("i", RuntimeStatus.COMPLETED)
    assert fold_starts(None, []) is None
    assert fold_starts(None, [accepted("i", "c1")]).status is RuntimeStatus.PENDING  # type: ignore[union-attr]
    assert fold_starts(running, [accepted("i", "c1")]) is running  # refused by the engine
    replaced = fold_starts(done, [accepted("i", "c1")])
    assert replaced is not None
    assert replaced.run_id == "c1"
    assert replaced.input == '"n"'
    applied = state("i", RuntimeStatus.COMPLETED, execution_id="c1", run_id="c1")
    assert fold_starts(applied, [accepted("i", "c1")]) is applied
    # Refused already (a child still ran): the view shows it although the engine group's offsets,
    # which follow its commits, still had it unapplied.
    refused = replace(done, recent_commands=("c2",))
    assert fold_starts(refused, [accepted("i", "c2")]) is refused


def test_backlog_drops_what_the_engine_applied() -> None:
    backlog = _Backlog(
        scanned_to=10,
        starts={
            "a": [PendingStart(3, start("a", "1").start, T0)],
            "b": [
                PendingStart(4, start("b", "2").start, T0),
                PendingStart(8, start("b", "3").start, T0),
            ],
        },
    )
    backlog.prune(5)
    assert list(backlog.starts) == ["b"]
    assert [s.offset for s in backlog.starts["b"]] == [8]
    backlog.prune(20)
    assert backlog.starts == {}
    assert backlog.scanned_to == 20


def test_one_mapping_of_errors_to_statuses() -> None:
    assert _classify(InstanceNotFoundError("x"), "ERR_GET_WORKFLOW")[:2] == (
        404,
        "ERR_INSTANCE_ID_NOT_FOUND",
    )
    assert _classify(InstanceExistsError("x"), "ERR_START_WORKFLOW")[:2] == (
        409,
        "ERR_START_WORKFLOW",
    )
    assert _classify(PayloadTooLargeError("input", 2, 1), "ERR_START_WORKFLOW")[:2] == (
        413,
        "ERR_REQUEST_BODY_TOO_LARGE",
    )
    assert _classify(BackendError("Kafka away"), "ERR_PURGE_WORKFLOW") == (
        500,
        "ERR_PURGE_WORKFLOW",
        "Kafka away",
    )
    assert _classify(RuntimeError("bug"), "ERR_GET_WORKFLOW")[:2] == (500, "ERR_GET_WORKFLOW")


def test_settings_defaults_match_dapr() -> None:
    settings = ApiSettings.from_env({})
    assert settings.port == 3500
    assert settings.max_body_bytes == 4 * 1024 * 1024
    assert settings.api_token is None
    assert ApiSettings.from_env({"DAPR_API_TOKEN": "t", "HEADRACE_API_PORT": "8080"}).port == 8080


def test_engine_group_id_matches_the_engine() -> None:
    from api.kafka import engine_group_id
    from engine.runtime.engine import Engine
    from engine.sdk.registry import Registry

    settings = ApiSettings.from_env({"HEADRACE_TOPIC_PREFIX": "p."})
    assert engine_group_id(settings) == Engine(Registry(), settings.engine).group_id


def test_schemas_openapi_json_is_the_served_document() -> None:
    kept = json.loads((ROOT / "schemas" / "openapi.json").read_text())
    assert kept == document(), "regenerate it: python -m api.openapi > schemas/openapi.json"
