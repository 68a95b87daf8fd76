"""The playground in a real browser: models answer side by side as they stream, one model's error stays in its
column, classifiers draw their label probabilities, a completion shows the prompt format it is sent with, and Stop
aborts the runs."""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from app.datasets.prompt_format import detect_prompt_format
from tests.conftest import Gateway, Tenant, make_tenant
from tests.console.conftest import Console
from tests.fine_tuning.test_training import FAST, MODEL, _upload, qa_rows, wait_for

ANSWER_TIMEOUT = 90_000  # ms: generation runs on the CPU, beside other tests

# Records every distinct text each column's output shows, as the browser renders it: an answer that streams is
# seen growing, one that arrives whole is seen once.
WATCH_OUTPUTS = """() => {
  window.seen = {};
  const box = document.getElementById("pg-columns");
  new MutationObserver(() => {
    for (const column of box.querySelectorAll('[data-testid="column"]')) {
      const text = column.querySelector('[data-testid="output"]').textContent;
      const seen = (window.seen[column.dataset.index] ??= []);
      if (text && seen.at(-1) !== text) seen.push(text);
    }
  }).observe(box, { subtree: true, childList: true, characterData: true });
}"""


def new_alias(console: Console, target: str = MODEL) -> str:
    name = f"pg-{secrets.token_hex(4)}"
    with console.api() as http:
        http.post("/v1/registry/aliases", json={"name": name}).raise_for_status()
        version = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": target}]})
        version.raise_for_status()
    return name


def column(page: Page, index: int) -> Locator:
    return page.get_by_test_id("column").nth(index)


def set_params(page: Page, *, temperature: str = "1.5", max_tokens: str = "16") -> None:
    # The tiny test model has random weights: below 1.5 its chat answers are all line breaks.
    page.get_by_label("Temperature").fill(temperature)
    page.get_by_label("Max tokens").fill(max_tokens)
    page.get_by_label("Seed").fill("7")


def test_two_models_stream_side_by_side(console: Console) -> None:
    alias = new_alias(console)
    page = console.goto("/console/playground")
    expect(page.get_by_role("heading", name="Playground")).to_be_visible()
    # Both are offered: the base model and the alias the project just made.
    options = page.locator("#pg-model-list option")
    assert MODEL in options.evaluate_all("os => os.map(o => o.value)")
    assert alias in options.evaluate_all("os => os.map(o => o.value)")
    assert f"{alias}@1" in options.evaluate_all("os => os.map(o => o.value)")

    page.get_by_label("Model 1").fill(MODEL)
    page.get_by_label("Model 2").fill(alias)
    expect(page.get_by_test_id("column")).to_have_count(2)
    page.get_by_label("System message").fill("You answer briefly.")
    page.get_by_label("Message 1", exact=True).fill("Name three colours.")
    set_params(page)
    page.evaluate(WATCH_OUTPUTS)
    page.get_by_test_id("run").click()

    for index, model in enumerate((MODEL, alias)):
        answer = column(page, index)
        expect(answer.get_by_test_id("column-model")).to_have_text(model)
        expect(answer).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT)
        expect(answer.get_by_test_id("finish")).to_have_text(re.compile(r"^(stop|length)$"))
        assert int(answer.get_attribute("data-chunks") or 0) > 1
        final = answer.get_by_test_id("output").text_content() or ""
        assert final
        seen: list[str] = page.evaluate(f"() => window.seen[{index}] ?? []")
        assert len(seen) >= 2, f"column {index} never showed a partial answer: {seen}"
        assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(seen))
        assert seen[-1] == final
        expect(answer.get_by_test_id("tokens")).to_have_text(re.compile(r"^\d+$"))
        expect(answer.get_by_test_id("ttft")).to_have_text(re.compile(r"^\d+(\.\d+)? m?s$"))
    expect(column(page, 1).get_by_test_id("answered-by")).to_have_text(f"answered by {MODEL}")
    # The page's URL now names the comparison, so it can be shared.
    assert f"models={MODEL}%2C{alias}" in page.url
    console.shot("playground")

    # An answer continues the conversation.
    column(page, 0).get_by_role("button", name="Continue with this answer").click()
    expect(page.get_by_test_id("turn")).to_have_count(3)
    expect(page.get_by_label("Message 2", exact=True)).to_have_value(
        column(page, 0).get_by_test_id("output").text_content() or ""
    )

    # On a phone the columns stack and the page does not scroll sideways.
    page.set_viewport_size({"width": 390, "height": 844})
    first, second = (column(page, i).bounding_box() for i in (0, 1))
    assert first is not None and second is not None
    assert second["y"] >= first["y"] + first["height"] - 1
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 391
    console.shot("playground-narrow")


