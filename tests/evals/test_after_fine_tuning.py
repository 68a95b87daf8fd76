"""A job with a validation file ends with an eval of its model against its base on that file, for real: the embedded
worker trains the tiny model, queues the eval in the transaction that completes the job, runs both runs, and the job's
events tell the figures. All through the openai SDK over HTTP, on each backend."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types.fine_tuning import FineTuningJobEvent

from app.migrate import upgrade
from tests.conftest import Gateway, gateway_settings, make_tenant, new_database, serve, wait_until_validated
from tests.evals.test_api import MODEL, assert_run_matches
from tests.evals.test_execution import NEGATIVE, POSITIVE, _reviews, wait_for_job

EVALUATING = "Evaluating "
FIGURES = "Eval on the validation file: "
NO_EVAL = "No eval after training: "
QUICK = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 30}


def _upload(client: OpenAI, rows: list[dict[str, Any]], name: str) -> str:
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    file_id = client.files.create(file=(name, data), purpose="fine-tune").id
    assert wait_until_validated(client, file_id).status == "processed"
    return file_id


def _sentiment(reviews: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{"prompt": f"Review: {r['text']}\n\n###\n\n", "completion": f" {r['label']} END"} for r in reviews]


def _events(client: OpenAI, job_id: str) -> list[FineTuningJobEvent]:
    """Oldest first."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def wait_for_event(client: OpenAI, job_id: str, prefix: str, timeout: float = 240) -> FineTuningJobEvent:
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in _events(client, job_id) if e.message.startswith(prefix)]
        if found:
            (event,) = found
            return event
        assert time.monotonic() < deadline, [e.message for e in _events(client, job_id)]
        time.sleep(0.2)


def _job(client: OpenAI, training: str, validation: str | None, hyper: dict[str, Any], **extra: Any) -> str:
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        validation_file=validation,
        seed=5,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        **extra,
    )
    return job.id


