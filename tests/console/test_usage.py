"""The usage page: an empty state before any request, then charts per model and per key whose figures are the
usage API's, and totals that add up to what the completions reported."""

from __future__ import annotations

import json
import re
from typing import Any

from playwright.sync_api import Page, expect

from tests.conftest import Gateway, Tenant
from tests.console.conftest import Console

MODEL = "tiny-smollm2"


def _second_key(gateway: Gateway, tenant: Tenant) -> str:
    with gateway.http(gateway.admin_key) as admin:
        made = admin.post(f"/v1/projects/{tenant.project_id}/api_keys", json={"name": "batch-jobs", "role": "member"})
        made.raise_for_status()
    secret: str = made.json()["value"]
    return secret


def _chat(gateway: Gateway, key: str, n: int) -> tuple[int, int]:
    """``n`` short chat completions with ``key``: the prompt and completion tokens they reported, summed."""
    client = gateway.openai(key)
    prompt = completion = 0
    for i in range(n):
        answer = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 2}"}], max_tokens=3, temperature=0
        )
        assert answer.usage is not None
        prompt += answer.usage.prompt_tokens
        completion += answer.usage.completion_tokens
    return prompt, completion


def _embedded(page: Page) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(page.locator("#usage-data").text_content() or "{}")
    return data


def _charts(page: Page) -> dict[str, dict[str, list[int]]]:
    """Each chart's datasets as drawn: canvas id -> {dataset label: values per bucket}."""
    drawn: dict[str, dict[str, list[int]]] = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.usageCharts).map(([id, chart]) => [
              id, Object.fromEntries(chart.data.datasets.map((d) => [d.label, d.data]))]))"""
    )
    return drawn


def _api(gateway: Gateway, key: str, data: dict[str, Any], group_by: str) -> dict[str, dict[str, list[int]]]:
    """The usage API over the page's period: group -> figure -> value per bucket."""
    with gateway.http(key) as http:
        page = http.get(
            "/v1/usage/completions",
            params={
                "start_time": data["start_time"],
                "end_time": data["end_time"],
                "bucket_width": data["bucket_width"],
                "group_by": group_by,
            },
        )
    assert page.status_code == 200, page.text
    buckets = page.json()["data"]
    assert [b["start_time"] for b in buckets] == data["starts"]
    found: dict[str, dict[str, list[int]]] = {}
    for i, bucket in enumerate(buckets):
        for result in bucket["results"]:
            figures = found.setdefault(result[group_by], {"requests": [0] * len(buckets), "tokens": [0] * len(buckets)})
            figures["requests"][i] += result["num_model_requests"]
            figures["tokens"][i] += result["input_tokens"] + result["output_tokens"]
    return found


def test_usage_starts_empty_then_charts_what_the_api_counts(gateway: Gateway, console: Console, tenant: Tenant) -> None:
    page = console.goto("/console/usage")
    expect(page.get_by_test_id("usage-empty")).to_contain_text("No usage in the last 24 hours")
    expect(page.get_by_role("button", name="Open the Playground")).to_be_visible()

    other_key = _second_key(gateway, tenant)
    mine = _chat(gateway, tenant.key, 3)
    theirs = _chat(gateway, other_key, 2)
    page = console.goto("/console/usage")

    data = _embedded(page)
    assert (data["period"], data["bucket_width"], len(data["starts"])) == ("24h", "1h", 24)
    by_model = _api(gateway, tenant.key, data, "model")
    by_key = _api(gateway, tenant.key, data, "api_key_id")
    assert list(by_model) == [MODEL] and len(by_key) == 2
    assert sum(by_model[MODEL]["requests"]) == 5
    assert sum(by_model[MODEL]["tokens"]) == sum(mine) + sum(theirs)

    expect(page.locator("#usage-data")).to_be_attached()
    page.wait_for_function("() => window.usageCharts !== undefined")
    charts = _charts(page)
    assert charts["tokens-by-model"] == {MODEL: by_model[MODEL]["tokens"]}
    assert charts["requests-by-model"] == {MODEL: by_model[MODEL]["requests"]}
    labels = {series["id"]: series["label"] for series in data["keys"]}
    assert charts["requests-by-key"] == {labels[key]: figures["requests"] for key, figures in by_key.items()}
    assert charts["tokens-by-key"] == {labels[key]: figures["tokens"] for key, figures in by_key.items()}
    # Keys are named as people know them (name and redacted secret), never by their secret.
    assert sorted(label.split(" · ")[0] for label in labels.values()) == ["batch-jobs", "test"]
    assert tenant.key not in page.content() and other_key not in page.content()

    # The totals tables: what the completions reported, per model and per key.
    model_totals = page.get_by_test_id("totals-by-model")
    total = model_totals.locator('tfoot [data-col="total_tokens"]')
    expect(total).to_have_text(f"{sum(mine) + sum(theirs):,}")
    expect(model_totals.locator('tfoot [data-col="requests"]')).to_have_text("5")
    expect(model_totals.locator(f'tbody tr[data-id="{MODEL}"] [data-col="input_tokens"]')).to_have_text(
        f"{mine[0] + theirs[0]:,}"
    )
    key_rows = page.get_by_test_id("totals-by-key").locator("tbody tr")
    expect(key_rows).to_have_count(2)
    batch = key_rows.filter(has_text="batch-jobs")
    expect(batch.locator('[data-col="requests"]')).to_have_text("2")
    expect(batch.locator('[data-col="output_tokens"]')).to_have_text(f"{theirs[1]:,}")
    console.shot("usage")

    # Another period: daily buckets, the same totals.
    page.get_by_role("button", name="Last 7 days").click()
    expect(page).to_have_url(re.compile(r"/console/usage\?period=7d$"))
    week = _embedded(page)
    assert (week["bucket_width"], len(week["starts"])) == ("1d", 7)
    assert week["totals"] == data["totals"]
    page.wait_for_function("() => window.usageCharts !== undefined")
    assert _charts(page)["tokens-by-model"] == {MODEL: _api(gateway, tenant.key, week, "model")[MODEL]["tokens"]}


def test_usage_reads_on_a_narrow_screen(console: Console) -> None:
    _chat(console.gateway, console.key, 1)
    console.page.set_viewport_size({"width": 390, "height": 844})
    page = console.goto("/console/usage?period=30d")
    page.wait_for_function("() => window.usageCharts !== undefined")
    expect(page.get_by_test_id("chart-tokens-by-model")).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390 + 1, f"the usage page scrolls sideways on a phone ({width}px)"


def test_an_unknown_period_is_a_400_page(console: Console) -> None:
    response = console.page.goto(console.url("/console/usage?period=1y"))
    assert response is not None and response.status == 400
    expect(console.page.get_by_test_id("error-page")).to_contain_text("period")
