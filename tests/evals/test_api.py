"""The Evals API through the openai SDK over real HTTP, sync and async: evals, runs (they stay queued: the shared
gateway runs no worker), output items, webhooks of a canceled run, tenancy, and every bad config a 400 naming its
``param``. Every object is checked against OpenAI's own schemas."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, Tenant
from tests.loopback import Receiver
from tests.openai_schema import assert_matches

MODEL = "tiny-smollm2"
ITEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "label": {"type": "string"}},
    "required": ["text", "label"],
}
LABEL_CHECK: dict[str, Any] = {
    "type": "string_check",
    "name": "Label matches",
    "input": "{{sample.output_text}}",
    "reference": "{{item.label}}",
    "operation": "eq",
}
ROWS = [{"text": "I loved it", "label": "positive"}, {"text": "Awful", "label": "negative"}]
JUDGE: dict[str, Any] = {
    "type": "label_model",
    "name": "Judged",
    "model": MODEL,
    "input": [{"role": "user", "content": "{{item.text}} -> {{sample.output_text}}"}],
    "labels": ["good", "bad"],
    "passing_labels": ["good"],
}


def _config(schema: dict[str, Any] | None = None, *, sample: bool = True) -> dict[str, Any]:
    return {"type": "custom", "item_schema": schema or ITEM_SCHEMA, "include_sample_schema": sample}


def _eval(tenant: Tenant, **extra: Any) -> str:
    created = tenant.client.evals.create(
        name="Sentiment", data_source_config=_config(), testing_criteria=[LABEL_CHECK], **extra
    )
    return created.id


def _completions(rows: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    source: dict[str, Any] = {
        "type": "completions",
        "model": MODEL,
        "input_messages": {
            "type": "template",
            "template": [
                # Parts, not plain strings: OpenAI's schema lists a message as EasyInputMessage or EvalItem under
                # oneOf, and a plain `{role, content: "…"}` is both, so only this spelling validates against it.
                {"type": "message", "role": "developer", "content": {"type": "input_text", "text": "Be brief."}},
                {"type": "message", "role": "user", "content": {"type": "input_text", "text": "{{item.text}}"}},
            ],
        },
        "sampling_params": {"temperature": 0, "max_completion_tokens": 4, "seed": 7},
        "source": {"type": "file_content", "content": [{"item": row} for row in rows or ROWS]},
    }
    source.update(changes)
    return source


def _jsonl(rows: list[object]) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def _raw(gateway: Gateway, tenant: Tenant, path: str) -> dict[str, Any]:
    with gateway.http(tenant.key) as http:
        response = http.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _as_openai_types_it(run: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's ``EvalRun`` types ``error`` as an object and ``model`` as a string, never null, yet its API (and its
    own example of a queued run) answers null for a run without an error or a model: the rest must match as it is."""
    return {**run, "error": run["error"] or {"code": "-", "message": "-"}, "model": run["model"] or "-"}


def assert_run_matches(raw: dict[str, Any]) -> None:
    assert_matches(_as_openai_types_it(raw), "EvalRun")


def assert_list_matches(raw: dict[str, Any], schema: str) -> None:
    """An empty page has null cursor ids, as OpenAI answers (its schema types them as strings)."""
    data = [_as_openai_types_it(run) for run in raw["data"]] if schema == "EvalRunList" else raw["data"]
    assert_matches({**raw, "data": data, "first_id": raw["first_id"] or "-", "last_id": raw["last_id"] or "-"}, schema)


def _refused(call: Any, param: str, code: str | None = None) -> str:
    """The message of the 400 that ``call`` gets, naming ``param`` (and ``code``)."""
    with pytest.raises(openai.BadRequestError) as raised:
        call()
    assert raised.value.param == param, raised.value.body
    if code is not None:
        assert raised.value.code == code, raised.value.body
    assert isinstance(raised.value.body, dict)
    return str(raised.value.body["message"])


# --- evals ---------------------------------------------------------------------------------------------------------


