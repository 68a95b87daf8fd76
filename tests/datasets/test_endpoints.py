"""/v1/datasets and upload validation through the gateway over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json

import openai
import pytest
import sqlalchemy as sa

from app.config import Settings
from app.db import sync_url
from app.main import create_app
from tests.conftest import Gateway, ServerThread, Tenant, wait_until_validated
from tests.datasets.factories import chat, pc


def _jsonl(rows: list[object]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode() + b"\n") for r in rows)


def _csv(rows: list[dict[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["prompt", "completion"])
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def test_valid_chat_upload_is_processed(tenant: Tenant) -> None:
    created = tenant.client.files.create(file=("chat.jsonl", _jsonl([chat(i) for i in range(12)])), purpose="fine-tune")
    assert created.status == "uploaded"
    done = wait_until_validated(tenant.client, created.id)
    assert done.status == "processed"
    assert done.status_details is None


def test_invalid_upload_is_error_with_lines_and_codes(tenant: Tenant) -> None:
    rows: list[object] = [chat(i) for i in range(13)]  # 10 stay valid: the minimum is no extra error
    rows[2] = b"{not json\n"
    rows[4] = {"messages": [{"role": "wizard", "content": "abracadabra"}, {"role": "assistant", "content": "ok"}]}
    rows[7] = [1, 2, 3]
    created = tenant.client.files.create(file=("bad.jsonl", _jsonl(rows)), purpose="fine-tune")

    done = wait_until_validated(tenant.client, created.id)

    assert done.status == "error"
    details = done.status_details or ""
    assert details.startswith("3 error(s) in 13 example(s).")
    assert "line 3: invalid_json" in details
    assert "line 5: unknown_role" in details
    assert "line 8: not_an_object" in details


def test_too_few_examples_is_an_error(tenant: Tenant) -> None:
    created = tenant.client.files.create(file=("few.jsonl", _jsonl([chat(i) for i in range(3)])), purpose="fine-tune")
    done = wait_until_validated(tenant.client, created.id)
    assert done.status == "error"
    assert "too_few_examples" in (done.status_details or "")


def test_non_jsonl_fine_tune_upload_points_to_prepare(tenant: Tenant) -> None:
    rows = [{"prompt": f"q{i}", "completion": f" a{i}"} for i in range(12)]
    created = tenant.client.files.create(file=("qa.csv", _csv(rows)), purpose="fine-tune")
    done = wait_until_validated(tenant.client, created.id)
    assert done.status == "error"
    assert "prepare" in (done.status_details or "")


def test_other_purposes_are_not_validated(tenant: Tenant) -> None:
    created = tenant.client.files.create(file=("notes.txt", b"not a dataset"), purpose="user_data")
    assert created.status == "processed"


def test_report_counts_defects_tokens_and_classes(gateway: Gateway, tenant: Tenant) -> None:
    rows: list[object] = [
        {"prompt": f"Tweet {i}: I love item {i}", "completion": "positive" if i % 3 else "negative"} for i in range(30)
    ]
    rows.append(rows[0])
    rows.append({"prompt": "x", "completion": ""})
    file = tenant.client.files.create(file=("sentiment.jsonl", _jsonl(rows)), purpose="fine-tune")

    with gateway.http(tenant.key) as http:
        response = http.get(f"/v1/datasets/{file.id}/report", params={"model": "gpt-4o-mini"})
        again = http.get(f"/v1/datasets/{file.id}/report", params={"model": "gpt-4o-mini"})
        default = http.get(f"/v1/datasets/{file.id}/report")

    assert response.status_code == 200, response.text
    report = response.json()
    assert again.json() == report
    assert (report["object"], report["file_id"], report["format"]) == ("dataset.report", file.id, "prompt_completion")
    assert (report["n_examples"], report["n_valid"], report["n_duplicates"]) == (32, 31, 1)
    assert report["errors"]["by_code"] == {"empty_completion": 1}
    assert report["errors"]["items"][0]["line"] == 32
    assert report["tokenizer"] == "o200k_base"
    assert default.json()["tokenizer"] == "cl100k_base"
    assert report["tokens"]["max"] >= report["tokens"]["p95"] >= report["tokens"]["p50"] >= report["tokens"]["min"]
    assert report["hyperparameters"]["n_epochs"] == 3
    assert {c["label"]: c["count"] for c in report["classification"]["classes"]} == {"positive": 20, "negative": 11}
    codes = {s["code"] for s in report["suggestions"]}
    assert {"duplicates", "empty_completions", "classification"} <= codes


def test_report_errors(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    file = tenant.client.files.create(file=("c.jsonl", _jsonl([chat(i) for i in range(10)])), purpose="fine-tune")
    with gateway.http(tenant.key) as http:
        unknown_model = http.get(f"/v1/datasets/{file.id}/report", params={"model": "gpt-99-ultra"})
        bad_cap = http.get(f"/v1/datasets/{file.id}/report", params={"max_issues": 0})
    with gateway.http(other_tenant.key) as http:
        foreign = http.get(f"/v1/datasets/{file.id}/report")
        foreign_prepare = http.post(f"/v1/datasets/{file.id}/prepare", json={})
    assert unknown_model.status_code == 404
    assert unknown_model.json()["error"]["param"] == "model"
    assert bad_cap.status_code == 400
    assert bad_cap.json()["error"]["param"] == "max_issues"
    assert foreign.status_code == 404
    assert foreign_prepare.status_code == 404
    assert foreign.json()["error"]["message"] == f"No such File object: {file.id}"


def test_prepare_converts_fixes_and_splits_without_touching_the_source(gateway: Gateway, tenant: Tenant) -> None:
    rows = [
        {
            "prompt": f"Review {i}: {'great' if i % 2 else 'awful'} product, said customer {i}",
            "completion": "" if i == 5 else ("good" if i % 2 else "bad"),
        }
        for i in range(40)
    ]
    rows.append(rows[0])
    original = _csv(rows)
    source = tenant.client.files.create(file=("reviews.csv", original), purpose="user_data")

    with gateway.http(tenant.key) as http:
        response = http.post(f"/v1/datasets/{source.id}/prepare", json={"split": 0.25, "seed": 7})
        again = http.post(f"/v1/datasets/{source.id}/prepare", json={"split": 0.25, "seed": 7})
    assert response.status_code == 200, response.text
    prepared = response.json()

    assert prepared["source_file_id"] == source.id
    assert prepared["applied"]["drop_duplicates"] == 1
    assert prepared["applied"]["drop_empty_completions"] == 1
    assert prepared["n_train"] + prepared["n_valid"] == prepared["n_written"] == 39
    assert prepared["n_valid"] == 10
    train = wait_until_validated(tenant.client, prepared["training_file"])
    valid = wait_until_validated(tenant.client, prepared["validation_file"])
    assert (train.status, valid.status) == ("processed", "processed")
    assert [f["source_file_id"] for f in prepared["files"]] == [source.id, source.id]
    assert train.filename == "reviews_prepared_train.jsonl"
    examples = [json.loads(line) for line in tenant.client.files.content(train.id).text.splitlines()]
    assert len(examples) == prepared["n_train"]
    separators = {e["prompt"][len(e["prompt"].rstrip("\n#- >")) :] for e in examples}
    assert len(separators) == 1 and separators != {""}  # one common separator was added
    assert all(e["completion"].startswith(" ") for e in examples)
    assert tenant.client.files.content(source.id).content == original
    # Seeded: the same request splits the same way.
    content = lambda file_id: tenant.client.files.content(file_id).content  # noqa: E731
    assert content(again.json()["validation_file"]) == content(prepared["validation_file"])


def test_prepare_with_no_fixes_keeps_every_example(gateway: Gateway, tenant: Tenant) -> None:
    rows: list[object] = [pc(i) for i in range(12)] + [pc(1)]
    source = tenant.client.files.create(file=("pc.jsonl", _jsonl(rows)), purpose="fine-tune")
    with gateway.http(tenant.key) as http:
        prepared = http.post(f"/v1/datasets/{source.id}/prepare", json={"fixes": []}).json()
    assert prepared["fixes"] == []
    assert prepared["n_written"] == 13
    assert prepared["validation_file"] is None


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"split": 1.5}, 400, "split"),
        ({"split": 0}, 400, "split"),
        ({"fixes": ["make_it_better"]}, 400, "fixes.0"),
        ({"model": "no-such-model"}, 404, "model"),
    ],
)
def test_prepare_rejects_bad_requests(
    gateway: Gateway, tenant: Tenant, body: dict[str, object], status: int, param: str
) -> None:
    source = tenant.client.files.create(file=("pc.jsonl", _jsonl([pc(i) for i in range(12)])), purpose="fine-tune")
    with gateway.http(tenant.key) as http:
        response = http.post(f"/v1/datasets/{source.id}/prepare", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param
    assert [f.id for f in tenant.client.files.list()] == [source.id]


def test_prepare_refuses_to_write_an_empty_result(gateway: Gateway, tenant: Tenant) -> None:
    rows = [{"prompt": f"p{i}", "completion": ""} for i in range(12)]
    source = tenant.client.files.create(file=("empty.jsonl", _jsonl(rows)), purpose="fine-tune")
    with gateway.http(tenant.key) as http:
        response = http.post(f"/v1/datasets/{source.id}/prepare", json={"fixes": ["drop_empty_completions"]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "empty_result"
    assert [f.id for f in tenant.client.files.list()] == [source.id]
    assert list(gateway.settings.tmp_dir.iterdir()) == []


def test_unsupported_prepare_input_is_400(gateway: Gateway, tenant: Tenant) -> None:
    source = tenant.client.files.create(file=("notes.txt", b"just some prose, nothing tabular"), purpose="user_data")
    with gateway.http(tenant.key) as http:
        response = http.post(f"/v1/datasets/{source.id}/prepare", json={})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "file_id"


def test_validation_left_pending_by_a_stopped_process_resumes_on_start(gateway: Gateway, tenant: Tenant) -> None:
    file = tenant.client.files.create(file=("c.jsonl", _jsonl([chat(i) for i in range(10)])), purpose="fine-tune")
    assert wait_until_validated(tenant.client, file.id).status == "processed"
    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE files SET status = 'uploaded' WHERE id = :id"), {"id": file.id})
    finally:
        engine.dispose()
    assert tenant.client.files.retrieve(file.id).status == "uploaded"

    settings = Settings(**{**gateway.settings.model_dump(), "bootstrap_key": None})
    second = ServerThread(create_app(settings))
    second.start()
    try:
        assert wait_until_validated(tenant.client, file.id).status == "processed"
    finally:
        second.stop()


def test_sdk_error_for_report_of_missing_file(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        response = http.get("/v1/datasets/file-doesnotexist/report")
    assert response.status_code == 404
    with pytest.raises(openai.NotFoundError):
        tenant.client.files.retrieve("file-doesnotexist")
