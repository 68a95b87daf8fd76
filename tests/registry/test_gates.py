"""Release gates over real HTTP: an alias version that names a gate is activated only once an eval, run by the
embedded worker on the version itself (``alias@N``: its targets, fallbacks and guard), says it is good enough.

The worse candidate is deterministic: its guard allows only a label that no token of the tiny model's vocabulary
spells (nor begins), so the guard finds no probability for it and refuses every request with its refusal text, which
the eval's criterion fails. The same routing without the guard answers something else to every row and passes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from openai import OpenAI

from tests.conftest import Gateway, Tenant, make_tenant

MODEL = "tiny-smollm2"
REFUSAL = "REFUSED"
NEVER = "ꙮ"  # no token of the tiny model's vocabulary is this or a prefix of it
REFUSE_ALL: dict[str, Any] = {"model": MODEL, "allowed_labels": [NEVER], "refusal": REFUSAL}
ANSWERS: dict[str, Any] = {
    "type": "string_check",
    "name": "Answers",
    "input": "{{sample.output_text}}",
    "reference": REFUSAL,
    "operation": "ne",
}
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"question": {"type": "string"}},
    "required": ["question"],
}
QUESTIONS = ["What is two plus two?", "Name a colour.", "Say hello."]


def data_source(**changes: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "type": "completions",
        "input_messages": {"type": "template", "template": [{"role": "user", "content": "{{item.question}}"}]},
        "sampling_params": {"temperature": 0, "max_completion_tokens": 2, "seed": 3},
        "source": {"type": "file_content", "content": [{"item": {"question": q}} for q in QUESTIONS]},
    }
    source.update(changes)
    return source


def gate(eval_id: str, **thresholds: Any) -> dict[str, Any]:
    return {"eval_id": eval_id, "data_source": data_source(), **thresholds}


def new_eval(client: OpenAI) -> str:
    config = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
    return client.evals.create(name="Answers", data_source_config=config, testing_criteria=[ANSWERS]).id


@contextmanager
def registry(gateway: Gateway, tenant: Tenant) -> Iterator[httpx.Client]:
    with gateway.http(tenant.key) as http:
        http.timeout = httpx.Timeout(180)  # a gated promotion answers once its eval has run
        yield http


def new_alias(http: httpx.Client) -> str:
    name = f"bot-{secrets.token_hex(4)}"
    created = http.post("/v1/registry/aliases", json={"name": name})
    assert created.status_code == 200, created.text
    return name


def add_version(http: httpx.Client, alias: str, **fields: Any) -> httpx.Response:
    return http.post(f"/v1/registry/aliases/{alias}/versions", json={"targets": [{"model": MODEL}], **fields})


def promote(http: httpx.Client, alias: str, version: int) -> httpx.Response:
    return http.post(f"/v1/registry/aliases/{alias}/promote", json={"version": version})


def active_version(http: httpx.Client, alias: str) -> int | None:
    found: int | None = http.get(f"/v1/registry/aliases/{alias}").json()["active_version"]
    return found


def changes(http: httpx.Client, alias: str) -> list[dict[str, Any]]:
    """The alias's audit log, newest first."""
    page = http.get("/v1/registry/changes", params={"alias": alias, "limit": 100})
    assert page.status_code == 200, page.text
    found: list[dict[str, Any]] = page.json()["data"]
    return found


def assert_run(client: OpenAI, eval_id: str, run_id: str, model: str, passed: int) -> None:
    """The run that decided exists, is completed, ran ``model`` on every row, and passed ``passed`` of them."""
    run = client.evals.runs.retrieve(run_id, eval_id=eval_id)
    assert (run.status, run.model) == ("completed", model)
    assert run.result_counts.total == len(QUESTIONS)
    assert run.result_counts.passed == passed


