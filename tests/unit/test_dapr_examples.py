"""ops/dapr_examples.py: import rewriting and where the expected output lines come from."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.client.dapr_client import DaprInternalError, Settings
from ops.dapr_examples import dapr_test_expectations, expectations, readme_expectations, rewrite_imports


def test_only_import_lines_are_rewritten() -> None:
    source = textwrap.dedent("""\
        import dapr.ext.workflow as wf
        from dapr.ext.workflow import (
            DaprWorkflowContext,
        )
        from dapr.ext.workflow.aio import DaprWorkflowClient
        from dapr.clients.exceptions import DaprInternalError
        from dapr.clients import DaprClient
        from dapr.conf import Settings
        print("dapr.ext.workflow stays in strings and code")
        """)
    assert rewrite_imports(source) == textwrap.dedent("""\
        import engine as wf
        from engine import (
            DaprWorkflowContext,
        )
        from engine.aio import DaprWorkflowClient
        from engine.client.dapr_client import DaprInternalError
        from engine.client.dapr_client import DaprClient
        from engine.client.dapr_client import Settings
        print("dapr.ext.workflow stays in strings and code")
        """)


README = '''
<!--STEP
name: Run it
match_order: none
expected_stdout_lines:
  - "Step 1: Received input: 42."
  - 'Final result: 110.'
timeout_seconds: 30
-->

```sh
dapr run --app-id wfexample -- python3 task_chaining.py
```
<!--END_STEP-->
'''

TEST = '''
EXPECTED_CHAIN = [
    'Step 1: Received input: 42.',
    'Workflow completed! Status: WorkflowStatus.COMPLETED',
]


def test_task_chaining(dapr):
    output = dapr.run('--app-id workflow-task-chaining -- python3 task_chaining.py', timeout=30)
    for line in EXPECTED_CHAIN:
        assert line in output
'''


def test_expected_lines_come_from_the_readme_steps_and_daprs_example_test(tmp_path: Path) -> None:
    assert readme_expectations(README) == {"task_chaining": ["Step 1: Received input: 42.", "Final result: 110."]}
    assert dapr_test_expectations(TEST) == {"task_chaining": ["Step 1: Received input: 42.",
                                                         "Workflow completed! Status: WorkflowStatus.COMPLETED"]}
    (tmp_path / "examples/workflow").mkdir(parents=True)
    (tmp_path / "examples/workflow/README.md").write_text(README)
    (tmp_path / "tests/examples").mkdir(parents=True)
    (tmp_path / "tests/examples/test_workflow.py").write_text(TEST)
    found = expectations(tmp_path)
    assert found["task_chaining"] == (["Step 1: Received input: 42.", "Final result: 110.",
                                       "Workflow completed! Status: WorkflowStatus.COMPLETED"], "README+test")
    assert found["human_approval"][1] == "README sample"  # no STEP and no test: the README's sample output


def test_daprs_error_and_settings_names() -> None:
    err = DaprInternalError("no such instance exists", "ERR_DOES_NOT_EXIST")
    assert (err.message, err.error_code, str(err)) == ("no such instance exists", "ERR_DOES_NOT_EXIST",
                                                       "('no such instance exists', 'ERR_DOES_NOT_EXIST')")
    assert str(DaprInternalError("plain")) == "plain"
    assert Settings().DAPR_RUNTIME_HOST is None or isinstance(Settings().DAPR_RUNTIME_HOST, str)
    with pytest.raises(AttributeError):
        _ = Settings().not_a_dapr_setting


def test_an_example_run_in_parts_gets_each_part_as_its_argument(tmp_path: Path) -> None:
    import os

    from ops.dapr_examples import RUNS, run_example

    assert RUNS["versioning"] == (("part1",), ("part2",))  # as its README runs it
    script = tmp_path / "parts.py"
    script.write_text("import sys\nprint('args:', sys.argv[1:])\n")
    outputs = [run_example(script, dict(os.environ), 30, args)[0] for args in RUNS["versioning"]]
    assert outputs == ["args: ['part1']\n", "args: ['part2']\n"]
