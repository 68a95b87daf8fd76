"""Comparisons over HTTP on the shared gateway (no worker: runs stay queued): what a queued comparison reads, and
every bad request a 4xx naming its ``param``; another project's evals and runs are plain 404s."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Gateway, Tenant
from tests.evals.test_api import MODEL, _completions, _eval


def _source() -> dict[str, Any]:
    source = _completions()
    del source["model"]
    return source


def _post(gateway: Gateway, tenant: Tenant, eval_id: str, body: dict[str, Any]) -> Any:
    with gateway.http(tenant.key) as http:
        return http.post(f"/v1/evals/{eval_id}/comparisons", json=body)


def _get(gateway: Gateway, tenant: Tenant, eval_id: str, run_ids: list[str]) -> Any:
    with gateway.http(tenant.key) as http:
        return http.get(f"/v1/evals/{eval_id}/comparison", params={"run_ids": ",".join(run_ids)})


def test_a_queued_comparison_has_a_run_per_model_and_no_figures_yet(gateway: Gateway, tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    created = _post(gateway, tenant, eval_id, {"models": [MODEL, "smollm2-135m-instruct"], "data_source": _source()})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["object"], body["status"], body["eval_id"]) == ("eval.comparison", "in_progress", eval_id)
    assert [column["model"] for column in body["runs"]] == [MODEL, "smollm2-135m-instruct"]
    for column in body["runs"]:
        run = tenant.client.evals.runs.retrieve(column["run_id"], eval_id=eval_id)
        assert (run.status, run.model) == ("queued", column["model"])
        assert column["overall"] == {"passed": 0, "total": 0, "pass_rate": None, "ci_low": None, "ci_high": None}
    again = _get(gateway, tenant, eval_id, [column["run_id"] for column in body["runs"]])
    assert again.status_code == 200 and again.json()["runs"] == body["runs"]
    assert again.json()["disagreements"] == {"total": 0, "has_more": False, "data": []}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"models": [MODEL]}, "models"),
        ({"models": [MODEL, MODEL]}, "models"),
        ({"models": [MODEL, "no-such-model"]}, "models[1]"),
        ({"data_source": {**_source(), "model": MODEL}}, "data_source.model"),
    ],
)
def test_a_bad_comparison_is_a_400_naming_it(
    gateway: Gateway, tenant: Tenant, change: dict[str, Any], param: str
) -> None:
    eval_id = _eval(tenant)
    response = _post(
        gateway, tenant, eval_id, {"models": [MODEL, "smollm2-135m-instruct"], "data_source": _source()} | change
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
    assert list(tenant.client.evals.runs.list(eval_id)) == []  # nothing kept of a refused comparison


def test_reading_a_comparison_needs_two_to_five_runs_of_the_eval(
    gateway: Gateway, tenant: Tenant, other_tenant: Tenant
) -> None:
    eval_id = _eval(tenant)
    created = _post(gateway, tenant, eval_id, {"models": [MODEL, "smollm2-135m-instruct"], "data_source": _source()})
    ids = [column["run_id"] for column in created.json()["runs"]]
    assert _get(gateway, tenant, eval_id, ids[:1]).json()["error"]["param"] == "run_ids"
    assert _get(gateway, tenant, eval_id, [ids[0], ids[0]]).json()["error"]["param"] == "run_ids"
    other_eval = _eval(tenant)
    assert _get(gateway, tenant, other_eval, ids).status_code == 404  # runs of another eval
    assert _get(gateway, other_tenant, eval_id, ids).status_code == 404  # another project's eval
    theirs = _eval(other_tenant)
    assert _get(gateway, other_tenant, theirs, ids).status_code == 404  # another project's runs
    assert (
        _post(gateway, other_tenant, eval_id, {"models": [MODEL, MODEL + "x"], "data_source": _source()}).status_code
        == 404
    )
