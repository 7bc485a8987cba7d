"""Waiting on conditions with a deadline: the only way tests here wait."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], object], timeout: float = 30.0, interval: float = 0.05,
               message: str = "") -> None:
    """Poll `condition` until it is truthy; fail with `message` when `timeout` passes first."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
            last_error = None
        except (AttributeError, KeyError, TypeError) as exc:  # the state is not there yet
            last_error = exc
        time.sleep(interval)
    detail = f" ({last_error!r})" if last_error else ""
    raise AssertionError(message or f"condition not met within {timeout}s{detail}")
