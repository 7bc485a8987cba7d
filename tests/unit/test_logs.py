"""The process logging setup: repeated records are rate-limited, with the count of those held back."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from engine.runtime.logs import RepeatFilter, configure_logging


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(msg: str, *args: object, name: str = "aiokafka.conn", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def _passes(flt: RepeatFilter, record: logging.LogRecord) -> bool:
    return bool(flt.filter(record))


def test_first_record_passes_repeats_are_held_and_counted_in_the_next_one_shown() -> None:
    clock = Clock()
    flt = RepeatFilter(interval=10, clock=clock)
    assert _passes(flt, _record("Unable connect to node with id %s: %s", 1, "refused"))
    held = 0
    for i in range(312):
        clock.now += 0.02  # a client retrying every 20 ms for 6 s
        held += not _passes(flt, _record("Unable connect to node with id %s: %s", i % 3, "refused"))
    assert held == 312
    clock.now += 10
    shown = _record("Unable connect to node with id %s: %s", 2, "refused")
    assert _passes(flt, shown)
    assert shown.getMessage() == "Unable connect to node with id 2: refused (repeated 312 times in the last 16 s)"
    clock.now += 1
    assert not _passes(flt, _record("Unable connect to node with id %s: %s", 2, "refused"))


def test_kinds_are_told_apart_by_logger_level_and_template() -> None:
    flt = RepeatFilter(interval=10, clock=Clock())
    assert _passes(flt, _record("a %s", 1))
    assert _passes(flt, _record("a %s", 1, name="headrace.worker"))
    assert _passes(flt, _record("a %s", 1, level=logging.WARNING))
    assert _passes(flt, _record("b %s", 1))
    assert not _passes(flt, _record("a %s", 2))


def test_a_kind_that_repeats_slower_than_the_interval_is_never_held() -> None:
    clock = Clock()
    flt = RepeatFilter(interval=10, clock=clock)
    for _ in range(5):
        record = _record("tick")
        assert _passes(flt, record)
        assert record.getMessage() == "tick"
        clock.now += 10


def test_info_and_debug_always_pass() -> None:
    flt = RepeatFilter(interval=10, clock=Clock())
    for _ in range(50):
        assert _passes(flt, _record("engine ready: owns partitions %s", [0], level=logging.INFO))


def test_memory_is_bounded_by_the_number_of_kinds() -> None:
    flt = RepeatFilter(interval=10, max_kinds=100, clock=Clock())
    for i in range(1000):
        flt.filter(_record(f"unique {i}"))
    assert len(flt._kinds) == 100


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kafka_level = logging.getLogger("aiokafka").level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(kafka_level)


@pytest.mark.usefixtures("restore_root_logging")
def test_configured_process_logging_rate_limits_aiokafka_and_keeps_info_lines() -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    configure_logging("info", stream=out)  # a second call replaces the handler, it does not add one
    conn = logging.getLogger("aiokafka.conn")
    for _ in range(2150):
        conn.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connection refused")
    conn.info("connected")  # below WARNING: aiokafka's chatter is off
    logging.getLogger("headrace.engine").info("engine ready: owns partitions %s", [0, 1])
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].endswith("ERROR aiokafka.conn: Unable connect to node with id 1: [Errno 111] Connection refused")
    assert lines[1].endswith("INFO headrace.engine: engine ready: owns partitions [0, 1]")