def test_create_retrieve_update_list_and_delete_an_eval(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    created = client.evals.create(
        name="Sentiment", data_source_config=_config(), testing_criteria=[LABEL_CHECK], metadata={"team": "nlp"}
    )

    assert created.id.startswith("eval_") and created.name == "Sentiment" and created.metadata == {"team": "nlp"}
    raw = _raw(gateway, tenant, f"/v1/evals/{created.id}")
    assert_matches(raw, "Eval")
    schema = raw["data_source_config"]["schema"]
    assert raw["data_source_config"]["type"] == "custom"
    assert schema["properties"]["item"] == ITEM_SCHEMA
    assert schema["required"] == ["item", "sample"] and "output_text" in schema["properties"]["sample"]["properties"]
    criterion = raw["testing_criteria"][0]
    assert criterion["id"].startswith("Label matches-") and len(criterion["id"]) == len("Label matches-") + 36
    assert {k: v for k, v in criterion.items() if k != "id"} == LABEL_CHECK

    updated = client.evals.update(created.id, name="Sentiment v2", metadata={"team": "ml"})
    assert (updated.name, updated.metadata) == ("Sentiment v2", {"team": "ml"})
    renamed_only = client.evals.update(created.id, name="Sentiment v3")
    assert renamed_only.metadata == {"team": "ml"}  # what the body leaves out stays
    assert client.evals.retrieve(created.id).name == "Sentiment v3"
    assert [e.id for e in client.evals.list()] == [created.id]
    assert_list_matches(_raw(gateway, tenant, "/v1/evals"), "EvalList")

    deleted = client.evals.delete(created.id)
    assert (deleted.object, deleted.deleted, deleted.eval_id) == ("eval.deleted", True, created.id)
    with pytest.raises(openai.NotFoundError):
        client.evals.retrieve(created.id)
    assert_list_matches(_raw(gateway, tenant, "/v1/evals"), "EvalList")


def test_without_the_sample_schema_the_config_holds_the_item_alone(tenant: Tenant) -> None:
    string_check_on_items = {**LABEL_CHECK, "input": "{{item.text}}"}
    created = tenant.client.evals.create(
        data_source_config=_config(sample=False), testing_criteria=[string_check_on_items]
    )
    assert created.data_source_config.schema_ == {
        "type": "object",
        "properties": {"item": ITEM_SCHEMA},
        "required": ["item"],
    }
    assert created.name == created.id  # no name given


async def test_the_async_client_creates_runs_and_cancels_them(gateway: Gateway, tenant: Tenant) -> None:
    async with openai.AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key=tenant.key, max_retries=0) as client:
        evaluation = await client.evals.create(
            name="async", data_source_config=_config(), testing_criteria=[LABEL_CHECK]
        )
        run = await client.evals.runs.create(evaluation.id, data_source=_completions(), name="first")
        assert (run.status, run.name, run.model, run.eval_id) == ("queued", "first", MODEL, evaluation.id)
        listed = await client.evals.runs.list(evaluation.id)
        assert [r.id for r in listed.data] == [run.id]
        items = await client.evals.runs.output_items.list(run.id, eval_id=evaluation.id)
        assert items.data == []
        canceled = await client.evals.runs.cancel(run.id, eval_id=evaluation.id)
        assert canceled.status == "canceled"
        assert (await client.evals.update(evaluation.id, metadata={"k": "v"})).metadata == {"k": "v"}
        assert (await client.evals.runs.delete(run.id, eval_id=evaluation.id)).deleted is True
        assert (await client.evals.delete(evaluation.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.evals.retrieve(evaluation.id)


def test_eval_lists_paginate_in_both_orders_and_by_update(tenant: Tenant) -> None:
    client = tenant.client
    ids = [_eval(tenant) for _ in range(3)]

    first = client.evals.list(limit=2)
    assert [e.id for e in first.data] == ids[:2] and first.has_more is True
    rest = client.evals.list(limit=2, after=first.data[-1].id)
    assert [e.id for e in rest.data] == ids[2:] and rest.has_more is False
    assert [e.id for e in client.evals.list(order="desc")] == ids[::-1]

    client.evals.update(ids[0], name="touched")
    assert [e.id for e in client.evals.list(order_by="updated_at").data][-1] == ids[0]
    with pytest.raises(openai.BadRequestError) as raised:
        client.evals.list(after="eval_unknown")
    assert raised.value.param == "after"


# --- runs ----------------------------------------------------------------------------------------------------------


def test_a_completions_run_is_queued_listed_canceled_and_deleted(gateway: Gateway, tenant: Tenant) -> None:
    client = tenant.client
    eval_id = _eval(tenant)

    run = client.evals.runs.create(eval_id, data_source=_completions(), metadata={"k": "v"})

    assert run.id.startswith("evalrun_") and run.name == MODEL  # a completions run is named after its model
    assert (run.status, run.metadata) == ("queued", {"k": "v"})
    assert run.result_counts.total == 0 and run.per_model_usage == [] and run.per_testing_criteria_results == []
    assert run.report_url == f"{gateway.base_url}/v1/evals/{eval_id}/runs/{run.id}"
    raw = _raw(gateway, tenant, f"/v1/evals/{eval_id}/runs/{run.id}")
    assert_run_matches(raw)
    assert raw["data_source"] == _completions()  # as given
    assert raw["error"] is None
    assert client.evals.runs.retrieve(run.id, eval_id=eval_id).id == run.id
    assert_list_matches(_raw(gateway, tenant, f"/v1/evals/{eval_id}/runs"), "EvalRunList")
    items = _raw(gateway, tenant, f"/v1/evals/{eval_id}/runs/{run.id}/output_items")
    assert items["data"] == []
    assert_list_matches(items, "EvalRunOutputItemList")

    canceled = client.evals.runs.cancel(run.id, eval_id=eval_id)

    assert canceled.status == "canceled" and canceled.result_counts.total == 0
    assert_run_matches(_raw(gateway, tenant, f"/v1/evals/{eval_id}/runs/{run.id}"))
    again = _refused(lambda: client.evals.runs.cancel(run.id, eval_id=eval_id), "run_id", "invalid_run_state")
    assert "canceled" in again
    deleted = client.evals.runs.delete(run.id, eval_id=eval_id)
    assert (deleted.object, deleted.deleted, deleted.run_id) == ("eval.run.deleted", True, run.id)
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run.id, eval_id=eval_id)


def test_a_jsonl_run_reads_an_evals_file(gateway: Gateway, tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    rows = [{"item": row, "sample": {"output_text": row["label"]}} for row in ROWS]
    file = tenant.client.files.create(file=("rows.jsonl", _jsonl(rows)), purpose="evals")

    run = tenant.client.evals.runs.create(
        eval_id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": file.id}}
    )

    assert (run.status, run.model, run.name) == ("queued", None, run.id)
    raw = _raw(gateway, tenant, f"/v1/evals/{eval_id}/runs/{run.id}")
    assert raw["data_source"] == {"type": "jsonl", "source": {"type": "file_id", "id": file.id}}
    assert_run_matches(raw)


def test_run_lists_paginate_and_filter_by_status(tenant: Tenant) -> None:
    client = tenant.client
    eval_id = _eval(tenant)
    ids = [client.evals.runs.create(eval_id, data_source=_completions()).id for _ in range(3)]
    client.evals.runs.cancel(ids[1], eval_id=eval_id)

    page = client.evals.runs.list(eval_id, limit=2)
    assert [r.id for r in page.data] == ids[:2] and page.has_more is True
    assert [r.id for r in client.evals.runs.list(eval_id, after=ids[1]).data] == ids[2:]
    assert [r.id for r in client.evals.runs.list(eval_id, order="desc").data] == ids[::-1]
    assert [r.id for r in client.evals.runs.list(eval_id, status="queued").data] == [ids[0], ids[2]]
    assert [r.id for r in client.evals.runs.list(eval_id, status="canceled").data] == [ids[1]]
    assert [r.id for r in client.evals.runs.list(eval_id, status="completed").data] == []


def test_deleting_an_eval_deletes_its_runs(tenant: Tenant) -> None:
    client = tenant.client
    eval_id = _eval(tenant)
    run_id = client.evals.runs.create(eval_id, data_source=_completions()).id

    client.evals.delete(eval_id)

    with pytest.raises(openai.NotFoundError):
        client.evals.runs.retrieve(run_id, eval_id=eval_id)
    with pytest.raises(openai.NotFoundError):
        client.evals.runs.list(eval_id)


def test_canceling_a_run_fires_its_webhook(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> None:
    with gateway.http(tenant.key) as http:
        hook = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["eval.run.canceled"]})
    assert hook.status_code == 200, hook.text
    eval_id = _eval(tenant)
    run_id = tenant.client.evals.runs.create(eval_id, data_source=_completions()).id

    tenant.client.evals.runs.cancel(run_id, eval_id=eval_id)

    receiver.wait(1)
    (payload,) = receiver.payloads()
    assert payload["object"] == "event" and payload["id"].startswith("evt")
    assert (payload["type"], payload["data"]) == ("eval.run.canceled", {"id": run_id})


def test_webhooks_subscribe_to_eval_run_events_by_name(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> None:
    events = ["eval.run.canceled", "eval.run.failed", "eval.run.succeeded"]
    with gateway.http(tenant.key) as http:
        hook = http.post("/v1/webhooks", json={"url": receiver.url, "events": events})
        typo = http.post("/v1/webhooks", json={"url": receiver.url, "events": ["eval.run.cancelled"]})
    assert hook.json()["events"] == events
    assert typo.status_code == 400  # OpenAI spells it canceled


# --- tenancy -------------------------------------------------------------------------------------------------------


def test_another_projects_evals_and_runs_are_not_found(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    run_id = tenant.client.evals.runs.create(eval_id, data_source=_completions()).id
    stranger = other_tenant.client
    calls = {
        "retrieve eval": lambda: stranger.evals.retrieve(eval_id),
        "update eval": lambda: stranger.evals.update(eval_id, name="mine"),
        "delete eval": lambda: stranger.evals.delete(eval_id),
        "list runs": lambda: stranger.evals.runs.list(eval_id),
        "create run": lambda: stranger.evals.runs.create(eval_id, data_source=_completions()),
        "retrieve run": lambda: stranger.evals.runs.retrieve(run_id, eval_id=eval_id),
        "cancel run": lambda: stranger.evals.runs.cancel(run_id, eval_id=eval_id),
        "delete run": lambda: stranger.evals.runs.delete(run_id, eval_id=eval_id),
        "list items": lambda: stranger.evals.runs.output_items.list(run_id, eval_id=eval_id),
        "retrieve item": lambda: stranger.evals.runs.output_items.retrieve(
            "outputitem_x", eval_id=eval_id, run_id=run_id
        ),
    }
    for what, call in calls.items():
        with pytest.raises(openai.NotFoundError):
            call()
        assert what  # every route answered 404
    assert stranger.evals.list().data == []
    with pytest.raises(openai.BadRequestError):
        stranger.evals.list(after=eval_id)  # a foreign cursor is unknown, not a glimpse
    # Untouched for its own project: still there, still queued.
    assert tenant.client.evals.runs.retrieve(run_id, eval_id=eval_id).status == "queued"
    assert tenant.client.evals.retrieve(eval_id).name == "Sentiment"


def test_a_run_is_found_only_under_its_own_eval(tenant: Tenant) -> None:
    first, second = _eval(tenant), _eval(tenant)
    run_id = tenant.client.evals.runs.create(first, data_source=_completions()).id
    with pytest.raises(openai.NotFoundError):
        tenant.client.evals.runs.retrieve(run_id, eval_id=second)


def test_a_run_cannot_read_another_projects_file(tenant: Tenant, other_tenant: Tenant) -> None:
    rows = [{"item": row, "sample": {"output_text": "x"}} for row in ROWS]
    theirs = other_tenant.client.files.create(file=("rows.jsonl", _jsonl(rows)), purpose="evals").id
    eval_id = _eval(tenant)
    data_source = {"type": "jsonl", "source": {"type": "file_id", "id": theirs}}
    _refused(lambda: tenant.client.evals.runs.create(eval_id, data_source=data_source), "data_source.source.id")


# --- bad configs: 400s naming the param ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criterion", "param", "code"),
    [
        ({**LABEL_CHECK, "type": "regex_check"}, "testing_criteria[0].type", None),
        ({"type": "python", "name": "py", "source": "def grade(s, i): return 1"}, "testing_criteria[0].type", None),
        ({**LABEL_CHECK, "reference": "{{item.missing}}"}, "testing_criteria[0]", None),
        ({**LABEL_CHECK, "input": "{{answer.text}}"}, "testing_criteria[0]", None),
        ({**LABEL_CHECK, "operation": "startswith"}, "testing_criteria[0].operation", None),
        ({**JUDGE, "model": "no-such-judge"}, "testing_criteria[0].model", "model_not_found"),
    ],
    ids=["unknown grader type", "python grader", "missing item field", "unknown namespace", "bad operation", "judge"],
)
def test_a_bad_testing_criterion_is_a_400_naming_it(
    tenant: Tenant, criterion: dict[str, Any], param: str, code: str | None
) -> None:
    refusal = _refused(
        lambda: tenant.client.evals.create(data_source_config=_config(), testing_criteria=[criterion]), param, code
    )
    if criterion.get("type") == "python":
        assert "not supported" in refusal


def test_a_judge_the_project_may_call_is_accepted(gateway: Gateway, tenant: Tenant) -> None:
    similar = {
        "type": "text_similarity",
        "name": "Close",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": 0.8,
    }
    created = tenant.client.evals.create(data_source_config=_config(), testing_criteria=[LABEL_CHECK, JUDGE, similar])
    assert [c.type for c in created.testing_criteria] == ["string_check", "label_model", "text_similarity"]
    assert_matches(_raw(gateway, tenant, f"/v1/evals/{created.id}"), "Eval")


def test_a_bad_criterion_is_named_by_its_position(tenant: Tenant) -> None:
    criteria = [LABEL_CHECK, {**LABEL_CHECK, "reference": "{{item.lable}}"}]
    refusal = _refused(
        lambda: tenant.client.evals.create(data_source_config=_config(), testing_criteria=criteria),
        "testing_criteria[1]",
    )
    assert "item.lable" in refusal


@pytest.mark.parametrize(
    ("config", "param", "code"),
    [
        ({"type": "logs", "metadata": {"use": "chatbot"}}, "data_source_config.type", "unsupported_data_source"),
        ({"type": "stored_completions"}, "data_source_config.type", "unsupported_data_source"),
        (_config({"type": "object", "properties": 5}), "data_source_config.item_schema", None),
        (_config({"type": "string"}), "data_source_config.item_schema", None),
        (_config({**ITEM_SCHEMA, "$ref": "https://example.com/schema.json"}), "data_source_config.item_schema", None),
    ],
    ids=["logs", "stored completions", "invalid schema", "not an object", "remote reference"],
)
def test_a_bad_data_source_config_is_a_400_naming_it(
    tenant: Tenant, config: dict[str, Any], param: str, code: str | None
) -> None:
    _refused(lambda: tenant.client.evals.create(data_source_config=config, testing_criteria=[LABEL_CHECK]), param, code)


def test_a_run_file_that_is_not_jsonl_is_a_400_with_its_line(tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    csv = tenant.client.files.create(file=("rows.csv", b"text,label\nI loved it,positive\n"), purpose="evals").id
    good = {"item": ROWS[0], "sample": {"output_text": "positive"}}
    broken = tenant.client.files.create(
        file=("rows.jsonl", _jsonl([good, good]) + b"\n{not json\n"), purpose="evals"
    ).id

    def run_on(file_id: str) -> Any:
        source = {"type": "jsonl", "source": {"type": "file_id", "id": file_id}}
        return tenant.client.evals.runs.create(eval_id, data_source=source)

    assert _refused(lambda: run_on(csv), "data_source.source.id", "invalid_file_format").startswith("line 1:")
    # Line 3 is blank (skipped), line 4 is the broken one.
    assert _refused(lambda: run_on(broken), "data_source.source.id").startswith("line 4:")


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"item": ROWS[0]}], "need a 'sample'"),
        ([{"item": ROWS[0], "sample": {"text": "no output"}}], "sample.output_text"),
        ([{"sample": {"output_text": "x"}}], "'item'"),
        ([{"item": {"text": "no label"}, "sample": {"output_text": "x"}}], "'label' is a required property"),
        ([{"item": {"text": 5, "label": "x"}, "sample": {"output_text": "x"}}], "item['text']"),
    ],
    ids=["no sample", "sample without the field", "no item", "missing property", "wrong type"],
)
def test_a_bad_file_line_is_a_400_with_its_line_number(tenant: Tenant, rows: list[object], message: str) -> None:
    eval_id = _eval(tenant)
    good = {"item": ROWS[0], "sample": {"output_text": "positive"}}
    file_id = tenant.client.files.create(file=("rows.jsonl", _jsonl([good, *rows])), purpose="evals").id
    source = {"type": "jsonl", "source": {"type": "file_id", "id": file_id}}
    refusal = _refused(lambda: tenant.client.evals.runs.create(eval_id, data_source=source), "data_source.source.id")
    assert refusal.startswith("line 2:") and message in refusal, refusal


