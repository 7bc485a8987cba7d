"""The running stack for the dashboard tests, and headless Chromium (Debian's) driven by Playwright.

The stack is the REST API tests' one (tests/api): engine and worker in this process, the API as a
real `python -m api` process, here with a token and the workflow names of `workflows.runtime`.
Chromium comes from Debian's `chromium` package (`ops/dev test` installs it); Playwright's own
browser download is neither used nor needed.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.runtime.host import RuntimeHost
from engine.settings import Settings
from tests.api.support import ROOT, ApiServer
from tests.conftest import in_ci
from tests.dashboard.workflows import runtime

TOKEN = "dashboard-test-token"
#: Flags that work on this project's machines: no GPU, no sandbox (root), no network chatter.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where the tests write the README's screenshots (HEADRACE_SCREENSHOT_DIR to put them elsewhere).
SCREENSHOTS = Path(os.environ.get("HEADRACE_SCREENSHOT_DIR") or ROOT / "docs" / "screenshots")


def _missing(reason: str) -> None:
    # In CI a missing browser must fail: a skipped dashboard test proves nothing.
    if in_ci():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = os.environ.get("HEADRACE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        _missing(f"Chromium is not installed ({path}); `ops/dev test` installs Debian's chromium")
    return path


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str) -> Settings:
    return Settings.from_env(
        bootstrap_servers=kafka_bootstrap,
        partitions=4,
        topic_prefix=f"t.dashboard.{uuid.uuid4().hex[:8]}.",
        unknown_code_timeout=1.0,  # an unregistered name fails after 1 s (engine.core.unknown_code)
    )


@pytest.fixture(scope="module")
def host(settings: Settings) -> Iterator[RuntimeHost]:
    host = RuntimeHost(runtime.registry, settings)
    host.start(timeout=90)
    yield host
    host.stop()


@pytest.fixture(scope="module")
def api(host: RuntimeHost, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    env = {"DAPR_API_TOKEN": TOKEN, "HEADRACE_API_APP": "tests.dashboard.workflows:runtime"}
    server = ApiServer(settings, tmp_path_factory.mktemp("dashboard-logs"), env=env).start()
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(api: ApiServer) -> Iterator[httpx.Client]:
    with api.client(headers={"dapr-api-token": TOKEN}) as client:
        yield client


@pytest.fixture(scope="module")
def browser(chromium_executable: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh, empty profile directory of its own.
        browser = playwright.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


class PageWatch:
    """What a page did that it must not: script errors, and any alert/confirm/prompt."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.dialogs: list[str] = []

    def attach(self, page: Any) -> None:
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

        def on_dialog(dialog: Any) -> None:
            self.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)


def new_context(browser: Any, api: ApiServer, *, token: str | None = TOKEN) -> Any:
    context = browser.new_context(base_url=api.url, viewport={"width": 1280, "height": 860}, timezone_id="UTC")
    context.set_default_timeout(20_000)
    if token is not None:
        # As if the person had typed the token in this tab already (sessionStorage, per tab).
        context.add_init_script(f"sessionStorage.setItem('headrace.dapr-api-token', {json.dumps(token)});")
    return context


@pytest.fixture
def page(browser: Any, api: ApiServer) -> Iterator[Any]:
    context = new_context(browser, api)
    page = context.new_page()
    watch = PageWatch()
    watch.attach(page)
    yield page
    context.close()
    assert watch.dialogs == [], "the page opened a browser dialog (a script ran?)"
    assert watch.errors == [], "the page raised script errors"
