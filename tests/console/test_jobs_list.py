"""The jobs list: every job of the project with its status and model, filtered by status and metadata."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.conftest import Tenant
from tests.console.conftest import Console

TRAINING = b'{"prompt": "a ->", "completion": " b END"}\n' * 12


def test_filter_jobs_by_status_and_metadata(console: Console, tenant: Tenant) -> None:
    upload = tenant.client.files.create(file=("t.jsonl", TRAINING), purpose="fine-tune")
    support = tenant.client.fine_tuning.jobs.create(
        model="tiny-smollm2", training_file=upload.id, suffix="support", metadata={"team": "support"}
    )
    search = tenant.client.fine_tuning.jobs.create(
        model="tiny-smollm2", training_file=upload.id, suffix="search", metadata={"team": "search"}
    )
    tenant.client.fine_tuning.jobs.cancel(search.id)

    page = console.goto("/console/jobs")
    table = page.get_by_test_id("jobs-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    # Newest first, each row links to its job.
    expect(table.locator("tbody tr").first).to_contain_text(search.id)
    expect(table.locator("tbody tr", has_text=search.id)).to_contain_text("cancelled")
    console.shot("jobs")

    page.get_by_label("Metadata").fill("team=support")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text(support.id)

    page.get_by_label("Metadata").fill("")
    page.get_by_label("Status").select_option("cancelled")
    page.get_by_role("button", name="Filter").click()
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text(search.id)
    assert "status=cancelled" in page.url  # the filtered list is a link that can be shared

    page.get_by_label("Status").select_option("succeeded")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No job matches these filters.")).to_be_visible()

    table_link = console.goto("/console/jobs").get_by_role("link", name=support.id)
    table_link.click()
    expect(page).to_have_url(console.url(f"/console/jobs/{support.id}"))


def test_a_bad_metadata_filter_is_explained(console: Console) -> None:
    response = console.page.goto(console.url("/console/jobs?metadata=team"))
    assert response is not None and response.status == 400
    expect(console.page.get_by_test_id("error-page")).to_contain_text("key=value")