def test_a_run_file_must_be_an_evals_file(tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    rows = [{"item": row, "sample": {"output_text": "x"}} for row in ROWS]
    file_id = tenant.client.files.create(file=("rows.jsonl", _jsonl(rows)), purpose="user_data").id
    source = {"type": "jsonl", "source": {"type": "file_id", "id": file_id}}
    _refused(
        lambda: tenant.client.evals.runs.create(eval_id, data_source=source),
        "data_source.source.id",
        "invalid_file_purpose",
    )


def _template(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"type": "template", "template": list(messages)}


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"model": "no-such-model"}, "data_source.model"),
        ({"model": "ft:tiny-smollm2:nobody:x:ftjob-nope"}, "data_source.model"),
        ({"model": None}, "data_source.model"),
        ({"input_messages": None}, "data_source.input_messages"),
        (
            {
                "input_messages": _template(
                    {"role": "user", "content": "ok"}, {"role": "user", "content": "{{item.nope}}"}
                )
            },
            "data_source.input_messages.template[1]",
        ),
        (
            {"input_messages": _template({"role": "user", "content": "{{sample.output_text}}"})},
            "data_source.input_messages.template[0]",
        ),
        (
            {"input_messages": {"type": "item_reference", "item_reference": "item.nope"}},
            "data_source.input_messages.item_reference",
        ),
        ({"source": {"type": "stored_completions", "model": MODEL}}, "data_source.source.type"),
        ({"sampling_params": {"tools": [{"type": "function"}]}}, "data_source.sampling_params.tools"),
        (
            {"source": {"type": "file_content", "content": [{"item": ROWS[0]}, {"item": {"text": "x"}}]}},
            "data_source.source.content[1]",
        ),
        (
            {"source": {"type": "file_content", "content": [{"item": ROWS[0]}, "a string"]}},
            "data_source.source.content[1]",
        ),
    ],
    ids=[
        "unknown model",
        "unknown fine-tuned model",
        "no model",
        "no input messages",
        "template reads a missing field",
        "template reads the sample",
        "item reference to nothing",
        "stored completions",
        "tools",
        "item missing a required property",
        "row not an object",
    ],
)
def test_a_bad_completions_run_is_a_400_naming_it(tenant: Tenant, changes: dict[str, Any], param: str) -> None:
    eval_id = _eval(tenant)
    data_source = {k: v for k, v in _completions(**changes).items() if v is not None}
    _refused(lambda: tenant.client.evals.runs.create(eval_id, data_source=data_source), param)
    assert tenant.client.evals.runs.list(eval_id).data == []  # nothing was queued


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"sampling_params": {"temperature": 3}}, "data_source.sampling_params.temperature"),
        ({"sampling_params": {"max_completion_tokens": 0}}, "data_source.sampling_params.max_completion_tokens"),
        ({"source": {"type": "file_content"}}, "data_source.source.content"),
        ({"source": {"type": "a_bucket", "content": []}}, "data_source.source"),
        (
            {"input_messages": _template({"role": "robot", "content": "hi"})},
            "data_source.input_messages.template.0.role",
        ),
    ],
    ids=["temperature", "max tokens", "no content", "unknown source", "unknown role"],
)
def test_a_malformed_run_names_the_field_as_sent(tenant: Tenant, changes: dict[str, Any], param: str) -> None:
    """Not pydantic's path through its unions (``data_source.completions.sampling_params…``): the client's."""
    eval_id = _eval(tenant)
    _refused(lambda: tenant.client.evals.runs.create(eval_id, data_source=_completions(**changes)), param)


