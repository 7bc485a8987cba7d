"""Dapr 1.17's state retention policy (`engine.core.retention`): durations, per-status overrides, due times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import MappingProxyType

import pytest

from engine.core.retention import RetentionPolicy, is_retention, parse_duration
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.settings import Settings

DONE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [("72h", 259_200), ("30m", 1800), ("1h30m", 5400), ("1.5s", 1.5),
                                               ("250ms", 0.25), ("0", 0), (".5h", 1800)])
def test_go_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "1", "-1h", "1d", "h", "1h 30m", "1hh"])
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def _finished(status: RuntimeStatus, **kw: object) -> InstanceState:
    return InstanceState(instance_id="i", execution_id="e1", status=status, completed_at=DONE,
                         last_updated_at=DONE, **kw)  # type: ignore[arg-type]


def test_per_status_values_override_any_terminal() -> None:
    policy = RetentionPolicy.parse(any_terminal="360h", completed="1m", failed="720h")
    assert policy.enabled
    assert policy.due(_finished(RuntimeStatus.COMPLETED)) == DONE + timedelta(minutes=1)
    assert policy.due(_finished(RuntimeStatus.FAILED)) == DONE + timedelta(hours=720)
    assert policy.due(_finished(RuntimeStatus.TERMINATED)) == DONE + timedelta(hours=360)


def test_nothing_set_keeps_everything_forever() -> None:
    policy = RetentionPolicy.parse()
    assert not policy.enabled
    assert policy.due(_finished(RuntimeStatus.COMPLETED)) is None


def test_only_terminal_instances_without_running_children_expire() -> None:
    policy = RetentionPolicy.parse(any_terminal="1s")
    assert policy.due(_finished(RuntimeStatus.RUNNING)) is None
    assert policy.due(_finished(RuntimeStatus.SUSPENDED)) is None
    waiting = _finished(RuntimeStatus.TERMINATED, unfinished_children=MappingProxyType({3: "child"}))
    assert policy.due(waiting) is None
    assert policy.due(_finished(RuntimeStatus.TERMINATED)) == DONE + timedelta(seconds=1)


def test_a_status_left_unset_is_kept_when_there_is_no_default() -> None:
    policy = RetentionPolicy.parse(completed="1s")
    assert policy.due(_finished(RuntimeStatus.FAILED)) is None


def test_the_purge_command_is_recognisable_and_one_per_execution() -> None:
    policy = RetentionPolicy.parse(any_terminal="1s")
    state = _finished(RuntimeStatus.COMPLETED)
    assert is_retention(policy.command_id(state))
    assert policy.command_id(state) == policy.command_id(state)
    assert not is_retention("cmd-1")


def test_settings_refuse_a_bad_duration_naming_the_variable() -> None:
    assert Settings.from_env({"HEADRACE_RETENTION_COMPLETED": "90s"}).retention_completed == "90s"
    with pytest.raises(ValueError, match="HEADRACE_RETENTION_FAILED"):
        Settings.from_env({"HEADRACE_RETENTION_FAILED": "7d"})
