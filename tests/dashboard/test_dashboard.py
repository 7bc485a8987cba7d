"""End-to-end: the dashboard in headless Chromium against the running stack (Kafka, engine, API).

Every wait is on a condition with a deadline (Playwright's `expect`), never a sleep.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.api.conftest import new_id, wait_status
from tests.api.support import ApiServer
from tests.dashboard.conftest import SCREENSHOTS, TOKEN, PageWatch, new_context

pytestmark = pytest.mark.kafka

#: How long the page may take to show what the engine did (it polls with back-off, 1 s at first).
SETTLE_MS = 30_000
SCRIPT = "<script>alert(1)</script>"


def start(http: httpx.Client, name: str, body: str | None = None, instance_id: str | None = None) -> str:
    params = {"instanceID": instance_id} if instance_id else None
    response = http.post(f"/v1.0/workflows/dapr/{quote(name, safe='')}/start", params=params, content=body or b"")
    assert response.status_code == 202, response.text
    return str(response.json()["instanceID"])


def open_instance(page: Page, instance_id: str) -> None:
    page.goto(f"/dashboard/instance.html?id={quote(instance_id)}")


def expect_status(page: Page, status: str) -> None:
    expect(page.locator("#status")).to_have_text(status, timeout=SETTLE_MS)


def confirm(page: Page, button: str) -> None:
    page.click(button)
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator("#confirm-dialog")).to_have_count(0)


def table_ids(page: Page) -> list[str]:
    return page.locator("#instances tbody tr td.id").all_inner_texts()


def count_of(page: Page, status: str):
    return page.locator(f"#counts [data-status='{status}'] .count-value")


def created_at(body: dict) -> datetime:
    return datetime.fromisoformat(body["createdAt"].replace("Z", "+00:00"))


def local_input(moment: datetime) -> str:
    """A datetime-local input's value (the browser runs in UTC), to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def test_static_files_are_open_but_data_needs_the_token(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url, timeout=10) as bare:
        index = bare.get("/dashboard/")
        assert index.status_code == 200
        assert "script-src 'self'" in index.headers["content-security-policy"]
        assert bare.get("/dashboard/js/api.js").status_code == 200
        assert bare.get("/dashboard", follow_redirects=False).headers["location"] == "/dashboard/"
        for path in (
            "/v1.0/workflows/dapr",
            "/v1.0/headrace/counts",
            "/v1.0/headrace/workflow-names",
        ):
            assert bare.get(path).status_code == 401, path


def test_no_data_until_the_token_is_given(browser, api: ApiServer, http: httpx.Client) -> None:
    instance = start(http, "api_echo", "1")
    wait_status(http, instance, "COMPLETED")
    context = new_context(browser, api, token=None)
    page = context.new_page()
    watch = PageWatch()
    watch.attach(page)
    try:
        page.goto("/dashboard/")
        expect(page.locator("#token-dialog")).to_be_visible()
        expect(page.locator("#instances tbody tr")).to_have_count(0)
        expect(page.locator("#counts button")).to_have_count(0)
        page.click("#token-cancel")
        expect(page.locator("#message")).to_contain_text("needs its token")
        expect(page.locator("#instances tbody tr")).to_have_count(0)

        page.click("#token-button")
        page.fill("#token-input", "wrong-token")
        page.click("#token-submit")
        expect(page.locator("#token-dialog")).to_contain_text("refused")
        page.fill("#token-input", TOKEN)
        page.click("#token-submit")
        expect(page.locator(f"#instances tbody tr[data-id='{instance}']")).to_have_count(1)
        expect(page.locator("#counts [data-status='ALL'] .count-value")).not_to_have_text("0")
    finally:
        context.close()
    assert watch.errors == []


def test_start_from_the_ui_and_watch_it_complete(page: Page, http: httpx.Client) -> None:
    page.goto("/dashboard/")
    expect(page.locator("#workflow-names option[value='api_echo']")).to_have_count(1)
    page.click("#start-button")
    page.fill("#start-name", "api_echo")
    instance = new_id("ui")
    page.fill("#start-id", "has space")
    expect(page.locator("#start-error")).to_contain_text("letters, digits")
    page.fill("#start-id", instance)
    page.fill("#start-input", '{"n": 5,')
    expect(page.locator("#start-error")).to_contain_text("Not valid JSON")
    expect(page.locator("#start-submit")).to_be_disabled()
    page.fill("#start-input", '{"n": 5}')
    expect(page.locator("#start-submit")).to_be_enabled()
    page.click("#start-submit")

    expect(page).to_have_url(re.compile(rf"instance\.html\?id={instance}$"))
    expect_status(page, "COMPLETED")
    expect(page.locator("#output")).to_contain_text('"received"')
    expect(page.locator("#output")).to_contain_text('"n": 5')
    expect(page.locator("#act-purge")).to_be_enabled()
    expect(page.locator("#act-pause")).to_be_disabled()
    assert wait_status(http, instance, "COMPLETED")["workflowName"] == "api_echo"


