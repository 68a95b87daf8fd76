"""A job's page: its facts and hyperparameters, loss and accuracy curves that grow from the events stream while the
job trains (no reload), checkpoints that become alias versions, results.csv, the eval against the base, and the
cancel / pause / resume buttons acting through the API."""

from __future__ import annotations

import json
import re

from openai import OpenAI
from playwright.sync_api import Dialog, Page, expect

from tests.conftest import Gateway, Tenant, make_tenant, wait_until_validated
from tests.console.conftest import Console

MODEL = "tiny-smollm2"
# The live test's job: 30 examples one at a time for 2 epochs, 60 steps, over ten seconds on the tiny model, so the
# page is open while the job trains and sees its curves grow.
STEPS = 60
LIVE_STATUSES = re.compile(r"^(validating_files|queued|running)$")


def _rows(n: int, start: int = 0) -> list[dict[str, str]]:
    return [{"prompt": f"Is {i} a number?\n\n###\n\n", "completion": " yes END"} for i in range(start, start + n)]


def _upload(client: OpenAI, rows: list[dict[str, str]], name: str) -> str:
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    file = client.files.create(file=(name, data), purpose="fine-tune")
    assert wait_until_validated(client, file.id).status == "processed"
    return file.id


def _points(page: Page) -> int:
    return int(page.get_by_test_id("curves").get_attribute("data-points") or "0")


def _plotted(page: Page) -> int:
    """Points actually drawn in the loss chart (Chart.js's own data), training loss series."""
    return int(page.evaluate("() => Chart.getChart('loss-chart').data.datasets[0].data.length"))


