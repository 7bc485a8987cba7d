"""Payloads between user code and history: Python values in, JSON text out, and back.

orjson is the fast path. It is limited to 64-bit integers: it refuses to encode a larger one and
reads one back as a float, losing digits, while Dapr's SDKs (Python's `json`, Go's `json.Number`
in daprd) keep them exact. Payloads with integer literals of 19 digits or more therefore go through
the standard library, which is exact; every other payload never pays for it.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from ..errors import PayloadDecodeError, SerializationError

__all__ = ["DEFAULT_MAX_PAYLOAD_BYTES", "check_payload", "dump_payload", "load_payload"]

#: The largest payload (workflow input, event data, activity result) a client or worker sends by default:
#: Kafka's default record limit is 1 MB, and a record carries its envelope besides.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024

# 2**63 has 19 digits: a run of 19+ digits may be an integer orjson cannot hold exactly. (It may
# also be inside a string or a fraction; the exact path is then merely slower, never wrong.)
_LONG_DIGITS = re.compile(r"\d{19,}")


def _default(value: Any) -> Any:
    # Objects that expose their state the usual ways; anything else is the user's to convert.
    if hasattr(value, "to_json") and callable(value.to_json):
        return value.to_json()
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError


def _exact_dumps(value: Any) -> str:
    def default(item: Any) -> Any:
        try:
            return _default(item)
        except TypeError:
            raise TypeError(f"Type is not JSON serializable: {type(item).__name__}") from None

    return json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def dump_payload(value: Any) -> str | None:
    """JSON text for `value`; `None` stays `None` so "no payload" is kept apart from `null`."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:
        if "64-bit" not in str(exc):
            raise SerializationError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None
    try:
        return _exact_dumps(value)
    except (TypeError, ValueError) as exc:
        raise SerializationError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None


def load_payload(text: str | None) -> Any:
    """The value of JSON text; `PayloadDecodeError` (never orjson's own error) when it is not JSON."""
    if text is None:
        return None
    try:
        if _LONG_DIGITS.search(text) is not None:
            return json.loads(text)
        return orjson.loads(text)
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError and json's are ValueErrors
        raise PayloadDecodeError(f"payload is not JSON text: {_describe(exc)}") from None


def check_payload(text: str | None, what: str) -> None:
    """Raise `PayloadDecodeError` naming `what` unless `text` is None or JSON text."""
    if text is None:
        return
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise PayloadDecodeError(f"{what} is not JSON text ({_describe(exc)}); payloads are JSON-encoded "
                                 f"values, e.g. '\"approved\"' for the string approved") from None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:197] + "..."