def test_a_classifier_ends_with_its_eval_against_its_base(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    train = _reviews(POSITIVE * 2, "positive", 0) + _reviews(NEGATIVE * 2, "negative", 100)
    held_out = _reviews(POSITIVE[:6], "positive", 500) + _reviews(NEGATIVE[:6], "negative", 600)
    training = _upload(client, _sentiment(train), "sentiment.jsonl")
    validation = _upload(client, _sentiment(held_out), "held-out.jsonl")
    job_id = _job(client, training, validation, {"n_epochs": 3, "batch_size": 4, "learning_rate_multiplier": 30})

    tuned = wait_for_job(client, job_id)
    # Queued in the transaction that completed the job: there as soon as the job has succeeded.
    messages = [e.message for e in _events(client, job_id)]
    completed = messages.index("The job has successfully completed")
    evaluating = next(m for m in messages if m.startswith(EVALUATING))
    assert messages.index(evaluating) == completed + 1
    assert evaluating.startswith(f"Evaluating {tuned} against its base {MODEL} on the validation file: eval eval_")
    assert "12 rows, classification/accuracy" in evaluating
    figures = wait_for_event(client, job_id, FIGURES)

    data = figures.data
    assert data is not None
    eval_id, base_id, tuned_id = data["eval_id"], data["base_run_id"], data["fine_tuned_run_id"]
    assert f"(eval {eval_id})" in figures.message
    base, fine_tuned = data["base"], data["fine_tuned"]
    assert (base["model"], fine_tuned["model"]) == (MODEL, tuned)
    assert base["total"] == fine_tuned["total"] == 12
    assert fine_tuned["pass_rate"] >= base["pass_rate"]
    assert fine_tuned["pass_rate"] > 0, "the fine-tuned classifier names a label for some review"
    assert data["difference"] == fine_tuned["pass_rate"] - base["pass_rate"]
    for rate in (base, fine_tuned):
        assert rate["ci_low"] <= rate["pass_rate"] <= rate["ci_high"]
        assert f"{rate['passed']}/12 ({rate['pass_rate']:.1%}, 95% CI [{rate['ci_low']:.1%}" in figures.message

    evaluation = client.evals.retrieve(eval_id)
    assert evaluation.metadata == {"fine_tuning_job_id": job_id}
    assert evaluation.name == f"{job_id} validation"
    (criterion,) = evaluation.testing_criteria
    assert criterion.type == "string_check"
    assert (criterion.operation, criterion.name) == ("eq", "classification/accuracy")  # type: ignore[union-attr]
    runs = {run.id: run for run in client.evals.runs.list(eval_id)}
    assert set(runs) == {base_id, tuned_id}
    for run_id, role, model in ((base_id, "base", MODEL), (tuned_id, "fine_tuned", tuned)):
        run = runs[run_id]
        assert run.status == "completed"
        assert run.metadata == {"fine_tuning_job_id": job_id, "role": role}
        assert run.model == model
        assert run.result_counts.total == 12
        source = run.data_source
        assert source.type == "completions"
        assert source.sampling_params is not None and source.sampling_params.temperature == 0
        assert source.source.type == "file_id"
        assert client.files.retrieve(source.source.id).purpose == "evals"
    assert runs[tuned_id].result_counts.passed == fine_tuned["passed"]
    with training_gateway.http(tenant.key) as http:
        assert_run_matches(http.get(f"/v1/evals/{eval_id}/runs/{tuned_id}").json())
        side_by_side = http.get(f"/v1/fine_tuning/jobs/{job_id}/eval")
    assert side_by_side.status_code == 200, side_by_side.text
    comparison = side_by_side.json()
    assert (comparison["eval_id"], comparison["status"]) == (eval_id, "completed")
    assert [c["run_id"] for c in comparison["runs"]] == [base_id, tuned_id]
    assert [c["overall"]["pass_rate"] for c in comparison["runs"]] == [base["pass_rate"], fine_tuned["pass_rate"]]

    # The rows are the validation file's: the label is the reference, as the fine-tuned model answers it.
    items = list(client.evals.runs.output_items.list(tuned_id, eval_id=eval_id, limit=100))
    labels = {f"Review: {r['text']}\n\n###\n\n": r["label"] for r in held_out}
    assert {i.datasource_item["prompt"]: i.datasource_item["reference"] for i in items} == labels
    for item in items:
        answer = item.sample.output[0].content
        assert (item.status == "pass") == (answer == item.datasource_item["reference"])


def test_a_chat_job_is_graded_by_similarity(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client

    def conversation(i: int) -> dict[str, Any]:
        return {
            "messages": [
                {"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": f"What is the colour of box {i}?"},
                {"role": "assistant", "content": f"Box {i} is blue."},
            ]
        }

    training = _upload(client, [conversation(i) for i in range(12)], "chat.jsonl")
    validation = _upload(client, [conversation(i) for i in range(100, 110)], "chat-valid.jsonl")
    job_id = _job(client, training, validation, QUICK)
    wait_for_job(client, job_id)
    figures = wait_for_event(client, job_id, FIGURES)

    assert figures.data is not None
    eval_id = figures.data["eval_id"]
    (criterion,) = client.evals.retrieve(eval_id).testing_criteria
    assert criterion.type == "text_similarity"
    assert criterion.evaluation_metric == "rouge_l"  # type: ignore[union-attr]
    assert criterion.pass_threshold == 0.5  # type: ignore[union-attr]
    run = client.evals.runs.retrieve(figures.data["fine_tuned_run_id"], eval_id=eval_id)
    assert run.data_source.type == "completions"
    assert run.data_source.input_messages is not None
    assert run.data_source.input_messages.type == "item_reference"
    items = list(client.evals.runs.output_items.list(run.id, eval_id=eval_id, limit=100))
    assert len(items) == 10
    for item in items:
        messages = item.datasource_item["messages"]
        assert [m["role"] for m in messages] == ["system", "user"]
        number = messages[1]["content"].split()[-1].rstrip("?")
        assert item.datasource_item["reference"] == f"Box {number} is blue."
        # What the model was asked is the conversation without its last answer.
        assert [(m.role, m.content) for m in item.sample.input] == [(m["role"], m["content"]) for m in messages]
        (result,) = item.results
        assert result.passed == (result.score >= 0.5)  # type: ignore[attr-defined]


def test_no_validation_file_or_evals_off_no_eval(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    rows = _sentiment(_reviews(POSITIVE, "positive", 0) + _reviews(NEGATIVE, "negative", 100))
    training = _upload(client, rows, "train.jsonl")
    validation = _upload(client, rows[:5] + rows[-5:], "valid.jsonl")
    without = _job(client, training, None, QUICK)
    switched_off = _job(client, training, validation, QUICK, metadata={"ftgw_eval": "off"})

    for job_id in (without, switched_off):
        wait_for_job(client, job_id)
        messages = [e.message for e in _events(client, job_id)]
        assert messages[-1] == "The job has successfully completed"
        assert not any(m.startswith((EVALUATING, NO_EVAL)) for m in messages)
        with training_gateway.http(tenant.key) as http:
            missing = http.get(f"/v1/fine_tuning/jobs/{job_id}/eval")
        assert missing.status_code == 404
        assert missing.json()["error"]["param"] == "fine_tuning_job_id"
    assert list(client.evals.list()) == []


def test_a_dpo_job_says_why_it_is_not_evaluated(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"Greet person {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"Hello, person {i}!"}],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        }
        for i in range(12)
    ]
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(client, rows, "prefs.jsonl"),
        validation_file=_upload(client, rows[:10], "prefs-valid.jsonl"),
        method={"type": "dpo", "dpo": {"hyperparameters": {**QUICK, "beta": 0.2}}},
    )
    wait_for_job(client, job.id)

    (skipped,) = [e for e in _events(client, job.id) if e.message.startswith(NO_EVAL)]
    assert "preference (DPO) data" in skipped.message
    assert list(client.evals.list()) == []


def test_a_gateway_with_evals_off_evaluates_no_job(database_url: str, tmp_path: Path, model_cache: Path) -> None:
    with new_database(database_url, tmp_path) as url:
        upgrade(url)
        settings = gateway_settings(
            url, tmp_path / "data", model_cache, embedded_worker=True, eval_after_fine_tuning=False
        )
        with serve(settings) as gateway:
            client = make_tenant(gateway).client
            rows = _sentiment(_reviews(POSITIVE, "positive", 0) + _reviews(NEGATIVE, "negative", 100))
            training = _upload(client, rows, "train.jsonl")
            job_id = _job(client, training, _upload(client, rows[:10], "valid.jsonl"), QUICK)
            wait_for_job(client, job_id)

            assert _events(client, job_id)[-1].message == "The job has successfully completed"
            assert list(client.evals.list()) == []
