"""Admin in the console: switch projects, make and revoke keys; members are kept out."""

from __future__ import annotations

import httpx
from playwright.sync_api import expect

from tests.conftest import Gateway, Tenant
from tests.console.conftest import Console


def test_an_admin_switches_projects_and_manages_keys(gateway: Gateway, tenant: Tenant, open_console) -> None:  # type: ignore[no-untyped-def]
    admin: Console = open_console(gateway, gateway.admin_key, "/console/admin")
    page = admin.page
    with gateway.http(gateway.admin_key) as http:
        name = http.get(f"/v1/projects/{tenant.project_id}").json()["name"]
    page.get_by_role("button", name=f"Switch to {name}").click()
    expect(page.get_by_test_id("project-id")).to_have_text(tenant.project_id)
    admin.shot("admin")

    # Every page now shows the tenant's data: its file, uploaded with its own key, is listed through the API too.
    tenant.client.files.create(file=("a.jsonl", b'{"prompt": "a", "completion": " b"}\n'), purpose="fine-tune")
    cookie = next(c for c in page.context.cookies() if c["name"] == "ftgw_session")
    with httpx.Client(base_url=gateway.base_url, cookies={"ftgw_session": cookie["value"]}) as session:
        assert [f["filename"] for f in session.get("/v1/files").json()["data"]] == ["a.jsonl"]

    page.get_by_label("Name", exact=True).fill("chatbot-prod")
    page.get_by_role("button", name="Create key").click()
    secret_box = page.get_by_test_id("new-secret")
    expect(secret_box).to_be_visible()
    secret = page.locator("#new-secret-value").inner_text()
    assert secret.startswith("sk-ftgw-")
    with gateway.http(secret) as http:
        assert http.get("/v1/files").status_code == 200  # the new key works, in the tenant's project

    page.reload()
    row = page.get_by_test_id("keys-table").locator("tr", has_text="chatbot-prod")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_test_id("keys-table").locator("tr", has_text="chatbot-prod")).to_contain_text("revoked")
    with gateway.http(secret) as http:
        assert http.get("/v1/files").status_code == 401


def test_a_member_cannot_reach_admin(console: Console) -> None:
    expect(console.page.get_by_role("link", name="Admin")).to_have_count(0)
    response = console.page.goto(console.url("/console/admin"))
    assert response is not None and response.status == 403
    expect(console.page.get_by_test_id("error-page")).to_contain_text("admin")


def test_a_member_cannot_switch_projects(gateway: Gateway, console: Console, tenant: Tenant) -> None:
    csrf = console.page.locator('meta[name="csrf-token"]').get_attribute("content")
    response = console.page.request.post(
        console.url("/console/project"),
        form={"project_id": "proj-someone-else", "csrf_token": csrf or "", "next": "/console/jobs"},
    )
    assert response.status == 403
    console.page.reload()
    expect(console.page.get_by_test_id("project-id")).to_have_text(tenant.project_id)
