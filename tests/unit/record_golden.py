"""Record the golden histories: run every scenario of `golden_workflows` and write its histories.

    python tests/unit/record_golden.py            # rewrite every file in tests/golden/
    python tests/unit/record_golden.py order      # only the named scenarios

Each file holds, per execution (instance and generation) the scenario touched, the history events
in their wire form (the codec's JSON). IDs come from a counter, so recording twice writes the same
bytes; stack traces keep paths relative to the repository.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GOLDEN = REPO / "tests" / "golden"
if str(HERE) not in sys.path:  # run as a script or with -m, find the sibling modules either way
    sys.path.insert(0, str(HERE))

from golden_workflows import SCENARIOS, wfr  # noqa: E402
from support import counter_ids  # noqa: E402

from engine.core import events as ev  # noqa: E402
from engine.core.codec import to_jsonable  # noqa: E402
from engine.testing import WorkflowTestEnvironment  # noqa: E402

FORMAT = 1


def _relative_paths(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(f"{REPO}/", "")
    if isinstance(value, dict):
        return {k: _relative_paths(v) for k, v in value.items()}
    return value


def wire(event: ev.HistoryEvent) -> dict[str, Any]:
    data = orjson.loads(orjson.dumps(to_jsonable(event)))
    if isinstance(data.get("failure"), dict):
        data["failure"] = _relative_paths(data["failure"])
    return data


def record(name: str) -> dict[str, Any]:
    env = WorkflowTestEnvironment(wfr, ids=counter_ids("golden-"))
    SCENARIOS[name](env)
    executions: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for instance_id, execution_id, event in env.audit:
        executions.setdefault((instance_id, execution_id), []).append(wire(event))
    return {
        "scenario": name,
        "format": FORMAT,
        "executions": [
            {"instance_id": iid, "execution_id": eid, "events": events}
            for (iid, eid), events in executions.items()
        ],
    }


def render(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(
            f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = GOLDEN / f"{name}.json"
        path.write_bytes(render(record(name)))
        print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
