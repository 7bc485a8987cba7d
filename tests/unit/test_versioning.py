"""Named workflow versions in the registry (Dapr 1.17's `versioned_workflow`)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import RegistrationError
from engine.sdk.workflow_runtime import WorkflowRuntime


def test_versions_are_registered_under_one_name_and_the_latest_is_marked() -> None:
    runtime = WorkflowRuntime()

    @runtime.versioned_workflow(name="workflow", is_latest=True)
    def version1(ctx: Any) -> int:
        return 1

    @runtime.versioned_workflow(name="workflow", is_latest=True)
    def version2(ctx: Any) -> int:
        return 2

    registry = runtime.registry
    assert registry.latest["workflow"] == "version2"
    assert registry.get_workflow_version("workflow", "version1") is version1
    assert registry.get_workflow_version("workflow", "version3") is None


def test_a_version_name_twice_or_a_name_both_plain_and_versioned_is_refused() -> None:
    runtime = WorkflowRuntime()
    runtime.register_versioned_workflow(lambda ctx: 1, name="w", version_name="v1", is_latest=True)
    with pytest.raises(RegistrationError):
        runtime.register_versioned_workflow(lambda ctx: 2, name="w", version_name="v1", is_latest=False)

    def plain(ctx: Any) -> int:
        return 0

    runtime.register_workflow(plain, name="p")
    with pytest.raises(RegistrationError):
        runtime.register_versioned_workflow(lambda ctx: 3, name="p", version_name="v1", is_latest=True)


# -- versions and patches in the test environment (the engine's core, on a fake clock) ---------

from engine.core import events as ev  # noqa: E402
from engine.core.unknown_code import RECHECK  # noqa: E402
from engine.testing import WorkflowTestEnvironment  # noqa: E402


def _two_versions_runtime() -> tuple[WorkflowRuntime, Any, Any]:
    runtime = WorkflowRuntime()

    def version1(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return 1

    def version2(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return 2

    return runtime, version1, version2


def _started(env: WorkflowTestEnvironment, iid: str) -> ev.ExecutionStarted:
    return next(e for e in env.history(iid) if isinstance(e, ev.ExecutionStarted))


def test_new_instances_run_the_latest_version_and_old_ones_keep_theirs() -> None:
    runtime, version1, version2 = _two_versions_runtime()
    runtime.register_versioned_workflow(version1, name="workflow", is_latest=True)
    env = WorkflowTestEnvironment(runtime, cache_size=0)  # every turn replays from history
    old = env.schedule_new_workflow("workflow")
    env.run()
    assert _started(env, old).workflow_version == "version1"
    runtime.register_versioned_workflow(version2, name="workflow", is_latest=True)
    new = env.schedule_new_workflow("workflow")
    env.run()
    assert _started(env, new).workflow_version == "version2"
    for iid in (old, new):
        env.raise_workflow_event(iid, "event")
    assert env.wait_for_workflow_completion(old).serialized_output == "1"
    assert env.wait_for_workflow_completion(new).serialized_output == "2"


def test_a_run_whose_version_is_missing_waits_and_resumes_when_the_version_is_back() -> None:
    runtime, version1, version2 = _two_versions_runtime()
    runtime.register_versioned_workflow(version1, name="workflow", is_latest=True)
    env = WorkflowTestEnvironment(runtime, cache_size=0)
    iid = env.schedule_new_workflow("workflow")
    env.run()
    # An engine with only version2 holds the instance now (Dapr's `test_full_versioning_stall`).
    del runtime.registry.versions["workflow"]["version1"]
    runtime.register_versioned_workflow(version2, name="workflow", is_latest=True)
    env.raise_workflow_event(iid, "event")
    env.run()
    env.advance(RECHECK)
    stalled = env.get_workflow_state(iid)
    assert stalled is not None and stalled.runtime_status.name == "STALLED"
    assert env.states[iid].waiting_for_code is not None and env.states[iid].failure is None
    runtime.register_versioned_workflow(version1, name="workflow", is_latest=False)
    env.advance(RECHECK)
    done = env.get_workflow_state(iid)
    assert done is not None and done.runtime_status.name == "COMPLETED" and done.serialized_output == "1"


def test_is_patched_is_true_on_new_runs_and_replays_what_history_recorded() -> None:
    runtime = WorkflowRuntime()
    answers: list[tuple[str, bool]] = []

    def before_patch(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        answers.append(("patch2", ctx.is_patched("patch2")))
        return 0

    def patched(ctx: Any) -> Any:
        answers.append(("patch1", ctx.is_patched("patch1")))
        yield ctx.wait_for_external_event("event")
        answers.append(("patch2", ctx.is_patched("patch2")))
        return 0

    code = [before_patch]

    def workflow(ctx: Any) -> Any:
        return code[0](ctx)

    runtime.register_workflow(workflow, name="patching")
    env = WorkflowTestEnvironment(runtime, cache_size=0)
    iid = env.schedule_new_workflow("patching")
    env.run()
    code[0] = patched  # a deploy adds patch1 before the wait, where the run has already passed
    env.raise_workflow_event(iid, "event")
    env.wait_for_workflow_completion(iid)
    # Replayed past the wait: patch1 was not there then; patch2 is met for the first time: applied.
    assert answers == [("patch1", False), ("patch2", True)]
    recorded = [e.patches for e in env.history(iid) if isinstance(e, ev.WorkflowStarted) and e.patches]
    assert recorded == [("patch2",)]
    # A fresh run takes every patched branch.
    answers.clear()
    fresh = env.schedule_new_workflow("patching")
    env.run()
    assert answers == [("patch1", True)]
    # Replaying that history (a new turn with no cache) answers True from the record.
    env.raise_workflow_event(fresh, "event")
    env.wait_for_workflow_completion(fresh)
    assert answers == [("patch1", True), ("patch1", True), ("patch2", True)]


# -- a history whose patches the code no longer matches: STALLED, as Dapr (PATCH_MISMATCH) -------

from datetime import timedelta  # noqa: E402


def _patch_env(first: Any) -> tuple[WorkflowTestEnvironment, list[Any]]:
    """A runtime whose one workflow runs `code[0]`, swapped by the test as a deploy would."""
    runtime = WorkflowRuntime()
    code = [first]

    def workflow(ctx: Any) -> Any:
        return code[0](ctx)

    runtime.register_workflow(workflow, name="patching")
    return WorkflowTestEnvironment(runtime, cache_size=0, unknown_code_timeout=timedelta(seconds=30)), code


def _with_patch1(ctx: Any) -> Any:
    branch = "new" if ctx.is_patched("patch1") else "old"
    yield ctx.wait_for_external_event("event")
    return branch


def _without_patch1(ctx: Any) -> Any:
    yield ctx.wait_for_external_event("event")
    return "removed"


def test_code_that_no_longer_checks_a_recorded_patch_stalls_and_resumes_with_matching_code() -> None:
    env, code = _patch_env(_with_patch1)
    iid = env.schedule_new_workflow("patching")
    env.run()
    code[0] = _without_patch1  # Dapr's `test_patching_stall`: the patch1 check was removed
    env.raise_workflow_event(iid, "event")
    env.run()
    stalled = env.get_workflow_state(iid)
    assert stalled is not None and stalled.runtime_status.name == "STALLED"
    assert env.states[iid].failure is None
    # Far past the unknown-code timeout: a known workflow with the wrong code stalls, never fails.
    env.advance(timedelta(minutes=5))
    assert env.get_workflow_state(iid).runtime_status.name == "STALLED"  # type: ignore[union-attr]
    code[0] = _with_patch1  # an engine with the matching code: the held event is replayed
    env.advance(RECHECK)
    done = env.get_workflow_state(iid)
    assert done is not None and done.runtime_status.name == "COMPLETED" and done.serialized_output == '"new"'


def test_patches_checked_in_another_order_than_recorded_stall() -> None:
    def one_then_two(ctx: Any) -> Any:
        ctx.is_patched("patch1")
        ctx.is_patched("patch2")
        yield ctx.wait_for_external_event("event")
        return 12

    def two_then_one(ctx: Any) -> Any:
        ctx.is_patched("patch2")
        ctx.is_patched("patch1")
        yield ctx.wait_for_external_event("event")
        return 21

    env, code = _patch_env(one_then_two)
    iid = env.schedule_new_workflow("patching")
    env.run()
    code[0] = two_then_one
    env.raise_workflow_event(iid, "event")
    env.run()
    assert env.get_workflow_state(iid).runtime_status.name == "STALLED"  # type: ignore[union-attr]


def test_a_removed_patch_whose_branch_diverges_stalls_instead_of_failing_non_deterministic() -> None:
    def patched(ctx: Any) -> Any:
        if ctx.is_patched("patch1"):
            yield ctx.create_timer(timedelta(seconds=1))
        yield ctx.wait_for_external_event("event")
        return 1

    def old(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return 0

    env, code = _patch_env(patched)
    iid = env.schedule_new_workflow("patching")
    env.advance(timedelta(seconds=2))
    code[0] = old  # a v1 engine takes a v2 instance back (a rolling deploy moving partitions)
    env.raise_workflow_event(iid, "event")
    env.run()
    state = env.get_workflow_state(iid)
    assert state is not None and state.runtime_status.name == "STALLED" and env.states[iid].failure is None
    code[0] = patched
    env.advance(RECHECK)
    assert env.get_workflow_state(iid).runtime_status.name == "COMPLETED"  # type: ignore[union-attr]


def test_a_stalled_instance_can_be_terminated() -> None:
    env, code = _patch_env(_with_patch1)
    iid = env.schedule_new_workflow("patching")
    env.run()
    code[0] = _without_patch1
    env.raise_workflow_event(iid, "event")
    env.run()
    env.terminate_workflow(iid, output="gave up")
    env.run()
    assert env.get_workflow_state(iid).runtime_status.name == "TERMINATED"  # type: ignore[union-attr]


def test_a_missing_version_stalls_past_the_unknown_code_timeout() -> None:
    runtime, version1, version2 = _two_versions_runtime()
    runtime.register_versioned_workflow(version1, name="workflow", is_latest=True)
    env = WorkflowTestEnvironment(runtime, cache_size=0, unknown_code_timeout=timedelta(seconds=10))
    iid = env.schedule_new_workflow("workflow")
    env.run()
    del runtime.registry.versions["workflow"]["version1"]
    runtime.register_versioned_workflow(version2, name="workflow", is_latest=True)
    env.raise_workflow_event(iid, "event")
    env.advance(timedelta(minutes=1))
    assert env.get_workflow_state(iid).runtime_status.name == "STALLED"  # type: ignore[union-attr]


# -- code swapped inside one process, with the execution cache on (the default) -------------------


def test_a_wrapper_that_picks_the_code_is_replayed_every_turn_so_a_swap_is_seen() -> None:
    def before(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return "before"

    def after(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return "after"

    runtime = WorkflowRuntime()
    code = [before]

    def workflow(ctx: Any) -> Any:  # a plain function: it picks the generator at each call
        return code[0](ctx)

    runtime.register_workflow(workflow, name="wrapped")
    env = WorkflowTestEnvironment(runtime)  # default cache size: sticky execution on
    iid = env.schedule_new_workflow("wrapped")
    env.run()
    code[0] = after
    env.raise_workflow_event(iid, "event")
    assert env.wait_for_workflow_completion(iid).serialized_output == '"after"'


def test_a_generator_function_stays_cached_until_its_name_is_registered_again() -> None:
    runtime = WorkflowRuntime()

    def first(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return 1

    def second(ctx: Any) -> Any:
        yield ctx.wait_for_external_event("event")
        return 2

    runtime.register_workflow(first, name="w")
    env = WorkflowTestEnvironment(runtime)
    kept, swapped = env.schedule_new_workflow("w"), env.schedule_new_workflow("w")
    env.run()
    hits = env.orchestrator.cache.hits
    env.raise_workflow_event(kept, "event")
    assert env.wait_for_workflow_completion(kept).serialized_output == "1"
    assert env.orchestrator.cache.hits == hits + 1  # the live generator took the turn
    runtime.registry.workflows["w"] = second  # registered again in this process
    env.raise_workflow_event(swapped, "event")
    assert env.wait_for_workflow_completion(swapped).serialized_output == "2"
