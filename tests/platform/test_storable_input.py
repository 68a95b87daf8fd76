"""Values no backend can store are refused at the door, for every entry point the API describes.

A NUL character (PostgreSQL refuses it in text), a lone surrogate (not UTF-8) and, in JSON bodies, an infinite
number are a 400 with the offending ``param``, wherever they appear: the path, any query parameter, any string (or
number) of any request body, a multipart field. The entry points are read from the app's own OpenAPI document, so
a new route or field is covered without touching this test; nothing may be stored by a refused request.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from app.db import sync_url
from app.kit.orm import Base
from tests.conftest import Gateway, Tenant

Leaf = tuple[tuple[str | int, ...], str]  # where in the body, JSON type

NUL, SURROGATE = "a\x00b", "a\ud800b"
PLACEHOLDERS = {"version": "1"}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _leaves(
    spec: dict[str, Any], schema: dict[str, Any], loc: tuple[str | int, ...], seen: frozenset[str]
) -> Iterator[Leaf]:
    """Every string and number a body can hold, with its location (arrays: element 0, maps: key 'k')."""
    ref = schema.get("$ref")
    if ref in seen:
        return
    seen = seen | {ref} if ref else seen
    schema = _resolve(spec, schema)
    for option in schema.get("anyOf", []) + schema.get("oneOf", []) + schema.get("allOf", []):
        yield from _leaves(spec, option, loc, seen)
    kind = schema.get("type")
    if kind in ("string", "number"):
        yield loc, kind
    if kind == "array" and "items" in schema:
        yield from _leaves(spec, schema["items"], (*loc, 0), seen)
    for name, prop in schema.get("properties", {}).items():
        yield from _leaves(spec, prop, (*loc, name), seen)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from _leaves(spec, extra, (*loc, "k"), seen)


def _body_at(loc: tuple[str | int, ...], value: object) -> object:
    for part in reversed(loc):
        value = [value] if isinstance(part, int) else {part: value}
    return value


def _operations(gateway: Gateway) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in gateway.app.openapi()["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


def _url(path: str, tenant: Tenant, override: dict[str, str] | None = None) -> str:
    values = {"project_id": tenant.project_id, **PLACEHOLDERS, **(override or {})}
    for part in path.split("/"):
        if part.startswith("{"):
            name = part[1:-1]
            path = path.replace(part, values.get(name, "x"))
    return path


def _row_counts(gateway: Gateway) -> dict[str, int]:
    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.connect() as conn:
            return {
                t.name: conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                for t in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _assert_refused(response: httpx.Response, param: str, where: str) -> None:
    assert response.status_code == 400, f"{where}: {response.status_code} {response.text}"
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, "invalid_value"), where
    assert "cannot be stored" in error["message"] or "finite" in error["message"], where


def test_every_body_string_and_number_is_checked(gateway: Gateway, tenant: Tenant) -> None:
    spec = gateway.app.openapi()
    before = _row_counts(gateway)
    tried = 0
    with gateway.http(gateway.admin_key) as http:
        for method, path, op in _operations(gateway):
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body is None:
                continue
            for loc, kind in _leaves(spec, body["schema"], (), frozenset()):
                param = ".".join(map(str, loc))
                bad_values = [float("inf"), float("-inf")] if kind == "number" else [NUL, SURROGATE]
                for bad in bad_values:
                    content = json.dumps(_body_at(loc, bad))  # Infinity is what Python's JSON parser lets in
                    response = http.request(
                        method, _url(path, tenant), content=content, headers={"content-type": "application/json"}
                    )
                    _assert_refused(response, param, f"{method} {path} {param}={bad!r}")
                    tried += 1
        # A key of a free-form map counts too (metadata).
        response = http.post("/v1/fine_tuning/jobs", json={"metadata": {NUL: "v"}})
        _assert_refused(response, "metadata", "metadata key")
    assert tried > 60  # every request model's fields, not a handful
    assert _row_counts(gateway) == before


def test_every_path_and_query_parameter_is_checked(gateway: Gateway, tenant: Tenant) -> None:
    before = _row_counts(gateway)
    tried = 0
    with gateway.http(gateway.admin_key) as http:
        for method, path, op in _operations(gateway):
            for parameter in op.get("parameters", []):
                name = parameter["name"]
                if parameter["in"] == "path":
                    url = _url(path, tenant, {name: "a%00b"})
                    _assert_refused(http.request(method, url), "path", f"{method} {path} {name}")
                elif parameter["in"] == "query":
                    response = http.request(method, _url(path, tenant), params={name: NUL})
                    _assert_refused(response, name, f"{method} {path} ?{name}")
                else:
                    continue
                tried += 1
        _assert_refused(http.get("/v1/files", params={NUL: "1"}), "query", "a query parameter's name")
        _assert_refused(http.get("/v1/files%00"), "path", "a path outside every route")
    assert tried > 30
    assert _row_counts(gateway) == before


@pytest.mark.parametrize(
    ("fields", "filename", "param"),
    [
        ({"purpose": "fine-tune\x00"}, "a.jsonl", "purpose"),
        ({"purpose": "fine-tune", "expires_after[anchor]": "created_at\x00"}, "a.jsonl", "expires_after[anchor]"),
        ({"purpose": "fine-tune"}, "a\x00b.jsonl", "file"),
    ],
)
def test_multipart_fields_and_file_names_are_checked(
    gateway: Gateway, tenant: Tenant, fields: dict[str, str], filename: str, param: str
) -> None:
    before = _row_counts(gateway)
    with gateway.http(tenant.key) as http:
        response = http.post("/v1/files", data=fields, files={"file": (filename, b'{"prompt": "a"}\n')})
    _assert_refused(response, param, param)
    assert _row_counts(gateway) == before
    assert list(gateway.settings.tmp_dir.glob("upload-*")) == []