def test_raise_an_event_on_a_waiting_instance(page: Page, http: httpx.Client) -> None:
    instance = start(http, "api_gate", '{"order": 1}')
    open_instance(page, instance)
    expect_status(page, "RUNNING")
    expect(page.locator("#custom-status")).to_have_text("waiting", timeout=SETTLE_MS)

    page.click("#act-raise")
    page.fill("#event-name", "go")
    page.fill("#event-payload", "{")
    expect(page.locator("#event-error")).to_contain_text("Not valid JSON")
    expect(page.locator("#event-send")).to_be_disabled()
    page.fill("#event-payload", "21")
    confirm(page, "#event-send")

    expect_status(page, "COMPLETED")
    expect(page.locator("#output")).to_contain_text('"doubled": 42')
    expect(page.locator("#timeline g[data-kind='event']")).to_have_count(1)
    expect(page.locator("#timeline g[data-kind='activity']")).to_have_count(1)


def test_pause_resume_terminate_and_purge(page: Page, http: httpx.Client) -> None:
    instance = start(http, "api_gate", "7")
    open_instance(page, instance)
    expect_status(page, "RUNNING")
    expect(page.locator("#act-resume")).to_be_disabled()

    page.click("#act-pause")  # asked first: cancelling sends nothing
    page.click("#confirm-cancel")
    expect(page.locator("#confirm-dialog")).to_have_count(0)
    assert wait_status(http, instance, "RUNNING")["runtimeStatus"] == "RUNNING"

    confirm(page, "#act-pause")
    expect_status(page, "SUSPENDED")
    expect(page.locator("#act-resume")).to_be_enabled()
    confirm(page, "#act-resume")
    expect_status(page, "RUNNING")
    confirm(page, "#act-terminate")
    expect_status(page, "TERMINATED")
    expect(page.locator("#act-terminate")).to_be_disabled()
    confirm(page, "#act-purge")
    expect(page.locator("#message")).to_contain_text("purged", timeout=SETTLE_MS)
    assert http.get(f"/v1.0/workflows/dapr/{instance}").status_code == 404


def test_filter_search_and_page_through_the_list(page: Page, http: httpx.Client) -> None:
    ids = [start(http, "fan_out", "[1, 2]", new_id("fan")) for _ in range(12)]
    failed = start(http, "api_fail", '"no"')
    created = {i: created_at(wait_status(http, i, "COMPLETED")) for i in ids}
    wait_status(http, failed, "FAILED")
    newest_first = sorted(ids, key=lambda i: (created[i], i), reverse=True)

    # The name filter; the counts follow it. Pages of 10, newest first.
    page.goto("/dashboard/?size=10")
    page.fill("#f-name", "fan_out")
    expect(count_of(page, "COMPLETED")).to_have_text("12")
    expect(count_of(page, "FAILED")).to_have_text("0")
    expect(page.locator("#instances tbody tr")).to_have_count(10)
    assert table_ids(page) == newest_first[:10]
    page.click("#next")
    expect(page.locator("#page-label")).to_have_text("Page 2")
    expect(page.locator("#instances tbody tr")).to_have_count(2)
    assert table_ids(page) == newest_first[10:]
    expect(page.locator("#next")).to_be_disabled()
    page.click("#prev")
    expect(page.locator("#page-label")).to_have_text("Page 1")
    expect(page.locator("#instances tbody tr td.id").first).to_have_text(newest_first[0])

    # Time range: the API's bounds are exclusive; the inputs take local time (UTC here).
    earliest, latest = min(created.values()), max(created.values())
    page.select_option("#f-range", "custom")
    page.fill("#f-from", local_input(latest + timedelta(seconds=1)))
    expect(count_of(page, "ALL")).to_have_text("0")
    expect(page.locator("#message")).to_contain_text("No instance matches")
    page.fill("#f-from", local_input(earliest - timedelta(seconds=1)))
    page.fill("#f-to", local_input(latest + timedelta(seconds=1)))
    expect(count_of(page, "COMPLETED")).to_have_text("12")
    page.fill("#f-to", local_input(earliest.replace(microsecond=0)))
    expect(count_of(page, "ALL")).to_have_text("0")
    page.select_option("#f-range", "15m")
    expect(count_of(page, "COMPLETED")).to_have_text("12")
    assert "range=15m" in page.url

    # Status: the counts are the filter. Only failed instances, of any workflow.
    page.fill("#f-name", "")
    expect(count_of(page, "FAILED")).not_to_have_text("0")
    page.click("#counts [data-status='FAILED']")
    expect(page.locator("#instances tbody .status").filter(has_not_text="FAILED")).to_have_count(0)
    expect(page.locator(f"#instances tbody tr[data-id='{failed}']")).to_have_count(1)
    assert "status=FAILED" in page.url

    # Search by ID.
    page.click("#f-clear")
    page.fill("#search-id", ids[3])
    page.click("#search button")
    expect(page.locator("#instances tbody tr")).to_have_count(1)
    assert table_ids(page) == [ids[3]]
    page.fill("#search-id", "no-such-instance")
    page.click("#search button")
    expect(page.locator("#message")).to_contain_text("No instance has the ID no-such-instance")
    expect(page.locator("#instances tbody tr")).to_have_count(0)


