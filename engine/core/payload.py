"""Payloads between user code and history: Python values in, JSON text out, and back."""

from __future__ import annotations

from typing import Any

import orjson

from ..errors import SerializationError

__all__ = ["dump_payload", "load_payload"]


def _default(value: Any) -> Any:
    # Objects that expose their state the usual ways; anything else is the user's to convert.
    if hasattr(value, "to_json") and callable(value.to_json):
        return value.to_json()
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError


def dump_payload(value: Any) -> str | None:
    """JSON text for `value`; `None` stays `None` so "no payload" is kept apart from `null`."""
    if value is None:
        return None
    try:
        return orjson.dumps(value, default=_default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError as exc:
        raise SerializationError(f"cannot encode a {type(value).__name__} as JSON: {exc}") from None


def load_payload(text: str | None) -> Any:
    if text is None:
        return None
    return orjson.loads(text)
