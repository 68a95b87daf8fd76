"""Signing in to the console: the key is used once and never kept in the browser, the session cookie is HttpOnly
and SameSite, state changes need the CSRF token, and tenancy holds (a foreign id is a plain 404)."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.conftest import Gateway, Tenant, make_tenant
from tests.console.conftest import Console


def test_sign_in_keeps_the_key_out_of_the_browser(console: Console, tenant: Tenant) -> None:
    page = console.page
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ftgw_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert tenant.key not in session["value"]
    storage = page.evaluate("() => JSON.stringify({...localStorage}) + JSON.stringify({...sessionStorage})")
    assert tenant.key not in storage
    assert tenant.key not in page.url
    assert tenant.key not in page.content()
    # The page cannot read the session cookie from script.
    assert "ftgw_session" not in page.evaluate("() => document.cookie")
    expect(page.get_by_test_id("project-id")).to_have_text(tenant.project_id)
    expect(page.get_by_test_id("jobs-empty")).to_contain_text("No fine-tuning jobs yet")
    console.shot("jobs-empty")


def test_wrong_key_is_refused_with_the_reason(gateway: Gateway, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(gateway.base_url + "/console/jobs")
    page.get_by_label("API key").fill("sk-ftgw-not-a-key-at-all-000000")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("sign-in-error")).to_contain_text("Incorrect API key")
    expect(page).to_have_url(re.compile(r"/console/sign-in"))
    assert not [c for c in context.cookies() if c["name"] == "ftgw_session"]
    context.close()


def _session_client(gateway: Gateway, console: Console) -> tuple[httpx.Client, str]:
    cookie = next(c for c in console.page.context.cookies() if c["name"] == "ftgw_session")
    csrf = console.page.locator('meta[name="csrf-token"]').get_attribute("content")
    assert csrf
    client = httpx.Client(base_url=gateway.base_url, cookies={"ftgw_session": cookie["value"]}, timeout=30)
    return client, csrf


def test_state_changes_need_the_csrf_token(gateway: Gateway, console: Console) -> None:
    client, csrf = _session_client(gateway, console)
    with client:
        # Reading with the cookie works: the console is a client of the same API.
        assert client.get("/v1/files").status_code == 200
        refused = client.post("/v1/registry/aliases", json={"name": "csrf-probe", "model": "tiny-smollm2"})
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "csrf_token_invalid"
        wrong = client.post(
            "/v1/registry/aliases",
            json={"name": "csrf-probe", "model": "tiny-smollm2"},
            headers={"X-CSRF-Token": csrf[::-1]},
        )
        assert wrong.status_code == 403
        # Nothing was made by the refused requests.
        assert client.get("/v1/registry/aliases/csrf-probe").status_code == 404
        made = client.post(
            "/v1/registry/aliases",
            json={"name": "csrf-probe", "model": "tiny-smollm2"},
            headers={"X-CSRF-Token": csrf},
        )
        assert made.status_code == 200, made.text
        # A sign-out form without the token is refused too.
        assert client.post("/console/sign-out", data={}).status_code == 403
        assert client.get("/v1/files").status_code == 200


def test_sign_out_ends_the_session(gateway: Gateway, console: Console) -> None:
    client, _ = _session_client(gateway, console)
    console.page.get_by_role("button", name="Sign out").click()
    expect(console.page).to_have_url(re.compile(r"/console/sign-in"))
    with client:
        gone = client.get("/v1/files")
        assert gone.status_code == 401
        assert gone.json()["error"]["code"] == "invalid_session"
    console.page.goto(console.url("/console/jobs"))
    expect(console.page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2Fjobs"))


def test_revoking_the_key_ends_its_console_sessions(gateway: Gateway, console: Console, tenant: Tenant) -> None:
    with gateway.http(gateway.admin_key) as admin:
        keys = admin.get(f"/v1/projects/{tenant.project_id}/api_keys").json()["data"]
        admin.delete(f"/v1/projects/{tenant.project_id}/api_keys/{keys[0]['id']}").raise_for_status()
    console.page.reload()
    expect(console.page).to_have_url(re.compile(r"/console/sign-in"))


def test_a_foreign_job_is_a_plain_404(gateway: Gateway, console: Console, tenant: Tenant) -> None:
    other = make_tenant(gateway)
    upload = other.client.files.create(
        file=("t.jsonl", b'{"prompt": "a", "completion": " b"}\n' * 10), purpose="fine-tune"
    )
    job = other.client.fine_tuning.jobs.create(model="tiny-smollm2", training_file=upload.id)
    response = console.page.goto(console.url(f"/console/jobs/{job.id}"))
    assert response is not None and response.status == 404
    expect(console.page.get_by_test_id("error-page")).to_contain_text("Not found")
    # Acting on it through the API with the console's session is a 404 as well, and changes nothing.
    client, csrf = _session_client(gateway, console)
    with client:
        cancel = client.post(f"/v1/fine_tuning/jobs/{job.id}/cancel", headers={"X-CSRF-Token": csrf})
        assert cancel.status_code == 404
    assert other.client.fine_tuning.jobs.retrieve(job.id).status != "cancelled"


def test_open_redirects_are_refused(gateway: Gateway, browser, tenant: Tenant) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    page.goto(gateway.base_url + "/console/sign-in?next=//example.invalid/x")
    page.get_by_label("API key").fill(tenant.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"^http://127\.0\.0\.1:\d+/console/jobs$"))
    context.close()


def test_docs_work_offline(gateway: Gateway, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context()
    page = context.new_page()
    hosts: list[str] = []
    page.on("request", lambda request: hosts.append(httpx.URL(request.url).host))
    page.goto(gateway.base_url + "/docs")
    expect(page.locator(".swagger-ui .opblock").first).to_be_visible()
    expect(page.get_by_text("/v1/fine_tuning/jobs").first).to_be_visible()
    assert set(hosts) == {"127.0.0.1"}, hosts
    context.close()


def test_the_layout_works_on_a_narrow_screen(console: Console) -> None:
    console.page.set_viewport_size({"width": 390, "height": 844})
    console.page.reload()
    expect(console.page.get_by_role("link", name="Playground")).to_be_visible()
    width = console.page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the page scrolls sideways on a phone ({width}px)"
    console.shot("jobs-narrow")
