"""The topic check every process makes at its start waits out a node it cannot reach (aiokafka's
admin client sends a request to one node picked at random and fails at once if it is down), and
gives up on anything else at once."""

from __future__ import annotations

import pytest
from aiokafka.errors import NodeNotReadyError, TopicAuthorizationFailedError

from engine.topics import _patiently


async def test_a_node_that_cannot_be_reached_is_tried_again() -> None:
    calls: list[int] = []

    async def flaky() -> list[str]:
        calls.append(1)
        if len(calls) < 3:
            raise NodeNotReadyError("node 3 is not ready")
        return ["topic"]

    assert await _patiently("listing topics", flaky, patience_s=10) == ["topic"]
    assert len(calls) == 3


async def test_an_error_that_will_not_pass_is_raised_at_once() -> None:
    calls: list[int] = []

    async def denied() -> None:
        calls.append(1)
        raise TopicAuthorizationFailedError()

    with pytest.raises(TopicAuthorizationFailedError):
        await _patiently("creating topics", denied, patience_s=10)
    assert calls == [1]


async def test_patience_ends() -> None:
    calls: list[int] = []

    async def down() -> None:
        calls.append(1)
        raise NodeNotReadyError("node 3 is not ready")

    with pytest.raises(NodeNotReadyError):
        await _patiently("listing topics", down, patience_s=0.25)
    assert 1 < len(calls) < 5