def test_an_unknown_model_shows_the_api_error_in_its_column_only(console: Console) -> None:
    missing = f"no-such-model-{secrets.token_hex(3)}"
    with console.api() as http:
        refused = http.post(
            "/v1/chat/completions", json={"model": missing, "messages": [{"role": "user", "content": "hi"}]}
        )
    assert refused.status_code == 404
    message = refused.json()["error"]["message"]

    page = console.goto(f"/console/playground?models={missing},{MODEL}")
    expect(page.get_by_label("Model 1")).to_have_value(missing)
    expect(page.get_by_label("Model 2")).to_have_value(MODEL)
    page.get_by_label("Message 1", exact=True).fill("Say hello.")
    set_params(page)
    page.get_by_test_id("run").click()

    broken, working = column(page, 0), column(page, 1)
    expect(broken).to_have_attribute("data-state", "error", timeout=ANSWER_TIMEOUT)
    expect(broken.get_by_test_id("error")).to_have_text(message)
    expect(working).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT)
    assert working.get_by_test_id("output").text_content()
    expect(working.get_by_test_id("error")).to_be_hidden()
    expect(page.locator("#pg-status")).to_have_text(re.compile(r"Done in .*\(1 failed\)"))


def likely_labels(console: Console, text: str) -> list[str]:
    """Two labels the tiny model (random weights) gives probability to after ``text``: its likeliest next tokens."""
    with console.api() as http:
        response = http.post(
            "/v1/completions",
            json={"model": MODEL, "prompt": text, "max_tokens": 1, "temperature": 0, "logprobs": 5},
        )
    response.raise_for_status()
    top = response.json()["choices"][0]["logprobs"]["top_logprobs"][0]
    pieces = [token.strip() for token in top if token.strip() and "," not in token]
    labels = list(dict.fromkeys(pieces))[:2]
    assert len(labels) == 2, top
    return labels


def test_label_probabilities_are_drawn_as_bars(console: Console) -> None:
    alias = new_alias(console)
    text = "Is 7 a number?"
    labels = [*likely_labels(console, text), "unlikely-label"]
    page = console.goto(f"/console/playground?models={MODEL},{alias}&mode=classification")
    expect(page.get_by_test_id("mode-classification")).to_be_checked()
    expect(page.get_by_label("Temperature")).to_be_hidden()
    page.get_by_label("Input", exact=True).fill(text)
    page.get_by_label("Labels").fill(", ".join(labels))
    page.get_by_test_id("run").click()

    for index in (0, 1):
        answer = column(page, index)
        expect(answer).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT)
        bars = answer.get_by_test_id("bar")
        expect(bars).to_have_count(3)
        found = {
            row.get_attribute("data-label") or "": float(row.get_attribute("data-probability") or "nan")
            for row in bars.all()
        }
        assert set(found) == set(labels)
        assert found["unlikely-label"] == 0
        assert sum(found.values()) == pytest.approx(1.0, abs=1e-6)
        top = max(found, key=lambda label: found[label])
        expect(answer.get_by_test_id("top-label")).to_have_text(top)
        # The bars are as long as their probabilities.
        widths = bars.locator(".bar").evaluate_all("bs => bs.map(b => parseFloat(b.style.width))")
        assert widths == pytest.approx(sorted((p * 100 for p in found.values()), reverse=True), abs=0.01)
    console.shot("playground-classification")

    # A base model has no trained labels: without any, each column shows the API's reason.
    page.get_by_label("Labels").fill("")
    page.get_by_test_id("run").click()
    expect(column(page, 0)).to_have_attribute("data-state", "error", timeout=ANSWER_TIMEOUT)
    expect(column(page, 0).get_by_test_id("error")).to_contain_text("pass `labels`")


