"""Which committed offsets' metadata name an engine process to fence (`engine.runtime.departed`)."""

from __future__ import annotations

from engine.runtime.departed import process_transactional_id, writers


def test_only_the_group_s_process_ids_are_writers() -> None:
    mine = process_transactional_id("hr.engine", "0123456789ab")
    assert writers("hr.engine", [
        mine,
        "",  # an engine that commits per partition names nobody
        "hr.engine-p3",  # a partition's own ID: its next owner fences it by registering it anyway
        "hr.engine.other-0123456789ab",  # another group's
        "other-0123456789ab",
        "hr.engine-0123456789abc",  # not the shape of one
        "hr.engine-0123456789AB",
        "kafka-consumer-groups.sh reset",  # a tool's note
    ]) == {mine}
