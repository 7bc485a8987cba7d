"""`WorkflowRuntime`: where workflows and activities are registered, with Dapr's names."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

from .registry import Registry

__all__ = ["WorkflowRuntime"]

F = TypeVar("F", bound=Callable[..., Any])


class WorkflowRuntime:
    """Registers workflows and activities, and runs them against Kafka once started.

    `WorkflowRuntime()` with no arguments reads its settings from the environment
    (`KAFKA_BOOTSTRAP_SERVERS`, …). The Dapr-only keyword arguments are accepted and ignored, so a
    module written for Dapr constructs it unchanged.
    """

    def __init__(
        self,
        host: str | None = None,
        port: str | None = None,
        logger_options: Any = None,
        interceptors: Any = None,
        maximum_concurrent_activity_work_items: int | None = None,
        maximum_concurrent_orchestration_work_items: int | None = None,
        maximum_thread_pool_workers: int | None = None,
        **settings: Any,
    ) -> None:
        """Dapr's arguments are accepted; the ones with a meaning here map onto Headrace settings.

        Any other keyword is a Headrace setting (see `engine.settings.Settings`), e.g.
        `bootstrap_servers=` or `topic_prefix=`.
        """
        self.registry = Registry()
        if maximum_concurrent_activity_work_items is not None:
            settings.setdefault("activity_concurrency", maximum_concurrent_activity_work_items)
        self._settings = settings
        self._host: Any = None

    # -- registration ------------------------------------------------------------------------

    def register_workflow(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.add_workflow(fn, name)

    def register_versioned_workflow(self, fn: Callable[..., Any], *, name: str, version_name: str | None = None,
                                    is_latest: bool) -> None:
        """Dapr 1.17's named workflow versions (github.com/dapr/python-sdk,
        dapr/ext/workflow/workflow_runtime.py `register_versioned_workflow`)."""
        self.registry.add_versioned_workflow(fn, name=name, version_name=version_name, is_latest=is_latest)

    def versioned_workflow(self, __fn: Any = None, *, name: str, version_name: str | None = None,
                           is_latest: bool) -> Any:
        """Decorator: `@runtime.versioned_workflow(name="...", is_latest=True)`."""

        def register(fn: F) -> F:
            self.register_versioned_workflow(fn, name=name, version_name=version_name, is_latest=is_latest)
            return fn

        return register(__fn) if __fn is not None else register

    def register_activity(self, fn: Callable[..., Any], *, name: str | None = None) -> None:
        self.registry.add_activity(fn, name)

    @overload
    def workflow(self, __fn: F) -> F: ...
    @overload
    def workflow(self, __fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...

    def workflow(self, __fn: Any = None, *, name: str | None = None) -> Any:
        """Decorator: `@runtime.workflow` or `@runtime.workflow(name="...")`."""

        def register(fn: F) -> F:
            self.register_workflow(fn, name=name)
            return fn

        return register(__fn) if __fn is not None else register

    @overload
    def activity(self, __fn: F) -> F: ...
    @overload
    def activity(self, __fn: None = None, *, name: str | None = None) -> Callable[[F], F]: ...

    def activity(self, __fn: Any = None, *, name: str | None = None) -> Any:
        """Decorator: `@runtime.activity` or `@runtime.activity(name="...")`."""

        def register(fn: F) -> F:
            self.register_activity(fn, name=name)
            return fn

        return register(__fn) if __fn is not None else register

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """Run an orchestrator and an activity worker for this runtime in a background thread."""
        from ..runtime.host import RuntimeHost  # Kafka is only imported by programs that run

        if self._host is None:
            self._host = RuntimeHost(self.registry, **self._settings)
        self._host.start()

    def shutdown(self) -> None:
        if self._host is not None:
            self._host.stop()
            self._host = None