def test_a_gate_refuses_a_worse_candidate_and_admits_a_better_one(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    eval_id = new_eval(client)
    with registry(training_gateway, tenant) as http:
        alias = new_alias(http)
        assert add_version(http, alias).status_code == 200  # v1, ungated, active
        worse = add_version(
            http, alias, guard=REFUSE_ALL, gate=gate(eval_id, min_pass_rate={"Answers": 0.8}), activate=False
        )
        assert worse.status_code == 200, worse.text
        assert worse.json()["gate"]["eval_id"] == eval_id and worse.json()["gate"]["timeout_seconds"] == 600

        refused = promote(http, alias, 2)

        assert refused.status_code == 409, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"], error["type"]) == ("gate_failed", "version", "invalid_request_error")
        assert "'Answers' passed 0.0% (0/3), below the minimum 80.0%" in error["message"]
        figures = error["gate"]
        assert figures["outcome"] == "failed" and figures["eval_id"] == eval_id
        assert figures["active"] is None  # no max_regression: the active version is not run
        (criterion,) = figures["criteria"]
        assert (criterion["name"], criterion["min_pass_rate"], criterion["passed"]) == ("Answers", 0.8, False)
        assert (criterion["candidate"]["passed"], criterion["candidate"]["total"]) == (0, 3)
        assert criterion["candidate"]["ci_low"] == 0.0 < criterion["candidate"]["ci_high"] < 0.8
        assert figures["candidate"]["run_id"] in error["message"]
        assert active_version(http, alias) == 1
        newest = changes(http, alias)[0]
        assert (newest["action"], newest["version"]) == ("version.gate_failed", 2)
        assert newest["detail"] == {"active_version": 1, "gate": figures}
        assert_run(client, eval_id, figures["candidate"]["run_id"], f"{alias}@2", passed=0)
        items = client.evals.runs.output_items.list(figures["candidate"]["run_id"], eval_id=eval_id)
        assert {item.sample.output[0].content for item in items} == {REFUSAL}  # the guard was part of the run

        better = add_version(http, alias, gate=gate(eval_id, min_pass_rate=0.8, max_regression=0), activate=False)
        assert better.status_code == 200, better.text
        admitted = promote(http, alias, 3)

        assert admitted.status_code == 200, admitted.text
        assert admitted.json()["active_version"] == 3
        newest = changes(http, alias)[0]
        assert (newest["action"], newest["version"], newest["detail"]["from_version"]) == ("version.promoted", 3, 1)
        verdict = newest["detail"]["gate"]
        assert verdict["outcome"] == "passed" and verdict["reasons"] == []
        (criterion,) = verdict["criteria"]
        assert criterion["candidate"]["pass_rate"] == criterion["active"]["pass_rate"] == 1.0
        assert criterion["regression"] == 0.0 and criterion["passed"] is True
        assert_run(client, eval_id, verdict["candidate"]["run_id"], f"{alias}@3", passed=3)
        assert_run(client, eval_id, verdict["active"]["run_id"], f"{alias}@1", passed=3)

        # Rollback is the escape hatch: never gated, no eval runs.
        runs_before = len(list(client.evals.runs.list(eval_id, limit=100)))
        back = http.post(f"/v1/registry/aliases/{alias}/rollback")
        assert back.status_code == 200, back.text
        assert back.json()["active_version"] == 1
        assert len(list(client.evals.runs.list(eval_id, limit=100))) == runs_before


def test_max_regression_is_measured_against_the_active_version(training_gateway: Gateway) -> None:
    """The same refusing routing passes against an active version as bad as it, and fails against a good one; a
    gated version activated at creation (a canary weight change) that fails is kept, inactive."""
    tenant = make_tenant(training_gateway)
    client = tenant.client
    eval_id = new_eval(client)
    within_ten_points = gate(eval_id, max_regression=10)
    with registry(training_gateway, tenant) as http:
        alias = new_alias(http)
        assert add_version(http, alias, guard=REFUSE_ALL).status_code == 200  # v1: refuses all, active

        as_bad = add_version(http, alias, guard=REFUSE_ALL, gate=within_ten_points)  # v2, activated at creation
        assert as_bad.status_code == 200, as_bad.text
        assert active_version(http, alias) == 2
        verdict = changes(http, alias)[0]["detail"]["gate"]
        assert verdict["criteria"][0]["candidate"]["pass_rate"] == verdict["criteria"][0]["active"]["pass_rate"] == 0
        assert verdict["active"]["version"] == 1

        assert add_version(http, alias).status_code == 200  # v3: answers all, active
        worse = add_version(
            http, alias, targets=[{"model": MODEL, "weight": 3}], guard=REFUSE_ALL, gate=within_ten_points
        )

        assert worse.status_code == 409, worse.text
        error = worse.json()["error"]
        assert (error["code"], error["param"]) == ("gate_failed", "activate")
        assert "'Answers' passed 0.0% (0/3) against 100.0% (3/3) for the active version 3" in error["message"]
        assert "100.0 points worse, more than the 10 allowed" in error["message"]
        assert error["message"].endswith("Version 4 was created and stays inactive.")
        assert error["gate"]["criteria"][0]["regression"] == 100.0
        versions = http.get(f"/v1/registry/aliases/{alias}/versions").json()["data"]
        assert [v["version"] for v in versions] == [1, 2, 3, 4]
        assert versions[3]["gate"]["max_regression"] == 10
        assert active_version(http, alias) == 3
        log = changes(http, alias)
        assert [(c["action"], c["version"]) for c in log[:2]] == [("version.gate_failed", 4), ("version.created", 4)]
        assert_run(client, eval_id, error["gate"]["candidate"]["run_id"], f"{alias}@4", passed=0)
        assert_run(client, eval_id, error["gate"]["active"]["run_id"], f"{alias}@3", passed=3)

        # Calls to the alias are answered by the active version all along, not the refusing candidate.
        answer = client.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "Hi"}], max_completion_tokens=2
        )
        assert answer.choices[0].message.content != REFUSAL


