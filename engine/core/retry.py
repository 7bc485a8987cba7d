"""Retry policy and its arithmetic, with Dapr's names and validation rules.

Delays are computed from history time only (the failure's turn time), so a replay makes the same
decisions; each retry becomes a durable timer in history, as in durabletask.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

__all__ = ["LONGEST_DELAY", "RetryPolicy"]

#: The longest delay a policy gives: a backoff can grow past what a float or `datetime` holds (a
#: coefficient of 10 overflows a float at attempt 310, and `datetime` ends at year 9999), and the
#: arithmetic must not raise inside a workflow's turn. A century is as good as never, and in range.
LONGEST_DELAY = timedelta(days=36525)


class RetryPolicy:
    """How often and how soon a failed activity or child workflow is tried again.

    Args:
        first_retry_interval: delay before the first retry (>= 0).
        max_number_of_attempts: total attempts including the first (>= 1).
        backoff_coefficient: each delay is the previous one times this (>= 1; default 1).
        max_retry_interval: cap on any one delay (>= 0).
        retry_timeout: no retry starts this long or longer after the first attempt.
    """

    __slots__ = (
        "_backoff_coefficient",
        "_first_retry_interval",
        "_max_number_of_attempts",
        "_max_retry_interval",
        "_retry_timeout",
    )

    def __init__(
        self,
        *,
        first_retry_interval: timedelta,
        max_number_of_attempts: int,
        backoff_coefficient: float | None = 1.0,
        max_retry_interval: timedelta | None = None,
        retry_timeout: timedelta | None = None,
    ) -> None:
        if first_retry_interval < timedelta(0):
            raise ValueError("first_retry_interval must be >= 0")
        if max_number_of_attempts < 1:
            raise ValueError("max_number_of_attempts must be >= 1")
        if backoff_coefficient is not None and not backoff_coefficient >= 1:  # NaN is not either
            raise ValueError("backoff_coefficient must be >= 1")
        if max_retry_interval is not None and max_retry_interval < timedelta(0):
            raise ValueError("max_retry_interval must be >= 0")
        if retry_timeout is not None and retry_timeout < timedelta(0):
            raise ValueError("retry_timeout must be >= 0")
        self._first_retry_interval = first_retry_interval
        self._max_number_of_attempts = max_number_of_attempts
        self._backoff_coefficient = 1.0 if backoff_coefficient is None else float(backoff_coefficient)
        self._max_retry_interval = max_retry_interval
        self._retry_timeout = retry_timeout

    @property
    def first_retry_interval(self) -> timedelta:
        return self._first_retry_interval

    @property
    def max_number_of_attempts(self) -> int:
        return self._max_number_of_attempts

    @property
    def backoff_coefficient(self) -> float:
        return self._backoff_coefficient

    @property
    def max_retry_interval(self) -> timedelta | None:
        return self._max_retry_interval

    @property
    def retry_timeout(self) -> timedelta | None:
        return self._retry_timeout

    def delay_after(self, attempt: int) -> timedelta:
        """The delay before attempt `attempt + 1`, after attempt number `attempt` (1-based) failed."""
        first = self._first_retry_interval.total_seconds()
        if not first:
            return timedelta(0)  # (0 times an infinite coefficient would be NaN)
        try:
            seconds = first * self._backoff_coefficient ** (attempt - 1)
        except OverflowError:
            seconds = math.inf
        longest = LONGEST_DELAY
        if self._max_retry_interval is not None and self._max_retry_interval < longest:
            longest = self._max_retry_interval
        return longest if seconds >= longest.total_seconds() else timedelta(seconds=seconds)

    def next_delay(self, *, attempt: int, first_attempt_at: datetime, now: datetime) -> timedelta | None:
        """The delay before the next attempt, or None when the policy gives up.

        It gives up after `max_number_of_attempts` attempts, and when the next attempt would start
        at or after `retry_timeout` from the first attempt (history time: the failure's turn time
        plus the delay). As in durabletask, where the next start is the first attempt plus the sum
        of the delays: the same when attempts take no time.
        """
        if attempt >= self._max_number_of_attempts:
            return None
        delay = self.delay_after(attempt)
        # Checking `now` alone would let a retry start after the timeout (failed at 7s of 10s,
        # next delay 8s: the retry would run at 15s).
        timeout = self._retry_timeout
        # In timedeltas, never a datetime past year 9999; a clock behind the first attempt's (the
        # partition moved to another host) counts as no time gone.
        if timeout is not None and delay >= timeout - max(now - first_attempt_at, timedelta(0)):
            return None
        return delay

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(first_retry_interval={self._first_retry_interval!r}, "
            f"max_number_of_attempts={self._max_number_of_attempts}, "
            f"backoff_coefficient={self._backoff_coefficient}, "
            f"max_retry_interval={self._max_retry_interval!r}, retry_timeout={self._retry_timeout!r})"
        )
