"""Which committed offsets' metadata name an engine process to fence (`engine.runtime.departed`)."""

from __future__ import annotations

from engine.runtime.departed import process_transactional_id, process_unique, writers


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


def test_a_static_member_s_id_survives_its_restart_and_a_plain_one_does_not() -> None:
    # Under static membership a restart must register its predecessor's ID (which aborts what the
    # predecessor left open); without it, every process is new and names itself afresh.
    first, again = process_unique("engine-0"), process_unique("engine-0")
    assert first == again and first != process_unique("engine-1")
    assert process_unique(None) != process_unique(None)
    for unique in (first, process_unique(None), process_unique("ünïcode\udcff")):
        mine = process_transactional_id("hr.engine", unique)
        assert writers("hr.engine", [mine]) == {mine}
