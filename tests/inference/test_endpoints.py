"""Chat completions and completions through the openai SDK (sync and async, streaming or not), local models."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from openai import AsyncOpenAI

from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, serve
from tests.fine_tuning.test_training import FAST, MODEL, _upload, qa_rows, wait_for
from tests.openai_schema import assert_matches

PROMPT = "Is 7 a number?\n\n###\n\n"


def test_completion_matches_openai_schema_and_counts_usage(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        response = http.post(
            "/v1/completions", json={"model": MODEL, "prompt": PROMPT, "max_tokens": 5, "temperature": 0, "logprobs": 3}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_matches(body, "CreateCompletionResponse")
    choice = body["choices"][0]
    assert choice["finish_reason"] in ("stop", "length")
    assert body["usage"]["completion_tokens"] == len(choice["logprobs"]["tokens"]) <= 5
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert all(len(top) == 3 for top in choice["logprobs"]["top_logprobs"])
    # Greedy: the chosen token is the most likely one.
    for token, logprob, top in zip(
        choice["logprobs"]["tokens"],
        choice["logprobs"]["token_logprobs"],
        choice["logprobs"]["top_logprobs"],
        strict=True,
    ):
        assert max(top.values()) == pytest.approx(logprob, abs=1e-5)
        assert token in top


def test_chat_completion_via_sdk_non_stream_and_stream(gateway: Gateway, tenant: Tenant) -> None:
    messages = [{"role": "user", "content": "Say hi"}]
    whole = tenant.client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=6,
        temperature=0,
        logprobs=True,
        top_logprobs=2,  # type: ignore[arg-type]
    )
    assert whole.object == "chat.completion"
    assert whole.model == MODEL
    assert whole.usage is not None and whole.usage.completion_tokens <= 6
    assert whole.choices[0].logprobs is not None and whole.choices[0].logprobs.content
    assert len(whole.choices[0].logprobs.content[0].top_logprobs) == 2
    with gateway.http(tenant.key) as http:
        raw = http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 6, "temperature": 0}
        )
    assert_matches(raw.json(), "CreateChatCompletionResponse")

    stream = tenant.client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=6,
        temperature=0,
        stream=True,  # type: ignore[arg-type]
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [
        whole.choices[0].finish_reason
    ]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    with gateway.http(tenant.key) as http:
        raw_stream = http.post(
            "/v1/chat/completions", json={"model": MODEL, "messages": messages, "max_tokens": 3, "stream": True}
        )
    data = [line[5:].strip() for line in raw_stream.text.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    for event in data[:-1]:
        assert_matches(json.loads(event), "CreateChatCompletionStreamResponse")


async def test_async_client_streams_completions_with_n_and_seed(gateway: Gateway, tenant: Tenant) -> None:
    client = AsyncOpenAI(base_url=f"{gateway.base_url}/v1", api_key=tenant.key, max_retries=0)
    first = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, n=3, seed=5, temperature=1.0)
    again = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, n=3, seed=5, temperature=1.0)
    assert [c.text for c in first.choices] == [c.text for c in again.choices]  # seeded: reproducible
    assert sorted(c.index for c in first.choices) == [0, 1, 2]
    texts: dict[int, str] = {}
    stream = await client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=6, n=3, seed=5, stream=True)
    async for chunk in stream:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert [texts[i] for i in range(3)] == [c.text for c in sorted(first.choices, key=lambda c: c.index)]
    await client.close()


def test_errors(gateway: Gateway, tenant: Tenant, other_tenant: Tenant) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        tenant.client.completions.create(model="gpt-99-ultra", prompt="x")
    assert err.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        tenant.client.completions.create(model=MODEL, prompt="x", max_tokens=0)
    with pytest.raises(openai.BadRequestError):
        tenant.client.chat.completions.create(model=MODEL, messages=[])
    with pytest.raises(openai.NotFoundError):
        other_tenant.client.completions.create(model=f"ft:{MODEL}:someone::abc", prompt="x")


def test_fine_tuned_model_answers_in_its_trained_format(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(client, qa_rows(24)),
        method={"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 3}}},
        seed=4,
    )
    done = wait_for(client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None

    raw = {"apply_prompt_format": False}  # as trained: the caller writes separator and stop itself
    tuned = client.completions.create(
        model=done.fine_tuned_model, prompt=PROMPT, max_tokens=4, temperature=0, stop=[" END"], extra_body=raw
    )
    base = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4, temperature=0, stop=[" END"])

    assert tuned.model == done.fine_tuned_model
    # The tiny model learns the answer, if not always where to stop; the base model does neither.
    assert tuned.choices[0].text.startswith(" yes")
    assert not base.choices[0].text.startswith(" yes")
    other = make_tenant(training_gateway)
    with pytest.raises(openai.NotFoundError):
        other.client.completions.create(model=done.fine_tuned_model, prompt=PROMPT)


def test_deleted_fine_tuned_model_is_404_everywhere(training_gateway: Gateway) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(client, qa_rows(12)),
        method={"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 1}}},
    )
    done = wait_for(client, job.id, {"succeeded", "failed"})
    assert done.fine_tuned_model is not None
    other = make_tenant(training_gateway)
    with pytest.raises(openai.NotFoundError):
        other.client.models.delete(done.fine_tuned_model)
    with pytest.raises(openai.BadRequestError):
        client.models.delete(MODEL)

    deleted = client.models.delete(done.fine_tuned_model)

    assert (deleted.id, deleted.deleted) == (done.fine_tuned_model, True)
    with training_gateway.http(tenant.key) as http:
        assert_matches(http.delete(f"/v1/models/{done.fine_tuned_model}").json(), "ErrorResponse")
    assert done.fine_tuned_model not in [m.id for m in client.models.list()]
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=done.fine_tuned_model, prompt=PROMPT)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model=done.fine_tuned_model, training_file=done.training_file)


def test_engine_bounds_come_from_settings(database_url: str, tmp_path: Path, model_cache: Path) -> None:
    settings = gateway_settings(
        database_url,
        tmp_path,
        model_cache,
        engine_max_adapters=3,
        engine_max_batch_size=5,
        default_max_tokens=3,
        engine_int8_models=[MODEL],
    )
    with serve(settings) as gw:
        client = make_tenant(gw).client
        assert client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=2).usage.completion_tokens > 0
        engine = gw.app.state.inference.backends.get("local").engine()  # the local backend's, created by that request
        assert (engine.max_adapters, engine.max_batch_size, engine.int8_models) == (3, 5, {MODEL})
        # The engine hears from the gateway whether other calls are on their way; none is once answered.
        inference = gw.app.state.inference
        assert inference.backends.get("local").traffic is inference.in_flight
        assert (inference.in_flight.calls(), inference.in_flight.routing()) == (0, 0)
        # A chat completion without max_tokens stops at FTGW_DEFAULT_MAX_TOKENS, each of its choices.
        chat = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me everything."}], n=2, temperature=0
        )
        assert chat.usage is not None and chat.usage.completion_tokens == 2 * 3
        assert [c.finish_reason for c in chat.choices] == ["length", "length"]
        given = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Tell me everything."}], max_tokens=5, temperature=0
        )
        assert given.usage is not None and given.usage.completion_tokens == 5  # the caller's bound wins


def test_a_classification_of_many_inputs_is_one_prefill_pass_and_no_decode_step(
    gateway: Gateway, tenant: Tenant
) -> None:
    texts = ["great product", "awful service", "I loved it", "never again", "works fine", "broke in a day"]
    body = {"model": MODEL, "input": texts[:1], "labels": ["good", "bad"]}
    with gateway.http(tenant.key) as http:
        assert http.post("/v1/classifications", json=body).status_code == 200  # the model is loaded
        engine = gateway.app.state.inference.backends.get("local").engine()
        passes, steps = engine.prefill_passes, engine.decode_steps
        response = http.post("/v1/classifications", json=body | {"input": texts})
        assert response.status_code == 200, response.text
        # Only the first token's distribution is needed: the inputs are prefilled together, nothing is decoded.
        assert (engine.prefill_passes - passes, engine.decode_steps - steps) == (1, 0)
        one_by_one = [http.post("/v1/classifications", json=body | {"input": t}).json()["data"][0] for t in texts]
    data = response.json()["data"]
    assert [d["index"] for d in data] == list(range(len(texts)))
    for together, alone in zip(data, one_by_one, strict=True):
        assert together["label"] == alone["label"]
        assert together["probabilities"] == pytest.approx(alone["probabilities"], abs=1e-4)
    assert response.json()["usage"]["prompt_tokens"] > len(texts)
