"""What `headrace bench` says when it ends a run on a given broker (`Broker.close`): the topics it
deleted, those the broker refused, and a failure to reach it, which never stops the run's files
from being written."""

from __future__ import annotations

import asyncio
import re

import pytest

from ops.bench.deploy import Broker, new_run_id


def _close(broker: Broker, *, keep_topics: bool = False) -> list[str]:
    said: list[str] = []
    asyncio.run(broker.close("20261206-101010-abcd", keep_topics=keep_topics, note=said.append))
    return said


def test_deleted_and_refused_topics_are_both_said(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def forget_run(prefix: str) -> tuple[list[str], dict[str, str]]:
        asked.append(prefix)
        return [f"{prefix}a", f"{prefix}b"], {f"{prefix}c": "TopicAuthorizationFailedError"}

    broker = Broker.given("127.0.0.1:1")
    monkeypatch.setattr(broker, "forget_run", forget_run)
    said = _close(broker)
    assert asked == ["bench.20261206-101010-abcd."]
    assert said[0].startswith("deleted the run's 2 topics")
    assert "refused to delete 1" in said[1] and "c (TopicAuthorizationFailedError)" in said[1]


def test_a_failure_to_delete_is_said_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    async def forget_run(prefix: str) -> tuple[list[str], dict[str, str]]:
        raise OSError("connection refused")

    broker = Broker.given("127.0.0.1:1")
    monkeypatch.setattr(broker, "forget_run", forget_run)
    said = _close(broker)
    assert len(said) == 1 and "could not delete" in said[0] and "connection refused" in said[0]


def test_kept_topics_are_not_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    async def forget_run(prefix: str) -> tuple[list[str], dict[str, str]]:
        raise AssertionError("asked to delete kept topics")

    broker = Broker.given("127.0.0.1:1")
    monkeypatch.setattr(broker, "forget_run", forget_run)
    assert _close(broker, keep_topics=True) == []


def test_two_runs_started_in_the_same_second_get_different_ids() -> None:
    ids = {new_run_id() for _ in range(50)}
    assert len(ids) > 1
    assert all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{4}", i) for i in ids) and ids
