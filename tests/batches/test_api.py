"""The Batch API through the openai SDK over real HTTP, on each backend: batches of chat and text completions run by
the embedded worker through ftgw's own inference (a base model and a project's alias), answers that match direct
calls, failed requests in the error file, input files refused with the line at fault, bad parameters refused at
create naming their ``param``, paging, cancelling a running batch, and tenancy. Every object is checked against
OpenAI's own schemas, from the raw JSON, so that a field not set is seen to be left out rather than null."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import openai
import pytest
from openai import OpenAI
from openai.types import Batch

from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.openai_schema import assert_matches

MODEL = "tiny-smollm2"
Endpoint = Literal["/v1/chat/completions", "/v1/completions"]
CHAT: Endpoint = "/v1/chat/completions"
COMPLETIONS: Endpoint = "/v1/completions"
ENDED = frozenset({"completed", "failed", "cancelled", "expired"})
# OpenAI's Batch has no nulls: until a step happens, its fields are absent.
NOT_YET = frozenset(
    {
        "errors",
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "cancelling_at",
        "cancelled_at",
    }
)
MAX_REQUESTS = 50_000  # OpenAI's limit per batch


def chat_request(custom_id: str, content: str = "Say hi", **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": content}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": MODEL, "messages": messages, "max_tokens": 3, "temperature": 0, **body},
    }


def completion_request(custom_id: str, prompt: str = "Is 7 a number?", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": COMPLETIONS,
        "body": {"model": MODEL, "prompt": prompt, "max_tokens": 3, "temperature": 0, **body},
    }


def without(request: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in request.items() if k != key}


def jsonl(rows: list[Any]) -> bytes:
    """One line per row; a string row is written as it is (a line that is not JSON, or a blank one)."""
    return b"".join((row if isinstance(row, str) else json.dumps(row)).encode() + b"\n" for row in rows)


def upload(client: OpenAI, rows: list[Any], purpose: Literal["batch", "user_data"] = "batch") -> str:
    return client.files.create(file=("in.jsonl", jsonl(rows)), purpose=purpose).id


def start(client: OpenAI, rows: list[Any], endpoint: Endpoint = CHAT) -> Batch:
    return client.batches.create(input_file_id=upload(client, rows), endpoint=endpoint, completion_window="24h")


def wait_for_batch(
    client: OpenAI, batch_id: str, statuses: frozenset[str] = ENDED, timeout: float = 120, every: float = 0.2
) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in statuses:
            return batch
        assert time.monotonic() < deadline, f"{batch_id} still {batch.status} after {timeout} s"
        time.sleep(every)


def raw(gateway: Gateway, tenant: Tenant, path: str, **params: Any) -> dict[str, Any]:
    with gateway.http(tenant.key) as http:
        response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def read_lines(client: OpenAI, file_id: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines() if line.strip()]


def assert_output_line(line: dict[str, Any]) -> None:
    """OpenAI's per-request output shape; ``error`` is null when the request got an HTTP answer, even a 4xx."""
    assert set(line) == {"id", "custom_id", "response", "error"}, line
    assert line["id"].startswith("batch_req_") and line["error"] is None
    assert set(line["response"]) == {"status_code", "request_id", "body"}
    assert isinstance(line["response"]["request_id"], str) and line["response"]["request_id"]


# --- running ---------------------------------------------------------------------------------------------------------


