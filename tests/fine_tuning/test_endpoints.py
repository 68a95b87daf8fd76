"""The jobs API through the openai SDK, without training (the shared gateway runs no worker)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import Gateway, Tenant, wait_until_validated
from tests.datasets.factories import chat, pc, preference
from tests.openai_schema import assert_matches

MODEL = "tiny-smollm2"


def _jsonl(rows: list[object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


def _ready_file(tenant: Tenant, rows: list[object], name: str = "train.jsonl") -> str:
    file = tenant.client.files.create(file=(name, _jsonl(rows)), purpose="fine-tune")
    assert wait_until_validated(tenant.client, file.id).status == "processed"
    return file.id


def test_create_retrieve_and_list_events(gateway: Gateway, tenant: Tenant) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(12)])

    job = tenant.client.fine_tuning.jobs.create(
        model=MODEL, training_file=training, suffix="Custom model name!", seed=7
    )

    assert job.id.startswith("ftjob-")
    assert (job.status, job.model, job.training_file, job.seed) == ("queued", MODEL, training, 7)
    assert job.method is not None and job.method.type == "supervised"
    assert job.hyperparameters.n_epochs == "auto"
    assert job.organization_id == tenant.project_id
    with gateway.http(tenant.key) as http:
        raw = http.get(f"/v1/fine_tuning/jobs/{job.id}").json()
        assert_matches(raw, "FineTuningJob")
        assert raw["user_provided_suffix"] == "custom-model-name"
        events = http.get(f"/v1/fine_tuning/jobs/{job.id}/events").json()
        assert_matches(events, "ListFineTuningJobEventsResponse")
    messages = [e.message for e in tenant.client.fine_tuning.jobs.list_events(job.id)]
    assert messages == ["Files validated, moving job to queued state", f"Created fine-tuning job: {job.id}"]
    first = tenant.client.fine_tuning.jobs.list_events(job.id, limit=1)
    assert first.has_more is True
    older = tenant.client.fine_tuning.jobs.list_events(job.id, limit=1, after=first.data[0].id)
    assert [e.message for e in older.data] == [f"Created fine-tuning job: {job.id}"]
    assert tenant.client.fine_tuning.jobs.retrieve(job.id).id == job.id


def test_job_waits_for_file_validation(tenant: Tenant) -> None:
    file = tenant.client.files.create(file=("t.jsonl", _jsonl([pc(i) for i in range(12)])), purpose="fine-tune")
    job = tenant.client.fine_tuning.jobs.create(model=MODEL, training_file=file.id)
    assert job.status in ("validating_files", "queued")


def test_list_filters_by_metadata_and_paginates(tenant: Tenant) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(10)])
    jobs = tenant.client.fine_tuning.jobs
    a = jobs.create(model=MODEL, training_file=training, metadata={"team": "support"})
    b = jobs.create(model=MODEL, training_file=training, metadata={"team": "sales"})
    c = jobs.create(model=MODEL, training_file=training)

    assert [j.id for j in jobs.list()] == [c.id, b.id, a.id]
    assert [j.id for j in jobs.list(metadata={"team": "support"})] == [a.id]
    page = jobs.list(limit=2)
    assert [j.id for j in page.data] == [c.id, b.id]
    assert page.has_more is True
    assert [j.id for j in jobs.list(limit=2, after=b.id).data] == [a.id]


def test_pause_resume_cancel_state_machine(tenant: Tenant) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(10)])
    jobs = tenant.client.fine_tuning.jobs
    job = jobs.create(model=MODEL, training_file=training)

    assert jobs.pause(job.id).status == "paused"
    with pytest.raises(openai.BadRequestError):
        jobs.pause(job.id)
    assert jobs.resume(job.id).status == "queued"
    with pytest.raises(openai.BadRequestError) as err:
        jobs.resume(job.id)
    assert err.value.code == "invalid_job_state"
    cancelled = jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    with pytest.raises(openai.BadRequestError):
        jobs.cancel(job.id)
    with pytest.raises(openai.BadRequestError):
        jobs.resume(job.id)
    messages = [e.message for e in jobs.list_events(job.id)]
    assert messages[:3] == [
        "Fine-tuning job cancelled",
        "Fine-tuning job resumed, moving job to queued state",
        "Fine-tuning job paused",
    ]


@pytest.mark.parametrize(
    ("model", "error"),
    [("gpt-99-ultra", openai.NotFoundError), ("ft:tiny-smollm2:someone:x:nope", openai.NotFoundError)],
)
def test_unknown_model_is_404(tenant: Tenant, model: str, error: type[Exception]) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(10)])
    with pytest.raises(error) as err:
        tenant.client.fine_tuning.jobs.create(model=model, training_file=training)
    assert err.value.param == "model"  # type: ignore[attr-defined]


def test_unusable_files_are_400s_naming_the_file(tenant: Tenant, other_tenant: Tenant) -> None:
    jobs = tenant.client.fine_tuning.jobs
    chat_file = _ready_file(tenant, [chat(i) for i in range(10)])
    foreign = _ready_file(other_tenant, [chat(i) for i in range(10)])
    broken = tenant.client.files.create(file=("few.jsonl", _jsonl([chat(1)])), purpose="fine-tune")
    assert wait_until_validated(tenant.client, broken.id).status == "error"
    notes = tenant.client.files.create(file=("notes.txt", b"hello"), purpose="user_data")
    pc_file = _ready_file(tenant, [pc(i) for i in range(10)])

    cases = [
        ({"training_file": foreign}, "training_file", "invalid_file"),
        ({"training_file": broken.id}, "training_file", "invalid_file"),
        ({"training_file": notes.id}, "training_file", "invalid_file_purpose"),
        ({"training_file": chat_file, "method": {"type": "dpo"}}, "training_file", "invalid_file_format"),
        ({"training_file": chat_file, "validation_file": foreign}, "validation_file", "invalid_file"),
        ({"training_file": chat_file, "validation_file": pc_file}, "validation_file", "invalid_file_format"),
        ({"training_file": chat_file, "method": {"type": "reinforcement"}}, "method.type", "invalid_value"),
    ]
    for kwargs, param, code in cases:
        with pytest.raises(openai.BadRequestError) as err:
            jobs.create(model=MODEL, **kwargs)  # type: ignore[arg-type]
        assert (err.value.param, err.value.code) == (param, code), kwargs  # type: ignore[attr-defined]
    assert jobs.list().data == []


def test_dpo_takes_preference_data_and_legacy_fields_are_accepted(tenant: Tenant) -> None:
    prefs = _ready_file(tenant, [preference(i) for i in range(10)])
    dpo = tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=prefs,
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2}}},
    )
    assert dpo.method is not None and dpo.method.type == "dpo"
    assert dpo.method.dpo is not None and dpo.method.dpo.hyperparameters is not None
    assert dpo.method.dpo.hyperparameters.beta == 0.2

    labels = _ready_file(tenant, [{"prompt": f"x{i} ->", "completion": " yes" if i % 2 else " no"} for i in range(20)])
    legacy = tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=labels,
        validation_file=labels,
        extra_body={"compute_classification_metrics": True, "classification_positive_class": " yes"},
    )
    assert legacy.status == "queued"
    with pytest.raises(openai.BadRequestError) as err:
        tenant.client.fine_tuning.jobs.create(
            model=MODEL, training_file=labels, extra_body={"compute_classification_metrics": True}
        )
    assert err.value.param == "validation_file"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"suffix": "x" * 65}, "suffix"),
        ({"seed": -1}, "seed"),
        ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
        ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": "big"}}}}, "method"),
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
    ],
)
def test_bad_parameters_are_400(gateway: Gateway, tenant: Tenant, body: dict[str, object], param: str) -> None:
    with gateway.http(tenant.key) as http:
        response = http.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": "file-x", **body})
    assert response.status_code == 400
    assert response.json()["error"]["param"].startswith(param)


def test_other_projects_jobs_are_404(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(10)])
    job = tenant.client.fine_tuning.jobs.create(model=MODEL, training_file=training)
    theirs = other_tenant.client.fine_tuning.jobs
    for call in (
        lambda: theirs.retrieve(job.id),
        lambda: theirs.cancel(job.id),
        lambda: theirs.pause(job.id),
        lambda: theirs.resume(job.id),
        lambda: theirs.list_events(job.id),
        lambda: theirs.checkpoints.list(job.id),
    ):
        with pytest.raises(openai.NotFoundError):
            call()
    assert theirs.list().data == []
    with gateway.http(other_tenant.key) as http:
        assert http.get(f"/v1/fine_tuning/jobs/{job.id}/events", params={"stream": "true"}).status_code == 404
    assert tenant.client.fine_tuning.jobs.retrieve(job.id).status == "queued"


def _sse(gateway: Gateway, key: str, job_id: str, last_event_id: str | None = None) -> list[tuple[str | None, str]]:
    headers = {"Authorization": f"Bearer {key}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    out: list[tuple[str | None, str]] = []
    event_id: str | None = None
    with httpx.stream(
        "GET",
        f"{gateway.base_url}/v1/fine_tuning/jobs/{job_id}/events",
        params={"stream": "true"},
        headers=headers,
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                out.append((event_id, line[5:].strip()))
                event_id = None
    return out


def test_event_stream_ends_with_the_job_and_resumes_after_last_event_id(gateway: Gateway, tenant: Tenant) -> None:
    training = _ready_file(tenant, [chat(i) for i in range(10)])
    jobs = tenant.client.fine_tuning.jobs
    job = jobs.create(model=MODEL, training_file=training)
    jobs.pause(job.id)
    jobs.resume(job.id)
    jobs.cancel(job.id)

    full = _sse(gateway, tenant.key, job.id)

    assert full[-1] == (None, "[DONE]")
    events = [(event_id, json.loads(data)) for event_id, data in full[:-1]]
    assert [e["message"] for _, e in events] == [
        f"Created fine-tuning job: {job.id}",
        "Files validated, moving job to queued state",
        "Fine-tuning job paused",
        "Fine-tuning job resumed, moving job to queued state",
        "Fine-tuning job cancelled",
    ]
    assert all(event_id == e["id"] for event_id, e in events)
    resumed = _sse(gateway, tenant.key, job.id, last_event_id=events[1][0])
    assert [json.loads(d)["message"] for _, d in resumed[:-1]] == [e["message"] for _, e in events[2:]]
    with gateway.http(tenant.key) as http:
        bad = http.get(f"/v1/fine_tuning/jobs/{job.id}/events", params={"stream": "true", "after": "ftevent-nope"})
    assert bad.status_code == 400


def test_models_list_base_models(gateway: Gateway, tenant: Tenant) -> None:
    ids = [m.id for m in tenant.client.models.list()]
    assert "smollm2-135m-instruct" in ids
    assert MODEL in ids
    model = tenant.client.models.retrieve("smollm2-135m-instruct")
    assert (model.id, model.object) == ("smollm2-135m-instruct", "model")
    with gateway.http(tenant.key) as http:
        assert_matches(http.get("/v1/models").json(), "ListModelsResponse")
    with pytest.raises(openai.NotFoundError):
        tenant.client.models.retrieve("ft:tiny-smollm2:nobody::x")
