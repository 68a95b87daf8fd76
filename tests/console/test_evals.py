"""The evals pages: the list with its empty state, an eval's criteria and runs (cancel a queued one), and two runs
compared side by side, where the pass rates, their intervals and the differing rows are the comparison API's.

On the shared gateway runs stay queued (no worker); the comparison runs on ``training_gateway``, whose worker samples
and grades them for real on the tiny model.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from playwright.sync_api import Page, expect

from tests.conftest import Gateway, Tenant, make_tenant
from tests.console.conftest import Console
from tests.evals.test_api import ITEM_SCHEMA, LABEL_CHECK, MODEL, _completions
from tests.evals.test_execution import wait_for_run

ANSWERED: dict[str, Any] = {**LABEL_CHECK, "name": "Answered", "operation": "ne", "reference": ""}
TEXTS = ["I loved it", "Awful service", "It was fine", "Never again", "Best pizza in town", "Cold and late"]


def _eval(tenant: Tenant, name: str = "Sentiment") -> str:
    config = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
    return tenant.client.evals.create(name=name, data_source_config=config, testing_criteria=[LABEL_CHECK, ANSWERED]).id


def _source(model: str, rows: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
    template = [{"type": "message", "role": "user", "content": {"type": "input_text", "text": "{{item.text}}"}}]
    return _completions(
        rows,
        model=model,
        input_messages={"type": "template", "template": template},
        sampling_params={"temperature": 0, "max_completion_tokens": max_tokens, "seed": 7},
    )


def test_the_evals_list_explains_how_to_make_one(console: Console) -> None:
    page = console.goto("/console/evals")
    empty = page.get_by_test_id("evals-empty")
    expect(empty).to_contain_text("No evals yet")
    expect(empty).to_contain_text("ftgw evals create")
    expect(empty).to_contain_text("validation file")


def test_a_queued_run_can_be_canceled_from_the_eval_page(console: Console, tenant: Tenant) -> None:
    eval_id = _eval(tenant, "Queued")
    run = tenant.client.evals.runs.create(eval_id, data_source=_source(MODEL, [{"text": "Hi", "label": "x"}], 2))
    page = console.goto("/console/evals")
    row = page.get_by_test_id("evals-table").locator(f'tr[data-eval-id="{eval_id}"]')
    expect(row.get_by_test_id("latest-status")).to_have_text("queued")
    row.get_by_role("link", name="Queued").click()
    expect(page).to_have_url(re.compile(rf"/console/evals/{eval_id}$"))
    expect(page.get_by_test_id("criteria")).to_contain_text(
        "Passes when “{{sample.output_text}}” equals “{{item.label}}”."
    )
    expect(page.get_by_test_id("criteria")).to_contain_text("differs from “”")
    run_row = page.locator(f'tr[data-run-id="{run.id}"]')
    expect(run_row.get_by_test_id("run-status")).to_have_text("queued")
    page.once("dialog", lambda dialog: dialog.accept())
    run_row.get_by_role("button", name="Cancel").click()
    expect(run_row.get_by_test_id("run-status")).to_have_text("canceled")
    expect(run_row.get_by_role("button", name="Cancel")).to_have_count(0)
    assert tenant.client.evals.runs.retrieve(run.id, eval_id=eval_id).status == "canceled"


def test_a_foreign_eval_is_a_plain_404(console: Console, other_tenant: Tenant) -> None:
    theirs = _eval(other_tenant, "Theirs")
    runs = [
        other_tenant.client.evals.runs.create(theirs, data_source=_source(MODEL, [{"text": "a", "label": "b"}], 2)).id
        for _ in range(2)
    ]
    for path in (f"/console/evals/{theirs}", f"/console/evals/{theirs}/compare?run_ids={','.join(runs)}"):
        response = console.page.goto(console.url(path))
        assert response is not None and response.status == 404, path
        expect(console.page.get_by_test_id("error-page")).to_contain_text("Not found")
        expect(console.page.get_by_test_id("error-page")).not_to_contain_text("Theirs")
    missing = console.page.goto(console.url("/console/evals/eval_doesnotexist"))
    assert missing is not None and missing.status == 404


def _rates(page: Page, run_id: str) -> dict[str, tuple[float, float, float, int, int]]:
    """What the comparison table shows for one run: criterion -> (pass rate, low, high, passed, total)."""
    cells = page.locator(f'[data-testid="comparison-table"] tr[data-run-id="{run_id}"] td')
    found = {}
    for i in range(cells.count()):
        rate = cells.nth(i).get_by_test_id("rate")
        found[cells.nth(i).get_attribute("data-criterion") or ""] = (
            float(rate.get_attribute("data-pass-rate") or "nan"),
            float(rate.get_attribute("data-ci-low") or "nan"),
            float(rate.get_attribute("data-ci-high") or "nan"),
            int(rate.get_attribute("data-passed") or -1),
            int(rate.get_attribute("data-total") or -1),
        )
    return found


def test_two_models_compared_with_intervals_and_the_rows_they_differ_on(
    training_gateway: Gateway, open_console: Any
) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    # The labels are the tiny model's own greedy answers: the run that asks it the same way passes them, while
    # the alias cut to one token cannot — so the two models' verdicts differ row by row.
    labels = [
        client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": text}], max_tokens=4, temperature=0, seed=7
        )
        .choices[0]
        .message.content
        or ""
        for text in TEXTS
    ]
    rows = [{"text": text, "label": label} for text, label in zip(TEXTS, labels, strict=True)]
    with training_gateway.http(tenant.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": "terse"}).status_code == 200
        version = http.post("/v1/registry/aliases/terse/versions", json={"targets": [{"model": MODEL}]})
        assert version.status_code == 200, version.text
    eval_id = _eval(tenant)
    full = client.evals.runs.create(eval_id, data_source=_source(MODEL, rows, 4), name="Full answers")
    short = client.evals.runs.create(eval_id, data_source=_source("terse", rows, 1), name="One token")
    for run in (full, short):
        assert wait_for_run(client, eval_id, run.id).status == "completed"

    console = open_console(training_gateway, tenant.key, "/console/evals")
    page = console.page
    row = page.get_by_test_id("evals-table").locator(f'tr[data-eval-id="{eval_id}"]')
    expect(row.get_by_test_id("latest-status")).to_have_text("completed")
    expect(row.locator("td").nth(1)).to_have_text("2")  # criteria
    expect(row.locator("td").nth(2)).to_have_text("2")  # runs
    console.shot("evals")

    row.get_by_role("link", name="Sentiment").click()
    expect(page.get_by_test_id("eval-name")).to_have_text("Sentiment")
    for run in (full, short):
        done = client.evals.runs.retrieve(run.id, eval_id=eval_id)
        counts = done.result_counts
        run_row = page.locator(f'tr[data-run-id="{run.id}"]')
        expect(run_row.get_by_test_id("run-status")).to_have_text("completed")
        expect(run_row.get_by_test_id("run-counts")).to_have_text(
            f"{counts.passed} · {counts.failed} · {counts.errored} / {counts.total}"
        )
        expect(run_row.get_by_test_id("run-rate")).to_have_text(f"{round(100 * counts.passed / counts.total, 1)}%")
    compare = page.get_by_role("button", name="Compare", exact=True)
    expect(compare).to_be_disabled()
    page.get_by_label("Compare Full answers").check()
    expect(compare).to_be_disabled()
    page.get_by_label("Compare One token").check()
    expect(compare).to_be_enabled()
    console.shot("eval")
    compare.click()

    expect(page).to_have_url(re.compile(rf"/console/evals/{eval_id}/compare\?run_ids=[\w-]+,[\w-]+$"))
    run_ids = parse_qs(urlparse(page.url).query)["run_ids"][0].split(",")
    assert set(run_ids) == {full.id, short.id}
    with training_gateway.http(tenant.key) as http:
        api = http.get(f"/v1/evals/{eval_id}/comparison", params={"run_ids": ",".join(run_ids)}).json()
    assert api["status"] == "completed"
    expect(page.get_by_test_id("comparison-status")).to_have_text("completed")

    table = page.get_by_test_id("comparison-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(table.locator("thead th")).to_have_text(["Model", "All criteria", "Label matches", "Answered"])
    for column in api["runs"]:
        expect(table.locator(f'tr[data-run-id="{column["run_id"]}"]').get_by_test_id("model")).to_have_text(
            column["model"]
        )
        expected = {"overall": column["overall"]} | {c["testing_criteria"]: c for c in column["per_testing_criteria"]}
        shown = _rates(page, column["run_id"])
        assert shown == {
            key: (r["pass_rate"], r["ci_low"], r["ci_high"], r["passed"], r["total"]) for key, r in expected.items()
        }
        for low, rate, high in ((v[1], v[0], v[2]) for v in shown.values()):
            assert 0 <= low <= rate <= high <= 1
    assert {column["model"] for column in api["runs"]} == {MODEL, "terse"}
    # The full answers match their own labels; the one-token answers do not.
    by_model = {column["model"]: column for column in api["runs"]}
    assert by_model[MODEL]["per_testing_criteria"][0]["passed"] > by_model["terse"]["per_testing_criteria"][0]["passed"]

    differences = api["disagreements"]
    assert differences["total"] > 0
    expect(page.get_by_test_id("differences-total")).to_have_text(str(differences["total"]))
    shown_rows = page.get_by_test_id("difference")
    expect(shown_rows).to_have_count(len(differences["data"]))
    for difference in differences["data"]:
        article = page.locator(f'[data-testid="difference"][data-row="{difference["datasource_item_id"]}"]')
        expect(article).to_contain_text(difference["datasource_item"]["text"])
        for outcome in difference["outcomes"]:
            answer = article.locator(f'[data-testid="answer"][data-run-id="{outcome["run_id"]}"]')
            expect(answer).to_contain_text(outcome["model"])
            expect(answer.get_by_test_id("verdict")).to_have_text(outcome["status"])
            text = outcome["output_text"]
            assert answer.get_by_test_id("output").text_content() == (
                text if text.strip() else f"(blank answer) {json.dumps(text)}"
            )
    console.shot("eval-compare")
    # On a phone the wide table scrolls inside its frame; the page itself does not scroll sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    page.reload()
    expect(page.get_by_test_id("comparison-table")).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the comparison scrolls sideways on a phone ({width}px)"


def test_comparing_needs_two_runs(console: Console, tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    run = tenant.client.evals.runs.create(eval_id, data_source=_source(MODEL, [{"text": "a", "label": "b"}], 2))
    response = console.page.goto(console.url(f"/console/evals/{eval_id}/compare?run_ids={run.id}"))
    assert response is not None and response.status == 400
    expect(console.page.get_by_test_id("error-page")).to_contain_text("Compare 2 to 5 distinct runs")
