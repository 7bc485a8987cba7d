"""Calls across apps on Kafka without Kafka: which topics the engine's sink writes another app's
work and messages to (`engine.runtime.apps`), and the settings that name another app's topics."""

from __future__ import annotations

from typing import Any

from support import input_record

from engine.core import commands as cmd
from engine.core.cache import ExecutionCache
from engine.core.codec import encode
from engine.core.orchestrator import Orchestrator
from engine.core.values import ParentInstance
from engine.runtime.apps import AppTopics, settings_for_app
from engine.runtime.partition import PartitionOwner
from engine.runtime.sink import TransactionSink
from engine.settings import Settings
from engine.topics import Topics


def calls_billing(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_activity("charge", input=x, app_id="billing"))


def starts_in_billing(ctx: Any, x: Any) -> Any:
    return (yield ctx.call_child_workflow("invoice", input=x, app_id="billing"))


def invoice(ctx: Any, x: Any) -> Any:
    return x


def owner_of(app_id: str) -> PartitionOwner:
    settings = Settings.from_env({}, app_id=app_id, task_queue="own-queue")
    workflows = {"calls_billing": calls_billing, "starts_in_billing": starts_in_billing, "invoice": invoice}
    return PartitionOwner(0, settings, Topics.for_settings(settings),
                          Orchestrator(workflows.get, ExecutionCache(10), app_id=app_id), "engine", partitions=1)


def apply(owner: PartitionOwner, message: cmd.InstanceMessage) -> TransactionSink:
    sink = TransactionSink(owner)
    rec = input_record(owner.topics.commands, 1, message.instance_id.encode(), encode(message))
    owner._apply_record(owner.topics.commands, rec, owner._decode(rec), sink)
    return sink


def test_another_app_is_addressed_by_its_app_id_and_its_default_queue() -> None:
    own = Settings.from_env({}, app_id="orders", task_queue="own-queue")
    other = settings_for_app(own, "billing")
    assert (other.topic_prefix, other.app_id, other.task_queue) == ("headrace.billing.", "billing", "default")
    assert settings_for_app(own, "orders") is own and settings_for_app(own, None) is own
    assert AppTopics(own).of("billing").tasks == "headrace.billing.tasks.default"
    assert AppTopics(own).of(None).tasks == "headrace.orders.tasks.own-queue"


def test_activity_of_another_app_is_written_to_its_task_topic_and_its_topics_are_made_first() -> None:
    owner = owner_of("orders")
    sink = apply(owner, cmd.StartWorkflow(instance_id="i", command_id="c", name="calls_billing", input="1"))
    items = [s for s in sink.sends if b"ActivityWorkItem" in (s.value or b"")]
    assert [s.topic for s in items] == ["headrace.billing.tasks.default"]
    assert sink.apps == {"billing"}
    assert owner.topics.tasks not in {s.topic for s in sink.sends}


def test_child_start_and_child_end_cross_to_the_other_app_commands() -> None:
    orders = owner_of("orders")
    sink = apply(orders, cmd.StartWorkflow(instance_id="p", command_id="c", name="starts_in_billing", input="2"))
    starts = [s for s in sink.sends if b"StartWorkflow" in (s.value or b"")]
    assert [s.topic for s in starts] == ["headrace.billing.commands"]

    billing = owner_of("billing")
    parent = ParentInstance(instance_id="p", name="starts_in_billing", task_scheduled_id=0, execution_id="c",
                            app_id="orders")
    sink = apply(billing, cmd.StartWorkflow(instance_id="p:0001", command_id="c:0", name="invoice", input="2",
                                            parent=parent))
    ends = [s for s in sink.sends if b"ChildResult" in (s.value or b"")]
    assert [s.topic for s in ends] == ["headrace.orders.commands"] and sink.apps == {"orders"}
