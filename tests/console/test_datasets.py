"""The Datasets pages in a real browser: upload with a progress bar, the report with errors by line and the
offending text, the token histogram and class balance, prepare with one click, a fine-tune started from the page,
the list, upload errors shown as the API's message, and a foreign file as a plain 404."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import TEST_MAX_UPLOAD_BYTES, Gateway, Tenant, make_tenant, wait_until_validated
from tests.console.conftest import Console

BAD_LINE = '{"prompt": "broken line three", "completion": oops'


def jsonl(rows: list[Any]) -> bytes:
    """Rows as JSONL; a ``str`` row is written as it is (a malformed line)."""
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def sentiment_rows() -> list[dict[str, str]]:
    """Classification-like data of varied lengths, two labels without a leading space, and two duplicates."""
    rows = [
        {
            "prompt": f"Review {i}: "
            + "the product was "
            + ("really " * (i % 7))
            + ("great" if i % 3 else "awful")
            + "\n\n###\n\n",
            "completion": "positive" if i % 3 else "negative",
        }
        for i in range(30)
    ]
    return [*rows, rows[1], rows[2]]


def record_progress(page: Page) -> list[tuple[float, float]]:
    """Every value the upload's <progress> takes, as (value, max), reported even if the page navigates away."""
    seen: list[tuple[float, float]] = []
    page.expose_function("recordProgress", lambda value, maximum: seen.append((value, maximum)))
    page.evaluate(
        """() => {
          const bar = document.getElementById("upload-progress");
          new MutationObserver(() => window.recordProgress(bar.value, bar.max))
            .observe(bar, { attributes: true, attributeFilter: ["value"] });
        }"""
    )
    return seen


def upload_via_form(page: Page, name: str, content: bytes, purpose: str | None = None) -> None:
    form = page.get_by_test_id("upload-form")
    form.locator('input[name="file"]').set_input_files(
        {"name": name, "mimeType": "application/jsonl", "buffer": content}
    )
    if purpose is not None:
        form.get_by_label("Purpose").select_option(purpose)
    form.get_by_role("button", name="Upload").click()


def test_upload_shows_the_error_with_its_line(console: Console, tenant: Tenant) -> None:
    page = console.goto("/console/datasets")
    expect(page.get_by_test_id("datasets-empty")).to_contain_text("No fine-tune files yet")
    rows: list[Any] = [{"prompt": f"Question {i}\n\n###\n\n", "completion": f" answer {i}\n"} for i in range(12)]
    rows[2] = BAD_LINE
    long_line = '{"prompt": "' + "x" * 3000 + '", oops'
    rows[6] = long_line
    progress = record_progress(page)
    upload_via_form(page, "broken.jsonl", jsonl(rows))

    expect(page).to_have_url(re.compile(r"/console/datasets/file-[\w-]+$"))
    file_id = page.url.rsplit("/", 1)[1]
    # Validation runs in the background: if it is still running, the page says so and reloads itself when done.
    table = page.get_by_test_id("error-lines")
    expect(table).to_be_visible()
    third = table.locator('tr[data-line="3"]')
    expect(third.get_by_test_id("error-line-number")).to_have_text("3")
    expect(third).to_contain_text("not valid JSON")
    expect(third.get_by_test_id("error-line-text")).to_have_text(BAD_LINE)
    # A long line is shown cut to 500 characters, marked as cut.
    seventh = table.locator('tr[data-line="7"]').get_by_test_id("error-line-text")
    expect(seventh).to_have_text(long_line[:500] + "…")
    expect(table.locator("tr[data-line]")).to_have_count(2)
    expect(page.get_by_test_id("n-errors")).to_have_text("2")
    expect(page.get_by_test_id("file-status")).to_have_text("error")
    expect(page.get_by_test_id("validation-error")).to_contain_text("line 3")
    # An invalid file gets no fine-tune form, but prepare can drop the bad lines.
    expect(page.get_by_test_id("start-fine-tune")).to_have_count(0)
    expect(page.locator('[data-code="invalid_examples"] input[type="checkbox"]')).to_be_checked()
    assert tenant.client.files.retrieve(file_id).status == "error"
    # The upload's progress bar went up to its maximum and never back.
    assert progress, "the progress bar never moved"
    assert progress[-1][0] == progress[-1][1] == 100, progress
    assert [v for v, _ in progress] == sorted(v for v, _ in progress), progress
    console.shot("dataset-report")

    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(table).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the report scrolls sideways on a phone ({width}px)"


