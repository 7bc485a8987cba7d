"""ExecutionCache: a bounded LRU of live executions."""

from __future__ import annotations

import pytest

from engine.core.cache import ExecutionCache
from engine.core.executor import WorkflowExecution


def execution(iid: str) -> WorkflowExecution:
    return WorkflowExecution(iid, lambda name: None)


def test_take_removes_and_counts():
    cache = ExecutionCache(2)
    a = execution("a")
    cache.put("a", a)
    assert len(cache) == 1
    assert cache.take("a") is a
    assert cache.take("a") is None  # taken: a failed turn cannot leave a stale one behind
    assert (cache.hits, cache.misses) == (1, 1)


def test_least_recently_used_is_evicted_first():
    cache = ExecutionCache(2)
    for iid in "abc":
        cache.put(iid, execution(iid))
    assert cache.evictions == 1
    assert cache.take("a") is None
    assert cache.take("b") is not None
    assert cache.take("c") is not None


def test_put_again_refreshes():
    cache = ExecutionCache(2)
    cache.put("a", execution("a"))
    cache.put("b", execution("b"))
    cache.put("a", execution("a"))
    cache.put("c", execution("c"))
    assert cache.take("b") is None
    assert cache.take("a") is not None


def test_size_zero_keeps_nothing():
    cache = ExecutionCache(0)
    cache.put("a", execution("a"))
    assert len(cache) == 0
    assert cache.take("a") is None


def test_discard_and_clear():
    cache = ExecutionCache()
    cache.put("a", execution("a"))
    cache.put("b", execution("b"))
    cache.discard("a")
    cache.discard("missing")
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_negative_size_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        ExecutionCache(-1)