def test_a_gate_whose_runs_cannot_finish_is_inconclusive(gateway: Gateway, tenant: Tenant) -> None:
    """The shared gateway runs no worker: the gate's runs stay queued past its timeout, and are canceled."""
    client = tenant.client
    eval_id = new_eval(client)
    with registry(gateway, tenant) as http:
        alias = new_alias(http)
        assert add_version(http, alias).status_code == 200
        created = add_version(http, alias, gate=gate(eval_id, min_pass_rate=0.5, timeout_seconds=1), activate=False)
        assert created.status_code == 200, created.text

        stuck = promote(http, alias, 2)

        assert stuck.status_code == 409, stuck.text
        error = stuck.json()["error"]
        assert error["code"] == "gate_inconclusive"
        run_id = error["gate"]["candidate"]["run_id"]
        assert f"the candidate version's run {run_id} ({alias}@2) did not finish within 1 s" in error["message"]
        assert client.evals.runs.retrieve(run_id, eval_id=eval_id).status == "canceled"
        newest = changes(http, alias)[0]
        assert (newest["action"], newest["detail"]["gate"]["outcome"]) == ("version.gate_inconclusive", "inconclusive")
        assert active_version(http, alias) == 1

        client.evals.delete(eval_id)
        gone = promote(http, alias, 2)

        assert gone.status_code == 409, gone.text
        assert gone.json()["error"]["code"] == "gate_inconclusive"
        assert "its runs could not be created: No such eval" in gone.json()["error"]["message"]
        assert changes(http, alias)[0]["action"] == "version.gate_inconclusive"
        assert active_version(http, alias) == 1


def test_a_gate_is_checked_when_its_version_is_made(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    eval_id = new_eval(tenant.client)
    theirs = new_eval(other_tenant.client)
    cases: list[tuple[dict[str, Any], str]] = [
        ({**gate(eval_id, min_pass_rate=0.5), "eval_id": "eval_doesnotexist"}, "gate.eval_id"),
        (gate(theirs, min_pass_rate=0.5), "gate.eval_id"),  # another project's eval is as unknown as none
        ({**gate(eval_id, min_pass_rate=0.5), "data_source": data_source(model=MODEL)}, "gate.data_source.model"),
        (
            {
                **gate(eval_id, max_regression=5),
                "data_source": data_source(
                    input_messages={"type": "template", "template": [{"role": "user", "content": "{{item.nope}}"}]}
                ),
            },
            "gate.data_source.input_messages.template[0]",
        ),
        (
            {**gate(eval_id, max_regression=5), "data_source": data_source(source={"type": "file_id", "id": "file-x"})},
            "gate.data_source.source.id",
        ),
        (
            {
                **gate(eval_id, max_regression=5),
                "data_source": data_source(source={"type": "file_content", "content": [{"item": {"q": 1}}]}),
            },
            "gate.data_source.source.content[0]",
        ),
        (gate(eval_id, min_pass_rate={"Answers": 0.5, "Nope": 0.5}), "gate.min_pass_rate"),
        (gate(eval_id), "gate"),  # neither threshold
        (gate(eval_id, min_pass_rate=1.5), "gate.min_pass_rate"),
        (gate(eval_id, max_regression=101), "gate.max_regression"),
    ]
    with registry(gateway, tenant) as http:
        alias = new_alias(http)
        for body, param in cases:
            refused = add_version(http, alias, gate=body)
            assert refused.status_code == 400, (param, refused.text)
            assert refused.json()["error"]["param"] == param, refused.text
        unknown = add_version(http, alias, gate=gate("eval_doesnotexist", min_pass_rate=0.5)).json()["error"]
        foreign = add_version(http, alias, gate=gate(theirs, min_pass_rate=0.5)).json()["error"]
        assert unknown["code"] == foreign["code"] == "eval_not_found"
        assert foreign["message"] == f"No eval '{theirs}' in this project."
        assert http.get(f"/v1/registry/aliases/{alias}/versions").json()["data"] == []


def test_an_ungated_promotion_is_unchanged(gateway: Gateway, tenant: Tenant) -> None:
    with registry(gateway, tenant) as http:
        alias = new_alias(http)
        assert add_version(http, alias).status_code == 200
        second = add_version(http, alias, activate=False)
        assert second.status_code == 200 and second.json()["gate"] is None

        promoted = promote(http, alias, 2)

        assert promoted.status_code == 200, promoted.text
        assert promoted.json()["active_version"] == 2
        newest = changes(http, alias)[0]
        assert (newest["action"], newest["version"], newest["detail"]) == ("version.promoted", 2, {"from_version": 1})
