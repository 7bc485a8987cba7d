"""Settings of every engine process, read from the environment (flags may override them).

Each setting is defined once, as a dataclass field: its default, its environment variable and the
parser that checks that variable (`setting(...)`). `from_env` and `to_env` read and write the
variables from those fields, and `ApiSettings` (api/settings.py) is declared the same way, so a
variable name, a default and a rule for bad values each live in one place.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, TypeVar

from .core import unknown_code
from .core.apps import is_app_id
from .core.payload import DEFAULT_MAX_PAYLOAD_BYTES
from .core.retention import parse_duration

__all__ = [
    "EnvVar", "Settings", "app_id", "app_topic_prefix", "env_for", "env_of", "go_duration", "integer", "number",
    "optional_text", "read_env", "setting", "text",
]

DAY_MS = 24 * 60 * 60 * 1000

#: How long the broker may hold a fetch that has no data. Transactional (read_committed) data only
#: becomes visible when its commit marker lands, and a long hold then turns into latency; a short
#: one costs a few idle fetches per second.
FETCH_MAX_WAIT_MS = 100

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)
#: (variable name, its raw non-blank value) -> the setting's value; raises ValueError naming the variable.
Parser = Callable[[str, str], Any]


def text(_name: str, raw: str) -> str:
    return raw


def optional_text(_name: str, raw: str) -> str | None:
    return raw


def integer(minimum: int | None = None) -> Parser:
    """An integer, at least `minimum` when given."""

    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
        return value

    return parse


def number(positive: bool = False) -> Parser:
    """A float (seconds, mostly); above zero when `positive`."""

    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {raw!r}") from None
        if positive and not value > 0:
            raise ValueError(f"{name} must be positive, got {raw!r}")
        return value

    return parse


def one_of(kind: type[E]) -> Parser:
    """A member of the string enum `kind`, by its value."""

    def parse(name: str, raw: str) -> E:
        try:
            return kind(raw)
        except ValueError:
            raise ValueError(f"{name} must be one of {', '.join(m.value for m in kind)}, got {raw!r}") from None

    return parse


class AuditMode(StrEnum):
    """When the audit `history` topic gets an instance's events (`HEADRACE_AUDIT`)."""

    #: Each turn's, as it is applied: the topic shows running work as it goes.
    TURN = "turn"
    #: All of an execution's at once, when it ends: one record per execution instead of one per
    #: turn; the REST API reads a running instance's history from `history-store` instead.
    EXECUTION = "execution"


class TransactionScope(StrEnum):
    """What one engine transaction holds (`HEADRACE_TRANSACTIONS`)."""

    #: One partition's batch, under the partition's own transactional ID (fenced by it).
    PARTITION = "partition"
    #: The default: a poll's small batches in one transaction under the process's ID, fenced by
    #: the consumer group's generation (Kafka's KIP-447); a batch alone, or large ones, each in its
    #: partition's own (`runtime.poll_transactions`). At moderate load a workflow costs about 40 %
    #: less CPU in every process.
    POLL = "poll"


def app_id(name: str, raw: str) -> str:
    """An app ID (`HEADRACE_APP_ID`): letters, digits, '.', '_', '-', at most 100 characters."""
    if not is_app_id(raw):  # the rule lives with calls across apps (engine.core.apps)
        raise ValueError(f"{name} must be letters, digits, '.', '_' or '-' (starting with a letter or digit, "
                         f"at most 100 characters), got {raw!r}")
    return raw


def go_duration(name: str, raw: str) -> str:
    """A Go duration string, as Dapr's configuration takes ("72h", "30m"; `engine.core.retention`)."""
    try:
        parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    return raw


def app_topic_prefix(app: str) -> str:
    """The topic prefix of an app that sets no prefix of its own: its own topics and groups."""
    return f"headrace.{app}."


@dataclass(frozen=True, slots=True)
class EnvVar:
    """Where a setting comes from: an environment variable and the parser of its value.

    An unset or blank variable means the field's default, except with `blank_is_value` (an empty
    topic prefix is a prefix: none).
    """

    name: str
    parse: Parser
    blank_is_value: bool = False


def setting(default: T, env: str, parse: Parser = text, *, blank_is_value: bool = False, secret: bool = False) -> T:
    """A settings field: `default`, read from `env` with `parse`. Secrets stay out of repr()."""
    return field(
        default=default, repr=not secret, metadata={"env": EnvVar(env, parse, blank_is_value)}
    )


def env_of(cls: type, name: str) -> EnvVar:
    """The environment variable of setting `name` of a settings class."""
    for f in fields(cls):
        if f.name == name and "env" in f.metadata:
            return f.metadata["env"]  # type: ignore[no-any-return]
    raise KeyError(f"{cls.__name__}.{name} is not read from the environment")


