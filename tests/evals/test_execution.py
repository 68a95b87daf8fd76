"""Eval runs executed for real by the embedded worker, on each backend: jsonl runs graded from their own samples,
completions runs that sample a real model through the gateway, cancelling a run mid-way, and a fine-tuned classifier
that beats its base model — all through the openai SDK over HTTP."""

from __future__ import annotations

import time
from typing import Any

from openai import OpenAI
from openai.types.evals import RunRetrieveResponse

from tests.conftest import Gateway, make_tenant, wait_until_validated
from tests.evals.test_api import ITEM_SCHEMA, LABEL_CHECK, MODEL, _completions, _jsonl, assert_run_matches
from tests.fine_tuning.test_training import wait_for
from tests.loopback import Receiver
from tests.openai_schema import assert_matches

FINAL = {"completed", "failed", "canceled"}
SIMILAR: dict[str, Any] = {
    "type": "text_similarity",
    "name": "Close to the label",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "evaluation_metric": "fuzzy_match",
    "pass_threshold": 0.8,
}


def wait_for_run(client: OpenAI, eval_id: str, run_id: str, timeout: float = 240) -> RunRetrieveResponse:
    deadline = time.monotonic() + timeout
    while True:
        run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
        if run.status in FINAL:
            return run
        assert time.monotonic() < deadline, f"{run_id} still {run.status}"
        time.sleep(0.1)


def _sentiment_eval(client: OpenAI, *criteria: dict[str, Any]) -> str:
    config = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
    return client.evals.create(
        name="Sentiment", data_source_config=config, testing_criteria=list(criteria or [LABEL_CHECK])
    ).id


def test_a_jsonl_run_grades_its_own_samples(training_gateway: Gateway, receiver: Receiver) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    with training_gateway.http(tenant.key) as http:
        http.post("/v1/webhooks", json={"url": receiver.url, "events": ["eval.run.succeeded"]}).raise_for_status()
    eval_id = _sentiment_eval(client, LABEL_CHECK, SIMILAR)
    rows = [
        ({"text": "I loved it", "label": "positive"}, "positive"),  # both pass
        ({"text": "Awful", "label": "negative"}, "negativ"),  # fuzzy passes (0.93), eq fails
        ({"text": "Fine", "label": "neutral"}, "positive"),  # both fail
    ]
    content = [{"item": item, "sample": {"output_text": answer}} for item, answer in rows]
    run = client.evals.runs.create(
        eval_id, data_source={"type": "jsonl", "source": {"type": "file_content", "content": content}}
    )

    done = wait_for_run(client, eval_id, run.id)

    assert done.status == "completed", done.error
    assert done.result_counts.model_dump() == {"total": 3, "passed": 1, "failed": 2, "errored": 0}
    by_criterion = {r.testing_criteria: (r.passed, r.failed) for r in done.per_testing_criteria_results}
    assert sorted(by_criterion.values()) == [(1, 2), (2, 1)]
    with training_gateway.http(tenant.key) as http:
        assert_run_matches(http.get(f"/v1/evals/{eval_id}/runs/{run.id}").json())
    items = sorted(client.evals.runs.output_items.list(run.id, eval_id=eval_id), key=lambda i: i.datasource_item_id)
    assert [i.status for i in items] == ["pass", "fail", "fail"]
    assert [[r.passed for r in i.results] for i in items] == [[True, True], [False, True], [False, False]]
    assert items[1].results[1].score > 0.8
    assert items[1].datasource_item == rows[1][0]
    receiver.wait(1)
    (payload,) = receiver.payloads()
    assert (payload["type"], payload["data"]["id"]) == ("eval.run.succeeded", run.id)


def test_a_completions_run_samples_the_model_through_the_gateway(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    eval_id = _sentiment_eval(client, {**LABEL_CHECK, "name": "Answered", "operation": "ne", "reference": ""})
    rows = [{"text": f"Review number {i}", "label": "positive"} for i in range(12)]

    run = client.evals.runs.create(eval_id, data_source=_completions(rows), name="base")
    done = wait_for_run(client, eval_id, run.id)

    assert done.status == "completed", done.error
    assert done.result_counts.total == 12
    assert done.result_counts.errored == 0
    (usage,) = done.per_model_usage
    assert usage.model_name == MODEL
    assert usage.invocation_count == 12
    assert usage.prompt_tokens > 12 and 0 < usage.completion_tokens <= 12 * 4
    items = list(client.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=100))
    assert sorted(i.datasource_item_id for i in items) == list(range(12))
    for item in items:
        sample = item.sample
        assert sample.model == MODEL
        assert sample.input[-1].content == item.datasource_item["text"]
        assert sample.usage.completion_tokens <= 4
        assert sample.max_completion_tokens == 4 and sample.temperature == 0 and sample.seed == 7
    first = client.evals.runs.output_items.retrieve(items[0].id, eval_id=eval_id, run_id=run.id)
    assert first.sample.output[0].content == items[0].sample.output[0].content
    assert_item_matches(_raw_item(training_gateway, client, eval_id, run.id, items[0].id))


