"""Where another app's work goes on Kafka: its topics, found from its app ID (`engine.core.apps`).

An app ID names its topics (`headrace.<app-id>.`, `engine.settings.app_topic_prefix`), so an engine
or worker reaches another app on the same cluster without asking anyone: a call to app B's
activity is a work item on B's task topic, a call to B's workflow a start on B's commands topic,
and the answers come back on the caller's results or commands topic, named by the caller's app ID
in the item or the parent reference. Dapr's sidecars do the same by app ID, over service
invocation (docs.dapr.io/developing-applications/building-blocks/workflow/workflow-multi-app/).

The other app's topics may not exist yet (its processes never ran on this cluster): they are
created, with this process's partition count and retention settings, before the first record for
that app is sent. Waiting instead would hold this app's whole transaction (everything its
partition wrote in the batch) behind an app that may start hours later, and Kafka refuses a
transaction that writes to a missing topic, so the caller's work would stall or fail. Created, the
work waits on the other app's topic, committed, until that app's engines or workers read it: the
same rule as for code nobody here knows (`engine.core.unknown_code`), and nothing fails the
caller by itself. The other app's own processes later find their topics there (`ensure_topics`
creates only what is missing, and aligns retention to their own settings).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Iterable
from dataclasses import astuple, fields, replace

from aiokafka import AIOKafkaProducer

from ..settings import Settings, app_topic_prefix
from ..topics import Topics, ensure_topics

__all__ = ["AppTopics", "settings_for_app"]

log = logging.getLogger(__name__)

#: The task queue another app's activities are sent to: its default one (the caller cannot know
#: whether the other app's workers read a queue of their own).
_DEFAULT_QUEUE: str = next(f.default for f in fields(Settings) if f.name == "task_queue")  # type: ignore[assignment]


def settings_for_app(settings: Settings, app_id: str | None) -> Settings:
    """The settings that address app `app_id`'s topics from a process with `settings`: its own
    (whatever its prefix) for its own app or None, else the other app's `headrace.<app-id>.`."""
    if app_id is None or app_id == settings.app_id:
        return settings
    return replace(settings, app_id=app_id, topic_prefix=app_topic_prefix(app_id), task_queue=_DEFAULT_QUEUE)


class AppTopics:
    """The topics of the apps a process sends to, created once each before first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._topics: dict[str | None, Topics] = {}
        self._ensured: set[str] = set()
        self._lock = asyncio.Lock()
        #: The topics each producer is told to keep metadata for (`track`).
        self._tracked: weakref.WeakKeyDictionary[AIOKafkaProducer, frozenset[str]] = weakref.WeakKeyDictionary()

    def of(self, app_id: str | None) -> Topics:
        """The topics of app `app_id` (None or this process's own app: its own topics)."""
        topics = self._topics.get(app_id)
        if topics is None:
            topics = self._topics[app_id] = Topics.for_settings(settings_for_app(self.settings, app_id))
        return topics

    async def ensure(self, app_ids: Iterable[str]) -> None:
        """Make sure the topics of these other apps exist (once per app and process)."""
        wanted = [a for a in dict.fromkeys(app_ids) if a not in self._ensured and a != self.settings.app_id]
        if not wanted:
            return
        async with self._lock:
            for app_id in wanted:
                if app_id in self._ensured:
                    continue
                await ensure_topics(settings_for_app(self.settings, app_id), align=False)
                self._ensured.add(app_id)
                log.info("topics of app %r are ready for work sent to it", app_id)

    async def track(self, producer: AIOKafkaProducer, topics: Iterable[str]) -> None:
        """Make `producer` keep metadata for `topics` and for all of this app's topics.

        aiokafka (0.14) keeps metadata only for the topics it was asked about, except that its
        first metadata holds every topic of the cluster: a producer that first writes this app's
        topics (known from that first metadata, never asked about) and then another app's new
        topic refreshes its metadata for the new topic alone, and the batches for this app's
        topics lose their leader and fail after the request timeout (NotLeaderForPartitionError,
        found by tests/e2e/test_multi_app.py). Naming every topic the producer writes avoids it.
        """
        tracked = self._tracked.get(producer, frozenset())
        wanted = tracked | frozenset(topics) | frozenset(astuple(self.of(None)))
        if wanted != tracked:
            await producer.client.set_topics(sorted(wanted))
            self._tracked[producer] = wanted
