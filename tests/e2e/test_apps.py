"""Apps and versions on one broker (issue 12): unknown code waits instead of failing, and app IDs
keep apps apart. Engines and workers run in this process (`RuntimeHost`), several at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest

from engine import WorkflowStatus
from engine.client.dapr import DaprWorkflowClient
from engine.core.state import InstanceState
from engine.core.unknown_code import RECHECK
from engine.runtime.host import RuntimeHost
from engine.sdk.registry import Registry
from engine.settings import Settings
from tests.helpers import eventually

pytestmark = pytest.mark.kafka

WAIT = 90


def hello(ctx: object, name: str) -> str:
    return f"Hello, {name}!"


def added(ctx: object, name: str) -> str:
    return f"Added, {name}!"


def greet(ctx, name):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity("hello", input=name))


def uses_added(ctx, name):  # type: ignore[no-untyped-def]
    return (yield ctx.call_activity("added", input=name))


def waits_then_adds(ctx, name):  # type: ignore[no-untyped-def]
    name = yield ctx.wait_for_external_event("go")
    return (yield ctx.call_activity("added", input=name))


def registry(*, workflows: dict[str, object], activities: dict[str, object]) -> Registry:
    reg = Registry()
    for name, fn in workflows.items():
        reg.add_workflow(fn, name=name)  # type: ignore[arg-type]
    for name, fn in activities.items():
        reg.add_activity(fn, name=name)  # type: ignore[arg-type]
    return reg


#: The app as deployed before: it knows `greet` only.
OLD = dict(workflows={"greet": greet}, activities={"hello": hello})
#: The next version: one more workflow and one more activity.
NEW = dict(workflows={"greet": greet, "uses_added": uses_added, "waits_then_adds": waits_then_adds},
           activities={"hello": hello, "added": added})


@contextmanager
def running(reg: Registry, settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(reg, settings)
    host.start(timeout=WAIT)
    try:
        yield host
    finally:
        host.stop()


def fresh(kafka_bootstrap: str, **overrides: object) -> Settings:
    return Settings.from_env(bootstrap_servers=kafka_bootstrap, topic_prefix=f"apps-{uuid.uuid4().hex[:8]}.",
                             partitions=4, shutdown_grace_seconds=2, **overrides)


def held(host: RuntimeHost, iid: str) -> InstanceState | None:
    """The instance as the engine holding it keeps it (None when no partition of `host` has it)."""
    for owner in list(host.engine.owners.values()):
        state = owner.states.get(iid)
        if state is not None:
            return state
    return None


def test_a_workflow_no_engine_knows_waits_until_one_that_knows_it_takes_over(kafka_bootstrap: str) -> None:
    settings = fresh(kafka_bootstrap)
    old = RuntimeHost(registry(**OLD), settings)  # type: ignore[arg-type]
    old.start(timeout=WAIT)
    try:
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("uses_added", input="Ada")
            eventually(lambda: held(old, iid).waiting_for_code is not None, timeout=WAIT)  # type: ignore[union-attr]
            since = held(old, iid).waiting_for_code  # type: ignore[union-attr]
            # Looked at again at least once, and still waiting, not failed.
            eventually(lambda: datetime.now(UTC) > since + 2 * RECHECK, timeout=WAIT)  # type: ignore[operator]
            state = client.get_workflow_state(iid)
            assert state is not None and state.runtime_status is WorkflowStatus.PENDING
            assert state.failure_details is None
            # Counted where operators look, and no reason for the engine to call itself unready:
            # anyone may start a workflow under a name no engine knows.
            number = next(n for n, owner in old.engine.owners.items() if iid in owner.waiting_for_code)
            eventually(lambda: old.engine.metrics.registry.get_sample_value(
                "headrace_engine_instances_waiting_for_code", {"partition": str(number)}) == 1, timeout=WAIT)
            assert old.engine.problems() == []
            with running(registry(**NEW), settings):  # type: ignore[arg-type]
                old.stop()  # the new version takes every partition over, and looks at once
                done = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED
                assert done.serialized_output == '"Added, Ada!"'
    finally:
        old.stop()


def test_a_running_instance_moved_to_an_old_engine_keeps_its_inputs_until_the_new_one_is_back(
        kafka_bootstrap: str) -> None:
    settings = fresh(kafka_bootstrap)
    new = RuntimeHost(registry(**NEW), settings)  # type: ignore[arg-type]
    new.start(timeout=WAIT)
    try:
        with DaprWorkflowClient(settings=settings) as client:
            iid = client.schedule_new_workflow("waits_then_adds")
            client.wait_for_workflow_start(iid, timeout_in_seconds=WAIT)
            with running(registry(**OLD), settings) as old:  # type: ignore[arg-type]
                new.stop()  # a rollback, or a rolling deploy going the other way: the old version holds it
                eventually(lambda: held(old, iid) is not None, timeout=WAIT)
                client.raise_workflow_event(iid, "go", data="Di")
                eventually(lambda: held(old, iid).waiting_for_code is not None, timeout=WAIT)  # type: ignore[union-attr]
                state = client.get_workflow_state(iid)
                # Dapr's status for a run whose code this engine lacks: stalled, not failed.
                assert state is not None and state.runtime_status is WorkflowStatus.STALLED
                assert state.failure_details is None
                with running(registry(**NEW), settings):  # type: ignore[arg-type]
                    old.stop()
                    done = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
                    assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED
                    assert done.serialized_output == '"Added, Di!"'
    finally:
        new.stop()


def test_an_activity_no_worker_knows_is_handed_on_until_one_that_knows_it_runs_it(kafka_bootstrap: str) -> None:
    settings = fresh(kafka_bootstrap)
    # This process's engine knows the workflow, its worker not the activity (a half-done deploy).
    half = registry(workflows=NEW["workflows"], activities=OLD["activities"])  # type: ignore[arg-type]
    with running(half, settings) as old, DaprWorkflowClient(settings=settings) as client:
        iid = client.schedule_new_workflow("uses_added", input="Bo")
        labels = {"activity": "unregistered", "outcome": "handed_on"}
        eventually(lambda: (old.worker.metrics.registry.get_sample_value(
            "headrace_worker_activity_runs_total", labels) or 0) >= 2, timeout=WAIT)
        state = client.get_workflow_state(iid)
        assert state is not None and state.runtime_status is WorkflowStatus.RUNNING
        with running(registry(**NEW), settings):  # type: ignore[arg-type]
            done = client.wait_for_workflow_completion(iid, timeout_in_seconds=WAIT)
            assert done is not None and done.runtime_status is WorkflowStatus.COMPLETED
            assert done.serialized_output == '"Added, Bo!"'


def test_with_a_short_deadline_unknown_code_fails_with_the_clear_error(kafka_bootstrap: str) -> None:
    settings = fresh(kafka_bootstrap, unknown_code_timeout=2.0)
    half = registry(workflows=NEW["workflows"], activities=OLD["activities"])  # type: ignore[arg-type]
    with running(half, settings), DaprWorkflowClient(settings=settings) as client:
        unknown_workflow = client.schedule_new_workflow("nowhere", input=1)
        unknown_activity = client.schedule_new_workflow("uses_added", input="Cy")
        failed = client.wait_for_workflow_completion(unknown_workflow, timeout_in_seconds=WAIT)
        assert failed is not None and failed.runtime_status is WorkflowStatus.FAILED
        assert failed.failure_details is not None
        assert failed.failure_details.error_type == "UnknownWorkflowError"
        assert "'nowhere'" in failed.failure_details.message
        task_failed = client.wait_for_workflow_completion(unknown_activity, timeout_in_seconds=WAIT)
        assert task_failed is not None and task_failed.runtime_status is WorkflowStatus.FAILED
        details = task_failed.failure_details
        assert details is not None and details.inner is not None
        assert details.inner.error_type == "UnknownActivityError" and "'added'" in details.inner.message


def test_two_apps_on_one_broker_with_default_settings_never_fail_each_others_starts(kafka_bootstrap: str) -> None:
    """The issue's experiment: the examples-like app and a second app with one more workflow, on one
    broker. With app IDs (and no topic prefix set) each app has its own topics."""
    run = uuid.uuid4().hex[:6]
    first = Settings.from_env(bootstrap_servers=kafka_bootstrap, app_id=f"first-{run}", partitions=4,
                              shutdown_grace_seconds=2)
    second = Settings.from_env(bootstrap_servers=kafka_bootstrap, app_id=f"second-{run}", partitions=4,
                               shutdown_grace_seconds=2)
    assert first.topic_prefix == f"headrace.first-{run}." and second.topic_prefix == f"headrace.second-{run}."
    with running(registry(**OLD), first), running(registry(**NEW), second), \
            DaprWorkflowClient(settings=first) as first_client, DaprWorkflowClient(settings=second) as second_client:
        seconds = [second_client.schedule_new_workflow("uses_added", input=f"n{i}") for i in range(20)]
        firsts = [first_client.schedule_new_workflow("greet", input=f"n{i}") for i in range(5)]
        ended = [second_client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT) for i in seconds]
        ended += [first_client.wait_for_workflow_completion(i, timeout_in_seconds=WAIT) for i in firsts]
        statuses = [s.runtime_status if s is not None else None for s in ended]
        assert statuses == [WorkflowStatus.COMPLETED] * 25
        # The first app never saw the second app's instances.
        assert first_client.get_workflow_state(seconds[0]) is None
