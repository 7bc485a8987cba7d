"""App identity: `HEADRACE_APP_ID` gives an app its own topics unless a prefix is set."""

from __future__ import annotations

import pytest
from support import T0

from api.responses import WAITING_FOR_CODE, instance_body
from engine.core.state import InstanceState
from engine.settings import Settings


def test_no_app_id_keeps_the_default_prefix() -> None:
    settings = Settings.from_env({})
    assert settings.app_id is None and settings.topic_prefix == "headrace."


def test_an_app_id_gives_the_app_topics_of_its_own() -> None:
    settings = Settings.from_env({"HEADRACE_APP_ID": "orders"})
    assert settings.topic_prefix == "headrace.orders."
    assert settings.topic("commands") == "headrace.orders.commands"
    assert Settings.from_env({}, app_id="billing").topic_prefix == "headrace.billing."
    # Another process given these settings' variables gets the same topics.
    assert Settings.from_env(settings.to_env()).topic_prefix == "headrace.orders."


def test_an_explicit_prefix_wins_over_the_app_id() -> None:
    given = Settings.from_env({"HEADRACE_APP_ID": "orders", "HEADRACE_TOPIC_PREFIX": "shared."})
    assert given.topic_prefix == "shared."
    assert Settings.from_env({"HEADRACE_APP_ID": "orders"}, topic_prefix="x.").topic_prefix == "x."
    assert Settings.from_env({"HEADRACE_APP_ID": "orders", "HEADRACE_TOPIC_PREFIX": ""}).topic_prefix == ""


@pytest.mark.parametrize("bad", ["-orders", "or ders", "orders/1", "x" * 101, "ördes"])
def test_an_app_id_that_cannot_name_a_topic_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="HEADRACE_APP_ID"):
        Settings.from_env({"HEADRACE_APP_ID": bad})


def test_the_unknown_code_timeout_is_a_setting() -> None:
    assert Settings.from_env({}).unknown_code_timeout == 600.0
    assert Settings.from_env({"HEADRACE_UNKNOWN_CODE_TIMEOUT": "30"}).unknown_code_timeout == 30.0


def test_the_api_says_why_an_instance_waits() -> None:
    waiting = InstanceState(instance_id="i", name="later", waiting_for_code=T0)
    reason = instance_body(waiting)["properties"][WAITING_FOR_CODE]
    assert "'later'" in reason and "waiting for code" in reason
    assert WAITING_FOR_CODE not in instance_body(InstanceState(instance_id="i", name="x"))["properties"]
