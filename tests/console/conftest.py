"""The console in a real browser: Debian's Chromium (/usr/bin/chromium) driven by Playwright for Python.

Playwright's own browser download does not work here, so the browser is the system's (``make test`` installs the
``chromium`` package when it is missing). Without it these tests fail, never skip. Every test gets a fresh browser
context (its own cookies); ``Console.shot`` writes a screenshot to ``build/test-artifacts/console/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import Gateway, Tenant, make_tenant

CHROMIUM = os.environ.get("FTGW_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "console"
# As the machine's notes say: without the background-networking flags Chromium keeps dialling Google's hosts,
# which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


# Module scope, not session: Playwright's sync API runs an event loop in this thread while it is started, and
# asyncio.run() in a later async test of the session would fail ("cannot be called from a running event loop").
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"Chromium is not installed at {CHROMIUM}: `make test` installs Debian's chromium package")
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@dataclass
class Console:
    """A browser signed in to the console of one gateway, as one key."""

    gateway: Gateway
    page: Page
    key: str

    def url(self, path: str) -> str:
        return self.gateway.base_url + path

    def goto(self, path: str) -> Page:
        self.page.goto(self.url(path))
        return self.page

    def shot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def api(self) -> httpx.Client:
        return self.gateway.http(self.key)


def sign_in(page: Page, gateway: Gateway, key: str, path: str = "/console/jobs") -> None:
    page.goto(gateway.base_url + path)
    expect(page).to_have_url(re.compile(r"/console/sign-in\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(re.escape(path) + "$"))


def signed_in_client(gateway: Gateway, key: str) -> httpx.Client:
    """An HTTP client signed in to the console as a browser would be (the sign-in form's double-submit token,
    then the session cookie); its ``headers`` carry the session's CSRF token for API calls. Already open: use it
    with ``contextlib.closing``."""
    client = httpx.Client(base_url=gateway.base_url, timeout=30)
    form = client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token, form.text
    answer = client.post("/console/sign-in", data={"api_key": key, "csrf_token": token[1], "next": "/console/jobs"})
    assert answer.status_code == 303, answer.text
    page = client.get("/console/jobs")
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', page.text)
    assert csrf, page.text
    client.headers["X-CSRF-Token"] = csrf[1]
    return client


@pytest.fixture
def open_console(browser: Browser) -> Iterator[object]:
    """``open_console(gateway, key, path)``: a fresh browser context signed in with ``key``, on ``path``."""
    contexts = []

    def open_(gateway: Gateway, key: str, path: str = "/console/jobs") -> Console:
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        sign_in(page, gateway, key, path)
        return Console(gateway, page, key)

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture
def console(gateway: Gateway, tenant: Tenant, open_console) -> Console:  # type: ignore[no-untyped-def]
    """A member of a fresh project, signed in to the shared gateway's console."""
    return open_console(gateway, tenant.key)  # type: ignore[no-any-return]


__all__ = ["Console", "make_tenant", "sign_in", "signed_in_client"]
