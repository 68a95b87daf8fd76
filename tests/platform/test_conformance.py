"""Our lists and streams as OpenAI's spec has them: an empty page keeps every required key, and a route that can
answer with server-sent events says so in our OpenAPI document, with the schema of each event's data."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from app.config import Settings
from app.main import create_app
from tests.conftest import Gateway, Tenant
from tests.fine_tuning.test_training import MODEL, _upload, qa_rows
from tests.openai_schema import assert_matches

LIST_KEYS = {"object", "data", "first_id", "last_id", "has_more"}


@pytest.fixture
def job_id(tenant: Tenant) -> str:
    """A queued job (the API gateway has no worker): it has events, but no checkpoints."""
    return tenant.client.fine_tuning.jobs.create(model=MODEL, training_file=_upload(tenant.client, qa_rows(10))).id


def _get(gateway: Gateway, tenant: Tenant, path: str) -> dict[str, Any]:
    with gateway.http(tenant.key) as http:
        response = http.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_an_empty_file_list_has_null_cursor_ids(gateway: Gateway, tenant: Tenant) -> None:
    body = _get(gateway, tenant, "/v1/files?purpose=evals")

    assert body == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    # OpenAI's ListFilesResponse requires first_id/last_id but types them as plain strings: an empty page has no id
    # to give, and OpenAI's API answers null there. Everything else must match the schema as it is.
    assert_matches({**body, "first_id": "file-none", "last_id": "file-none"}, "ListFilesResponse")


def test_a_file_list_matches_openai_and_leaves_unset_fields_out(gateway: Gateway, tenant: Tenant) -> None:
    uploaded = _upload(tenant.client, qa_rows(10))

    body = _get(gateway, tenant, "/v1/files")

    assert_matches(body, "ListFilesResponse")
    assert (body["first_id"], body["last_id"]) == (uploaded, uploaded)
    assert "expires_at" not in body["data"][0]  # no expiry: left out, as OpenAI does (null is not in its schema)
    assert_matches(_get(gateway, tenant, f"/v1/files/{uploaded}"), "OpenAIFile")


def test_empty_job_lists_match_openai(gateway: Gateway, tenant: Tenant) -> None:
    assert_matches(_get(gateway, tenant, "/v1/fine_tuning/jobs"), "ListPaginatedFineTuningJobsResponse")
    assert _get(gateway, tenant, "/v1/fine_tuning/jobs")["data"] == []


def test_empty_event_and_checkpoint_pages_match_openai(gateway: Gateway, tenant: Tenant, job_id: str) -> None:
    events = _get(gateway, tenant, f"/v1/fine_tuning/jobs/{job_id}/events")
    oldest = events["data"][-1]["id"]
    assert_matches(events, "ListFineTuningJobEventsResponse")

    after_oldest = _get(gateway, tenant, f"/v1/fine_tuning/jobs/{job_id}/events?after={oldest}")
    checkpoints = _get(gateway, tenant, f"/v1/fine_tuning/jobs/{job_id}/checkpoints")

    assert after_oldest["data"] == [] and checkpoints["data"] == []
    assert_matches(after_oldest, "ListFineTuningJobEventsResponse")
    assert_matches(checkpoints, "ListFineTuningJobCheckpointsResponse")
    assert checkpoints.keys() >= LIST_KEYS and checkpoints["first_id"] is None


def test_model_list_matches_openai(gateway: Gateway, tenant: Tenant) -> None:
    assert_matches(_get(gateway, tenant, "/v1/models"), "ListModelsResponse")


@pytest.mark.parametrize(
    "path",
    ["/v1/webhooks", "/v1/registry/aliases", "/v1/registry/changes"],
)
def test_our_own_empty_lists_keep_the_whole_envelope(gateway: Gateway, tenant: Tenant, path: str) -> None:
    assert _get(gateway, tenant, path) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


# --- streams in our OpenAPI document ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("spec"), _env_file=None)  # type: ignore[call-arg]
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def _resolve(spec: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _streamable(spec: dict[str, Any], operation: dict[str, Any]) -> bool:
    """Whether the caller can ask for a stream: a `stream` query parameter or a `stream` field in the body."""
    if any(p["name"] == "stream" for p in operation.get("parameters", [])):
        return True
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    return body is not None and "stream" in _resolve(spec, body).get("properties", {})


def _operations(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        f"{method.upper()} {path}": operation
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    }


def test_every_streamable_route_declares_its_event_stream(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    streamable = {name for name, op in operations.items() if _streamable(spec, op)}
    declared = {
        name
        for name, op in operations.items()
        if "text/event-stream" in op["responses"].get("200", {}).get("content", {})
    }

    assert streamable == declared
    assert {
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "GET /v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
    } <= streamable


@pytest.mark.parametrize(
    ("operation", "json_schema", "item_schema", "required"),
    [
        ("POST /v1/chat/completions", "ChatCompletion", "ChatCompletionChunk", {"id", "created", "model", "choices"}),
        ("POST /v1/completions", "Completion", "CompletionChunk", {"id", "created", "model", "choices"}),
        (
            "GET /v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
            "EventList",
            "EventOut",
            {"id", "created_at", "level", "message", "type"},
        ),
    ],
)
def test_a_stream_is_declared_as_events_of_json_not_as_a_string(
    spec: dict[str, Any], operation: str, json_schema: str, item_schema: str, required: set[str]
) -> None:
    content = _operations(spec)[operation]["responses"]["200"]["content"]

    assert content["application/json"]["schema"] == {"$ref": f"#/components/schemas/{json_schema}"}
    stream = content["text/event-stream"]
    assert "schema" not in stream, "the body is a stream of events, not one JSON string"
    data = stream["itemSchema"]["properties"]["data"]["anyOf"]
    assert {"const": "[DONE]"}.items() <= data[1].items()
    assert data[0]["contentMediaType"] == "application/json"
    assert data[0]["contentSchema"] == {"$ref": f"#/components/schemas/{item_schema}"}
    item = _resolve(spec, data[0]["contentSchema"])
    assert required <= set(item["required"])
    # Every schema the item nests is published too.
    Draft202012Validator.check_schema(item)
    unresolved = [ref for ref in _refs(item) if ref.rsplit("/", 1)[1] not in spec["components"]["schemas"]]
    assert unresolved == []


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_streamed_job_events_are_what_the_spec_declares(
    gateway: Gateway, tenant: Tenant, job_id: str, spec: dict[str, Any]
) -> None:
    tenant.client.fine_tuning.jobs.cancel(job_id)  # a finished job's stream ends with [DONE]
    with gateway.http(tenant.key) as http:
        response = http.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"stream": "true"})
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]

    assert data[-1] == "[DONE]"
    item = spec["paths"]["/v1/fine_tuning/jobs/{fine_tuning_job_id}/events"]["get"]["responses"]["200"]
    item_ref = item["content"]["text/event-stream"]["itemSchema"]["properties"]["data"]["anyOf"][0]["contentSchema"]
    validator = Draft202012Validator({**item_ref, "components": spec["components"]})
    events = [json.loads(d) for d in data[:-1]]
    assert [e["message"] for e in events][-1] == "Fine-tuning job cancelled"
    for event in events:
        assert not list(validator.iter_errors(event)), event
        assert_matches(event, "FineTuningJobEvent")
