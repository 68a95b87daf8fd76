"""/v1/fine_tuning/alpha/graders/run and /validate over real HTTP with the openai SDK, judged by the tiny model."""

from __future__ import annotations

import time
from typing import Any

import openai
import pytest

from app.evals.graders._grade import parse_score, score_instruction
from app.evals.judge import label_instruction
from app.providers.local.hf import render_prompt
from tests.conftest import Gateway, Tenant
from tests.openai_schema import assert_matches

JUDGE = "smollm2-135m-instruct"  # a real instruction-tuned model: it answers labels and scores
TINY = "tiny-smollm2"  # a scaled-down SmolLM2: its answers are noise
CHECK = {
    "type": "string_check",
    "name": "exact",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}


def run(tenant: Tenant, grader: dict[str, Any], sample: str, item: dict[str, Any] | None = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"grader": grader, "model_sample": sample}
    if item is not None:
        kwargs["item"] = item
    response = tenant.client.fine_tuning.alpha.graders.with_raw_response.run(**kwargs)
    body: dict[str, Any] = response.http_response.json()
    assert_matches(body, "RunGraderResponse")
    return body


def test_validate_echoes_a_valid_grader(tenant: Tenant) -> None:
    response = tenant.client.fine_tuning.alpha.graders.with_raw_response.validate(grader=CHECK)  # type: ignore[arg-type]
    body = response.http_response.json()
    assert_matches(body, "ValidateGraderResponse")
    assert body["grader"] == CHECK
    assert response.parse().grader.type == "string_check"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("grader", "param", "code"),
    [
        ({**CHECK, "operation": "contains"}, "grader.operation", "invalid_value"),
        ({**CHECK, "type": "regex"}, "grader.type", "invalid_value"),
        ({"type": "python", "name": "p", "source": "def grade(s, i): return 1"}, "grader.type", "unsupported_grader"),
        (
            {"type": "text_similarity", "name": "t", "input": "a", "reference": "b", "evaluation_metric": "cosine"},
            "grader.evaluation_metric",
            "unsupported_grader",
        ),
        (
            {"type": "multi", "name": "m", "graders": CHECK, "calculate_output": "exact + nope"},
            "grader.calculate_output",
            "invalid_value",
        ),
    ],
)
def test_bad_graders_are_400s_naming_the_param(tenant: Tenant, grader: dict[str, Any], param: str, code: str) -> None:
    for call in (
        lambda: tenant.client.fine_tuning.alpha.graders.validate(grader=grader),  # type: ignore[arg-type]
        lambda: tenant.client.fine_tuning.alpha.graders.run(grader=grader, model_sample="x"),  # type: ignore[arg-type]
    ):
        with pytest.raises(openai.BadRequestError) as raised:
            call()
        error = raised.value.body
        assert isinstance(error, dict)
        assert (error["param"], error["code"]) == (param, code), error


def test_the_graders_api_needs_a_key(gateway: Gateway) -> None:
    with gateway.http() as http:
        assert http.post("/v1/fine_tuning/alpha/graders/validate", json={"grader": CHECK}).status_code == 401


def test_run_string_check(tenant: Tenant) -> None:
    passed = run(tenant, CHECK, "positive", {"label": "positive"})
    assert passed["reward"] == 1.0
    assert passed["metadata"]["name"] == "exact" and passed["metadata"]["type"] == "string_check"
    assert passed["metadata"]["token_usage"] is None and passed["metadata"]["sampled_model_name"] is None
    assert not any(v for v in passed["metadata"]["errors"].values())
    assert passed["sub_rewards"] == {} and passed["model_grader_token_usage_per_model"] == {}
    assert run(tenant, CHECK, "negative", {"label": "positive"})["reward"] == 0.0
    missing = run(tenant, CHECK, "positive")  # no item: {{item.label}} has no value
    assert missing["reward"] == 0.0 and missing["metadata"]["errors"]["invalid_variable_error"] is True


def test_run_text_similarity_and_multi(tenant: Tenant) -> None:
    fuzzy = {
        "type": "text_similarity",
        "name": "fuzzy",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "evaluation_metric": "fuzzy_match",
    }
    assert run(tenant, fuzzy, "kitten", {"label": "sitting"})["reward"] == pytest.approx(8 / 13)  # 1 - 5/13
    bleu = {**fuzzy, "name": "bleu", "evaluation_metric": "bleu"}
    assert run(tenant, bleu, "the cat sat on the mat", {"label": "the cat sat on the mat"})["reward"] == 1.0
    json_sample = {**fuzzy, "input": "{{sample.output_json.answer}}", "evaluation_metric": "rouge_1"}
    # "the gunman kill police" against "police killed the gunman": 3 of 4 words shared each way.
    assert run(tenant, json_sample, '{"answer": "the gunman kill police"}', {"label": "police killed the gunman"})[
        "reward"
    ] == pytest.approx(0.75)
    multi = {
        "type": "multi",
        "name": "both",
        "graders": {"fuzzy": fuzzy, "exact": CHECK},
        "calculate_output": "0.5 * fuzzy + 0.5 * exact ^ 2",
    }
    combined = run(tenant, multi, "kitten", {"label": "sitting"})
    assert combined["reward"] == pytest.approx(0.5 * 8 / 13)
    assert combined["sub_rewards"] == pytest.approx({"fuzzy": 8 / 13, "exact": 0.0})


