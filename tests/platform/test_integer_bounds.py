"""Integers past what a column (or a datetime) can hold are 4xx, never a database error, on SQLite and PostgreSQL.

Every integer query and path parameter the OpenAPI document lists is tried with values far outside any range;
alias versions (INTEGER: 1..2^31-1 on PostgreSQL) are a 404 where a path or model name names one that cannot
exist and a 400 in a body; usage times stop at year 9999.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.kit.numbers import INT32_MAX
from app.kit.time import MAX_UNIX_SECONDS
from tests.conftest import Gateway, Tenant

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HUGE = [2**31, 2**32, 2**63, 2**64, 10**30, -(2**31) - 1, -(2**63) - 1, -1, 0]
TARGET = "tiny-smollm2"
ALIASES: dict[str, str] = {}


def _integer_params(gateway: Gateway) -> Iterator[tuple[str, str, dict[str, Any], list[dict[str, Any]]]]:
    for path, methods in gateway.app.openapi()["paths"].items():
        for method, op in methods.items():
            params = op.get("parameters", [])
            for param in params:
                schema = param["schema"]
                types = {schema.get("type")} | {o.get("type") for o in schema.get("anyOf", [])}
                if "integer" in types and param["in"] in ("query", "path"):
                    yield method.upper(), path, param, params


def _alias(gateway: Gateway, tenant: Tenant) -> str:
    name = f"bot-{secrets.token_hex(4)}"
    with gateway.http(tenant.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
        added = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": TARGET}]})
        assert added.status_code == 200, added.text
    return name


def test_every_integer_parameter_refuses_values_out_of_any_range(gateway: Gateway, tenant: Tenant) -> None:
    name = _alias(gateway, tenant)
    tried = set()
    with gateway.http(gateway.admin_key) as http:
        for method, path, param, params in _integer_params(gateway):
            tried.add((path, param["name"]))
            required = {p["name"]: "1" for p in params if p["in"] == "query" and p.get("required")}
            for value in HUGE:
                url = path.replace("{name}", name).replace("{file_id}", "file-x").replace("{project_id}", "x")
                query = dict(required)
                if param["in"] == "path":
                    url = url.replace("{" + param["name"] + "}", str(value))
                else:
                    query[param["name"]] = str(value)
                response = http.request(method, url, params=query)
                where = f"{method} {url} {query}"
                assert 400 <= response.status_code < 500, f"{where}: {response.status_code} {response.text}"
                assert response.json()["error"]["type"] == "invalid_request_error", where
                if param["in"] == "query" and response.status_code == 400:
                    assert response.json()["error"]["param"] in (param["name"], "end_time", "bucket_width"), where
    assert {("/v1/usage/completions", "start_time"), ("/v1/usage/completions", "end_time")} <= tried
    assert ("/v1/registry/aliases/{name}/versions/{version}", "version") in tried


@FUZZ
@given(start=st.integers(), end=st.one_of(st.none(), st.integers()))
def test_usage_times_of_any_size(gateway: Gateway, tenant: Tenant, start: int, end: int | None) -> None:
    query = {"start_time": start, "bucket_width": "1d"} | ({"end_time": end} if end is not None else {})
    with gateway.http(tenant.key) as http:
        response = http.get("/v1/usage/completions", params=query)
    in_range = 0 <= start <= MAX_UNIX_SECONDS and (end is None or 0 <= end <= MAX_UNIX_SECONDS)
    if not in_range:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] in ("start_time", "end_time")
    else:
        assert response.status_code in (200, 400), response.text
        assert response.status_code == 400 or response.json()["object"] == "page"


def test_the_last_representable_second_is_a_valid_end(tenant: Tenant, gateway: Gateway) -> None:
    with gateway.http(tenant.key) as http:
        last = http.get(
            "/v1/usage/completions",
            params={"start_time": MAX_UNIX_SECONDS - 86_400, "end_time": MAX_UNIX_SECONDS, "bucket_width": "1d"},
        )
        past = http.get("/v1/usage/completions", params={"start_time": 1389289840644124})
    assert last.status_code == 200, last.text
    assert last.json()["data"][-1]["end_time"] == MAX_UNIX_SECONDS + 1  # buckets align to whole days
    assert (past.status_code, past.json()["error"]["param"]) == (400, "start_time")


@FUZZ
@given(version=st.integers())
def test_alias_versions_of_any_size(gateway: Gateway, tenant: Tenant, version: int) -> None:
    if tenant.project_id not in ALIASES:  # hypothesis reuses the tenant across examples: one alias each
        ALIASES[tenant.project_id] = _alias(gateway, tenant)
    name = ALIASES[tenant.project_id]
    with gateway.http(tenant.key) as http:
        got = http.get(f"/v1/registry/aliases/{name}/versions/{version}")
        promoted = http.post(f"/v1/registry/aliases/{name}/promote", json={"version": version})
    if version == 1:
        assert (got.status_code, promoted.status_code) == (200, 200)
        return
    # A path naming a version that cannot exist is simply not found; a body field out of range is a bad request.
    assert got.status_code == 404, got.text
    assert got.json()["error"]["code"] == "version_not_found"
    expected = 404 if 1 <= version <= INT32_MAX else 400
    assert promoted.status_code == expected, promoted.text
    assert promoted.json()["error"]["param"] == "version"


@pytest.mark.parametrize("pin", [str(2**31), str(2**63), str(2**64), "10" * 30, "0", "-1", "", "²", "\u0663", "1 "])
def test_pinned_versions_that_cannot_exist_are_model_not_found(gateway: Gateway, tenant: Tenant, pin: str) -> None:
    name = _alias(gateway, tenant)
    with pytest.raises(openai.NotFoundError) as caught:
        tenant.client.chat.completions.create(model=f"{name}@{pin}", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"  # type: ignore[index]


@pytest.mark.parametrize("field", ["max_requests_per_minute", "max_tokens_per_minute"])
def test_rate_limits_fit_their_column(gateway: Gateway, tenant: Tenant, field: str) -> None:
    with gateway.http(gateway.admin_key) as http:
        url = f"/v1/projects/{tenant.project_id}/api_keys"
        too_big = http.post(url, json={"name": "k", field: INT32_MAX + 1})
        biggest = http.post(url, json={"name": "k", field: INT32_MAX})
        assert biggest.status_code == 200, biggest.text
        update = http.post(f"{url}/{biggest.json()['id']}", json={field: 2**63})
    assert (too_big.status_code, too_big.json()["error"]["param"]) == (400, field)
    assert biggest.json()[field] == INT32_MAX
    assert (update.status_code, update.json()["error"]["param"]) == (400, field)


@pytest.mark.parametrize("seed", [2**63, 2**64, -(2**63) - 1])
def test_inference_seed_is_an_int64(tenant: Tenant, seed: int) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        tenant.client.chat.completions.create(
            model=TARGET, messages=[{"role": "user", "content": "hi"}], seed=seed, max_tokens=1
        )
    assert caught.value.body["param"] == "seed"  # type: ignore[index]
