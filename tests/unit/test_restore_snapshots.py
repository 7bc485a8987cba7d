"""Issue 16: which states a restore needs (`PartitionOwner.snapshot`) and when a kept partition is current."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType

from engine.core.orchestrator import Orchestrator
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from engine.runtime.membership import kept_across
from engine.runtime.partition import PartitionOwner
from engine.sdk.registry import Registry
from engine.settings import Settings
from engine.topics import Topics
from engine.wire.records import SNAPSHOT_SUFFIX, decode_state, encode_state, history_chunk_key, state_snapshot_key

DONE = datetime(2026, 1, 1, tzinfo=UTC)


def _owner(**settings: str) -> PartitionOwner:
    s = Settings(topic_prefix="t.", **settings)  # type: ignore[arg-type]
    return PartitionOwner(0, s, Topics.for_settings(s), Orchestrator(Registry().get_workflow), "g")


def _state(status: RuntimeStatus, **kw: object) -> InstanceState:
    return InstanceState(instance_id="i", execution_id="e", status=status, input='"in"', output='"out"',
                         completed_at=DONE, last_updated_at=DONE, **kw)  # type: ignore[arg-type]


def test_running_work_is_snapshotted_and_finished_work_is_not() -> None:
    owner = _owner()
    for status in (RuntimeStatus.RUNNING, RuntimeStatus.PENDING, RuntimeStatus.SUSPENDED,
                   RuntimeStatus.CONTINUED_AS_NEW):
        state = _state(status)
        assert owner.snapshot(state, encode_state(state)) == encode_state(state), status
    for status in (RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED):
        state = _state(status)
        assert owner.snapshot(state, encode_state(state)) is None, status


def test_a_finished_parent_waiting_for_children_keeps_its_snapshot() -> None:
    state = _state(RuntimeStatus.TERMINATED, unfinished_children=MappingProxyType({1: "child"}))
    assert _owner().snapshot(state, encode_state(state)) == encode_state(state)


def test_a_purge_due_keeps_a_snapshot_without_payloads() -> None:
    state = _state(RuntimeStatus.COMPLETED)
    snapshot = _owner(retention_completed="1h").snapshot(state, encode_state(state))
    assert snapshot is not None
    kept = decode_state(snapshot)
    assert (kept.instance_id, kept.execution_id, kept.status) == ("i", "e", RuntimeStatus.COMPLETED)
    assert (kept.input, kept.output) == (None, None)


def test_snapshot_keys_are_never_chunk_keys() -> None:
    assert state_snapshot_key("a\x00b").endswith(SNAPSHOT_SUFFIX)
    assert not history_chunk_key("a", "e", 0).endswith(SNAPSHOT_SUFFIX)


def test_only_a_partition_handed_straight_back_is_kept() -> None:
    assert kept_across(4, 5)
    assert not kept_across(4, 6)  # a generation in between: another member may have owned it
    assert not kept_across(-1, 0)  # generation unknown: restore