def chat_prompt(gateway: Gateway, messages: list[dict[str, str]]) -> str:
    """The text the judge reads for ``messages``: its chat template, ready for the assistant's turn."""
    tokenizer = gateway.app.state.providers.get("local").store.tokenizer(JUDGE)
    return str(render_prompt(tokenizer, messages))


LABELS = ["yes", "no"]
QUESTIONS = ["Is the sky blue?", "Is fire cold?", "Do fish swim?"]


@pytest.mark.parametrize(("question", "passing"), [(q, p) for q in QUESTIONS for p in LABELS])
def test_label_model_chooses_what_the_model_finds_most_likely(
    gateway: Gateway, tenant: Tenant, question: str, passing: str
) -> None:
    grader = {
        "type": "label_model",
        "name": "judge",
        "model": JUDGE,
        "input": [
            {"role": "system", "content": "You judge answers."},
            {"role": "user", "content": "{{item.question}} The answer given: {{sample.output_text}}"},
        ],
        "labels": LABELS,
        "passing_labels": [passing],
    }
    body = run(tenant, grader, "Yes.", {"question": question})
    # The same conversation, as the judge puts it to the model, classified by /v1/classifications.
    asked = [
        {"role": "system", "content": "You judge answers."},
        {"role": "user", "content": f"{question} The answer given: Yes."},
        {"role": "user", "content": label_instruction(LABELS)},
    ]
    with gateway.http(tenant.key) as http:
        classified = http.post(
            "/v1/classifications", json={"model": JUDGE, "input": chat_prompt(gateway, asked), "labels": LABELS}
        )
    assert classified.status_code == 200, classified.text
    label = classified.json()["data"][0]["label"]
    assert label in LABELS  # SmolLM2 puts about half its next-token mass on yes/no here
    metadata = body["metadata"]
    assert body["reward"] == (1.0 if label == passing else 0.0)
    assert not any(v for v in metadata["errors"].values())
    assert metadata["sampled_model_name"] == JUDGE and metadata["token_usage"] > 0
    usage = body["model_grader_token_usage_per_model"][JUDGE]
    assert usage["prompt_tokens"] > 0 and usage["total_tokens"] == metadata["token_usage"]


def test_a_judge_without_the_labels_in_view_cannot_choose(tenant: Tenant) -> None:
    grader = {
        "type": "label_model",
        "name": "judge",
        "model": TINY,
        "input": [{"role": "user", "content": "Is the answer {{sample.output_text}} right?"}],
        "labels": ["correct", "incorrect"],
        "passing_labels": ["correct"],
    }
    body = run(tenant, grader, "4")
    # The tiny model's likeliest next tokens are whitespace: neither label gets any probability.
    assert body["reward"] == 0.0 and body["metadata"]["errors"]["model_grader_parse_error"] is True
    assert "none of the labels" in body["metadata"]["error"]


@pytest.mark.parametrize("judge", [JUDGE, TINY])
def test_score_model_reads_the_judges_number(gateway: Gateway, tenant: Tenant, judge: str) -> None:
    started = int(time.time()) - 1
    messages = [{"role": "user", "content": "Rate the answer '{{sample.output_text}}' to: {{item.question}}"}]
    grader = {
        "type": "score_model",
        "name": "rate",
        "model": judge,
        "input": messages,
        "range": [0, 10],
        "pass_threshold": 7,
        "sampling_params": {"temperature": 0, "max_completions_tokens": 12},
    }
    body = run(tenant, grader, "Paris", {"question": "What is the capital of France?"})
    # The judge's answer, asked directly: greedy decoding gives the same text.
    asked = [
        {"role": "user", "content": "Rate the answer 'Paris' to: What is the capital of France?"},
        {"role": "user", "content": score_instruction(0, 10)},
    ]
    with gateway.http(tenant.key) as http:
        direct = http.post(
            "/v1/chat/completions",
            json={"model": judge, "messages": asked, "temperature": 0, "max_completion_tokens": 12},
        ).json()
    expected = parse_score(direct["choices"][0]["message"]["content"])
    metadata = body["metadata"]
    if judge == JUDGE:  # SmolLM2 answers with a number in range
        assert expected is not None and 0 <= expected <= 10
        assert body["reward"] == expected and not any(v for v in metadata["errors"].values())
    else:  # the tiny model's whitespace holds no number: an errored result, not an error
        assert expected is None
        assert metadata["errors"]["model_grader_parse_error"] is True and body["reward"] == 0.0
        assert "no number" in metadata["error"]
    assert metadata["sampled_model_name"] == judge
    judged = body["model_grader_token_usage_per_model"][judge]
    assert judged["completion_tokens"] == direct["usage"]["completion_tokens"]
    # The judge's calls are metered to the project like any other (the grader's and the direct one: 2).
    with gateway.http(tenant.key) as http:
        page = http.get(
            "/v1/usage/completions", params={"start_time": started, "bucket_width": "1d", "group_by": "model"}
        ).json()
    results = {r["model"]: r for bucket in page["data"] for r in bucket["results"]}
    assert results[judge]["num_model_requests"] == 2
    assert results[judge]["output_tokens"] == 2 * judged["completion_tokens"]


def test_a_judge_that_does_not_exist_is_an_errored_result(tenant: Tenant) -> None:
    grader = {
        "type": "score_model",
        "name": "rate",
        "model": "no-such-model",
        "input": [{"role": "user", "content": "{{sample.output_text}}"}],
    }
    body = run(tenant, grader, "anything")
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["model_grader_server_error"] is True
    assert "no-such-model" in errors["model_grader_server_error_details"]