def test_a_responses_run_is_refused_by_name(tenant: Tenant) -> None:
    eval_id = _eval(tenant)
    data_source = {"type": "responses", "source": {"type": "file_content", "content": [{"item": ROWS[0]}]}}
    _refused(
        lambda: tenant.client.evals.runs.create(eval_id, data_source=data_source),
        "data_source.type",
        "unsupported_data_source",
    )


def test_an_item_reference_must_hold_messages_in_every_row(tenant: Tenant) -> None:
    schema = {"type": "object", "properties": {"messages": {}, "label": {"type": "string"}}, "required": ["label"]}
    eval_id = tenant.client.evals.create(data_source_config=_config(schema), testing_criteria=[LABEL_CHECK]).id
    messages = [{"role": "user", "content": "How was it?"}]
    rows = [{"messages": messages, "label": "a"}, {"messages": "hi", "label": "b"}]
    reference = {"type": "item_reference", "item_reference": "item.messages"}
    accepted = _completions(rows[:1], input_messages=reference)
    assert tenant.client.evals.runs.create(eval_id, data_source=accepted).status == "queued"
    refused = _completions(rows, input_messages=reference)
    _refused(lambda: tenant.client.evals.runs.create(eval_id, data_source=refused), "data_source.source.content[1]")


# --- properties ----------------------------------------------------------------------------------------------------

