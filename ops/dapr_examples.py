"""Run Dapr's Python workflow examples on Headrace with only their imports changed (issue 13).

    ops/dapr_examples.sh PATH/TO/python-sdk [--bootstrap-servers HOST:PORT] [--all] [EXAMPLE ...]

Given a checkout of dapr/python-sdk (fetched by you; nothing is fetched here), this copies
`examples/workflow/*.py` into a scratch folder, rewrites their imports only:

    dapr.ext.workflow.aio                        -> engine.aio
    dapr.ext.workflow                            -> engine
    dapr.clients, dapr.clients.exceptions,
    dapr.conf                                    -> engine.client.dapr_client

runs each one as its README says (`python3 <example>.py`, with the Enter its prompt waits for),
and prints a table: the expected output lines found, the exit code, pass or fail.

Expected lines come from the checkout itself: the `expected_stdout_lines` of the README's STEP
blocks and the `EXPECTED_*` lists of `tests/examples/test_workflow.py` (Dapr's own example test),
matched as that test does (`line in output`). The three examples with neither (human_approval,
monitor, child_workflow) are checked against the sample output their README prints, with the
random parts (instance IDs, healthy or not) cut off.

Every example starts its own engine and worker (`wfr.start()`), so only Kafka is needed: the
broker from `--bootstrap-servers` or `KAFKA_BOOTSTRAP_SERVERS` (e.g. the one `ops/dev up`
started), else a private one on free ports started here and stopped at the end. Each example runs
on its own topic prefix, so it shares nothing with another example or a running stack.
versioning runs as its README says, `part1` then `part2` on the same topics (a restart resumes
what part1 left STALLED). The multi-app scripts run together, as three apps in three processes,
once per README step that runs them (`ops/dapr_multi_app.py`): `multi-app (...)` rows.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ops.dapr_multi_app import MULTI_APP_SCRIPTS, multi_app_steps, run_step

REPO = Path(__file__).resolve().parents[1]

IMPORT_REWRITES: tuple[tuple[str, str], ...] = (
    ("dapr.ext.workflow.aio", "engine.aio"),
    ("dapr.ext.workflow", "engine"),
    ("dapr.clients.exceptions", "engine.client.dapr_client"),
    ("dapr.clients", "engine.client.dapr_client"),
    ("dapr.conf", "engine.client.dapr_client"),
)

#: Examples of other issues, run only with --all (none left: multi-app runs as `dapr_multi_app` says).
SKIPPED: dict[str, str] = {}

#: The README's sample output, for the examples without a STEP block or a test (random parts cut off).
README_OUTPUT: dict[str, list[str]] = {
    "human_approval": [
        "*** Requesting approval from user for order: namespace(cost=2000, product='MyProduct', quantity=1)",
        "*** Placing order: namespace(cost=2000, product='MyProduct', quantity=1)",
        "Workflow completed! Result: \"Approved by 'Me'\"",
    ],
    "monitor": ["Job 'job1' is "],
    "child_workflow": ["*** Calling child workflow ", "*** Child workflow "],
}

#: Examples whose README runs them several times in a row, on the same topics: the arguments of each run.
RUNS: dict[str, tuple[tuple[str, ...], ...]] = {"versioning": (("part1",), ("part2",))}

#: When to press Enter, in seconds, for the examples whose prompt waits for it (as the README says).
ENTER_AFTER = {"human_approval": 5.0, "monitor": 30.0}


@dataclass
class Outcome:
    name: str
    expected: list[str]
    source: str
    missing: list[str] = field(default_factory=list)
    exit_code: int | None = None
    seconds: float = 0.0
    skipped: str = ""

    @property
    def passed(self) -> bool:
        return not self.skipped and bool(self.expected) and not self.missing


def rewrite_imports(source: str) -> str:
    """The example with its import lines (and only those) pointed at Headrace's modules."""

    def fix(line: str) -> str:
        if not re.match(r"\s*(from|import)\s+dapr[.\s]", line):
            return line
        for old, new in IMPORT_REWRITES:
            line = re.sub(rf"\b{re.escape(old)}\b(?![.\w])", new, line)
        return line

    return "".join(fix(line) for line in source.splitlines(keepends=True))


