"""Settings of one API process, from the environment (the `headrace api` flags override them).

Declared as the engine's settings are (engine/settings.py): each field holds its default,
its environment variable and its parser, once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from engine.settings import Settings, env_for, integer, number, optional_text, read_env, setting

__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_PORT", "ApiSettings"]

#: Dapr's HTTP port, so Dapr Workflow clients work unchanged.
DEFAULT_PORT = 3500
#: Dapr's default `--max-body-size` (4Mi).
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

_positive_int = integer(minimum=1)
_seconds = number(positive=True)


@dataclass(frozen=True, slots=True)
class ApiSettings:
    #: Kafka connection, topic prefix and payload limit: shared with the engine processes.
    engine: Settings = field(default_factory=Settings)
    host: str = setting("127.0.0.1", "HEADRACE_API_HOST")
    port: int = setting(DEFAULT_PORT, "HEADRACE_API_PORT", _positive_int)
    #: Request bodies larger than this get a 413 before they are read to the end.
    max_body_bytes: int = setting(DEFAULT_MAX_BODY_BYTES, "HEADRACE_API_MAX_BODY_BYTES", _positive_int)
    #: When set, every route but the health routes needs this value in the `dapr-api-token` header.
    #: `headrace workflow` sends the same variable's value as its token.
    api_token: str | None = setting(None, "DAPR_API_TOKEN", optional_text, secret=True)
    #: How long one Kafka call of a request may take before the request fails with a 500.
    kafka_timeout_s: float = setting(5.0, "HEADRACE_API_KAFKA_TIMEOUT_S", _seconds)
    #: How long a read waits for the status view to catch up with what the engine committed.
    consistency_timeout_s: float = setting(2.0, "HEADRACE_API_CONSISTENCY_TIMEOUT_S", _seconds)
    #: How long a command waits for the status view to show it applied (or refused) before the API
    #: answers: a start's 409 and every command's read-your-writes depend on it. Past it the API
    #: answers 202 anyway (the command is on Kafka and applies when the engine gets to it).
    apply_wait_s: float = setting(5.0, "HEADRACE_API_APPLY_WAIT_S", _seconds)
    #: How often the background probe checks that Kafka answers (readiness, fail-fast).
    probe_interval_s: float = setting(1.0, "HEADRACE_API_PROBE_INTERVAL_S", _seconds)
    #: How long this replica remembers the starts it accepted, to answer its own GETs at no cost.
    sent_ttl_s: float = setting(30.0, "HEADRACE_API_SENT_TTL_S", _seconds)
    #: `module:attribute` of the WorkflowRuntime whose workflow names the dashboard offers.
    app: str | None = setting(None, "HEADRACE_API_APP", optional_text)
    #: Requests in the app at once (health and metrics aside); more get a 503 at once. With the
    #: body limit it bounds what request bodies can hold: 256 x 4 MiB = 1 GiB at worst.
    max_in_flight: int = setting(256, "HEADRACE_API_MAX_IN_FLIGHT", _positive_int)
    #: History reads running at once (each holds a Kafka consumer and a fetch buffer).
    history_concurrency: int = setting(4, "HEADRACE_API_HISTORY_CONCURRENCY", _positive_int)
    #: How long a history read waits for a free slot before it is answered 503 with Retry-After.
    history_wait_s: float = setting(5.0, "HEADRACE_API_HISTORY_WAIT_S", _seconds)
    #: readside (issue 16): the directory of the on-disk status index (`engine.read.index`, one
    #: SQLite file per status topic; one directory per replica). Unset: a temporary directory
    #: removed at exit, so nothing outlives the process unasked, at the price of a full read of the
    #: topic at each start; set it to a volume that outlives the process to restart from the
    #: index's checkpoint. Either way the view's memory does not grow with the instances.
    index_dir: str | None = setting(None, "HEADRACE_API_INDEX_DIR", optional_text)
    #: A client must send a request's headers within this many seconds of its first byte (or of
    #: connecting), else the connection is closed (a 408 when nothing was answered yet).
    header_timeout_s: float = setting(10.0, "HEADRACE_API_HEADER_TIMEOUT_S", _seconds)
    #: ... and its whole body within this many seconds of the headers.
    body_timeout_s: float = setting(60.0, "HEADRACE_API_BODY_TIMEOUT_S", _seconds)
    #: ... and go on reading its answers: when none of the bytes waiting for it has gone out for
    #: this many seconds (as nginx's `send_timeout`), the connection is dropped and a handler's
    #: pending send ends. A stall, not the whole answer: a slow reader gets an answer of any size.
    #: Long enough for TCP to get through a bad link's losses (its retransmissions back off 1, 2,
    #: 4, 8 s ...) and for a client busy between two reads; short enough that a client that stops
    #: reading holds a handler (a `max_in_flight` slot) and an answer's bytes for seconds, not for good.
    write_timeout_s: float = setting(30.0, "HEADRACE_API_WRITE_TIMEOUT_S", _seconds)
    #: On SIGTERM, how long requests in progress may go on; then their connections are dropped
    #: and, a second later, handlers still running are cancelled (api/protocol.py). Longer than a
    #: request takes when its client keeps up (its Kafka calls and the apply wait take 5 s each at
    #: most, by default); short enough, with the close of the Kafka clients after it, for a
    #: supervisor's grace before it kills the process (Kubernetes' default 30 s, `headrace` 15-20 s).
    shutdown_grace_s: float = setting(10.0, "HEADRACE_API_SHUTDOWN_GRACE_S", _seconds)
    #: The process's log level (uvicorn's access log is on at "debug" only).
    log_level: str = setting("info", "HEADRACE_LOG_LEVEL", lambda _name, raw: raw.lower())

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ApiSettings:
        """The defaults, then the environment (`os.environ`), then `overrides` that are not None."""
        env = os.environ if env is None else env
        settings = cls(engine=Settings.from_env(env), **read_env(cls, env))
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    def to_env(self, *names: str) -> dict[str, str]:
        """The `HEADRACE_API_*` (and token, log level) variables of these settings (all, or `names`);
        the engine's are `self.engine.to_env()`."""
        return env_for(self, *names)
