"""Dapr's multi-app workflow examples on Headrace: three apps, each a process of its own, one broker.

dapr/python-sdk's `examples/workflow/README.md` runs `multi-app1.py`, `multi-app2.py` and
`multi-app3.py` three times (STEP blocks "Multi-app Workflows", "Error handling on activity calls",
"Error handling on workflow calls"), each time as

    export ERROR_ACTIVITY_MODE=true            # in the error-handling steps only
    dapr run --app-id wfexample3 -- python3 multi-app3.py &
    dapr run --app-id wfexample2 -- python3 multi-app2.py &
    dapr run --app-id wfexample1 -- python3 multi-app1.py

and checks the step's `expected_stdout_lines` against what the three print. This runs each step
the same way (`ops/dapr_examples.py` calls it): the app ID of `dapr run --app-id` becomes
`HEADRACE_APP_ID` (Headrace's app identity: the app's topics are `headrace.<app-id>.`), the
exported variables are set, the background apps start first and the last one in the foreground,
and the lines are looked for in the three outputs together, as Dapr's test harness reads the
output of every command of a step. The examples' code is only read from the checkout and run with
its imports changed; the app IDs name topics, so steps run one after the other on the same broker.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MULTI_APP_SCRIPTS", "AppRun", "MultiAppStep", "StepResult", "multi_app_steps", "run_step"]

#: The example scripts that only run together, as a step (never one by one).
MULTI_APP_SCRIPTS = frozenset({"multi-app1", "multi-app2", "multi-app3"})

_STEP = re.compile(r"<!--\s*STEP(.*?)-->(.*?)<!--\s*END_STEP\s*-->", re.S)
_RUN = re.compile(r"dapr run\b[^\n]*?--app-id\s+(\S+)[^\n]*?python3?\s+([\w-]+)\.py")
_EXPORT = re.compile(r"^\s*export\s+(\w+)=(\S*)\s*$", re.M)


@dataclass(frozen=True, slots=True)
class AppRun:
    app_id: str
    script: str


@dataclass(frozen=True, slots=True)
class MultiAppStep:
    """One STEP block of the README that runs the multi-app scripts."""

    name: str
    #: Variables the step exports before it runs the apps.
    env: dict[str, str]
    #: The apps in the order the step starts them; all but the last in the background.
    apps: tuple[AppRun, ...]
    expected: list[str]


@dataclass(frozen=True, slots=True)
class StepResult:
    output: str
    #: Exit code of each app (None: still running when the time was up, and killed).
    exit_codes: dict[str, int | None]
    seconds: float

    @property
    def clean(self) -> bool:
        return all(code == 0 for code in self.exit_codes.values())


def multi_app_steps(readme: str) -> list[MultiAppStep]:
    """The README's STEP blocks that run the multi-app scripts, with their exports and lines."""
    steps: list[MultiAppStep] = []
    for block in _STEP.finditer(readme):
        header, body = block.group(1), block.group(2)
        apps = tuple(AppRun(app_id, script) for app_id, script in _RUN.findall(body) if script in MULTI_APP_SCRIPTS)
        if not apps:
            continue
        lines = re.findall(r'^\s*-\s*(["\'])(.*)\1\s*$', header.split("expected_stdout_lines:", 1)[-1], re.M)
        env = dict(_EXPORT.findall(body))
        label = ", ".join(f"{k}={v}" for k, v in env.items())
        steps.append(MultiAppStep(f"multi-app ({label})" if label else "multi-app", env, apps,
                                  [text for _, text in lines]))
    return steps


def run_step(step: MultiAppStep, work: Path, base_env: dict[str, str], timeout: float,
             logs: Path) -> StepResult:
    """Run the step's apps from `work` (the rewritten examples) and gather their output."""
    started = time.monotonic()
    env = {**base_env, **step.env}
    env.pop("HEADRACE_TOPIC_PREFIX", None)  # apps find each other by app ID: the prefix follows it
    background: dict[str, subprocess.Popen[str]] = {}
    files: dict[str, Path] = {}
    with contextlib.ExitStack() as opened:
        for app in step.apps[:-1]:
            files[app.app_id] = logs / f"{_slug(step.name)}-{app.app_id}.log"
            out = opened.enter_context(files[app.app_id].open("w"))
            background[app.app_id] = subprocess.Popen(
                [sys.executable, f"{app.script}.py"], cwd=work, env={**env, "HEADRACE_APP_ID": app.app_id},
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, text=True)
        outputs, codes = _run_last(step, work, env, timeout, started, background)
    for app_id, path in files.items():
        outputs[app_id] = path.read_text()
    output = "".join(f"===== {app_id}\n{text}" for app_id, text in outputs.items())
    return StepResult(output, codes, time.monotonic() - started)


def _run_last(step: MultiAppStep, work: Path, env: dict[str, str], timeout: float, started: float,
              background: dict[str, subprocess.Popen[str]]) -> tuple[dict[str, str], dict[str, int | None]]:
    """Run the step's last app in the foreground, then wait for the background ones to end."""
    last = step.apps[-1]
    codes: dict[str, int | None] = {}
    try:
        try:
            done = subprocess.run([sys.executable, f"{last.script}.py"], cwd=work,
                                  env={**env, "HEADRACE_APP_ID": last.app_id}, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout, check=False)
            outputs = {last.app_id: done.stdout + done.stderr}
            codes[last.app_id] = done.returncode
        except subprocess.TimeoutExpired as exc:
            outputs = {last.app_id: _text(exc.stdout) + _text(exc.stderr)}
            codes[last.app_id] = None
        for app_id, proc in background.items():
            # The background apps keep their runtime up for a while (15 s in Dapr's examples), then end.
            try:
                codes[app_id] = proc.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                codes[app_id] = None
    finally:
        for proc in background.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
    return outputs, codes


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else value