def readme_expectations(readme: str) -> dict[str, list[str]]:
    """`expected_stdout_lines` of every STEP block, by the example its command runs."""
    found: dict[str, list[str]] = {}
    for block in re.finditer(r"<!--\s*STEP(.*?)-->(.*?)<!--\s*END_STEP\s*-->", readme, re.S):
        header, body = block.group(1), block.group(2)
        lines = re.findall(r'^\s*-\s*(["\'])(.*)\1\s*$', header.split("expected_stdout_lines:", 1)[-1], re.M)
        for script in re.findall(r"python3?\s+([\w-]+)\.py", body):
            found.setdefault(script, []).extend(text for _, text in lines)
    return found


def dapr_test_expectations(test_source: str) -> dict[str, list[str]]:
    """Dapr's tests/examples/test_workflow.py: which EXPECTED_* list each example's test checks."""
    tree = ast.parse(test_source)
    lists = {
        node.targets[0].id: [ast.literal_eval(e) for e in node.value.elts]
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id.startswith("EXPECTED_") and isinstance(node.value, ast.List)
    }
    found: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            text = ast.get_source_segment(test_source, node) or ""
            scripts = re.findall(r"python3?\s+([\w-]+)\.py", text)
            names = [n for n in lists if re.search(rf"\b{n}\b", text)]
            for script in scripts:
                for name in names:
                    found.setdefault(script, []).extend(lists[name])
    return found


def expectations(checkout: Path) -> dict[str, tuple[list[str], str]]:
    readme = readme_expectations((checkout / "examples/workflow/README.md").read_text())
    test_file = checkout / "tests/examples/test_workflow.py"
    tests = dapr_test_expectations(test_file.read_text()) if test_file.exists() else {}
    result: dict[str, tuple[list[str], str]] = {}
    for script in {*readme, *tests}:
        lines = list(dict.fromkeys([*readme.get(script, []), *tests.get(script, [])]))
        sources = [s for s, table in (("README", readme), ("test", tests)) if script in table]
        result[script] = (lines, "+".join(sources))
    for script, lines in README_OUTPUT.items():
        result.setdefault(script, (lines, "README sample"))
    return result


def run_example(path: Path, env: dict[str, str], timeout: float,
                args: tuple[str, ...] = ()) -> tuple[str, int | None, float]:
    started = time.monotonic()
    enter_at = ENTER_AFTER.get(path.stem)
    read_end, write_end = os.pipe()  # the example's stdin: Enter is typed into it, if its prompt wants one

    def press_enter() -> None:
        os.write(write_end, b"\n")

    typist = threading.Timer(enter_at, press_enter) if enter_at is not None else None
    try:
        with subprocess.Popen([sys.executable, path.name, *args], cwd=path.parent, env=env, stdin=read_end,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
            if typist is not None:
                typist.start()
            else:
                os.close(write_end)  # end of input at once
                write_end = -1
            try:
                output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                output, _ = proc.communicate()
                return output, None, time.monotonic() - started
        return output, proc.returncode, time.monotonic() - started
    finally:
        if typist is not None:
            typist.cancel()
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)


def run_multi_app(checkout: Path, work: Path, logs: Path, bootstrap: str, timeout: float) -> list[Outcome]:
    """The README's multi-app steps, each three apps at once (`ops/dapr_multi_app.py`)."""
    outcomes: list[Outcome] = []
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    for step in multi_app_steps((checkout / "examples/workflow/README.md").read_text()):
        print(f"running {step.name} ...", flush=True)
        result = run_step(step, work, env, timeout, logs)
        (logs / f"{re.sub(r'[^A-Za-z0-9]+', '-', step.name).strip('-')}.log").write_text(result.output)
        outcome = Outcome(step.name, step.expected, "README", exit_code=0 if result.clean else 1,
                          seconds=result.seconds)
        outcome.missing = [line for line in step.expected if line not in result.output]
        outcomes.append(outcome)
    return outcomes


