"""The API's Kafka probe costs the same whatever the cluster holds.

The probe runs every `probe_interval_s` for the API's whole life. A metadata request that names no
topic list asks for every topic of the cluster: on the shared cluster a user already runs, with
thousands of topics, each probe would cost the broker and the API tens of CPU milliseconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.protocol.metadata import MetadataRequest

from api.kafka import KafkaLink
from api.settings import ApiSettings
from engine.settings import Settings

pytestmark = pytest.mark.kafka


async def test_the_probe_asks_for_the_brokers_and_no_topic(kafka_bootstrap: str, topic_prefix: str) -> None:
    engine = Settings.from_env(bootstrap_servers=kafka_bootstrap, partitions=1, topic_prefix=topic_prefix)
    link = KafkaLink(ApiSettings(engine=engine))
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 120)
        admin = link.admin
        assert admin is not None
        asked: list[Any] = []
        send = admin._send_request

        async def recording(request: Any, *args: Any, **kwargs: Any) -> Any:
            asked.append(request)
            return await send(request, *args, **kwargs)

        admin._send_request = recording
        link.reachable = False
        await link._probe()
        assert link.reachable, link.last_error
        metadata = [request for request in asked if isinstance(request, MetadataRequest)]
        assert metadata, f"the probe sent no metadata request: {asked}"
        # None would be "every topic"; the probe needs none.
        assert [request._topics for request in metadata] == [[]] * len(metadata)
        # What the empty list means on the version aiokafka chose: no topic (the deployment's exist).
        assert await admin.describe_topics([]) == []
    finally:
        await link.stop()
