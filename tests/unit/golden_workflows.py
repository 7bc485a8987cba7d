"""Example workflows whose recorded histories are kept under `tests/golden/`, and how to run them.

`record_golden.py` runs every scenario here in the test environment and writes the histories;
`test_golden.py` replays the committed files against this code. Changing a workflow here in a way
that changes what it does step by step is exactly what the golden test exists to catch: record
again only on purpose (and say why in the commit).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from engine import (
    DaprWorkflowContext,
    RetryPolicy,
    TaskFailedError,
    WorkflowActivityContext,
    WorkflowRuntime,
    when_all,
    when_any,
)
from engine.testing import WorkflowTestEnvironment

wfr = WorkflowRuntime()


# -- activities -----------------------------------------------------------------------------------


@wfr.activity
def reserve(ctx: WorkflowActivityContext, order):
    return {"reservation": f"r-{order['id']}", "items": len(order["items"])}


@wfr.activity(name="charge")
def charge_card(ctx, amount):
    return {"charged": amount}


@wfr.activity
def ship(ctx, item):
    if item == "fragile":
        raise ValueError(f"cannot ship {item}")
    return f"shipped {item}"


@wfr.activity
async def notify(ctx, message):
    return f"sent: {message}"


@wfr.activity
def unreliable(ctx: WorkflowActivityContext, _):
    # Fails on the first two attempts of each call (task IDs 0 and 2), deterministically.
    if ctx.task_id in (0, 2):
        raise ConnectionError(f"gateway timeout on task {ctx.task_id}")
    return "eventually"


# -- workflows ------------------------------------------------------------------------------------


@wfr.workflow(name="order")
def order_wf(ctx: DaprWorkflowContext, order):
    ctx.set_custom_status("reserving")
    reservation = yield ctx.call_activity(reserve, input=order)
    ctx.set_custom_status("charging")
    payment = yield ctx.call_activity("charge", input=order["amount"])
    shipped = yield when_all([ctx.call_activity(ship, input=i) for i in order["items"]])
    note = yield ctx.call_activity(notify, input=f"order {order['id']} done")
    ctx.set_custom_status("done")
    return {"reservation": reservation, "payment": payment, "shipped": shipped, "note": note}


@wfr.workflow
def fan_out(ctx, items):
    try:
        return (yield when_all([ctx.call_activity(ship, input=i) for i in items]))
    except TaskFailedError as exc:
        return {"failed": exc.details.message, "type": exc.details.error_type}


@wfr.workflow
def approval(ctx, request):
    approved = ctx.wait_for_external_event("approval")
    timeout = ctx.create_timer(timedelta(hours=24))
    winner = yield when_any([approved, timeout])
    if winner is timeout:
        return {"request": request, "outcome": "expired"}
    return {"request": request, "outcome": "approved", "by": approved.get_result()}


@wfr.workflow
def patient(ctx, _):
    try:
        first = yield ctx.wait_for_external_event("Ping", timeout=timedelta(minutes=10))
    except TimeoutError:
        first = "timed out"
    rest = []
    for _ in range(2):
        rest.append((yield ctx.wait_for_external_event("ping")))
    return [first, *rest]


@wfr.workflow
def retrying(ctx, _):
    policy = RetryPolicy(
        first_retry_interval=timedelta(seconds=5),
        backoff_coefficient=3,
        max_number_of_attempts=4,
        max_retry_interval=timedelta(seconds=12),
    )
    return (yield ctx.call_activity(unreliable, input=None, retry_policy=policy))


@wfr.workflow
def shipment(ctx, item):
    return (yield ctx.call_activity(ship, input=item))


@wfr.workflow
def parent(ctx, items):
    results = []
    for item in items:
        try:
            results.append((yield ctx.call_child_workflow(shipment, input=item)))
        except TaskFailedError as exc:
            results.append(f"child failed: {exc.details.error_type}")
    named = yield ctx.call_child_workflow(
        "shipment", input="gift", instance_id=f"{ctx.instance_id}-gift"
    )
    return [*results, named]


@wfr.workflow
def counter(ctx, state):
    added = yield ctx.wait_for_external_event("add")
    total = state["total"] + added
    if state["round"] < 3:
        ctx.continue_as_new({"total": total, "round": state["round"] + 1}, save_events=True)
        return None
    return {"total": total, "at": ctx.current_utc_datetime.isoformat()}


@wfr.workflow
def identities(ctx):
    first = [ctx.new_uuid(), ctx.current_utc_datetime.isoformat(), ctx.instance_id]
    yield ctx.create_timer(timedelta(minutes=30))
    return [*first, ctx.new_uuid(), ctx.current_utc_datetime.isoformat()]


@wfr.workflow
def doomed(ctx, reason):
    yield ctx.call_activity(notify, input="about to fail")
    raise RuntimeError(reason)


@wfr.workflow
def endless(ctx):
    while True:
        yield ctx.create_timer(timedelta(hours=1))


@wfr.workflow
def immediate(ctx, x):
    return {"echo": x}


# -- scenarios: how each recorded history came about ----------------------------------------------

Scenario = Callable[[WorkflowTestEnvironment], None]


def _order(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(
        order_wf, instance_id="order-1", input={"id": 1, "amount": 30, "items": ["book", "pen"]}
    )
    env.run()


def _fan_out_failure(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(fan_out, instance_id="fan-1", input=["a", "fragile", "b"])
    env.run()


def _approval_granted(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(approval, instance_id="approval-1", input="new laptop")
    env.advance(timedelta(hours=3))
    env.raise_workflow_event("approval-1", "APPROVAL", data="ada")
    env.run()


def _approval_expired(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(approval, instance_id="approval-2", input="yacht")
    env.advance(timedelta(hours=25))
    env.raise_workflow_event("approval-2", "approval", data="too late")
    env.run()


def _events_and_timeout(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(patient, instance_id="patient-1")
    env.advance(timedelta(minutes=11))
    env.raise_workflow_event("patient-1", "PING", data=1)
    env.raise_workflow_event("patient-1", "ping", data=2)
    env.run()


def _retries(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(retrying, instance_id="retry-1")
    env.advance(timedelta(minutes=5))


def _children(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(parent, instance_id="parent-1", input=["vase", "fragile"])
    env.run()


def _continue_as_new(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(counter, instance_id="counter-1", input={"total": 0, "round": 1})
    env.advance(timedelta(seconds=1))
    for n in (1, 20, 300):
        env.raise_workflow_event("counter-1", "add", data=n)
    env.advance(timedelta(seconds=1))


def _identities(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(identities, instance_id="ids-1")
    env.advance(timedelta(hours=1))


def _failure(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(doomed, instance_id="doomed-1", input="out of stock")
    env.run()


def _suspended(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(approval, instance_id="approval-3", input="paused request")
    env.pause_workflow("approval-3")
    env.advance(timedelta(hours=1))
    env.raise_workflow_event("approval-3", "approval", data="held while paused")
    env.advance(timedelta(hours=1))
    env.resume_workflow("approval-3")
    env.run()


def _terminated(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(endless, instance_id="endless-1")
    env.advance(timedelta(hours=2, minutes=30))
    env.terminate_workflow("endless-1", output="enough")
    env.run()


def _immediate(env: WorkflowTestEnvironment) -> None:
    env.schedule_new_workflow(immediate, instance_id="immediate-1", input=[1, "two"])
    env.run()


SCENARIOS: dict[str, Scenario] = {
    "order": _order,
    "fan_out_failure": _fan_out_failure,
    "approval_granted": _approval_granted,
    "approval_expired": _approval_expired,
    "events_and_timeout": _events_and_timeout,
    "retries": _retries,
    "children": _children,
    "continue_as_new": _continue_as_new,
    "identities": _identities,
    "failure": _failure,
    "suspended": _suspended,
    "terminated": _terminated,
    "immediate": _immediate,
}