def read_env(cls: type, env: Mapping[str, str], name: str | None = None) -> dict[str, Any]:
    """Field name -> parsed value, for the settings of `cls` (or only `name`) set in `env`."""
    values: dict[str, Any] = {}
    for f in fields(cls):
        var = f.metadata.get("env")
        if var is None or (name is not None and f.name != name):
            continue
        raw = env.get(var.name)
        if raw is None or (not raw.strip() and not var.blank_is_value):
            continue
        values[f.name] = var.parse(var.name, raw)
    return values


def env_for(settings: object, *names: str) -> dict[str, str]:
    """The environment variables that give another process these settings (all, or `names`);
    settings that are None are left out."""
    out: dict[str, str] = {}
    for f in fields(settings):  # type: ignore[arg-type]
        value = getattr(settings, f.name)
        if "env" in f.metadata and value is not None and (not names or f.name in names):
            out[f.metadata["env"].name] = str(value)
    return out


def _with_overrides(settings: T, overrides: Mapping[str, Any]) -> T:
    known = {f.name for f in fields(settings)}  # type: ignore[arg-type]
    unknown = set(overrides) - known
    if unknown:
        raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    return replace(settings, **{k: v for k, v in overrides.items() if v is not None})  # type: ignore[type-var]


@dataclass(frozen=True, slots=True)
class Settings:
    bootstrap_servers: str = setting("localhost:9092", "KAFKA_BOOTSTRAP_SERVERS")
    #: Every topic and consumer group name starts with this, so several deployments share a cluster.
    #: With `app_id` set and no prefix given, `from_env` makes it `headrace.<app-id>.`.
    topic_prefix: str = setting("headrace.", "HEADRACE_TOPIC_PREFIX", blank_is_value=True)
    #: The app these processes serve (Dapr's app ID). Apps on one cluster are isolated by their
    #: topics: an engine never sees another app's instances, a worker never another app's work.
    app_id: str | None = setting(None, "HEADRACE_APP_ID", app_id)
    #: Seconds a workflow or activity name that the process holding it does not know waits for a
    #: process that knows it before it fails (engine.core.unknown_code); 0 fails at once.
    unknown_code_timeout: float = setting(unknown_code.DEFAULT_TIMEOUT.total_seconds(),
                                          "HEADRACE_UNKNOWN_CODE_TIMEOUT", number())
    partitions: int = setting(8, "HEADRACE_PARTITIONS", integer())
    replication_factor: int = setting(1, "HEADRACE_REPLICATION_FACTOR", integer())
    #: Largest payload (workflow input, event data, activity result) accepted, in bytes.
    max_payload_bytes: int = setting(DEFAULT_MAX_PAYLOAD_BYTES, "HEADRACE_MAX_PAYLOAD_BYTES", integer())
    #: Activities one worker process runs at once; past this it stops fetching (backpressure).
    activity_concurrency: int = setting(64, "HEADRACE_ACTIVITY_CONCURRENCY", integer())
    #: Live workflow generators kept per engine process (sticky execution).
    cache_size: int = setting(10_000, "HEADRACE_CACHE_SIZE", integer())
    task_queue: str = setting("default", "HEADRACE_TASK_QUEUE")
    #: Seconds input may wait on an engine partition with no progress before health reports it.
    stall_seconds: float = setting(60.0, "HEADRACE_STALL_SECONDS", number())
    #: Seconds a stopping worker lets running activities finish; what still runs is abandoned
    #: (not committed, so delivered again) and the process exits.
    shutdown_grace_seconds: float = setting(30.0, "HEADRACE_SHUTDOWN_GRACE_SECONDS", number())
    #: Port of the /metrics, /healthz and /readyz endpoints of engine and worker processes; 0 = off.
    metrics_port: int = setting(0, "HEADRACE_METRICS_PORT", integer())
    metrics_host: str = setting("127.0.0.1", "HEADRACE_METRICS_HOST")
    # Retention (docs/data-retention.md). Times in milliseconds; -1 keeps records forever. Applied when
    # topics are created, and to existing topics whose values differ (`topics.ensure_topics`).
    #: How long records stay in the append-only topics: commands, results, tasks.<queue>, history and
    #: dead-letter. A purge does not remove an instance's records from these; only this does.
    retention_commands_ms: int = setting(7 * DAY_MS, "HEADRACE_RETENTION_COMMANDS_MS", integer())
    retention_results_ms: int = setting(7 * DAY_MS, "HEADRACE_RETENTION_RESULTS_MS", integer())
    retention_tasks_ms: int = setting(7 * DAY_MS, "HEADRACE_RETENTION_TASKS_MS", integer())
    retention_history_ms: int = setting(7 * DAY_MS, "HEADRACE_RETENTION_HISTORY_MS", integer())
    retention_dead_letter_ms: int = setting(7 * DAY_MS, "HEADRACE_RETENTION_DEAD_LETTER_MS", integer())
    #: Compacted topics (status, history-store): the longest a record that a newer one (a tombstone
    #: after a purge, a newer state) replaced stays before compaction removes it ...
    max_compaction_lag_ms: int = setting(DAY_MS, "HEADRACE_MAX_COMPACTION_LAG_MS", integer())
    #: ... and how long the tombstone itself (a key, no value) stays readable after that.
    tombstone_retention_ms: int = setting(DAY_MS, "HEADRACE_TOMBSTONE_RETENTION_MS", integer())
    #: Bytes of a refused record's value copied into its dead letter (the rest is cut off).
    dead_letter_value_bytes: int = setting(64 * 1024, "HEADRACE_DEAD_LETTER_VALUE_BYTES", integer())
    security_protocol: str = setting("PLAINTEXT", "KAFKA_SECURITY_PROTOCOL")
    sasl_mechanism: str | None = setting(None, "KAFKA_SASL_MECHANISM", optional_text)
    sasl_username: str | None = setting(None, "KAFKA_SASL_USERNAME", optional_text)
    sasl_password: str | None = setting(None, "KAFKA_SASL_PASSWORD", optional_text, secret=True)
    ssl_cafile: str | None = setting(None, "KAFKA_SSL_CAFILE", optional_text)
    ssl_certfile: str | None = setting(None, "KAFKA_SSL_CERTFILE", optional_text)
    ssl_keyfile: str | None = setting(None, "KAFKA_SSL_KEYFILE", optional_text)
    #: Workflows whose code runs in apps connected to `headrace grpc` (`engine.core.remote`): a comma
    #: list of names, `*` for every name the engine's registry does not know. Read by the engine
    #: (it hands their turns out) and by `headrace grpc` (it serves them to connected apps).
    remote_workflows: str = setting("", "HEADRACE_REMOTE_WORKFLOWS")
    # -- static membership and Dapr 1.17's state retention policy --
    #: Static group membership (Kafka KIP-345, aiokafka's `group_instance_id`): a member that
    #: restarts under the same ID within the session timeout gets its partitions back and nothing
    #: moves. Must be unique per process (e.g. the pod name of a StatefulSet); unset: dynamic.
    group_instance_id: str | None = setting(None, "HEADRACE_GROUP_INSTANCE_ID", optional_text)
    #: Automatic purge of terminal instances, as Dapr 1.17's `workflow.stateRetentionPolicy`
    #: (docs.dapr.io, "History Retention Policy"): Go-style durations ("72h", "30m", "1.5s"); the
    #: per-status ones override `anyTerminal`; unset everywhere: kept forever (Dapr's default).
    retention_any_terminal: str | None = setting(None, "HEADRACE_RETENTION_ANY_TERMINAL", go_duration)
    retention_completed: str | None = setting(None, "HEADRACE_RETENTION_COMPLETED", go_duration)
    retention_failed: str | None = setting(None, "HEADRACE_RETENTION_FAILED", go_duration)
    retention_terminated: str | None = setting(None, "HEADRACE_RETENTION_TERMINATED", go_duration)
    # -- the audit topic --
    #: When the audit `history` topic gets an instance's events (`AuditMode`). Engine and API must agree.
    audit: AuditMode = setting(AuditMode.TURN, "HEADRACE_AUDIT", one_of(AuditMode))  # noqa: RUF009 (a field)
    #: What one engine transaction holds: a partition's batch, or a whole poll's (`TransactionScope`).
    transactions: TransactionScope = setting(  # noqa: RUF009 (a field)
        TransactionScope.POLL, "HEADRACE_TRANSACTIONS", one_of(TransactionScope))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """The defaults, then the environment (`os.environ`), then `overrides` that are not None."""
        values = read_env(cls, os.environ if env is None else env)
        settings = _with_overrides(cls(**values), overrides)
        if settings.app_id and "topic_prefix" not in values and overrides.get("topic_prefix") is None:
            # Isolation by default: an app ID without an explicit prefix gets topics of its own.
            settings = replace(settings, topic_prefix=app_topic_prefix(settings.app_id))
        return settings

    def to_env(self, *names: str) -> dict[str, str]:
        """The environment variables that give another process these settings (all, or `names`)."""
        return env_for(self, *names)

    @property
    def remote_workflow_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.remote_workflows.split(",") if n.strip())

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