def test_a_chat_batch_runs_each_request_and_writes_the_answers_in_input_order(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    input_file_id = upload(client, [chat_request(f"req-{i}", f"Count to {i}") for i in range(3)])
    with training_gateway.http(tenant.key) as http:
        answered = http.post(
            "/v1/batches",
            json={
                "input_file_id": input_file_id,
                "endpoint": CHAT,
                "completion_window": "24h",
                "metadata": {"team": "nlp"},
            },
        )
    assert answered.status_code == 200, answered.text
    created = answered.json()
    assert_matches(created, "Batch")
    assert created["id"].startswith("batch_") and created["object"] == "batch"
    assert (created["status"], created["endpoint"], created["input_file_id"]) == ("validating", CHAT, input_file_id)
    assert (created["completion_window"], created["metadata"]) == ("24h", {"team": "nlp"})
    assert NOT_YET.isdisjoint(created), sorted(NOT_YET & set(created))
    assert abs(created["expires_at"] - created["created_at"] - 24 * 3600) <= 1

    done = wait_for_batch(client, created["id"])

    assert done.status == "completed", done.errors
    final = raw(training_gateway, tenant, f"/v1/batches/{done.id}")
    assert_matches(final, "Batch")
    assert final["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert {"errors", "error_file_id", "failed_at", "cancelling_at", "cancelled_at"}.isdisjoint(final), final
    assert final["created_at"] <= final["in_progress_at"] <= final["finalizing_at"] <= final["completed_at"]
    assert final["metadata"] == {"team": "nlp"}
    output = raw(training_gateway, tenant, f"/v1/files/{final['output_file_id']}")
    assert_matches(output, "OpenAIFile")
    assert output["purpose"] == "batch_output"
    lines = read_lines(client, final["output_file_id"])
    assert [line["custom_id"] for line in lines] == ["req-0", "req-1", "req-2"]
    assert len({line["id"] for line in lines}) == 3
    for line in lines:
        assert_output_line(line)
        body = line["response"]["body"]
        assert line["response"]["status_code"] == 200
        assert_matches(body, "CreateChatCompletionResponse")
        assert (body["object"], body["model"]) == ("chat.completion", MODEL)
        assert body["usage"]["completion_tokens"] <= 3
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(done.id)
    assert client.batches.retrieve(done.id).status == "completed"


def _answer_text(body: dict[str, Any]) -> str:
    choice = body["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


@pytest.mark.parametrize("endpoint", [CHAT, COMPLETIONS])
def test_a_batch_answers_as_direct_calls_with_the_same_body_do(training_gateway: Gateway, endpoint: Endpoint) -> None:
    client = make_tenant(training_gateway).client
    make = chat_request if endpoint == CHAT else completion_request
    # Prompts of different lengths: their prompt_tokens tell the answers apart even where the texts agree.
    texts = ("Hi", "What is two plus two?", "Name three colours of the rainbow, please.")
    requests = [make(f"r{i}", text) for i, text in enumerate(texts)]

    done = wait_for_batch(client, start(client, requests, endpoint).id)

    assert done.status == "completed", done.errors
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 0)
    assert done.output_file_id is not None
    answers = {line["custom_id"]: line["response"]["body"] for line in read_lines(client, done.output_file_id)}
    assert sorted(answers) == ["r0", "r1", "r2"]
    schema = "CreateChatCompletionResponse" if endpoint == CHAT else "CreateCompletionResponse"
    for request in requests:
        answer = answers[request["custom_id"]]
        assert_matches(answer, schema)
        if endpoint == CHAT:
            direct = client.chat.completions.create(**request["body"]).model_dump()
        else:
            direct = client.completions.create(**request["body"]).model_dump()
        assert _answer_text(answer) == _answer_text(direct), request["custom_id"]
        assert answer["choices"][0]["finish_reason"] == direct["choices"][0]["finish_reason"]
        tokens = ("prompt_tokens", "completion_tokens")
        assert [answer["usage"][k] for k in tokens] == [direct["usage"][k] for k in tokens]


def test_failed_requests_go_to_the_error_file_and_the_batch_still_completes(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    requests = [
        chat_request("ok-1"),
        chat_request("unknown-model", model="no-such-model"),
        chat_request("ok-2", "Say bye"),
        {**chat_request("no-messages"), "body": {"model": MODEL, "max_tokens": 2}},
    ]

    done = wait_for_batch(client, start(client, requests).id)

    assert done.status == "completed", done.errors
    final = raw(training_gateway, tenant, f"/v1/batches/{done.id}")
    assert_matches(final, "Batch")
    assert final["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    assert "errors" not in final and "failed_at" not in final
    assert [line["custom_id"] for line in read_lines(client, final["output_file_id"])] == ["ok-1", "ok-2"]
    assert client.files.retrieve(final["error_file_id"]).purpose == "batch_output"
    failures = read_lines(client, final["error_file_id"])
    assert [line["custom_id"] for line in failures] == ["unknown-model", "no-messages"]
    assert [line["response"]["status_code"] for line in failures] == [404, 400]
    assert failures[1]["response"]["body"]["error"]["param"] == "messages"
    with training_gateway.http(tenant.key) as http:
        for line, request in zip(failures, (requests[1], requests[3]), strict=True):
            assert_output_line(line)
            envelope = line["response"]["body"]
            assert_matches(envelope, "ErrorResponse")
            assert set(envelope["error"]) == {"message", "type", "param", "code"}
            # The same refusal as the same body sent directly gets.
            direct = http.post(CHAT, json=request["body"])
            assert line["response"]["status_code"] == direct.status_code
            fields = ("type", "param", "code")
            assert [envelope["error"][k] for k in fields] == [direct.json()["error"][k] for k in fields], line


def test_a_batch_resolves_its_projects_alias_and_not_another_projects(training_gateway: Gateway) -> None:
    owner, stranger = make_tenant(training_gateway), make_tenant(training_gateway)
    alias = f"bot-{secrets.token_hex(4)}"
    with training_gateway.http(owner.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": alias}).status_code == 200
        added = http.post(f"/v1/registry/aliases/{alias}/versions", json={"targets": [{"model": MODEL}]})
        assert added.status_code == 200, added.text
    requests = [chat_request("via-alias", model=alias)]

    mine = start(owner.client, requests)
    theirs = start(stranger.client, requests)
    mine, theirs = wait_for_batch(owner.client, mine.id), wait_for_batch(stranger.client, theirs.id)

    assert mine.status == "completed", mine.errors
    assert (mine.request_counts.completed, mine.request_counts.failed) == (1, 0)
    assert mine.output_file_id is not None
    (answer,) = read_lines(owner.client, mine.output_file_id)
    assert answer["response"]["body"]["model"] == MODEL  # the alias's target answered, as on a direct call
    assert theirs.status == "completed", theirs.errors
    assert (theirs.request_counts.completed, theirs.request_counts.failed) == (0, 1)
    assert theirs.error_file_id is not None
    (refused,) = read_lines(stranger.client, theirs.error_file_id)
    assert refused["response"]["status_code"] == 404


# --- input files that are refused ------------------------------------------------------------------------------------

A, B, C = chat_request("a"), chat_request("b", "Say bye"), chat_request("c", "Say what")


@pytest.mark.parametrize(
    ("rows", "line", "named"),
    [
        pytest.param([A, "{not json", C], 2, None, id="not-json"),
        pytest.param([A, without(B, "custom_id"), C], 2, "custom_id", id="no-custom-id"),
        pytest.param([A, without(B, "method"), C], 2, "method", id="no-method"),
        pytest.param([A, without(B, "url"), C], 2, "url", id="no-url"),
        pytest.param([A, without(B, "body"), C], 2, "body", id="no-body"),
        pytest.param([A, B, chat_request("a", "Again")], 3, "custom_id", id="duplicate-custom-id"),
        pytest.param([A, {**B, "url": COMPLETIONS}, C], 2, "url", id="url-not-the-endpoint"),
        pytest.param([A, {**B, "method": "GET"}, C], 2, "method", id="not-post"),
        pytest.param([A, chat_request("b", stream=True), C], 2, "stream", id="stream"),
        # The files API refuses a zero-byte upload; a file of blank lines holds no request either.
        pytest.param(["", ""], None, None, id="no-request"),
    ],
)
def test_an_invalid_input_file_fails_the_batch_with_the_line_at_fault_and_runs_nothing(
    training_gateway: Gateway, rows: list[Any], line: int | None, named: str | None
) -> None:
    tenant = make_tenant(training_gateway)

    done = wait_for_batch(tenant.client, start(tenant.client, rows).id)

    assert done.status == "failed"
    final = raw(training_gateway, tenant, f"/v1/batches/{done.id}")
    assert_matches(final, "Batch")
    assert final["failed_at"] >= final["created_at"]
    # Refused while validating: it never ran, so it has no output, no counts, no in_progress step.
    assert {"output_file_id", "error_file_id", "in_progress_at", "completed_at"}.isdisjoint(final), final
    assert (final["request_counts"]["completed"], final["request_counts"]["failed"]) == (0, 0)
    errors = final["errors"]
    assert errors["object"] == "list" and errors["data"], errors
    for error in errors["data"]:
        assert isinstance(error["code"], str) and error["code"]
        assert isinstance(error["message"], str) and error["message"]
    if line is not None:
        assert [error["line"] for error in errors["data"]] == [line]
    if named is not None:
        (error,) = errors["data"]
        assert named in f"{error['param']} {error['message']}".lower(), error


@pytest.fixture(scope="module")
def roomy_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Gateway]:
    """A gateway with a worker that takes uploads big enough for more than 50,000 requests (the shared ones stop at
    256 KiB)."""
    folder = tmp_path_factory.mktemp("roomy")
    with new_database(database_url, folder) as url:
        upgrade(url)
        settings = gateway_settings(url, folder / "data", model_cache, embedded_worker=True, max_upload_bytes=16 << 20)
        with serve(settings) as gw:
            yield gw


def test_more_than_50000_requests_fail_the_batch_before_any_runs(roomy_gateway: Gateway) -> None:
    tenant = make_tenant(roomy_gateway)
    line = {"custom_id": "", "method": "POST", "url": COMPLETIONS, "body": {"model": MODEL, "prompt": "x"}}
    data = b"".join(
        json.dumps({**line, "custom_id": str(i)}, separators=(",", ":")).encode() + b"\n"
        for i in range(MAX_REQUESTS + 1)
    )
    input_file_id = tenant.client.files.create(file=("in.jsonl", data), purpose="batch").id

    batch = tenant.client.batches.create(input_file_id=input_file_id, endpoint=COMPLETIONS, completion_window="24h")
    done = wait_for_batch(tenant.client, batch.id)

    assert done.status == "failed"
    final = raw(roomy_gateway, tenant, f"/v1/batches/{done.id}")
    assert_matches(final, "Batch")
    assert {"output_file_id", "error_file_id", "in_progress_at"}.isdisjoint(final), final
    assert (final["request_counts"]["completed"], final["request_counts"]["failed"]) == (0, 0)
    (error,) = final["errors"]["data"]  # every line is a good request: only their number is wrong
    assert error["code"] and error["line"] in (None, MAX_REQUESTS + 1)


# --- create, list, cancel --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        pytest.param(
            lambda client: {"input_file_id": upload(client, [A], purpose="user_data")},
            "input_file_id",
            id="file-of-another-purpose",
        ),
        pytest.param(lambda client: {"input_file_id": "file-" + "x" * 24}, "input_file_id", id="unknown-file"),
        pytest.param(lambda client: {"endpoint": "/v1/embeddings"}, "endpoint", id="endpoint-not-served"),
        pytest.param(lambda client: {"completion_window": "48h"}, "completion_window", id="window-not-24h"),
    ],
)
def test_create_refuses_bad_parameters_with_a_400_naming_the_param(
    training_gateway: Gateway, changes: Callable[[OpenAI], dict[str, str]], param: str
) -> None:
    client = make_tenant(training_gateway).client
    good = {"input_file_id": upload(client, [A]), "endpoint": CHAT, "completion_window": "24h"}

    with pytest.raises(openai.BadRequestError) as raised:
        client.batches.create(**{**good, **changes(client)})  # type: ignore[arg-type]

    assert raised.value.status_code == 400
    assert raised.value.param == param, raised.value.body
    assert client.batches.list().data == []  # nothing stored


def test_list_pages_newest_first_in_openais_envelope(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    input_file_id = upload(client, [chat_request("only", max_tokens=2)])
    ids = [
        client.batches.create(input_file_id=input_file_id, endpoint=CHAT, completion_window="24h").id for _ in range(3)
    ]

    first = client.batches.list(limit=2)
    rest = client.batches.list(limit=2, after=ids[1])

    assert [b.id for b in first.data] == [ids[2], ids[1]] and first.has_more is True
    assert [b.id for b in rest.data] == [ids[0]] and rest.has_more is False
    page = raw(training_gateway, tenant, "/v1/batches", limit=2)
    assert_matches(page, "ListBatchesResponse")
    assert (page["object"], page["first_id"], page["last_id"], page["has_more"]) == ("list", ids[2], ids[1], True)
    assert make_tenant(training_gateway).client.batches.list().data == []
    # Leave the shared worker idle for the tests after this one.
    assert [wait_for_batch(client, batch_id).status for batch_id in ids] == ["completed"] * 3


def test_cancelling_a_running_batch_stops_it_and_keeps_what_is_done(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    # Long enough (about 5 s of generation) to still be running when the cancel comes.
    requests = [chat_request(f"req-{i}", f"Tell story number {i}", max_tokens=64) for i in range(100)]
    batch = start(client, requests)
    running = wait_for_batch(client, batch.id, ENDED | {"in_progress", "finalizing"}, every=0.02)
    assert running.status == "in_progress", f"{batch.id} was {running.status} before it could be cancelled"

    cancelling = client.batches.cancel(batch.id)

    assert cancelling.status in {"cancelling", "cancelled"}
    done = wait_for_batch(client, batch.id)
    final = raw(training_gateway, tenant, f"/v1/batches/{batch.id}")
    assert_matches(final, "Batch")
    assert final["status"] == "cancelled", done.errors
    assert final["in_progress_at"] <= final["cancelling_at"] <= final["cancelled_at"]
    assert {"completed_at", "failed_at"}.isdisjoint(final), final
    counts = final["request_counts"]
    assert counts["total"] == 100
    assert counts["completed"] + counts["failed"] < 100, "the cancel did not stop the batch"
    lines = read_lines(client, final["output_file_id"]) if "output_file_id" in final else []
    assert len(lines) == counts["completed"]
    done_ids = [line["custom_id"] for line in lines]
    assert done_ids == [r["custom_id"] for r in requests if r["custom_id"] in set(done_ids)]  # input order, once
    assert all(line["response"]["status_code"] == 200 for line in lines)
    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)


# --- tenancy ---------------------------------------------------------------------------------------------------------


def test_another_projects_batch_and_its_files_are_plain_404s(training_gateway: Gateway) -> None:
    owner, stranger = make_tenant(training_gateway), make_tenant(training_gateway)
    done = wait_for_batch(owner.client, start(owner.client, [A]).id)
    assert done.status == "completed" and done.output_file_id is not None
    never_existed = "batch_" + "x" * 24

    messages = []
    for batch_id in (done.id, never_existed):
        with pytest.raises(openai.NotFoundError) as missing:
            stranger.client.batches.retrieve(batch_id)
        with pytest.raises(openai.NotFoundError):
            stranger.client.batches.cancel(batch_id)  # a 404 before any 409: the batch has ended
        assert isinstance(missing.value.body, dict)
        messages.append(str(missing.value.body["message"]).replace(batch_id, "<id>"))
    assert messages[0] == messages[1]  # a foreign id reads as one that never existed
    for file_id in (done.input_file_id, done.output_file_id):
        with pytest.raises(openai.NotFoundError):
            stranger.client.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            stranger.client.files.content(file_id)
    with pytest.raises(openai.BadRequestError) as raised:
        stranger.client.batches.create(input_file_id=done.input_file_id, endpoint=CHAT, completion_window="24h")
    assert raised.value.param == "input_file_id"
    assert stranger.client.batches.list().data == []
    assert owner.client.batches.retrieve(done.id).status == "completed"
