"""Topic retention follows the settings (docs/data-retention.md), on creation and on existing topics."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from engine.settings import DAY_MS, Settings
from engine.topics import Topics, ensure_topics

pytestmark = pytest.mark.kafka

HOUR_MS = 60 * 60 * 1000
UNKNOWN_TOPIC_OR_PARTITION = 3


async def _describe(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    """The topics' configs; waits (bounded) while a topic just created is not known to the broker yet."""
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    found: dict[str, dict[str, str]] = {}
    errors: dict[str, int] = {}
    try:
        async with asyncio.timeout(60):
            while True:
                responses = await admin.describe_configs(
                    [ConfigResource(ConfigResourceType.TOPIC, n) for n in names])
                found.clear()
                errors.clear()
                for response in responses:
                    for error_code, _message, _type, name, entries, *_ in response.resources:
                        if error_code == 0:
                            found[name] = {entry[0]: entry[1] for entry in entries}
                        else:
                            errors[name] = error_code
                if not errors or set(errors.values()) != {UNKNOWN_TOPIC_OR_PARTITION}:
                    break
                await asyncio.sleep(0.2)  # metadata of new topics is still spreading; bounded above
    finally:
        await admin.close()
    assert not errors, errors
    assert sorted(found) == sorted(names)
    return found


async def _alter(settings: Settings, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(**settings.client_kwargs())
    await admin.start()
    try:
        (response,) = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=configs)])
    finally:
        await admin.close()
    assert [r[0] for r in response.resources] == [0], response


def _expected(settings: Settings) -> dict[str, dict[str, str]]:
    topics = Topics.for_settings(settings)
    compacted = {"cleanup.policy": "compact", "max.compaction.lag.ms": str(settings.max_compaction_lag_ms),
                 "delete.retention.ms": str(settings.tombstone_retention_ms)}
    return {
        topics.commands: {"cleanup.policy": "delete", "retention.ms": str(settings.retention_commands_ms)},
        topics.results: {"cleanup.policy": "delete", "retention.ms": str(settings.retention_results_ms)},
        topics.tasks: {"cleanup.policy": "delete", "retention.ms": str(settings.retention_tasks_ms)},
        topics.history: {"cleanup.policy": "delete", "retention.ms": str(settings.retention_history_ms)},
        topics.dead_letter: {"cleanup.policy": "delete", "retention.ms": str(settings.retention_dead_letter_ms)},
        topics.status: compacted,
        topics.history_store: compacted,
    }