def test_a_valid_dataset_report_prepare_and_fine_tune(console: Console, tenant: Tenant) -> None:
    rows = sentiment_rows()
    upload = tenant.client.files.create(file=("reviews.jsonl", jsonl(rows)), purpose="fine-tune")
    assert wait_until_validated(tenant.client, upload.id).status == "processed"
    page = console.goto(f"/console/datasets/{upload.id}")
    expect(page.get_by_test_id("validation-ok")).to_be_visible()
    expect(page.get_by_test_id("n-examples")).to_have_text(str(len(rows)))
    expect(page.get_by_test_id("error-lines")).to_have_count(0)

    # The histogram is drawn by Chart.js from the report's bins: every example is in one bar.
    page.wait_for_function("() => window.Chart && Chart.getChart(document.getElementById('token-histogram'))")
    bars = page.evaluate("() => Chart.getChart(document.getElementById('token-histogram')).data.datasets[0].data")
    assert sum(bars) == len(rows) and len(bars) > 1, bars
    with console.api() as http:
        report = http.get(f"/v1/datasets/{upload.id}/report").json()
    assert [b["count"] for b in report["tokens"]["histogram"]] == bars
    assert report["tokens"]["histogram"][0]["start"] == report["tokens"]["min"]
    assert report["tokens"]["histogram"][-1]["end"] == report["tokens"]["max"]

    balance = page.get_by_test_id("class-balance")
    expect(balance.get_by_test_id("class-row")).to_have_count(2)
    expect(balance.get_by_test_id("class-row").first).to_contain_text("positive")
    expect(balance.get_by_test_id("class-row").first).to_contain_text("22")
    expect(balance.get_by_test_id("class-row").first).to_contain_text("68.8%")

    duplicates = page.locator('[data-code="duplicates"] input[type="checkbox"]')
    expect(duplicates).to_be_checked()
    expect(page.locator('[data-code="no_leading_whitespace"] input[type="checkbox"]')).to_be_checked()
    page.get_by_test_id("prepare").click()

    expect(page).not_to_have_url(re.compile(re.escape(upload.id) + "$"))
    expect(page).to_have_url(re.compile(r"/console/datasets/file-[\w-]+$"))
    prepared_id = page.url.rsplit("/", 1)[1]
    prepared = tenant.client.files.retrieve(prepared_id)
    assert prepared.model_extra and prepared.model_extra["source_file_id"] == upload.id
    assert prepared.filename == "reviews_prepared.jsonl"
    expect(page.get_by_role("heading", name="reviews_prepared.jsonl")).to_be_visible()
    expect(page.get_by_test_id("prepared-from")).to_contain_text("reviews.jsonl")
    # The prepared copy is validated like any upload; its page waits and then shows it clean.
    expect(page.get_by_test_id("validation-ok")).to_be_visible()
    expect(page.get_by_test_id("n-examples")).to_have_text(str(len(rows) - 2))
    expect(page.locator('[data-code="duplicates"]')).to_have_count(0)

    form = page.get_by_test_id("start-fine-tune")
    form.get_by_label("Base model").select_option("tiny-smollm2")
    form.get_by_label("Validation file").select_option(upload.id)
    form.get_by_label("Suffix").fill("reviews")
    form.get_by_label("Epochs").fill("2")
    form.get_by_test_id("start-job").click()
    expect(page).to_have_url(re.compile(r"/console/jobs/ftjob-[\w-]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    job = tenant.client.fine_tuning.jobs.retrieve(job_id)
    assert (job.model, job.training_file, job.validation_file) == ("tiny-smollm2", prepared_id, upload.id)
    assert job.method is not None and job.method.supervised is not None
    assert job.method.supervised.hyperparameters is not None
    assert job.method.supervised.hyperparameters.n_epochs == 2
    assert job.status in {"validating_files", "queued"}


def test_the_list_shows_the_uploads(console: Console, tenant: Tenant) -> None:
    names = ["first.jsonl", "second.jsonl"]
    ids = [tenant.client.files.create(file=(name, jsonl(sentiment_rows())), purpose="fine-tune").id for name in names]
    notes = tenant.client.files.create(file=("notes.jsonl", b'{"a": 1}\n'), purpose="user_data")
    for file_id in ids:
        wait_until_validated(tenant.client, file_id)
    page = console.goto("/console/datasets")
    table = page.get_by_test_id("datasets-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    # Newest first, with their facts, each linking to its page.
    expect(table.locator("tbody tr").first).to_contain_text("second.jsonl")
    expect(table.locator("tbody tr").first).to_contain_text("processed")
    expect(table.locator("tbody tr").first).to_contain_text("32")
    expect(table).not_to_contain_text("notes.jsonl")
    console.shot("datasets")
    page.get_by_role("link", name="first.jsonl").click()
    expect(page).to_have_url(re.compile(re.escape(ids[0]) + "$"))

    # Any purpose: the other files show too; a purpose with no file says so.
    page.goto(console.url("/console/datasets?purpose="))
    expect(page.get_by_test_id("datasets-table")).to_contain_text("notes.jsonl")
    page.goto(console.url("/console/datasets?purpose=batch"))
    expect(page.get_by_test_id("datasets-empty")).to_contain_text("No file matches this filter")
    assert notes.id not in page.content()


def test_the_list_is_paginated(console: Console, tenant: Tenant) -> None:
    made = [
        tenant.client.files.create(file=(f"note-{i:02}.jsonl", b'{"a": 1}\n'), purpose="user_data").id
        for i in range(26)
    ]
    page = console.goto("/console/datasets?purpose=user_data")
    rows = page.get_by_test_id("datasets-table").locator("tbody tr")
    expect(rows).to_have_count(25)
    expect(rows.first).to_contain_text("note-25.jsonl")
    page.get_by_role("button", name="Older files").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(made[0])


def test_upload_errors_show_the_api_message(console: Console) -> None:
    page = console.goto("/console/datasets")
    too_big = jsonl([{"prompt": "p" * 1000, "completion": " c"}] * (2 * TEST_MAX_UPLOAD_BYTES // 1000))
    upload_via_form(page, "big.jsonl", too_big)
    flash = page.get_by_test_id("flash-error")
    expect(flash).to_contain_text(f"this gateway accepts files up to {TEST_MAX_UPLOAD_BYTES} bytes")
    expect(page).to_have_url(re.compile(r"/console/datasets$"))
    expect(page.get_by_role("button", name="Upload")).to_be_enabled()

    # A purpose the API refuses (the page offers only good ones: this one is added by hand).
    page.get_by_test_id("upload-form").get_by_label("Purpose").evaluate(
        "select => select.add(new Option('fine-tune-results', 'fine-tune-results'))"
    )
    upload_via_form(page, "ok.jsonl", jsonl(sentiment_rows()), purpose="fine-tune-results")
    expect(flash).to_contain_text("'fine-tune-results' is not a valid purpose for an upload")
    with console.api() as http:
        assert http.get("/v1/files").json()["data"] == []


def test_a_foreign_file_is_a_plain_404(gateway: Gateway, console: Console) -> None:
    other = make_tenant(gateway)
    theirs = other.client.files.create(file=("theirs.jsonl", jsonl(sentiment_rows())), purpose="fine-tune")
    response = console.page.goto(console.url(f"/console/datasets/{theirs.id}"))
    assert response is not None and response.status == 404
    expect(console.page.get_by_test_id("error-page")).to_contain_text("Not found")
    expect(console.page.get_by_test_id("error-page")).not_to_contain_text("theirs.jsonl")
