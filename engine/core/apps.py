"""Calls across apps (Dapr 1.16's multi-app workflows) as the core sees them: app IDs are data.

A workflow may call an activity or a child workflow of another app (`call_activity(...,
app_id="other")`, `call_child_workflow(..., app_id="other")`, as in dapr/python-sdk's
`DaprWorkflowContext`). The core records the target app in the history event of the call
(`TaskScheduled.app_id`, `ChildWorkflowCreated.app_id`), so a replay and the state folded from it
agree on where the work went, and it says in every message for another app which app it is for
(`AppMessage`, `ActivityWorkItem.app_id`) and which app to answer (`ActivityWorkItem.reply_app_id`,
`ParentInstance.app_id`). Where an app's topics are is the runtime's business
(`engine.runtime.apps`), and the test environment keeps apps side by side in memory: the core
never learns a topic name. This mirrors durabletask's `TaskRouter` (source and target app IDs on
the action, github.com/dapr/durabletask-protobuf `orchestrator_service.proto`), which daprd's
sidecar resolves to the other app.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .ids import IdError

if TYPE_CHECKING:  # commands check app IDs with this module
    from .commands import InstanceMessage

__all__ = ["AppMessage", "ChildApp", "check_app_id", "is_app_id", "other_app"]

# An app ID becomes part of topic and consumer group names: Kafka's legal characters
# ([a-zA-Z0-9._-], kafka.apache.org/documentation/#topicconfigs), starting with a letter or digit.
_APP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def is_app_id(value: str) -> bool:
    """Letters, digits, '.', '_', '-', starting with a letter or digit, at most 100 characters."""
    return _APP_ID.fullmatch(value) is not None


def check_app_id(value: str, what: str) -> str:
    """`value` if it is an app ID; else an `IdError` naming `what` (an app ID names topics, so
    one from a record must not be able to make the engine create topics of any name)."""
    if not is_app_id(value):
        raise IdError(f"{what} must be letters, digits, '.', '_' or '-' (starting with a letter or digit, "
                      f"at most 100 characters), got {value[:120]!r}")
    return value


def other_app(target: str | None, own: str | None) -> str | None:
    """The app a call goes to when it is not the caller's own: None for a local call (no app
    named, or the caller's own app named, which Dapr treats as local too)."""
    return target if target is not None and target != own else None


@dataclass(frozen=True, slots=True)
class AppMessage:
    """A message for an instance of another app: a child start, a child's end for its parent, a
    recursive terminate or purge. The backend delivers it to that app's commands."""

    app_id: str
    message: InstanceMessage


@dataclass(frozen=True, slots=True)
class ChildApp:
    """A child workflow started in a named app (`InstanceState.child_apps`)."""

    instance_id: str
    app_id: str
