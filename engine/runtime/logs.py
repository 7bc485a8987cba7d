"""Process setup shared by every Headrace process (engine, worker, API, chaos harness): logging, and
the import path `--app` is resolved against.

Text lines by default; `--log-format json` (or HEADRACE_LOG_FORMAT=json) writes one JSON object per
line instead, with the instance ID, workflow name and partition the process was working on as fields
of their own (`set_context`: the engine sets them per turn, the worker per activity), so a log
pipeline can filter one instance's lines without parsing messages.

A broker outage makes every Kafka client log the same failure several times a second for as long as
it lasts (a 29 s outage printed ~2,150 ERROR lines per process). `RepeatFilter` lets the first
record of a kind through and then at most one per `interval` seconds, carrying the count of the
ones it held back, so an outage reads as a few lines that still say how often it happened.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import orjson

__all__ = [
    "FORMAT",
    "LOG_FORMATS",
    "JsonFormatter",
    "LogContext",
    "RepeatFilter",
    "configure_logging",
    "import_path_like_python_m",
    "set_context",
]

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Seconds between two records of the same kind once it repeats.
REPEAT_INTERVAL_S = 10.0

#: Loggers of the Kafka client, which log every failed reconnect.
_KAFKA_LOGGERS = ("aiokafka", "kafka")

LOG_FORMATS = ("text", "json")


class LogContext(NamedTuple):
    """What the process is working on, added to each JSON log line (None fields are left out)."""

    instance_id: str | None = None
    workflow: str | None = None
    partition: int | None = None


_EMPTY = LogContext()
_context: ContextVar[LogContext] = ContextVar("headrace_log_context", default=_EMPTY)


def set_context(instance_id: str | None = None, workflow: str | None = None, partition: int | None = None) -> None:
    """Set the context of the log lines that follow in this task (asyncio tasks each have their own)."""
    _context.set(LogContext(instance_id, workflow, partition))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the context fields,
    the exception and its traceback when there is one, and anything given with `extra=`."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in zip(LogContext._fields, _context.get(), strict=True):
            if value is not None:
                line[key] = value
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info))
        elif record.stack_info:
            line["traceback"] = record.stack_info
        return orjson.dumps(line, default=str).decode()


class RepeatFilter(logging.Filter):
    """Rate-limits records with the same (logger, level, message template) at WARNING and above.

    The first record of a kind passes; later ones within `interval` seconds of the last one shown
    are counted and dropped; the next one after the interval passes with "(repeated N times …)"
    appended. Records below WARNING always pass: they are not what floods, and start-up lines such
    as "engine ready" are read by tools. Keys are message templates, not formatted text, so
    "cannot reach node 1" and "cannot reach node 2" count as one kind. At most `max_kinds` kinds
    are remembered (least recently seen forgotten first), so memory stays bounded.
    """

    def __init__(self, interval: float = REPEAT_INTERVAL_S, max_kinds: int = 1024,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.max_kinds = max_kinds
        self._clock = clock
        #: kind → [time the last one was shown, records held back since]
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        seen = self._kinds.get(key)
        if seen is None:
            self._kinds[key] = [now, 0]
            if len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
            return True
        self._kinds.move_to_end(key)
        shown_at, held = seen
        if now - shown_at < self.interval:
            seen[1] = held + 1
            return False
        if held:
            # Formatted here once so the count reaches every handler's formatter unchanged.
            record.msg = f"{record.getMessage()} (repeated {int(held)} times in the last {now - shown_at:.0f} s)"
            record.args = None
        seen[0], seen[1] = now, 0
        return True


def configure_logging(level: str | int = "info", stream: TextIO | None = None,
                      interval: float = REPEAT_INTERVAL_S, log_format: str | None = None) -> logging.Handler:
    """Send every log record of this process to `stream` (stderr) through one `RepeatFilter`.

    `log_format`: "text" or "json" (default: HEADRACE_LOG_FORMAT, else text). Replaces handlers an
    earlier call installed, so calling it twice does not print twice.
    """
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    chosen = (log_format or os.environ.get("HEADRACE_LOG_FORMAT") or "text").lower()
    if chosen not in LOG_FORMATS:
        raise ValueError(f"unknown log format {chosen!r} (one of {', '.join(LOG_FORMATS)})")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(FORMAT))
    # On the handler, not a logger: a logger's filter misses records its children propagate.
    handler.addFilter(RepeatFilter(interval))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_headrace", False):
            root.removeHandler(old)
    handler._headrace = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    # The Kafka client's INFO lines describe every rebalance and connection; its warnings and
    # errors are kept (rate-limited above) because they are how an outage shows.
    for name in _KAFKA_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if numeric <= logging.DEBUG else logging.WARNING)
    return handler


def import_path_like_python_m() -> None:
    """Put the current directory first on sys.path, as `python -m` does.

    `--app mymodule:runtime` names a module the user has in front of them; run through the
    `headrace` script, sys.path starts with the script's own directory instead, and the module
    would not be found.
    """
    cwd = Path.cwd()
    if not any(entry == "" or Path(entry).resolve() == cwd for entry in sys.path):
        sys.path.insert(0, str(cwd))
