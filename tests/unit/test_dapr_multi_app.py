"""ops/dapr_multi_app.py: which README steps run Dapr's multi-app examples, and how."""

from __future__ import annotations

from pathlib import Path

from ops.dapr_multi_app import AppRun, MultiAppStep, multi_app_steps, run_step

README = '''
<!-- STEP
name: Run apps
expected_stdout_lines:
  - 'app1 - triggering app1 workflow'
  - 'app3 - received activity call'
background: true
sleep: 20
-->

```sh
dapr run --app-id wfexample3 -- python3 multi-app3.py &
dapr run --app-id wfexample2 -- python3 multi-app2.py &
dapr run --app-id wfexample1 -- python3 multi-app1.py
```
<!-- END_STEP -->

<!-- STEP
name: Run apps
expected_stdout_lines:
  - 'app3 - raising error in activity due to error mode being enabled'
sleep: 20
-->

```sh
export ERROR_ACTIVITY_MODE=true
dapr run --app-id wfexample3 -- python3 multi-app3.py &
dapr run --app-id wfexample1 -- python3 multi-app1.py
```
<!-- END_STEP -->

<!-- STEP
name: Something else
expected_stdout_lines:
  - 'not multi-app'
-->

```sh
dapr run --app-id wfexample -- python3 simple.py
```
<!-- END_STEP -->
'''


def test_steps_keep_their_apps_in_order_their_exports_and_their_lines() -> None:
    steps = multi_app_steps(README)
    assert [s.name for s in steps] == ["multi-app", "multi-app (ERROR_ACTIVITY_MODE=true)"]
    assert steps[0].apps == (AppRun("wfexample3", "multi-app3"), AppRun("wfexample2", "multi-app2"),
                             AppRun("wfexample1", "multi-app1"))
    assert steps[0].env == {} and steps[1].env == {"ERROR_ACTIVITY_MODE": "true"}
    assert steps[0].expected == ["app1 - triggering app1 workflow", "app3 - received activity call"]
    assert steps[1].expected == ["app3 - raising error in activity due to error mode being enabled"]


def test_a_step_runs_each_app_with_its_app_id_and_the_exports_and_gathers_every_output(tmp_path: Path) -> None:
    work, logs = tmp_path / "work", tmp_path / "logs"
    work.mkdir()
    logs.mkdir()
    script = "import os; print(os.environ['HEADRACE_APP_ID'], os.environ.get('MODE'), " \
             "os.environ.get('HEADRACE_TOPIC_PREFIX'))\n"
    for name in ("back", "front"):
        (work / f"{name}.py").write_text(script)
    step = MultiAppStep("multi-app (MODE=x)", {"MODE": "x"}, (AppRun("b", "back"), AppRun("f", "front")), [])
    result = run_step(step, work, {"PATH": "", "HEADRACE_TOPIC_PREFIX": "mine."}, 60, logs)
    assert result.clean and set(result.exit_codes) == {"b", "f"}
    # Each app's prefix follows its app ID, so a prefix of the runner's never reaches them.
    assert "b x None" in result.output and "f x None" in result.output
