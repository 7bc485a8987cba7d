"""The API's additions for the dashboard, without a broker: newest-first pages, counts, workflow
names, the static files and their token exemption, and the rules the page's scripts keep."""

from __future__ import annotations

import random
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.errors import BadRequest
from api.listing import Cursor, Query, list_instances, parse_query
from api.overview import load_registered_names, status_counts, workflow_names
from api.settings import ApiSettings
from engine.core.state import InstanceState
from engine.core.values import RuntimeStatus
from tests.api.support import ROOT

STATIC = ROOT / "api" / "dashboard" / "static"
T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def states(n: int, seed: int = 7) -> list[InstanceState]:
    rng = random.Random(seed)
    found = []
    for i in range(n):
        # Whole seconds, so that many instances share a createdAt and the ID breaks the tie.
        created = T0 + timedelta(seconds=rng.randrange(max(1, n // 3)))
        found.append(
            InstanceState(
                instance_id=f"i{i:06d}",
                name=rng.choice(["a", "b", "c"]),
                status=rng.choice(list(RuntimeStatus)),
                created_at=created,
                last_updated_at=created,
                input='{"x": 1}',
            )
        )
    return found


def all_pages(items: list[InstanceState], query: Query) -> list[str]:
    seen: list[str] = []
    while True:
        page = list_instances(items, query)
        seen += [i.instance_id for i in page.instances]
        if page.continuation_token is None:
            return seen
        query = Query(**{**_fields(query), "after": Cursor.decode(page.continuation_token)})


def _fields(query: Query) -> dict:
    return {name: getattr(query, name) for name in Query.__slots__}


@pytest.mark.parametrize("descending", [False, True])
def test_pages_match_a_full_sort_in_either_order(descending: bool) -> None:
    items = states(500)
    expected = [
        s.instance_id
        for s in sorted(items, key=lambda s: (s.created_at, s.instance_id), reverse=descending)
        if s.status in {RuntimeStatus.COMPLETED, RuntimeStatus.FAILED} and s.name != "c"
    ]
    query = Query(
        statuses=frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED}),
        page_size=7,
        descending=descending,
    )
    got = [iid for iid in all_pages(items, query) if items[int(iid[1:])].name != "c"]
    assert got == expected


def test_order_parameter() -> None:
    assert parse_query({"order": "desc"}, []).descending
    assert not parse_query({"order": "ASC"}, []).descending
    assert not parse_query({}, []).descending
    with pytest.raises(BadRequest, match="order must be asc or desc"):
        parse_query({"order": "newest"}, [])


def test_a_page_of_100_out_of_100_000_instances(capsys: pytest.CaptureFixture[str]) -> None:
    """Correct at the size the issue names; the time is printed for the record, not asserted
    (this machine is shared, so a timed assertion would only be flaky)."""
    items = states(100_000)
    timings = {}
    for label, query in {
        "newest first, no filter": Query(page_size=100, descending=True),
        "oldest first, RUNNING only": Query(page_size=100, statuses=frozenset({RuntimeStatus.RUNNING})),
    }.items():
        started = time.perf_counter()
        page = list_instances(items, query)
        timings[label] = (time.perf_counter() - started) * 1000
        expected = sorted(
            (s for s in items if not query.statuses or s.status in query.statuses),
            key=lambda s: (s.created_at, s.instance_id),
            reverse=query.descending,
        )[:100]
        assert [i.instance_id for i in page.instances] == [s.instance_id for s in expected]
        assert page.continuation_token is not None
    started = time.perf_counter()
    assert sum(status_counts(items).values()) == 100_000
    timings["counts by status"] = (time.perf_counter() - started) * 1000
    with capsys.disabled():
        print(
            "\n100,000 instances, one page of 100: "
            + ", ".join(f"{label} {ms:.0f} ms" for label, ms in timings.items())
        )


def test_counts_have_every_status() -> None:
    items = states(50)
    counts = status_counts(items)
    assert set(counts) == {s.value for s in RuntimeStatus}
    assert sum(counts.values()) == 50
    assert counts["RUNNING"] == sum(1 for s in items if s.status is RuntimeStatus.RUNNING)


def test_workflow_names_registered_and_seen() -> None:
    items = states(20)
    assert workflow_names(items, None) == {
        "registryKnown": False,
        "registered": [],
        "seen": ["a", "b", "c"],
    }
    assert workflow_names([], ("z", "y"))["registered"] == ["y", "z"]


def test_registered_names_come_from_the_app() -> None:
    names = load_registered_names("tests.dashboard.workflows:runtime")
    assert names is not None
    assert {"dash_tour", "api_gate", "order_approval"} <= set(names)
    assert load_registered_names(None) is None
    assert load_registered_names("no_such_module_here:runtime") is None
    assert load_registered_names("tests.dashboard.workflows:tour") is None  # not a runtime


def client() -> httpx.AsyncClient:
    # No lifespan: nothing connects to Kafka. Static files and the token check need none.
    app = create_app(ApiSettings.from_env({"DAPR_API_TOKEN": "t0ken"}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_static_files_are_served_without_the_token_with_a_strict_policy() -> None:
    async with client() as http:
        page = await http.get("/dashboard/")
        assert page.status_code == 200
        assert "Workflow instances" in page.text
        policy = page.headers["content-security-policy"]
        assert "script-src 'self'" in policy
        assert "unsafe-inline" not in policy
        assert page.headers["x-content-type-options"] == "nosniff"
        redirect = await http.get("/dashboard")
        assert redirect.headers["location"] == "/dashboard/"
        script = await http.get("/dashboard/js/instances.js")
        assert script.status_code == 200
        assert "javascript" in script.headers["content-type"]


@pytest.mark.parametrize(
    "path",
    [
        "/dashboardx",
        "/v1.0/headrace/counts",
        "/v1.0/headrace/workflow-names",
        "/v1.0/workflows/dapr",
    ],
)
async def test_everything_else_still_needs_the_token(path: str) -> None:
    async with client() as http:
        assert (await http.get(path)).status_code == 401


def _static_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in STATIC.rglob("*") if p.suffix in suffixes)


def test_scripts_never_parse_data_as_markup() -> None:
    """Rendering goes through textContent and DOM APIs (dom.js), so data is always text."""
    forbidden = re.compile(
        r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|"
        r"DOMParser|createContextualFragment|srcdoc"
    )
    scripts = _static_files(".js")
    assert len(scripts) >= 8
    for script in scripts:
        for number, line in enumerate(script.read_text().splitlines(), 1):
            assert not forbidden.search(line), f"{script.name}:{number}: {line.strip()}"


def test_pages_load_nothing_from_elsewhere_and_have_no_inline_script() -> None:
    for path in _static_files(".html", ".css", ".js"):
        text = path.read_text()
        # The SVG namespace is a name, not an address: nothing is fetched from it.
        text = text.replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name
        assert "@import" not in text, path.name
        if path.suffix == ".html":
            tags = re.findall(r"<script\b[^>]*>(.*?)</script>", text, re.S)
            assert tags and all(body.strip() == "" for body in tags), path.name
            assert not re.search(r"\son[a-z]+=", text), f"inline handler in {path.name}"


def test_package_data_covers_the_static_files() -> None:
    """pyproject.toml ships static/ with the package (a wheel would have no dashboard else)."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["api.dashboard"]
    package = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            relative = path.relative_to(package)
            assert any(relative.match(p) for p in patterns), f"{relative} is not package data"
