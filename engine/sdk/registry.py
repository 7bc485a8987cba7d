"""Which workflow and activity functions exist, by name."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from ..core.context import NAME_ATTRIBUTE, registered_name
from ..errors import RegistrationError

__all__ = ["Registry", "alternate_name"]


def alternate_name(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a workflow or activity function the name it is registered and called under."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _set_name(fn, name)
        return fn

    return decorate


def _set_name(fn: Callable[..., Any], name: str) -> None:
    if not name or not isinstance(name, str):
        raise RegistrationError(f"a registered name must be a non-empty string, not {name!r}")
    # A builtin or bound method refuses attributes; it can still be called by its registered name.
    with contextlib.suppress(AttributeError, TypeError):
        setattr(fn, NAME_ATTRIBUTE, name)


class Registry:
    def __init__(self) -> None:
        self.workflows: dict[str, Callable[..., Any]] = {}
        self.activities: dict[str, Callable[..., Any]] = {}

    def add_workflow(self, fn: Callable[..., Any], name: str | None = None) -> str:
        return self._add(self.workflows, "workflow", fn, name)

    def add_activity(self, fn: Callable[..., Any], name: str | None = None) -> str:
        return self._add(self.activities, "activity", fn, name)

    def get_workflow(self, name: str) -> Callable[..., Any] | None:
        return self.workflows.get(name)

    def get_activity(self, name: str) -> Callable[..., Any] | None:
        return self.activities.get(name)

    @staticmethod
    def _add(table: dict[str, Callable[..., Any]], kind: str, fn: Callable[..., Any], name: str | None) -> str:
        if not callable(fn):
            raise RegistrationError(f"{_a(kind)} must be callable, not {type(fn).__name__}")
        if name is not None:
            _set_name(fn, name)
        key = name or registered_name(fn)
        existing = table.get(key)
        if existing is not None and existing is not fn:
            raise RegistrationError(f"{_a(kind)} named '{key}' is already registered")
        table[key] = fn
        return key


def _a(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiou" else f"a {kind}"