def start_kafka(state_dir: Path) -> str:
    headrace = shutil.which("headrace", path=str(Path(sys.executable).parent)) or "headrace"
    done = subprocess.run([headrace, "kafka", "--state-dir", str(state_dir), "up", "--free-port"],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"could not start Kafka: {done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1]


def stop_kafka(state_dir: Path) -> None:
    headrace = shutil.which("headrace", path=str(Path(sys.executable).parent)) or "headrace"
    subprocess.run([headrace, "kafka", "--state-dir", str(state_dir), "down", "--wipe"],
                   capture_output=True, text=True, check=False)


def print_table(outcomes: list[Outcome], logs: Path) -> None:
    rows = [("example", "expected lines found", "from", "exit", "seconds", "result")]
    for o in outcomes:
        if o.skipped:
            rows.append((o.name, "-", "-", "-", "-", f"skipped: {o.skipped}"))
            continue
        found = f"{len(o.expected) - len(o.missing)}/{len(o.expected)}" if o.expected else "no expectations"
        exit_code = "timeout" if o.exit_code is None else str(o.exit_code)
        rows.append((o.name, found, o.source, exit_code, f"{o.seconds:.0f}", "pass" if o.passed else "FAIL"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for o in outcomes:
        for line in o.missing:
            print(f"{o.name}: missing {line!r}")
    ran = [o for o in outcomes if not o.skipped]
    print(f"\n{sum(o.passed for o in ran)} of {len(ran)} passed; logs in {logs}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ops/dapr_examples.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkout", type=Path, help="a checkout of dapr/python-sdk (its examples/workflow)")
    parser.add_argument("examples", nargs="*", help="only these examples (file names without .py)")
    parser.add_argument("--bootstrap-servers", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"),
                        help="a running Kafka (default: KAFKA_BOOTSTRAP_SERVERS, else a private one)")
    parser.add_argument("--all", action="store_true", help="also run versioning and multi-app")
    parser.add_argument("--timeout", type=float, default=180, help="seconds per example (default 180)")
    parser.add_argument("--scratch", type=Path, help="scratch folder (default: a new temporary one)")
    args = parser.parse_args(argv)

    source_dir = args.checkout / "examples" / "workflow"
    if not source_dir.is_dir():
        parser.error(f"{source_dir} does not exist: give the root of a dapr/python-sdk checkout")
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="dapr-examples-"))
    work, logs = scratch / "examples", scratch / "logs"
    work.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    for path in sorted(source_dir.glob("*.py")):
        (work / path.name).write_text(rewrite_imports(path.read_text()))
    expected = expectations(args.checkout)
    names = args.examples or sorted(p.stem for p in work.glob("*.py"))

    private_kafka = args.bootstrap_servers is None
    bootstrap = start_kafka(scratch / "kafka") if private_kafka else args.bootstrap_servers
    print(f"examples from {source_dir}, rewritten in {work}; Kafka at {bootstrap}", flush=True)
    outcomes: list[Outcome] = []
    try:
        for name in names:
            if name in MULTI_APP_SCRIPTS:
                continue  # run together below, as the README's steps run them
            lines, source = expected.get(name, ([], "-"))
            outcome = Outcome(name, lines, source)
            outcomes.append(outcome)
            if name in SKIPPED and not args.all and not args.examples:
                outcome.skipped = SKIPPED[name]
                continue
            env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1",
                   "HEADRACE_TOPIC_PREFIX": f"dapr-example-{name}-{uuid.uuid4().hex[:6]}.",
                   "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
            print(f"running {name} ...", flush=True)
            output = ""
            for run_args in RUNS.get(name, ((),)):
                out, outcome.exit_code, seconds = run_example(work / f"{name}.py", env, args.timeout, run_args)
                output, outcome.seconds = output + out, outcome.seconds + seconds
                if outcome.exit_code != 0:
                    break
            (logs / f"{name}.log").write_text(output)
            outcome.missing = [line for line in lines if line not in output]
        if MULTI_APP_SCRIPTS & set(names):
            outcomes.extend(run_multi_app(args.checkout, work, logs, bootstrap, args.timeout))
    finally:
        if private_kafka:
            stop_kafka(scratch / "kafka")
    print()
    print_table(outcomes, logs)
    return 0 if all(o.passed or o.skipped for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
