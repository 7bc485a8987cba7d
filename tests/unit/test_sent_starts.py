"""`engine.client.sent.SentStarts`: the starts a front end sent that its view may not show yet."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from engine.client.sent import SentStarts
from engine.core import commands as cmd
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus

AT = datetime(2026, 1, 1, tzinfo=UTC)


def start(iid: str, command_id: str = "mine") -> cmd.StartWorkflow:
    return cmd.StartWorkflow(instance_id=iid, command_id=command_id, name="wf")


def state(iid: str, run: str, status: RuntimeStatus = RuntimeStatus.RUNNING) -> InstanceState:
    return InstanceState(instance_id=iid, name="wf", status=status, execution_id=run, run_id=run)


def test_the_oldest_starts_go_beyond_the_limit() -> None:
    sent = SentStarts(limit=3)
    for n in range(5):
        sent.accepted(start(f"i{n}", f"c{n}"), AT)
    assert len(sent) == 3
    assert [sent.own_start(f"i{n}") for n in range(5)] == [None, None, "c2", "c3", "c4"]
    sent.accepted(start("i2", "again"), AT)  # a start sent again counts as the newest
    sent.accepted(start("i5", "c5"), AT)
    assert "i2" in sent and "i3" not in sent


def test_a_start_shows_pending_until_the_view_shows_its_run() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT)
    pending = sent.shown("a", state("a", "older", RuntimeStatus.COMPLETED))
    assert pending is not None and (pending.status, pending.run_id, pending.created_at) == (
        RuntimeStatus.PENDING, "mine", AT)
    mine = state("a", "mine")
    assert sent.shown("a", mine) is mine and "a" not in sent


def test_the_view_settles_a_start_it_shows_or_removes() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT)
    sent.accepted(start("b"), AT)
    sent.viewed("a", state("a", "older"))
    assert "a" in sent
    sent.viewed("a", state("a", "mine"))
    sent.viewed("b", None)  # purged, from anywhere
    assert "a" not in sent and "b" not in sent
    keeping = SentStarts(forget_removed=False)  # a front end with no slower path to ask
    keeping.accepted(start("c"), AT)
    keeping.viewed("c", None)
    assert keeping.own_start("c") == "mine"


def test_a_refusal_over_a_live_run_settles_the_start() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT)
    theirs = state("a", "theirs")
    assert sent.shown("a", theirs) is theirs and "a" in sent
    refused = replace(theirs, recent_commands=("mine",))
    assert sent.shown("a", refused) is refused and "a" not in sent


def test_with_a_ttl_an_old_start_is_left_to_the_slower_path() -> None:
    now = [100.0]
    sent = SentStarts(ttl_s=30.0, clock=lambda: now[0])
    sent.accepted(start("a"), AT)
    now[0] += 29.0
    assert sent.shown("a", None) is not None
    now[0] += 2.0
    assert sent.shown("a", None) is None and "a" not in sent


def test_forget_drops_a_start() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT)
    sent.forget("a")
    sent.forget("never")
    assert sent.shown("a", None) is None


def test_a_refusal_the_view_shows_settles_the_start_without_a_read() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT)
    sent.viewed("a", replace(state("a", "theirs"), recent_commands=("mine",)))
    assert "a" not in sent


def test_a_start_the_view_shows_already_when_its_send_is_acknowledged_is_not_kept() -> None:
    sent = SentStarts()
    sent.accepted(start("a"), AT, state("a", "mine"))  # the engine was faster than the ack
    sent.accepted(start("b"), AT, replace(state("b", "theirs"), recent_commands=("mine",)))
    sent.accepted(start("c"), AT, state("c", "older", RuntimeStatus.COMPLETED))
    assert "a" not in sent and "b" not in sent and sent.own_start("c") == "mine"
