"""Settings of one API process, from the environment (the `headrace api` flags override them)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.runtime.settings import Settings

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "ApiSettings"]

#: Dapr's HTTP port, so Dapr Workflow clients work unchanged.
DEFAULT_PORT = 3500
#: Dapr's default `--max-body-size` (4Mi).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024


def _number(env: Mapping[str, str], name: str, default: float, kind: type = float) -> Any:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class ApiSettings:
    #: Kafka connection, topic prefix and payload limit: shared with the engine processes.
    engine: Settings = field(default_factory=Settings)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    #: Request bodies larger than this get a 413 before they are read to the end.
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: When set, every route but the health routes needs this value in the `dapr-api-token` header.
    api_token: str | None = field(default=None, repr=False)
    #: How long one Kafka call of a request may take before the request fails with a 500.
    kafka_timeout_s: float = 5.0
    #: How long a read waits for the status view to catch up with what the engine committed.
    consistency_timeout_s: float = 2.0
    #: How long a command waits for the status view to show it applied (or refused) before the API
    #: answers: a start's 409 and every command's read-your-writes depend on it. Past it the API
    #: answers 202 anyway (the command is on Kafka and applies when the engine gets to it).
    apply_wait_s: float = 5.0
    #: How often the background probe checks that Kafka answers (readiness, fail-fast).
    probe_interval_s: float = 1.0
    #: How long this replica remembers the starts it accepted, to answer its own GETs at no cost.
    sent_ttl_s: float = 30.0
    #: `module:attribute` of the WorkflowRuntime whose workflow names the dashboard offers.
    app: str | None = None
    #: Requests in the app at once (health and metrics aside); more get a 503 at once. With the
    #: body limit it bounds what request bodies can hold: 256 x 4 MiB = 1 GiB at worst.
    max_in_flight: int = 256
    #: History reads running at once (each holds a Kafka consumer and a fetch buffer).
    history_concurrency: int = 4
    #: How long a history read waits for a free slot before it is answered 503 with Retry-After.
    history_wait_s: float = 5.0
    #: A client must send a request's headers within this many seconds of its first byte (or of
    #: connecting), else the connection is closed (a 408 when nothing was answered yet).
    header_timeout_s: float = 10.0
    #: ... and its whole body within this many seconds of the headers.
    body_timeout_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ApiSettings:
        env = os.environ if env is None else env
        settings = cls(
            engine=Settings.from_env(env),
            host=env.get("HEADRACE_API_HOST") or "127.0.0.1",
            port=_number(env, "HEADRACE_API_PORT", DEFAULT_PORT, int),
            max_body_bytes=_number(env, "HEADRACE_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int),
            api_token=env.get("DAPR_API_TOKEN") or None,
            kafka_timeout_s=_number(env, "HEADRACE_API_KAFKA_TIMEOUT_S", 5.0),
            consistency_timeout_s=_number(env, "HEADRACE_API_CONSISTENCY_TIMEOUT_S", 2.0),
            apply_wait_s=_number(env, "HEADRACE_API_APPLY_WAIT_S", 5.0),
            probe_interval_s=_number(env, "HEADRACE_API_PROBE_INTERVAL_S", 1.0),
            sent_ttl_s=_number(env, "HEADRACE_API_SENT_TTL_S", 30.0),
            app=env.get("HEADRACE_API_APP") or None,
            max_in_flight=_number(env, "HEADRACE_API_MAX_IN_FLIGHT", 256, int),
            history_concurrency=_number(env, "HEADRACE_API_HISTORY_CONCURRENCY", 4, int),
            history_wait_s=_number(env, "HEADRACE_API_HISTORY_WAIT_S", 5.0),
            header_timeout_s=_number(env, "HEADRACE_API_HEADER_TIMEOUT_S", 10.0),
            body_timeout_s=_number(env, "HEADRACE_API_BODY_TIMEOUT_S", 60.0),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})