def test_the_curves_grow_live_while_the_job_trains(training_gateway: Gateway, open_console) -> None:  # type: ignore[no-untyped-def]
    tenant: Tenant = make_tenant(training_gateway)
    client = tenant.client
    training = _upload(client, _rows(30), "train.jsonl")
    validation = _upload(client, _rows(10, 100), "valid.jsonl")
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        validation_file=validation,
        suffix="console",
        metadata={"team": "support"},
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 10}},
        },
    )
    console: Console = open_console(training_gateway, tenant.key, f"/console/jobs/{job.id}")
    page = console.page
    expect(page.get_by_test_id("job-status")).to_have_text(LIVE_STATUSES)
    page.evaluate("() => { window.notReloaded = true; }")
    facts = page.get_by_test_id("job-facts")
    expect(facts.get_by_role("link", name=training)).to_have_attribute("href", f"/console/datasets/{training}")
    expect(facts.get_by_role("link", name=validation)).to_have_attribute("href", f"/console/datasets/{validation}")
    expect(facts).to_contain_text("team=support")

    # The first points come from the stream (or the first render), then more arrive while the page stays put.
    curves = page.get_by_test_id("curves")
    expect(curves).to_have_attribute("data-points", re.compile(r"^[1-9]\d*$"), timeout=120_000)
    first = _points(page)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
    page.wait_for_function(
        "n => Number(document.getElementById('curves').dataset.points) > n", arg=first, timeout=60_000
    )
    assert _points(page) > first
    assert _plotted(page) >= first + 1
    expect(page.get_by_test_id("curves-empty")).to_be_hidden()
    expect(page.get_by_test_id("job-progress")).to_be_visible()
    assert page.evaluate("() => window.notReloaded") is True

    # It ends: the status, checkpoints, results and eval appear in place, still without a reload.
    expect(page.get_by_test_id("job-status")).to_have_text("succeeded", timeout=240_000)
    done = client.fine_tuning.jobs.retrieve(job.id)
    assert done.status == "succeeded" and done.fine_tuned_model
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert len(metrics) == STEPS
    expect(curves).to_have_attribute("data-points", str(STEPS))
    assert _plotted(page) == STEPS
    # Validation runs at each epoch's end: a point per epoch on the validation curves.
    assert page.evaluate("() => Chart.getChart('loss-chart').data.datasets[1].data.length") == 2
    assert page.evaluate("() => Chart.getChart('accuracy-chart').data.datasets[1].data.length") == 2
    rows = page.get_by_test_id("checkpoint-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(f"{done.fine_tuned_model}:ckpt-step-{STEPS}")
    model_link = page.get_by_test_id("fine-tuned-model")
    expect(model_link).to_have_text(done.fine_tuned_model)
    expect(model_link).to_have_attribute("href", re.compile(r"^/console/playground\?models=ft%3A"))
    hyper = page.get_by_test_id("job-hyperparameters")
    expect(hyper).to_contain_text("batch_size")
    expect(hyper).to_contain_text("n_epochs")
    expect(page.get_by_test_id("events-list").locator("li").first).to_contain_text(
        re.compile("successfully completed|Evaluating|Eval on the validation file")
    )
    eval_link = page.get_by_test_id("eval-link")
    expect(eval_link).to_have_attribute("href", re.compile(r"^/console/evals/eval"))
    expect(page.get_by_test_id("eval-table").locator("tbody tr")).to_have_count(2)
    assert page.evaluate("() => window.notReloaded") is True

    # results.csv downloads with the page's own session.
    csv_link = page.get_by_test_id("results-csv")
    expect(csv_link).to_have_attribute("href", f"/v1/files/{done.result_files[0]}/content")
    results = page.request.get(console.url(csv_link.get_attribute("href") or ""))
    assert results.status == 200
    assert results.text().splitlines()[0].startswith("step,")
    assert len(results.text().strip().splitlines()) == STEPS + 1
    console.shot("job")

    _checkpoints_become_alias_versions(console, tenant)

    # On a phone the wide tables scroll inside their frames; the page itself never sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(page.get_by_test_id("checkpoints-table")).to_be_visible()
    # Chart.js resizes its canvases on the next frame: wait for the layout to settle.
    page.wait_for_function("() => document.documentElement.scrollWidth <= 391", timeout=5_000)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 391, f"the job page scrolls sideways on a phone ({width}px)"


def _checkpoints_become_alias_versions(console: Console, tenant: Tenant) -> None:
    """From the finished job's page: a checkpoint as a new version of an alias, and as a new alias."""
    page = console.page
    with console.api() as http:
        http.post("/v1/registry/aliases", json={"name": "support-bot"}).raise_for_status()
    rows = page.get_by_test_id("checkpoint-row")
    newest, oldest = rows.first, rows.last
    newest_model = newest.get_attribute("data-model")
    oldest_model = oldest.get_attribute("data-model")
    assert newest_model and oldest_model and newest_model != oldest_model

    # Adding to an alias that does not exist says so, with the API's message.
    newest.get_by_text("Make it an alias version").click()
    newest.get_by_label("Alias name").fill("no-such-alias")
    newest.get_by_role("button", name="Add version").click()
    expect(page.get_by_test_id("flash-error")).to_contain_text("no-such-alias")
    expect(page.get_by_test_id("flash-error")).to_contain_text("New alias")

    newest.get_by_label("Alias name").fill("support-bot")
    newest.get_by_label("Make it the active version now").check()
    newest.get_by_role("button", name="Add version").click()
    expect(page.get_by_test_id("flash-ok")).to_contain_text("support-bot version 1")
    oldest.get_by_text("Make it an alias version").click()
    oldest.get_by_label("Alias name").fill("first-epoch")
    oldest.get_by_role("button", name="New alias").click()
    expect(page.get_by_test_id("flash-ok")).to_contain_text("first-epoch version 1")

    with console.api() as http:
        versions = http.get("/v1/registry/aliases/support-bot/versions").json()["data"]
        assert [v["targets"][0]["model"] for v in versions] == [newest_model]
        assert f"step {STEPS}" in versions[0]["note"]
        assert http.get("/v1/registry/aliases/support-bot").json()["active_version"] == 1
        made = http.get("/v1/registry/aliases/first-epoch").json()
        assert made["active_version"] == 1
        first = http.get("/v1/registry/aliases/first-epoch/versions").json()["data"]
        assert [v["targets"][0]["model"] for v in first] == [oldest_model]
        assert http.get("/v1/registry/aliases/no-such-alias").status_code == 404
    # A created alias is offered by name in the other forms.
    expect(page.locator("#alias-names option[value='first-epoch']")).to_have_count(1)


def test_the_buttons_pause_resume_and_cancel_a_queued_job(gateway: Gateway, console: Console, tenant: Tenant) -> None:
    training = _upload(tenant.client, _rows(10), "train.jsonl")
    job = tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    page = console.goto(f"/console/jobs/{job.id}")
    status = page.get_by_test_id("job-status")
    expect(status).to_have_text("queued")
    page.evaluate("() => { window.notReloaded = true; }")
    expect(page.get_by_test_id("curves-empty")).to_contain_text("Training has not reported a step yet")
    expect(page.get_by_test_id("curves")).to_have_attribute("data-points", "0")
    expect(page.get_by_test_id("job-resume")).to_have_count(0)
    hyper = page.get_by_test_id("job-hyperparameters")
    expect(hyper).to_contain_text("n_epochs")
    expect(hyper).to_contain_text("auto")  # batch size: chosen when training starts

    page.get_by_test_id("job-pause").click()
    expect(status).to_have_text("paused")
    expect(page.get_by_test_id("job-pause")).to_have_count(0)
    page.get_by_test_id("job-resume").click()
    expect(status).to_have_text("queued")

    # Cancel asks first; dismissing it changes nothing.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.get_by_test_id("job-cancel").click()
    expect(status).to_have_text("queued")
    assert tenant.client.fine_tuning.jobs.retrieve(job.id).status == "queued"
    messages: list[str] = []

    def accept(dialog: Dialog) -> None:
        messages.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    page.get_by_test_id("job-cancel").click()
    expect(status).to_have_text("cancelled")
    assert messages and job.id in messages[0]
    expect(page.get_by_test_id("job-cancel")).to_have_count(0)
    expect(page.get_by_test_id("job-resume")).to_have_count(0)
    expect(page.get_by_test_id("events-list").locator("li").first).to_have_text(
        re.compile("Fine-tuning job cancelled$")
    )
    expect(page.get_by_test_id("live-state")).to_have_text("finished")
    assert tenant.client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert page.evaluate("() => window.notReloaded") is True

    # A cancelled job's page has no live stream left to follow, and renders without one.
    page.reload()
    expect(status).to_have_text("cancelled")
    expect(page.get_by_test_id("live-state")).to_have_text("finished")

    # On a phone: nothing scrolls sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    expect(status).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 391, f"the job page scrolls sideways on a phone ({width}px)"


def test_unknown_and_malformed_job_ids_are_error_pages(console: Console) -> None:
    response = console.page.goto(console.url("/console/jobs/ftjob-doesnotexist"))
    assert response is not None and response.status == 404
    expect(console.page.get_by_test_id("error-page")).to_contain_text("Not found")
    response = console.page.goto(console.url("/console/jobs/" + "x" * 65))
    assert response is not None and response.status == 400
