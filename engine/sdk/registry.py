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
        #: Named versions of a workflow, as durabletask's `_Registry.versioned_orchestrators`
        #: (github.com/dapr/durabletask-python, durabletask/worker.py): name -> version -> function.
        self.versions: dict[str, dict[str, Callable[..., Any]]] = {}
        #: The version new instances of a versioned workflow run (`is_latest=True` at registration).
        self.latest: dict[str, str] = {}

    def add_versioned_workflow(self, fn: Callable[..., Any], *, name: str, version_name: str | None = None,
                               is_latest: bool) -> str:
        """Dapr's `register_versioned_workflow`: `version_name` defaults to the function's own name
        (github.com/dapr/python-sdk, dapr/ext/workflow/workflow_runtime.py); the last version
        registered with `is_latest=True` is the one new instances run."""
        if not callable(fn):
            raise RegistrationError(f"a workflow must be callable, not {type(fn).__name__}")
        if name in self.workflows:
            raise RegistrationError(f"a workflow named '{name}' is already registered without a version")
        version = version_name if version_name is not None else getattr(fn, "__name__", "")
        if not version:
            raise RegistrationError(f"a version of workflow '{name}' needs a non-empty version name")
        table = self.versions.setdefault(name, {})
        if table.get(version, fn) is not fn:
            raise RegistrationError(f"version '{version}' of workflow '{name}' is already registered")
        _set_name(fn, name)
        table[version] = fn
        if is_latest:
            self.latest[name] = version
        return version

    def get_workflow_version(self, name: str, version: str) -> Callable[..., Any] | None:
        """The function of one named version; None when this process does not have that version."""
        return self.versions.get(name, {}).get(version)

    def add_workflow(self, fn: Callable[..., Any], name: str | None = None) -> str:
        return self._add(self.workflows, "workflow", fn, name)

    def add_activity(self, fn: Callable[..., Any], name: str | None = None) -> str:
        return self._add(self.activities, "activity", fn, name)

    def get_workflow(self, name: str) -> Callable[..., Any] | None:
        """The function a new run of `name` executes: for a versioned workflow, its latest version."""
        fn = self.workflows.get(name)
        if fn is None and name in self.latest:
            return self.versions[name][self.latest[name]]
        return fn

    def latest_version(self, name: str) -> str | None:
        return self.latest.get(name)

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
