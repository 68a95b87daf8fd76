"""The gateway judge beyond the base local model: an upstream model (a second ftgw over HTTP), a provider that is
down, and a classifier fine-tuned on labelled data (asked exactly as /v1/classifications asks it)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from app.migrate import upgrade
from app.providers.local.base_models import SMOLLM2
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.fine_tuning.test_training import FAST, MODEL, _upload, wait_for
from tests.openai_schema import assert_matches

UPSTREAM_KEY_ENV = "FTGW_TEST_JUDGE_UPSTREAM_KEY"


@dataclass
class Edge:
    downstream: Gateway
    owner: Tenant


@pytest.fixture(scope="module")
def edge(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Any) -> Iterator[Edge]:
    """A gateway whose `up-smollm2` is SmolLM2 served by a second gateway, and whose `down-model` answers nothing."""
    folder = tmp_path_factory.mktemp("judge-edge")
    with (
        new_database(database_url, folder / "up") as up_url,
        new_database(database_url, folder / "down") as down_url,
        pytest.MonkeyPatch.context() as env,
    ):
        upgrade(up_url)
        upgrade(down_url)
        with serve(gateway_settings(up_url, folder / "up-data", model_cache)) as upstream:
            env.setenv(UPSTREAM_KEY_ENV, make_tenant(upstream).key)
            common = {"api_key_env": UPSTREAM_KEY_ENV, "timeout_seconds": 30, "retry_backoff_seconds": 0.01}
            providers = [
                {"name": "up", "base_url": f"{upstream.base_url}/v1", "models": {"up-smollm2": SMOLLM2}, **common},
                {
                    "name": "down",
                    "base_url": "http://127.0.0.1:9/v1",
                    "models": ["down-model"],
                    **common,
                    "max_retries": 0,
                },
            ]
            with serve(gateway_settings(down_url, folder / "down-data", model_cache, providers=providers)) as down:
                yield Edge(down, make_tenant(down))


def run(tenant: Tenant, grader: dict[str, Any], sample: str, item: dict[str, Any]) -> dict[str, Any]:
    response = tenant.client.fine_tuning.alpha.graders.with_raw_response.run(
        grader=grader,  # type: ignore[arg-type]
        model_sample=sample,
        item=item,
    )
    body: dict[str, Any] = response.http_response.json()
    assert_matches(body, "RunGraderResponse")
    return body


def label_grader(model: str, passing: str) -> dict[str, Any]:
    return {
        "type": "label_model",
        "name": "judge",
        "model": model,
        "input": [
            {"role": "system", "content": "You judge answers."},
            {"role": "user", "content": "{{item.question}} The answer given: {{sample.output_text}}"},
        ],
        "labels": ["yes", "no"],
        "passing_labels": [passing],
    }


@pytest.mark.parametrize("passing", ["yes", "no"])
def test_an_upstream_judge_chooses_as_the_same_model_served_locally(edge: Edge, passing: str) -> None:
    item = {"question": "Is the sky blue?"}
    local = run(edge.owner, label_grader(SMOLLM2, passing), "Yes.", item)
    upstream = run(edge.owner, label_grader("up-smollm2", passing), "Yes.", item)
    assert not any(v for v in upstream["metadata"]["errors"].values()), upstream["metadata"]
    assert upstream["reward"] == local["reward"]
    assert upstream["metadata"]["sampled_model_name"] == "up-smollm2"
    assert upstream["model_grader_token_usage_per_model"]["up-smollm2"]["prompt_tokens"] > 0


def test_an_upstream_score_judge_answers_as_the_same_model_served_locally(edge: Edge) -> None:
    grader = {
        "type": "score_model",
        "name": "rate",
        "model": SMOLLM2,
        "input": [{"role": "user", "content": "Rate the answer '{{sample.output_text}}' to: {{item.question}}"}],
        "range": [0, 10],
        "sampling_params": {"temperature": 0, "max_completions_tokens": 12},
    }
    item = {"question": "What is the capital of France?"}
    local = run(edge.owner, grader, "Paris", item)
    upstream = run(edge.owner, {**grader, "model": "up-smollm2"}, "Paris", item)
    assert not any(v for v in local["metadata"]["errors"].values())
    assert upstream["reward"] == local["reward"]


@pytest.mark.parametrize("kind", ["label_model", "score_model"])
def test_a_judge_that_is_down_gives_an_errored_result(edge: Edge, kind: str) -> None:
    grader = label_grader("down-model", "yes")
    if kind == "score_model":
        grader = {k: v for k, v in grader.items() if k not in {"labels", "passing_labels"}} | {"type": kind}
    body = run(edge.owner, grader, "Yes.", {"question": "Is the sky blue?"})
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["model_grader_server_error"] is True
    assert "down-model" in errors["model_grader_server_error_details"]


def test_a_fine_tuned_classifier_judges_as_v1_classifications_does(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    rows = [
        {"prompt": f"Review {i}: {'great' if i % 2 else 'awful'}\n\n###\n\n", "completion": f" {label} END"}
        for i in range(16)
        for label in ["positive" if i % 2 else "negative"]
    ]
    job = tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(tenant.client, rows),
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 10}}},
    )
    done = wait_for(tenant.client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    classifier = done.fine_tuned_model
    assert classifier is not None
    grader = {
        "type": "label_model",
        "name": "sentiment",
        "model": classifier,
        "input": [
            {"role": "system", "content": "Classify the review."},
            {"role": "user", "content": "{{sample.output_text}}"},
        ],
        "labels": ["positive", "negative"],
        "passing_labels": ["positive"],
    }
    for review in ["Review 3: great", "Review 4: awful", "Review 99: great"]:
        body = run(tenant, grader, review, {})
        # The classifier reads the last user message as /v1/classifications reads its input.
        with training_gateway.http(tenant.key) as http:
            classified = http.post(
                "/v1/classifications",
                json={"model": classifier, "input": review, "labels": ["positive", "negative"]},
            ).json()
        label = classified["data"][0]["label"]
        assert label in {"positive", "negative"}, classified  # ten epochs: it puts half its mass on the labels
        assert body["reward"] == (1.0 if label == "positive" else 0.0), (review, classified)
        assert not any(v for v in body["metadata"]["errors"].values())
        assert body["metadata"]["sampled_model_name"] == classifier
        usage = body["model_grader_token_usage_per_model"][classifier]
        assert usage["prompt_tokens"] == classified["usage"]["prompt_tokens"] and usage["completion_tokens"] == 0
