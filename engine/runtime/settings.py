"""Settings of every engine process, read from the environment (flags may override them)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["Settings"]

MiB = 1024 * 1024
DAY_MS = 24 * 60 * 60 * 1000

#: How long the broker may hold a fetch that has no data. Transactional (read_committed) data only
#: becomes visible when its commit marker lands, and a long hold then turns into latency; a short
#: one costs a few idle fetches per second.
FETCH_MAX_WAIT_MS = 100


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = "localhost:9092"
    #: Every topic and consumer group name starts with this, so several deployments share a cluster.
    topic_prefix: str = "headrace."
    partitions: int = 8
    replication_factor: int = 1
    #: Largest payload (workflow input, event data, activity result) accepted, in bytes.
    max_payload_bytes: int = MiB
    #: Activities one worker process runs at once; past this it stops fetching (backpressure).
    activity_concurrency: int = 64
    #: Live workflow generators kept per engine process (sticky execution).
    cache_size: int = 10_000
    task_queue: str = "default"
    #: Seconds input may wait on an engine partition with no progress before health reports it.
    stall_seconds: float = 60.0
    #: Seconds a stopping worker lets running activities finish; what still runs is abandoned
    #: (not committed, so delivered again) and the process exits.
    shutdown_grace_seconds: float = 30.0
    #: Port of the /metrics, /healthz and /readyz endpoints of engine and worker processes; 0 = off.
    metrics_port: int = 0
    metrics_host: str = "127.0.0.1"
    # Retention (docs/data-retention.md). Times in milliseconds; -1 keeps records forever. Applied when
    # topics are created, and to existing topics whose values differ (`topics.ensure_topics`).
    #: How long records stay in the append-only topics: commands, results, tasks.<queue>, history and
    #: dead-letter. A purge does not remove an instance's records from these; only this does.
    retention_commands_ms: int = 7 * DAY_MS
    retention_results_ms: int = 7 * DAY_MS
    retention_tasks_ms: int = 7 * DAY_MS
    retention_history_ms: int = 7 * DAY_MS
    retention_dead_letter_ms: int = 7 * DAY_MS
    #: Compacted topics (status, history-store): the longest a record that a newer one (a tombstone
    #: after a purge, a newer state) replaced stays before compaction removes it ...
    max_compaction_lag_ms: int = DAY_MS
    #: ... and how long the tombstone itself (a key, no value) stays readable after that.
    tombstone_retention_ms: int = DAY_MS
    #: Bytes of a refused record's value copied into its dead letter (the rest is cut off).
    dead_letter_value_bytes: int = 64 * 1024
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        settings = cls(
            bootstrap_servers=env.get("KAFKA_BOOTSTRAP_SERVERS") or "localhost:9092",
            topic_prefix=env.get("HEADRACE_TOPIC_PREFIX", "headrace."),
            partitions=_int(env, "HEADRACE_PARTITIONS", 8),
            replication_factor=_int(env, "HEADRACE_REPLICATION_FACTOR", 1),
            max_payload_bytes=_int(env, "HEADRACE_MAX_PAYLOAD_BYTES", MiB),
            activity_concurrency=_int(env, "HEADRACE_ACTIVITY_CONCURRENCY", 64),
            cache_size=_int(env, "HEADRACE_CACHE_SIZE", 10_000),
            task_queue=env.get("HEADRACE_TASK_QUEUE", "default"),
            stall_seconds=float(env.get("HEADRACE_STALL_SECONDS") or 60.0),
            shutdown_grace_seconds=float(env.get("HEADRACE_SHUTDOWN_GRACE_SECONDS") or 30.0),
            metrics_port=_int(env, "HEADRACE_METRICS_PORT", 0),
            metrics_host=env.get("HEADRACE_METRICS_HOST") or "127.0.0.1",
            retention_commands_ms=_int(env, "HEADRACE_RETENTION_COMMANDS_MS", 7 * DAY_MS),
            retention_results_ms=_int(env, "HEADRACE_RETENTION_RESULTS_MS", 7 * DAY_MS),
            retention_tasks_ms=_int(env, "HEADRACE_RETENTION_TASKS_MS", 7 * DAY_MS),
            retention_history_ms=_int(env, "HEADRACE_RETENTION_HISTORY_MS", 7 * DAY_MS),
            retention_dead_letter_ms=_int(env, "HEADRACE_RETENTION_DEAD_LETTER_MS", 7 * DAY_MS),
            max_compaction_lag_ms=_int(env, "HEADRACE_MAX_COMPACTION_LAG_MS", DAY_MS),
            tombstone_retention_ms=_int(env, "HEADRACE_TOMBSTONE_RETENTION_MS", DAY_MS),
            dead_letter_value_bytes=_int(env, "HEADRACE_DEAD_LETTER_VALUE_BYTES", 64 * 1024),
            security_protocol=env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
            sasl_mechanism=env.get("KAFKA_SASL_MECHANISM") or None,
            sasl_username=env.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=env.get("KAFKA_SASL_PASSWORD") or None,
            ssl_cafile=env.get("KAFKA_SSL_CAFILE") or None,
            ssl_certfile=env.get("KAFKA_SSL_CERTFILE") or None,
            ssl_keyfile=env.get("KAFKA_SSL_KEYFILE") or None,
        )
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def client_kwargs(self) -> dict[str, Any]:
        """Connection settings for any aiokafka client, security included."""
        kwargs: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            kwargs.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
            kwargs["ssl_context"] = context
        return kwargs