def test_html_in_names_and_payloads_is_shown_as_text(page: Page, http: httpx.Client) -> None:
    # A workflow name may be any text: this one is not registered, so the instance fails with
    # the name in its error message too.
    name = "<img src=x onerror=alert(2)>"
    odd = start(http, name, f'"{SCRIPT}"', new_id("xss"))
    wait_status(http, odd, "FAILED")
    gate = start(http, "api_gate", f'"{SCRIPT}"', new_id("xss"))
    wait_status(http, gate, "RUNNING")

    page.goto(f"/dashboard/?id={odd}")
    row = page.locator(f"#instances tbody tr[data-id='{odd}']")
    expect(row.locator("td").nth(1)).to_have_text(name)
    # The names seen are offered to the filter and the start form, as option values.
    page.wait_for_function(
        "name => [...document.querySelectorAll('#workflow-names option')].some((o) => o.value === name)",
        arg=name,
    )

    open_instance(page, odd)
    expect_status(page, "FAILED")
    expect(page.locator("#facts")).to_contain_text(name)
    expect(page.locator("#failure-message")).to_contain_text(name)
    page.click("#failure-trace summary")
    expect(page.locator("#failure-stack")).to_contain_text(name)
    expect(page.locator("#input")).to_have_text(f'"{SCRIPT}"')

    open_instance(page, gate)
    expect_status(page, "RUNNING")
    page.click("#act-raise")
    page.fill("#event-name", "go")
    page.fill("#event-payload", f'"{SCRIPT}"')
    confirm(page, "#event-send")
    expect_status(page, "COMPLETED")
    expect(page.locator("#input")).to_have_text(f'"{SCRIPT}"')
    expect(page.locator("#output")).to_contain_text(f'"doubled": "{SCRIPT}"')
    expect(page.locator("#timeline .payload-note")).to_have_text(f'"{SCRIPT}"')
    page.click("#raw summary")
    expect(page.locator("#raw-json")).to_contain_text(SCRIPT)
    # Shown as text: the markup is escaped in the DOM, and no element came from a payload.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.inner_html("#input")
    assert page.locator("script").count() == 1  # the page's own module
    assert page.locator("img").count() == 0


def test_screenshots_of_both_pages(page: Page, http: httpx.Client) -> None:
    """The README's pictures: a list with every common status, and a rich instance."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    paused = start(http, "api_gate", '{"order": 2}', new_id("paused"))
    wait_status(http, paused, "RUNNING")
    assert http.post(f"/v1.0/workflows/dapr/{paused}/pause").status_code == 202
    wait_status(http, paused, "SUSPENDED")
    tour = start(http, "dash_tour", '{"id": 42, "items": ["kettle", "teapot"]}', new_id("order"))

    open_instance(page, tour)
    expect(page.locator("#custom-status")).to_contain_text("waiting for approval", timeout=SETTLE_MS)
    page.click("#act-raise")
    page.fill("#event-name", "approval")
    page.fill("#event-payload", '{"by": "ana", "ok": true}')
    confirm(page, "#event-send")
    expect_status(page, "COMPLETED")
    expect(page.locator("#timeline g[data-kind='child']")).to_have_count(1)
    expect(page.locator("#timeline g.slowest")).to_have_count(1)
    expect(page.locator("#child-links a")).to_have_text(f"{tour}-ship")
    page.screenshot(path=str(SCREENSHOTS / "instance.png"), full_page=True)

    page.click("#child-links a")
    expect(page.locator("#parent-link a")).to_have_text(tour, timeout=SETTLE_MS)

    page.goto("/dashboard/")
    expect(page.locator("#instances tbody tr").first).to_be_visible()
    expect(page.locator("#counts [data-status='SUSPENDED'] .count-value")).not_to_have_text("0")
    page.screenshot(path=str(SCREENSHOTS / "instances.png"))
    for picture in ("instance.png", "instances.png"):
        assert (SCREENSHOTS / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
