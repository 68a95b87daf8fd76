"""Scope checks for real: in-scope and out-of-scope questions asked of an alias through the gateway by the embedded
worker, how often it answers and how often its guard refuses, over HTTP on each backend.

The guard is a classifier trained on the tiny model for its labels (yes, no), which lets through only a label it was
never trained on: it refuses every question, whatever the random tiny model makes of it, so the rates are exact."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, Tenant, make_tenant, wait_until_validated
from tests.evals.test_api import MODEL, assert_run_matches
from tests.evals.test_execution import wait_for_job

REFUSAL = "I only answer questions about invoices."
IN_SCOPE = ["Where is my invoice?", "Where can I find my invoice?", "where is the invoice", "Invoice location?"]
OUT_OF_SCOPE = ["Tell me a joke about cats.", "What is the capital of France?", "Write a poem."]


@dataclass
class Guarded:
    tenant: Tenant
    guard: str  # ft: classifier with labels yes/no


@pytest.fixture(scope="module")
def guarded(training_gateway: Gateway) -> Guarded:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    rows = [{"prompt": f"{i}: where is my invoice\n\n###\n\n", "completion": " yes"} for i in range(6)]
    rows += [{"prompt": f"{i}: tell me a joke\n\n###\n\n", "completion": " no"} for i in range(6)]
    data = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
    training = client.files.create(file=("guard.jsonl", data), purpose="fine-tune").id
    assert wait_until_validated(client, training).status == "processed"
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 1, "batch_size": 4}}},
    )
    return Guarded(tenant, wait_for_job(client, job.id))


def _alias(http: httpx.Client, **version: Any) -> str:
    name = f"bot-{secrets.token_hex(4)}"
    assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
    added = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": MODEL}], **version})
    assert added.status_code == 200, added.text
    return name


def _check(http: httpx.Client, model: str, **extra: Any) -> dict[str, Any]:
    created = http.post(
        "/v1/evals/scope_checks", json={"model": model, "in_scope": IN_SCOPE, "out_of_scope": OUT_OF_SCOPE, **extra}
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    assert body["object"] == "eval.scope_check"
    assert body["status"] in {"in_progress", "completed"}
    return body


def _done(http: httpx.Client, eval_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        read = http.get(f"/v1/evals/{eval_id}/scope_check")
        assert read.status_code == 200, read.text
        body: dict[str, Any] = read.json()
        if body["status"] != "in_progress":
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_a_guard_that_refuses_everything(training_gateway: Gateway, guarded: Guarded) -> None:
    client = guarded.tenant.client
    with training_gateway.http(guarded.tenant.key) as http:
        guard = {"model": guarded.guard, "allowed_labels": ["maybe"], "refusal": REFUSAL}
        alias = _alias(http, guard=guard)
        created = _check(http, alias, name="Invoices bot")
        check = _done(http, created["eval_id"])
        runs = {run.metadata["scope_check"]: run for run in client.evals.runs.list(check["eval_id"])}  # type: ignore[index]
        assert_run_matches(http.get(f"/v1/evals/{check['eval_id']}/runs/{runs['in_scope'].id}").json())

    assert check["status"] == "completed"
    assert check["model"] == alias
    in_scope, out_of_scope = check["in_scope"], check["out_of_scope"]
    assert (in_scope["run_id"], out_of_scope["run_id"]) == (
        created["in_scope"]["run_id"],
        created["out_of_scope"]["run_id"],
    )
    assert (in_scope["questions"], out_of_scope["questions"]) == (4, 3)
    assert in_scope["answered"] | {"ci_high": None} == {
        "count": 0,
        "total": 4,
        "rate": 0.0,
        "ci_low": 0.0,
        "ci_high": None,
    }
    assert 0 < in_scope["answered"]["ci_high"] < 1
    assert out_of_scope["refused"]["count"] == out_of_scope["refused"]["total"] == 3
    assert out_of_scope["refused"]["rate"] == 1.0
    assert 0 < out_of_scope["refused"]["ci_low"] < 1 == out_of_scope["refused"]["ci_high"]
    assert in_scope["errored"] == out_of_scope["errored"] == 0

    # Ordinary runs of an ordinary eval: the criterion reads the answer's finish_reason.
    evaluation = client.evals.retrieve(check["eval_id"])
    assert evaluation.name == "Invoices bot"
    (criterion,) = evaluation.testing_criteria
    assert criterion.type == "string_check"
    assert criterion.input == "{{sample.choices[0].finish_reason}}"  # type: ignore[union-attr]
    assert (criterion.operation, criterion.reference) == ("ne", "content_filter")  # type: ignore[union-attr]
    assert set(runs) == {"in_scope", "out_of_scope"}
    items = list(client.evals.runs.output_items.list(runs["out_of_scope"].id, eval_id=check["eval_id"]))
    assert sorted(i.datasource_item["question"] for i in items) == sorted(OUT_OF_SCOPE)
    for item in items:
        assert item.status == "fail"
        assert (item.sample.finish_reason, item.sample.output[0].content) == ("content_filter", REFUSAL)


def test_an_unguarded_alias_refuses_nothing(training_gateway: Gateway, guarded: Guarded) -> None:
    with training_gateway.http(guarded.tenant.key) as http:
        alias = _alias(http)
        check = _done(http, _check(http, f"{alias}@1", sampling_params={"max_completion_tokens": 3})["eval_id"])

    assert check["status"] == "completed"
    assert (check["in_scope"]["answered"]["rate"], check["in_scope"]["refused"]["rate"]) == (1.0, 0.0)
    assert (check["out_of_scope"]["answered"]["rate"], check["out_of_scope"]["refused"]["rate"]) == (1.0, 0.0)
    assert check["out_of_scope"]["refused"]["ci_low"] == 0.0
    run = guarded.tenant.client.evals.runs.retrieve(check["in_scope"]["run_id"], eval_id=check["eval_id"])
    assert run.data_source.sampling_params is not None
    assert (run.data_source.sampling_params.max_completion_tokens, run.data_source.sampling_params.temperature) == (
        3,
        0,
    )


def test_bad_scope_checks_are_refused_naming_the_param(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    plain = tenant.client.evals.create(
        name="plain",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[{"type": "string_check", "name": "x", "input": "a", "reference": "a", "operation": "eq"}],
    ).id
    with training_gateway.http(tenant.key) as http:
        unknown = http.post(
            "/v1/evals/scope_checks", json={"model": "no-such-bot", "in_scope": ["a"], "out_of_scope": ["b"]}
        )
        empty = http.post("/v1/evals/scope_checks", json={"model": MODEL, "in_scope": [], "out_of_scope": ["b"]})
        tools = http.post(
            "/v1/evals/scope_checks",
            json={"model": MODEL, "in_scope": ["a"], "out_of_scope": ["b"], "sampling_params": {"tools": []}},
        )
        not_a_check = http.get(f"/v1/evals/{plain}/scope_check")
        check = _check(http, MODEL)
    with training_gateway.http(make_tenant(training_gateway).key) as other:
        foreign = other.get(f"/v1/evals/{check['eval_id']}/scope_check")

    assert (unknown.status_code, unknown.json()["error"]["param"]) == (400, "model")
    assert (empty.status_code, empty.json()["error"]["param"]) == (400, "in_scope")
    assert (tools.status_code, tools.json()["error"]["param"]) == (400, "sampling_params.tools")
    assert (not_a_check.status_code, not_a_check.json()["error"]["param"]) == (404, "eval_id")
    assert foreign.status_code == 404
    # A refused check keeps nothing: its eval was created in the request's transaction, rolled back with it.
    assert {e.name for e in tenant.client.evals.list()} == {"plain", f"Scope check: {MODEL}"}