def assert_item_matches(raw: dict[str, Any]) -> None:
    """OpenAI's schema types a sample's ``error`` as an object, yet its API (and its own example of an output item)
    answers null for a sample without one: the rest must match as it is."""
    assert raw["sample"]["error"] is None
    assert_matches({**raw, "sample": {**raw["sample"], "error": {"code": "-", "message": "-"}}}, "EvalRunOutputItem")


def _raw_item(gateway: Gateway, client: OpenAI, eval_id: str, run_id: str, item_id: str) -> dict[str, Any]:
    with gateway.http(client.api_key) as http:
        body: dict[str, Any] = http.get(f"/v1/evals/{eval_id}/runs/{run_id}/output_items/{item_id}").json()
    return body


POSITIVE = ["great", "wonderful", "loved", "excellent", "superb", "delightful", "brilliant", "charming"]
NEGATIVE = ["awful", "terrible", "hated", "boring", "dreadful", "horrible", "dull", "painful"]


def _reviews(words: list[str], label: str, start: int) -> list[dict[str, str]]:
    return [{"text": f"The film number {start + i} was {word}", "label": label} for i, word in enumerate(words)]


def test_a_fine_tuned_classifier_beats_its_base_side_by_side(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    train = _reviews(POSITIVE * 2, "positive", 0) + _reviews(NEGATIVE * 2, "negative", 100)
    lines = [{"prompt": f"Review: {r['text']}\n\n###\n\n", "completion": f" {r['label']} END"} for r in train]
    training = client.files.create(file=("sentiment.jsonl", _jsonl(lines)), purpose="fine-tune").id
    wait_until_validated(client, training)
    hyper = {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 30}
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        seed=5,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
    )
    tuned = wait_for_job(client, job.id)
    held_out = _reviews(POSITIVE[:6], "positive", 500) + _reviews(NEGATIVE[:6], "negative", 600)
    eval_id = _sentiment_eval(client)
    source = _completions(held_out)
    del source["model"]
    source["input_messages"] = {"type": "template", "template": [{"role": "user", "content": "Review: {{item.text}}"}]}

    with training_gateway.http(client.api_key) as http:
        created = http.post(
            f"/v1/evals/{eval_id}/comparisons",
            json={"models": [MODEL, tuned], "data_source": source, "name": "base vs ft"},
        )
        assert created.status_code == 201, created.text
        run_ids = [column["run_id"] for column in created.json()["runs"]]
        for run_id in run_ids:
            assert wait_for_run(client, eval_id, run_id).status == "completed"
        comparison = http.get(f"/v1/evals/{eval_id}/comparison", params={"run_ids": ",".join(run_ids)}).json()

    assert comparison["status"] == "completed"
    base, fine_tuned = comparison["runs"]
    assert (base["model"], fine_tuned["model"]) == (MODEL, tuned)
    assert base["overall"]["total"] == fine_tuned["overall"]["total"] == 12
    assert fine_tuned["overall"]["pass_rate"] > base["overall"]["pass_rate"]
    for column in (base, fine_tuned):
        rate = column["per_testing_criteria"][0]
        assert rate["ci_low"] <= rate["pass_rate"] <= rate["ci_high"]
        assert rate["passed"] == column["overall"]["passed"]  # one criterion: passing it is passing the row
    disagreements = comparison["disagreements"]
    assert disagreements["total"] == fine_tuned["overall"]["passed"] - base["overall"]["passed"] + 2 * _both_ways(
        disagreements
    )
    for row in disagreements["data"]:
        assert len({o["status"] for o in row["outcomes"]}) == 2
        assert row["datasource_item"] in held_out


def _both_ways(disagreements: dict[str, Any]) -> int:
    """Rows the base passed and the fine-tune failed (each also hides one of the fine-tune's wins in the count)."""
    return sum(1 for row in disagreements["data"] if row["outcomes"][0]["status"] == "pass")


def wait_for_job(client: OpenAI, job_id: str, timeout: float = 300) -> str:
    """The fine-tuned model of a job that must succeed."""
    job = wait_for(client, job_id, {"succeeded", "failed", "cancelled"}, timeout)
    assert job.status == "succeeded" and job.fine_tuned_model, job.error
    return job.fine_tuned_model
