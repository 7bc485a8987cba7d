"""A bounded cache of live workflow executions (sticky execution), least recently used out first."""

from __future__ import annotations

from collections import OrderedDict

from .executor import WorkflowExecution

__all__ = ["ExecutionCache"]


class ExecutionCache:
    """Keeps live generators so a new event costs one step; an evicted one is rebuilt by replay."""

    def __init__(self, max_size: int = 10_000) -> None:
        if max_size < 0:
            raise ValueError("max_size must be >= 0")
        self._max_size = max_size
        self._items: OrderedDict[str, WorkflowExecution] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._items)

    def take(self, instance_id: str) -> WorkflowExecution | None:
        """Remove and return the live execution, so a failed turn can never leave a stale one behind."""
        execution = self._items.pop(instance_id, None)
        if execution is None:
            self.misses += 1
        else:
            self.hits += 1
        return execution

    def put(self, instance_id: str, execution: WorkflowExecution) -> None:
        if self._max_size == 0:
            return
        self._items[instance_id] = execution
        self._items.move_to_end(instance_id)
        while len(self._items) > self._max_size:
            self._items.popitem(last=False)
            self.evictions += 1

    def discard(self, instance_id: str) -> None:
        self._items.pop(instance_id, None)

    def clear(self) -> None:
        self._items.clear()