storable = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=storable.filter(lambda s: len(s) <= 512),
    metadata=st.dictionaries(
        storable.filter(lambda s: len(s) <= 64), storable.filter(lambda s: len(s) <= 512), max_size=16
    ),
)
def test_any_name_and_metadata_round_trip(tenant: Tenant, name: str, metadata: dict[str, str]) -> None:
    created = tenant.client.evals.create(
        name=name, metadata=metadata, data_source_config=_config(), testing_criteria=[LABEL_CHECK]
    )
    assert (created.name, created.metadata) == (name, metadata)
    run = tenant.client.evals.runs.create(created.id, name=name, metadata=metadata, data_source=_completions())
    assert (run.name, run.metadata) == (name, metadata)
    updated = tenant.client.evals.update(created.id, name=name[::-1], metadata=dict(reversed(metadata.items())))
    fetched = tenant.client.evals.retrieve(created.id)
    assert (fetched.name, fetched.metadata) == (updated.name, updated.metadata) == (name[::-1], metadata)


row_kinds = st.sampled_from(["good", "no label", "label not a string", "no item", "extra field"])


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kinds=st.lists(row_kinds, min_size=1, max_size=8))
def test_a_run_is_refused_at_its_first_bad_row_or_accepted_whole(tenant: Tenant, kinds: list[str]) -> None:
    made = {
        "good": {"item": ROWS[0]},
        "no label": {"item": {"text": "x"}},
        "label not a string": {"item": {"text": "x", "label": 3}},
        "no item": {"sample": {"output_text": "x"}},
        "extra field": {"item": {**ROWS[1], "note": "schemas allow more"}},
    }
    eval_id = _eval(tenant)
    data_source = _completions(source={"type": "file_content", "content": [made[kind] for kind in kinds]})
    bad = [i for i, kind in enumerate(kinds) if kind not in ("good", "extra field")]
    if not bad:
        assert tenant.client.evals.runs.create(eval_id, data_source=data_source).status == "queued"
        return
    _refused(
        lambda: tenant.client.evals.runs.create(eval_id, data_source=data_source),
        f"data_source.source.content[{bad[0]}]",
    )