async def _settled(settings: Settings, want: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """The topics' configs once they show `want` (or after 30 s, for the caller to assert): a
    change is committed by the controller before every broker's view has it (KRaft metadata
    spreads asynchronously), so a describe right after a change may still show the old values."""
    described = await _describe(settings, list(want))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            while any(described[name].get(k) != v for name, configs in want.items() for k, v in configs.items()):
                await asyncio.sleep(0.1)  # polled until the condition holds; bounded above
                described = await _describe(settings, list(want))
    return described


def _check(settings: Settings) -> dict[str, dict[str, str]]:
    expected = _expected(settings)
    described = asyncio.run(_settled(settings, expected))
    for name, want in expected.items():
        assert {k: described[name][k] for k in want} == want, name
        # A segment is deleted or compacted only once closed: every topic rolls within a day.
        assert 0 < int(described[name]["segment.ms"]) <= DAY_MS, name
    return described


def test_defaults_are_documented_values(kafka_bootstrap: str) -> None:
    settings = Settings.from_env({}, bootstrap_servers=kafka_bootstrap)
    assert settings.retention_commands_ms == settings.retention_results_ms == settings.retention_tasks_ms == 7 * DAY_MS
    assert settings.retention_history_ms == settings.retention_dead_letter_ms == 7 * DAY_MS
    assert settings.max_compaction_lag_ms == settings.tombstone_retention_ms == DAY_MS
    assert settings.dead_letter_value_bytes == 64 * 1024


def test_settings_come_from_the_environment() -> None:
    env = {"HEADRACE_RETENTION_COMMANDS_MS": "1", "HEADRACE_RETENTION_RESULTS_MS": "2",
           "HEADRACE_RETENTION_TASKS_MS": "3", "HEADRACE_RETENTION_HISTORY_MS": "-1",
           "HEADRACE_RETENTION_DEAD_LETTER_MS": "5", "HEADRACE_MAX_COMPACTION_LAG_MS": "6",
           "HEADRACE_TOMBSTONE_RETENTION_MS": "7", "HEADRACE_DEAD_LETTER_VALUE_BYTES": "8"}
    settings = Settings.from_env(env)
    assert (settings.retention_commands_ms, settings.retention_results_ms, settings.retention_tasks_ms,
            settings.retention_history_ms, settings.retention_dead_letter_ms, settings.max_compaction_lag_ms,
            settings.tombstone_retention_ms, settings.dead_letter_value_bytes) == (1, 2, 3, -1, 5, 6, 7, 8)


def test_topics_are_created_with_the_configured_retention(kafka_bootstrap: str) -> None:
    settings = Settings.from_env(
        {}, bootstrap_servers=kafka_bootstrap, topic_prefix=f"ret-{uuid.uuid4().hex[:8]}.", partitions=2,
        retention_commands_ms=30 * 60 * 1000, retention_results_ms=7 * HOUR_MS, retention_tasks_ms=4 * HOUR_MS,
        retention_history_ms=30 * DAY_MS, retention_dead_letter_ms=-1, max_compaction_lag_ms=HOUR_MS,
        tombstone_retention_ms=5 * 60 * 1000,
    )
    asyncio.run(ensure_topics(settings))
    described = _check(settings)
    topics = Topics.for_settings(settings)
    # Segments roll at a seventh of the retention, at least every 10 minutes and at most every day.
    assert described[topics.commands]["segment.ms"] == str(10 * 60 * 1000)
    assert described[topics.results]["segment.ms"] == str(HOUR_MS)
    assert described[topics.history]["segment.ms"] == str(DAY_MS)
    assert described[topics.dead_letter]["segment.ms"] == str(DAY_MS)


def test_changed_settings_are_applied_to_existing_topics_and_other_overrides_kept(kafka_bootstrap: str) -> None:
    before = Settings.from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=f"ret-{uuid.uuid4().hex[:8]}.",
                               partitions=2)
    asyncio.run(ensure_topics(before))
    _check(before)
    topics = Topics.for_settings(before)
    # An operator's own override on a topic, which a full AlterConfigs request would otherwise reset.
    overrides = {**_expected(before)[topics.status], "max.message.bytes": "2000000", "min.compaction.lag.ms": "0",
                 "segment.ms": "600000", "min.cleanable.dirty.ratio": "0.25"}
    asyncio.run(_alter(before, topics.status, overrides))
    # What an engine starting later reads: the override must be visible before it starts.
    shown = asyncio.run(_settled(before, {topics.status: overrides}))
    assert shown[topics.status]["min.cleanable.dirty.ratio"] == "0.25"
    after = Settings.from_env({}, bootstrap_servers=kafka_bootstrap, topic_prefix=before.topic_prefix, partitions=2,
                              retention_commands_ms=DAY_MS, retention_history_ms=2 * DAY_MS,
                              max_compaction_lag_ms=HOUR_MS, tombstone_retention_ms=60 * 1000)
    asyncio.run(ensure_topics(after))
    described = _check(after)
    assert described[topics.status]["min.cleanable.dirty.ratio"] == "0.25"
    assert described[topics.status]["max.message.bytes"] == "2000000"
    # Unchanged settings left their topics as they were.
    assert described[topics.results]["retention.ms"] == str(7 * DAY_MS)
    # Running it again with the same settings changes nothing and does not fail.
    asyncio.run(ensure_topics(after))
    assert _check(after) == described
