"""When a finished instance is purged automatically: Dapr 1.17's workflow state retention policy.

Dapr's `Configuration` takes `spec.workflow.stateRetentionPolicy` with `anyTerminal`, `completed`,
`failed` and `terminated`, each a Go duration string ("72h", "30m"); a per-status value overrides
`anyTerminal`, and with none set nothing is ever deleted (docs.dapr.io, "History Retention Policy").
Only terminal instances are eligible. Here the clock starts when the instance finished
(`completed_at`), and a parent whose children have not all reported their end waits for them (it
stays in memory for their results anyway). The purge is recursive: children go with their parent.

Pure: the partition owner (`engine.runtime.partition`) holds the due times and applies the purge as
a `PurgeWorkflow` whose command ID says it came from here (`is_retention`), so the audit history can
mark it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from .state import InstanceState
from .values import RuntimeStatus

__all__ = ["RETENTION_COMMAND_PREFIX", "RetentionPolicy", "awaiting_purge", "is_retention", "parse_duration"]

#: Command IDs of retention purges (and, through `Orchestrator._purge`, of their children's).
RETENTION_COMMAND_PREFIX = "retention:"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> timedelta:
    """A Go duration string (Go's `time.ParseDuration`: "72h", "1h30m", "1.5s", "0"); no sign."""
    raw = text.strip()
    if raw == "0":
        return timedelta(0)
    seconds, at = 0.0, 0
    for match in _PART.finditer(raw):
        if match.start() != at:
            break
        seconds += float(match.group(1)) * _UNITS[match.group(2)]
        at = match.end()
    if not raw or at != len(raw):
        raise ValueError(f"not a duration like 72h, 30m or 1.5s: {text!r}")
    return timedelta(seconds=seconds)


def is_retention(command_id: str) -> bool:
    return command_id.startswith(RETENTION_COMMAND_PREFIX)


def awaiting_purge(state: InstanceState) -> InstanceState:
    """What an engine keeps of a finished instance until its retention purge: the state without its
    payloads (input, output, custom status, failure), which the purge does not need."""
    return replace(state, input=None, output=None, custom_status=None, failure=None)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each terminal status is kept; None: forever."""

    any_terminal: timedelta | None = None
    completed: timedelta | None = None
    failed: timedelta | None = None
    terminated: timedelta | None = None

    @classmethod
    def parse(cls, any_terminal: str | None = None, completed: str | None = None, failed: str | None = None,
              terminated: str | None = None) -> RetentionPolicy:
        def one(text: str | None) -> timedelta | None:
            return None if text is None or not text.strip() else parse_duration(text)

        return cls(one(any_terminal), one(completed), one(failed), one(terminated))

    @property
    def enabled(self) -> bool:
        # Spelled out, not `any()` over a generator: the partition owner asks on every turn, and the
        # generator was 2 % of the compiled engine's samples at chain-5 (issue 17).
        return (self.any_terminal is not None or self.completed is not None or self.failed is not None
                or self.terminated is not None)

    def keep_for(self, status: RuntimeStatus) -> timedelta | None:
        if not status.is_terminal:
            return None
        specific = {RuntimeStatus.COMPLETED: self.completed, RuntimeStatus.FAILED: self.failed,
                    RuntimeStatus.TERMINATED: self.terminated}.get(status)
        return specific if specific is not None else self.any_terminal

    def due(self, state: InstanceState) -> datetime | None:
        """When `state` is purged, or None if it is not (running, waiting for children, or kept)."""
        if not state.is_terminal or state.unfinished_children:
            return None
        keep = self.keep_for(state.status)
        finished = state.completed_at or state.last_updated_at
        if keep is None or finished is None:
            return None
        return finished + keep

    def command_id(self, state: InstanceState) -> str:
        """The purge's command ID: one per execution, so a purge delivered twice is the same purge."""
        return f"{RETENTION_COMMAND_PREFIX}{state.instance_id}:{state.execution_id}"