def test_stop_aborts_the_runs(console: Console) -> None:
    page = console.goto(f"/console/playground?models={MODEL}")
    page.get_by_label("Message 1", exact=True).fill("Write a long story about the sea.")
    set_params(page, temperature="1", max_tokens="2000")
    page.get_by_test_id("run").click()
    answer = column(page, 0)
    expect(answer).to_have_attribute("data-chunks", re.compile(r"^[1-9]\d*$"), timeout=ANSWER_TIMEOUT)
    page.get_by_test_id("stop-run").click()
    expect(answer).to_have_attribute("data-state", "stopped")
    expect(answer.get_by_test_id("finish")).to_have_text("stopped")
    expect(page.get_by_test_id("run")).to_be_enabled()
    expect(page.get_by_test_id("stop-run")).to_be_disabled()


def _trained_answerer(gateway: Gateway, folder: Path) -> tuple[Tenant, str, Path]:
    """A tenant of ``gateway`` and its fine-tune on prompt-completion data with a separator and a stop."""
    tenant = make_tenant(gateway)
    rows = qa_rows(24)
    path = folder / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    method: Any = {"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 1}}}
    job = tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(tenant.client, list(rows)),
        method=method,
    )
    done = wait_for(tenant.client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    return tenant, done.fine_tuned_model, path


def test_a_completion_shows_the_prompt_format_it_is_sent_with(
    training_gateway: Gateway, open_console: Callable[..., Console], tmp_path: Path
) -> None:
    tenant, tuned, data = _trained_answerer(training_gateway, tmp_path)
    fmt = detect_prompt_format(data)
    assert fmt is not None and fmt.separator == "\n\n###\n\n" and fmt.stop == " END"
    console: Console = open_console(training_gateway, tenant.key, f"/console/playground?models={tuned},{MODEL}")
    page = console.page
    page.get_by_test_id("mode-completion").check()
    prompt = "Is 7 a number?"
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_label("Stop sequences").fill('"\\n\\n", ###')
    set_params(page)

    fine_tuned, base = column(page, 0), column(page, 1)
    expect(fine_tuned.get_by_test_id("prompt-format")).to_have_text(
        'Prompt format: separator "\\n\\n###\\n\\n" · stop " END" · answers start with a space (removed).'
    )
    assert fine_tuned.get_by_test_id("prompt-sent").text_content() == fmt.apply(prompt)
    expect(fine_tuned.get_by_test_id("stops-sent")).to_have_text('Stop sequences sent: " END", "\\n\\n", "###"')
    expect(base.get_by_test_id("prompt-format")).to_contain_text("none")
    assert base.get_by_test_id("prompt-sent").text_content() == prompt
    expect(base.get_by_test_id("stops-sent")).to_have_text('Stop sequences sent: "\\n\\n", "###"')

    page.get_by_test_id("run").click()
    for answer in (fine_tuned, base):
        expect(answer).to_have_attribute("data-state", "done", timeout=ANSWER_TIMEOUT)
    console.shot("playground-completion")
    # The prompt shown is the prompt the model got: the same request, written out by hand, costs the same tokens.
    shown = fine_tuned.get_by_test_id("prompt-sent").text_content() or ""
    with console.api() as http:
        raw = http.post(
            "/v1/completions",
            json={"model": tuned, "prompt": shown, "max_tokens": 1, "apply_prompt_format": False},
        )
    assert raw.status_code == 200, raw.text
    expect(fine_tuned.get_by_test_id("prompt-tokens")).to_have_text(str(raw.json()["usage"]["prompt_tokens"]))

    # Unticked, the prompt is sent as written.
    page.get_by_test_id("apply-format").uncheck()
    assert fine_tuned.get_by_test_id("prompt-sent").text_content() == prompt
    expect(fine_tuned.get_by_test_id("prompt-format")).to_contain_text("not applied")
