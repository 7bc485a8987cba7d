"""The authoring SDK: WorkflowRuntime registration, alternate_name, activities, WorkflowState."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from support import at

import engine
from engine import (
    WorkflowActivityContext,
    WorkflowRuntime,
    WorkflowState,
    WorkflowStatus,
    alternate_name,
)
from engine.core.commands import ActivityResult, ActivityWorkItem
from engine.core.context import registered_name
from engine.core.state import InstanceState
from engine.core.values import FailureDetails, RuntimeStatus
from engine.errors import RegistrationError
from engine.sdk.activity import run_activity
from engine.sdk.registry import Registry
from engine.sdk.state import WorkflowFailedError


def test_public_names_match_dapr_ext_workflow():
    dapr_names = {
        "WorkflowRuntime",
        "DaprWorkflowContext",
        "WorkflowActivityContext",
        "WorkflowState",
        "WorkflowStatus",
        "when_all",
        "when_any",
        "alternate_name",
        "RetryPolicy",
        "TaskFailedError",
    }
    assert dapr_names <= set(engine.__all__)
    for name in engine.__all__:
        assert getattr(engine, name) is not None


class Test_WorkflowRuntime:
    def test_decorators_without_name_register_under_the_function_name(self):
        wfr = WorkflowRuntime()

        @wfr.workflow
        def order_wf(ctx):
            return 1

        @wfr.activity
        def charge(ctx, x):
            return x

        assert wfr.registry.get_workflow("order_wf") is order_wf
        assert wfr.registry.get_activity("charge") is charge
        assert order_wf(None) == 1  # the decorator returns the function itself

    def test_decorators_called_without_arguments(self):
        wfr = WorkflowRuntime()

        @wfr.workflow()
        def wf(ctx):
            return 1

        @wfr.activity()
        def act(ctx):
            return 2

        assert wfr.registry.workflows == {"wf": wf}
        assert wfr.registry.activities == {"act": act}

    def test_decorators_with_name(self):
        wfr = WorkflowRuntime()

        @wfr.workflow(name="order")
        def order_wf(ctx):
            return 1

        @wfr.activity(name="charge_card")
        def charge(ctx):
            return 1

        assert wfr.registry.workflows == {"order": order_wf}
        assert wfr.registry.activities == {"charge_card": charge}
        # Calls by function reach the registered name.
        assert registered_name(order_wf) == "order"
        assert registered_name(charge) == "charge_card"

    def test_register_functions(self):
        wfr = WorkflowRuntime()

        def wf(ctx):
            return 1

        def act(ctx):
            return 1

        def other(ctx):
            return 1

        wfr.register_workflow(wf)
        wfr.register_activity(act)
        wfr.register_activity(other, name="renamed")
        assert wfr.registry.workflows == {"wf": wf}
        assert wfr.registry.activities == {"act": act, "renamed": other}
        assert registered_name(other) == "renamed"

    def test_alternate_name(self):
        wfr = WorkflowRuntime()

        @wfr.workflow
        @alternate_name("nice_name")
        def ugly_name(ctx):
            return 1

        @wfr.activity
        @alternate_name(name="act_alias")
        def act(ctx):
            return 1

        assert wfr.registry.workflows == {"nice_name": ugly_name}
        assert wfr.registry.activities == {"act_alias": act}
        assert registered_name(ugly_name) == "nice_name"

    def test_dapr_constructor_arguments_are_accepted(self):
        wfr = WorkflowRuntime(
            host="localhost",
            port="50001",
            logger_options=None,
            maximum_concurrent_activity_work_items=10,
        )
        assert isinstance(wfr.registry, Registry)

    def test_registering_the_same_function_twice_is_harmless(self):
        wfr = WorkflowRuntime()

        def wf(ctx):
            return 1

        wfr.register_workflow(wf)
        wfr.register_workflow(wf)
        assert wfr.registry.workflows == {"wf": wf}

    def test_two_functions_under_one_name_are_refused(self):
        wfr = WorkflowRuntime()

        def a(ctx):
            return 1

        def b(ctx):
            return 2

        wfr.register_activity(a, name="same")
        with pytest.raises(
            RegistrationError, match="an activity named 'same' is already registered"
        ):
            wfr.register_activity(b, name="same")

    def test_workflows_and_activities_have_separate_names(self):
        wfr = WorkflowRuntime()

        def both(ctx):
            return 1

        wfr.register_workflow(both)
        wfr.register_activity(both)
        assert wfr.registry.get_workflow("both") is both
        assert wfr.registry.get_activity("both") is both

    @pytest.mark.parametrize("bad", ["", None, 5])
    def test_invalid_names(self, bad):
        with pytest.raises(RegistrationError, match="non-empty string"):
            alternate_name(bad)(lambda ctx: 1)

    def test_not_callable(self):
        with pytest.raises(RegistrationError, match="must be callable"):
            WorkflowRuntime().register_workflow("not a function")  # type: ignore[arg-type]

    def test_shutdown_before_start_is_harmless(self):
        WorkflowRuntime().shutdown()


class Test_WorkflowActivityContext:
    def test_dapr_properties(self):
        ctx = WorkflowActivityContext("order-1", 7, "charge", "te-9")
        assert ctx.workflow_id == "order-1"
        assert ctx.orchestration_id == "order-1"
        assert ctx.task_id == 7
        assert ctx.task_execution_id == "te-9"
        assert ctx.activity_name == "charge"
        assert ctx.get_inner_context() is ctx
        assert repr(ctx) == "WorkflowActivityContext(workflow_id='order-1', task_id=7)"


def item(name: str, input: str | None = None) -> ActivityWorkItem:
    return ActivityWorkItem(
        instance_id="wf-1", execution_id="e1", task_id=3, name=name, input=input
    )


def run(registry: Registry, work: ActivityWorkItem) -> ActivityResult:
    return asyncio.run(run_activity(registry, work))


class Test_run_activity:
    def test_sync_activity_gets_context_and_decoded_input(self):
        registry = Registry()
        seen = []

        def charge(ctx, order):
            seen.append((ctx.workflow_id, ctx.task_id, ctx.activity_name, order))
            return {"charged": order["amount"]}

        registry.add_activity(charge)
        out = run(registry, item("charge", '{"amount": 5}'))
        assert out == ActivityResult(
            instance_id="wf-1", execution_id="e1", task_id=3, result='{"charged": 5}'
        )
        assert seen == [("wf-1", 3, "charge", {"amount": 5})]

    def test_async_activity(self):
        registry = Registry()

        async def fetch(ctx, n):
            await asyncio.sleep(0)
            return n + 1

        registry.add_activity(fetch)
        assert run(registry, item("fetch", "41")).result == "42"

    def test_sync_function_returning_an_awaitable(self):
        registry = Registry()

        async def inner():
            return "awaited"

        registry.add_activity(lambda ctx: inner(), name="returns_coroutine")
        assert run(registry, item("returns_coroutine")).result == '"awaited"'

    def test_activity_without_input_parameter(self):
        registry = Registry()
        registry.add_activity(lambda ctx: ctx.task_id, name="no_input")
        assert run(registry, item("no_input", '"ignored"')).result == "3"

    def test_returning_none_is_no_payload(self):
        registry = Registry()
        registry.add_activity(lambda ctx: None, name="nothing")
        out = run(registry, item("nothing"))
        assert out.result is None
        assert out.failure is None

    def test_exception_becomes_failure_details(self):
        registry = Registry()

        def broken(ctx):
            raise ConnectionError("payment service down")

        registry.add_activity(broken)
        out = run(registry, item("broken"))
        assert out.result is None
        assert out.failure is not None
        assert out.failure.error_type == "ConnectionError"
        assert out.failure.message == "payment service down"
        assert out.failure.stack_trace is not None
        assert "payment service down" in out.failure.stack_trace
        assert not out.failure.non_retriable

    def test_async_exception_becomes_failure_details(self):
        registry = Registry()

        async def broken(ctx):
            raise ValueError("async boom")

        registry.add_activity(broken)
        failure = run(registry, item("broken")).failure
        assert failure is not None
        assert failure.error_type == "ValueError"
        assert failure.message == "async boom"

    def test_unserializable_result_is_a_failure(self):
        registry = Registry()
        registry.add_activity(lambda ctx: object(), name="odd")
        failure = run(registry, item("odd")).failure
        assert failure is not None
        assert failure.error_type == "SerializationError"

    def test_unknown_activity_fails_clearly_and_is_not_retried(self):
        registry = Registry()
        registry.add_activity(lambda ctx: 1, name="known_one")
        failure = run(registry, item("missing")).failure
        assert failure is not None
        assert failure.error_type == "UnknownActivityError"
        assert "'missing'" in failure.message
        assert "known_one" in failure.message
        assert failure.non_retriable


class Test_WorkflowState:
    def state(self, **kw) -> InstanceState:
        base = {
            "instance_id": "i1",
            "name": "wf",
            "status": RuntimeStatus.COMPLETED,
            "input": '"in"',
            "output": '"out"',
            "custom_status": '"cs"',
            "created_at": at(0),
            "last_updated_at": at(5),
        }
        return InstanceState(**(base | kw))

    @pytest.mark.parametrize(
        ("runtime", "expected"),
        [
            (RuntimeStatus.RUNNING, WorkflowStatus.RUNNING),
            (RuntimeStatus.COMPLETED, WorkflowStatus.COMPLETED),
            (RuntimeStatus.FAILED, WorkflowStatus.FAILED),
            (RuntimeStatus.TERMINATED, WorkflowStatus.TERMINATED),
            (RuntimeStatus.CANCELED, WorkflowStatus.TERMINATED),
            (RuntimeStatus.PENDING, WorkflowStatus.PENDING),
            (RuntimeStatus.SUSPENDED, WorkflowStatus.SUSPENDED),
            (RuntimeStatus.CONTINUED_AS_NEW, WorkflowStatus.RUNNING),
        ],
    )
    def test_status_mapping(self, runtime, expected):
        assert WorkflowStatus.from_runtime(runtime) is expected

    def test_dapr_enum_values(self):
        assert [(s.name, s.value) for s in WorkflowStatus] == [
            ("UNKNOWN", 0),
            ("RUNNING", 1),
            ("COMPLETED", 2),
            ("FAILED", 3),
            ("TERMINATED", 4),
            ("PENDING", 5),
            ("SUSPENDED", 6),
            ("STALLED", 7),
        ]

    def test_from_instance_with_and_without_payloads(self):
        full = WorkflowState.from_instance(self.state())
        assert (full.serialized_input, full.serialized_output, full.serialized_custom_status) == (
            '"in"',
            '"out"',
            '"cs"',
        )
        bare = WorkflowState.from_instance(self.state(), fetch_payloads=False)
        assert (bare.serialized_input, bare.serialized_output, bare.serialized_custom_status) == (
            None,
            None,
            None,
        )
        assert bare.runtime_status is WorkflowStatus.COMPLETED
        assert bare.created_at == at(0)

    def test_raise_if_failed(self):
        WorkflowState.from_instance(self.state()).raise_if_failed()
        failure = FailureDetails(error_type="ValueError", message="bad")
        failed = WorkflowState.from_instance(
            self.state(status=RuntimeStatus.FAILED, failure=failure)
        )
        with pytest.raises(WorkflowFailedError, match="workflow 'i1' failed: bad") as info:
            failed.raise_if_failed()
        assert info.value.details is failure

    def test_to_json(self):
        failure = FailureDetails(error_type="ValueError", message="bad")
        data = WorkflowState.from_instance(
            self.state(status=RuntimeStatus.FAILED, failure=failure)
        ).to_json()
        assert data["runtime_status"] == "FAILED"
        assert data["created_at"] == "2026-01-01T00:00:00+00:00"
        assert data["failure_details"]["error_type"] == "ValueError"
        orjson.dumps(data)  # plain JSON all the way down
