"""Commands are answered when done, as daprd answers them (issue 13), on one replica and two:

- two starts of one instance ID at the same moment: exactly one 202, the other daprd's 409;
- a GET right after any accepted command (pause, resume, raise event, terminate, purge), sent to
  either replica, shows its effect;
- a finished parent whose child still runs cannot be restarted (daprd: "cannot recreate workflow
  with ID … child workflow …"), over REST and from the Python client, until the child ends.

No test sleeps: every GET below is sent right after the 202 it checks.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from engine.client.dapr import DaprWorkflowClient
from engine.errors import ChildrenRunningError, InstanceExistsError
from engine.settings import Settings
from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer, eventually, two_replicas

pytestmark = pytest.mark.kafka

API = "/v1.0/workflows/dapr"


@pytest.fixture(scope="module")
def replicas(host, settings: Settings, log_dir: Path) -> Iterator[tuple[ApiServer, ApiServer]]:
    # A loaded CI machine may take seconds to apply a command: the wait must not run out first,
    # or the API falls back to answering 202 before the outcome is known.
    with two_replicas(settings, log_dir, {"HEADRACE_API_APPLY_WAIT_S": "60"}) as pair:
        yield pair


@pytest.fixture(scope="module")
def clients(replicas: tuple[ApiServer, ApiServer]) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    with replicas[0].client(timeout=90) as a, replicas[1].client(timeout=90) as b:
        yield a, b


def at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls on threads released together, so the requests overlap."""
    gate = threading.Barrier(len(calls))
    answers: list[httpx.Response | BaseException | None] = [None] * len(calls)

    def run(i: int) -> None:
        gate.wait()
        try:
            answers[i] = calls[i]()
        except BaseException as exc:  # reported below, on the test's thread
            answers[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done: list[httpx.Response] = []
    for answer in answers:
        if not isinstance(answer, httpx.Response):
            raise AssertionError(f"a concurrent request failed: {answer!r}")
        done.append(answer)
    return done


def get(http: httpx.Client, iid: str) -> httpx.Response:
    return http.get(f"{API}/{iid}")


def check_one_winner(first: httpx.Client, second: httpx.Client, rounds: int) -> None:
    for _ in range(rounds):
        iid = new_id("race")
        url = f"{API}/api_gate/start?instanceID={iid}"
        answers = at_once(
            lambda url=url: first.post(url, content=b'"one"'),  # type: ignore[misc]
            lambda url=url: second.post(url, content=b'"two"'),  # type: ignore[misc]
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [202, 409], [(r.status_code, r.text) for r in answers]
        won, lost = sorted(answers, key=lambda r: r.status_code)
        assert won.json() == {"instanceID": iid}
        assert lost.json() == {
            "errorCode": "ERR_START_WORKFLOW",
            "message": f"an active workflow with ID '{iid}' already exists",
        }
        # The winner's run is the instance, on both replicas, right away.
        winner = '"one"' if answers[0] is won else '"two"'
        for http in (first, second):
            body = get(http, iid).json()
            assert body["runtimeStatus"] == "RUNNING", body
            assert body["properties"]["dapr.workflow.input"] == winner


def test_concurrent_starts_of_one_id_on_one_replica_one_wins(clients) -> None:
    a, _ = clients
    check_one_winner(a, a, rounds=5)


def test_concurrent_starts_of_one_id_on_two_replicas_one_wins(clients) -> None:
    a, b = clients
    check_one_winner(a, b, rounds=5)


def test_a_get_right_after_each_command_shows_it_on_either_replica(clients) -> None:
    a, b = clients
    iid = new_id("ryw")
    assert a.post(f"{API}/api_gate/start?instanceID={iid}", content=b'"x"').status_code == 202
    # Dapr answers a start once the instance exists: it is there on the other replica at once.
    assert get(b, iid).json()["runtimeStatus"] == "RUNNING"

    assert a.post(f"{API}/{iid}/pause").status_code == 202
    assert get(b, iid).json()["runtimeStatus"] == "SUSPENDED"
    assert get(a, iid).json()["runtimeStatus"] == "SUSPENDED"
    # A second pause changes nothing and is answered at once.
    assert b.post(f"{API}/{iid}/pause").status_code == 202

    assert b.post(f"{API}/{iid}/resume").status_code == 202
    assert get(a, iid).json()["runtimeStatus"] == "RUNNING"
    assert get(b, iid).json()["runtimeStatus"] == "RUNNING"

    # The event is applied when answered: the workflow's turn that took it set "going".
    assert a.post(f"{API}/{iid}/raiseEvent/go", content=b"21").status_code == 202
    props = get(b, iid).json()["properties"]
    assert props["dapr.workflow.custom_status"] == "going", props

    done = wait_status(b, iid, "COMPLETED")
    assert orjson.loads(done["properties"]["dapr.workflow.output"]) == {
        "input": "x",
        "doubled": 42,
    }
    assert b.post(f"{API}/{iid}/purge").status_code == 202
    for http in (a, b):
        gone = get(http, iid)
        assert gone.status_code == 404, gone.text
    # A purged ID is free at once.
    assert a.post(f"{API}/api_echo/start?instanceID={iid}", content=b"1").status_code == 202


def test_terminate_is_visible_at_once_children_included(clients) -> None:
    a, b = clients
    iid = new_id("term")
    assert a.post(f"{API}/api_parent/start?instanceID={iid}", content=b"1").status_code == 202
    wait_status(a, f"{iid}-child", "RUNNING")
    assert a.post(f"{API}/{iid}/terminate").status_code == 202
    assert get(b, iid).json()["runtimeStatus"] == "TERMINATED"


def test_a_purge_is_done_when_answered_children_included(clients) -> None:
    a, b = clients
    iid = new_id("tree")
    child = f"{iid}-child"
    assert a.post(f"{API}/api_parent/start?instanceID={iid}", content=b"1").status_code == 202
    wait_status(a, child, "RUNNING")
    assert b.post(f"{API}/{child}/raiseEvent/go", content=b"2").status_code == 202
    wait_status(a, iid, "COMPLETED")
    assert get(b, child).json()["runtimeStatus"] == "COMPLETED"

    assert a.post(f"{API}/{iid}/purge").status_code == 202
    for http in (b, a):
        for gone in (iid, child):
            response = get(http, gone)
            assert response.status_code == 404, (gone, response.text)


def test_a_parent_cannot_be_restarted_while_its_child_runs(clients) -> None:
    a, b = clients
    iid = new_id("forget")
    child = f"{iid}-child"
    assert (
        a.post(f"{API}/api_forgetful_parent/start?instanceID={iid}", content=b"1").status_code
        == 202
    )
    wait_status(a, iid, "COMPLETED")
    # The child's start is its own command: under load it may still be PENDING when the parent
    # ends. The refusal below must hold either way; wait for RUNNING so the raised event is seen.
    wait_status(a, child, "RUNNING")

    for http in (a, b):
        refused = http.post(f"{API}/api_forgetful_parent/start?instanceID={iid}", content=b"2")
        assert refused.status_code == 409, refused.text
        assert refused.json() == {
            "errorCode": "ERR_START_WORKFLOW",
            "message": f"cannot recreate workflow with ID '{iid}': child workflow '{child}': "
            "orchestration has not yet completed",
        }
        # Nothing changed: the finished run is still the instance.
        body = get(http, iid).json()
        assert body["runtimeStatus"] == "COMPLETED"
        assert body["properties"]["dapr.workflow.input"] == "1"

    # The child ends; its late result frees the parent's ID.
    assert b.post(f"{API}/{child}/raiseEvent/go", content=b"3").status_code == 202
    wait_status(a, child, "COMPLETED")

    def restarted() -> bool:
        response = a.post(f"{API}/api_forgetful_parent/start?instanceID={iid}", content=b"4")
        assert response.status_code in (202, 409), response.text
        return response.status_code == 202

    eventually(restarted, 30, what="the parent restarts once its child has ended")
    assert get(b, iid).json()["properties"]["dapr.workflow.input"] == "4"


def test_the_python_client_refuses_the_same_restarts(clients, settings: Settings) -> None:
    a, _ = clients
    iid = new_id("client")
    with DaprWorkflowClient(settings=settings) as client:
        client.schedule_new_workflow("api_forgetful_parent", input=1, instance_id=iid)
        wait_status(a, iid, "COMPLETED")
        # The client's own view must show the end too before it decides the restart below (the
        # API's may be ahead of it on a loaded machine).
        client.wait_for_workflow_completion(iid, timeout_in_seconds=60)
        with pytest.raises(ChildrenRunningError) as refused:
            client.schedule_new_workflow("api_forgetful_parent", input=2, instance_id=iid)
        assert str(refused.value) == (
            f"cannot recreate workflow with ID '{iid}': child workflow '{iid}-child': "
            "orchestration has not yet completed"
        )
        state = client.get_workflow_state(iid)
        assert state is not None and state.serialized_input == "1"

        # Two clients start one ID at the same moment: one wins, the other is told so.
        race = new_id("client-race")
        with DaprWorkflowClient(settings=settings) as other:
            outcomes: list[str] = []

            def start(c: DaprWorkflowClient, value: int) -> Callable[[], httpx.Response]:
                def go() -> httpx.Response:
                    try:
                        c.schedule_new_workflow("api_gate", input=value, instance_id=race)
                        outcomes.append("started")
                    except InstanceExistsError:
                        outcomes.append("refused")
                    return httpx.Response(200)

                return go

            at_once(start(client, 1), start(other, 2))
        assert sorted(outcomes) == ["refused", "started"]
