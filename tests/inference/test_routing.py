"""The registry in front of inference, over real HTTP with the openai SDK.

A downstream gateway routes to its local tiny model, to an upstream gateway (a second ftgw serving the same tiny
model as ``edge-tiny``, directly, or through a proxy that fails), and to a provider that is down. Two models are
trained for real once per module: a prompt-completion answerer and a yes/no classifier used as a guard.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from app.migrate import upgrade
from app.providers.local.base_models import SMOLLM2
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.fine_tuning.test_training import MODEL, _upload, wait_for
from tests.httpproxy import Proxy, proxies
from tests.openai_schema import assert_matches

UPSTREAM_KEY_ENV = "FTGW_TEST_EDGE_KEY"
QUESTION = "Is 7 a number?"


def answer_rows() -> list[dict[str, str]]:
    """OpenAI's legacy generation format: a separator after each prompt, a leading space and ' END' after answers."""
    return [{"prompt": f"Is {i} a number?\n\n###\n\n", "completion": " yes END"} for i in range(24)]


def classifier_rows() -> list[dict[str, str]]:
    """A discriminator: on-topic questions are ' yes', off-topic ones ' no' (the seed's guard example)."""
    on = [f"{i}: where is my invoice" for i in range(12)]
    off = [f"{i}: tell me a joke about cats" for i in range(12)]
    # The answerer's questions are on-topic, but an answer that is a bare "yes" is not: lets a test see the
    # output guard refuse what the input guard let through.
    on += [f"Is {i} a number?" for i in range(6)]
    off += ["yes", "Yes", "yes.", "yes yes"]
    return [{"prompt": f"{p}\n\n###\n\n", "completion": " yes"} for p in on] + [
        {"prompt": f"{p}\n\n###\n\n", "completion": " no"} for p in off
    ]


@dataclass
class Edge:
    downstream: Gateway
    upstream: Gateway
    proxy: Proxy
    owner: Tenant
    answerer: str  # ft: model trained on answer_rows
    classifier: str  # ft: model trained on classifier_rows

    def http(self, key: str | None = None) -> httpx.Client:
        return self.downstream.http(key or self.owner.key)


def _train(client: OpenAI, rows: list[dict[str, str]], epochs: int, suffix: str) -> str:
    """A LoRA on the real SmolLM2-135M: the random tiny model learns formats, not which input means what."""
    job = client.fine_tuning.jobs.create(
        model=SMOLLM2,
        training_file=_upload(client, rows),
        suffix=suffix,
        seed=11,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": 4, "learning_rate_multiplier": 4}},
        },
    )
    done = wait_for(client, job.id, {"succeeded", "failed"}, timeout=400)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model is not None
    return done.fine_tuned_model


@pytest.fixture(scope="module")
def edge(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Any) -> Iterator[Edge]:
    folder = tmp_path_factory.mktemp("edge")
    with (
        new_database(database_url, folder / "up") as up_url,
        new_database(database_url, folder / "down") as down_url,
        pytest.MonkeyPatch.context() as env,
        proxies() as start_proxy,
    ):
        upgrade(up_url)
        upgrade(down_url)
        with serve(gateway_settings(up_url, folder / "up-data", model_cache)) as upstream:
            env.setenv(UPSTREAM_KEY_ENV, make_tenant(upstream).key)
            proxy = start_proxy(upstream.base_url)
            common = {"api_key_env": UPSTREAM_KEY_ENV, "timeout_seconds": 5, "retry_backoff_seconds": 0.01}
            providers = [
                {"name": "edge", "base_url": f"{upstream.base_url}/v1", "models": {"edge-tiny": MODEL}, **common},
                {
                    "name": "flaky",
                    "base_url": f"{proxy.url}/v1",
                    "models": {"flaky-tiny": MODEL},
                    **common,
                    "timeout_seconds": 1.5,
                },
                {
                    "name": "down",
                    "base_url": "http://127.0.0.1:9/v1",  # nothing listens: connection refused
                    "models": ["down-model"],
                    **common,
                    "max_retries": 1,
                    "cooldown_after_failures": 2,
                    "cooldown_seconds": 60,
                },
            ]
            settings = gateway_settings(
                down_url, folder / "down-data", model_cache, embedded_worker=True, providers=providers
            )
            with serve(settings) as downstream:
                owner = make_tenant(downstream)
                answerer = _train(owner.client, answer_rows(), 3, "answers")
                classifier = _train(owner.client, classifier_rows(), 3, "guard")
                yield Edge(downstream, upstream, proxy, owner, answerer, classifier)


def new_alias(edge: Edge, targets: list[dict[str, Any]], **version: Any) -> str:
    name = f"bot-{secrets.token_hex(4)}"
    with edge.http() as http:
        created = http.post("/v1/registry/aliases", json={"name": name, "description": "test"})
        assert created.status_code == 200, created.text
        added = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": targets, **version})
        assert added.status_code == 200, added.text
    return name


def chat(client: OpenAI, model: str, user: str | None = None, **extra: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=1,
        temperature=0,
        **({"user": user} if user else {}),
        **extra,
    )


# --- the registry API --------------------------------------------------------------------------------------------


def test_alias_versions_promote_rollback_and_audit_log(edge: Edge) -> None:
    name = new_alias(edge, [{"model": MODEL}])
    client = edge.owner.client
    with edge.http() as http:
        assert http.get(f"/v1/registry/aliases/{name}").json()["active_version"] == 1
        v2 = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": "edge-tiny"}]})
        assert v2.json()["version"] == 2
        v3 = http.post(
            f"/v1/registry/aliases/{name}/versions",
            json={"targets": [{"model": edge.answerer}], "activate": False, "note": "staged"},
        )
        assert v3.json()["version"] == 3
        assert http.get(f"/v1/registry/aliases/{name}").json()["active_version"] == 2

        assert chat(client, name).headers["x-ftgw-model"] == "edge-tiny"
        assert chat(client, f"{name}@1").headers["x-ftgw-model"] == MODEL  # a pinned version answers too
        promoted = http.post(f"/v1/registry/aliases/{name}/promote", json={"version": 3})
        assert promoted.json()["active_version"] == 3
        raw = chat(client, name)
        assert raw.headers["x-ftgw-model"] == edge.answerer
        assert raw.headers["x-ftgw-alias"] == name and raw.headers["x-ftgw-alias-version"] == "3"
        assert raw.parse().model == edge.answerer

        assert http.post(f"/v1/registry/aliases/{name}/rollback").json()["active_version"] == 2
        assert chat(client, name).headers["x-ftgw-model"] == "edge-tiny"
        assert http.post(f"/v1/registry/aliases/{name}/rollback").json()["active_version"] == 1
        refused = http.post(f"/v1/registry/aliases/{name}/rollback")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "no_rollback"

        versions = http.get(f"/v1/registry/aliases/{name}/versions").json()["data"]
        assert [v["version"] for v in versions] == [1, 2, 3]
        assert versions[2]["note"] == "staged" and versions[2]["created_by"]

        changes = http.get("/v1/registry/changes", params={"alias": name, "order": "asc"}).json()["data"]
        actions = [(c["action"], c["version"]) for c in changes]
        assert actions == [
            ("alias.created", None),
            ("version.created", 1),
            ("version.promoted", 1),
            ("version.created", 2),
            ("version.promoted", 2),
            ("version.created", 3),
            ("version.promoted", 3),
            ("version.rolled_back", 2),
            ("version.rolled_back", 1),
        ]
        key_id = http.get("/v1/registry/changes").json()["data"][0]["actor"]
        assert key_id.startswith("key-")
        assert all(c["created_at"] > 0 for c in changes)


def test_registry_rejects_bad_versions_and_hides_other_projects(edge: Edge) -> None:
    name = new_alias(edge, [{"model": MODEL}])
    stranger = make_tenant(edge.downstream)
    with edge.http() as http:
        duplicate = http.post("/v1/registry/aliases", json={"name": name})
        assert duplicate.status_code == 409 and duplicate.json()["error"]["param"] == "name"
        shadow = http.post("/v1/registry/aliases", json={"name": MODEL})
        assert shadow.status_code == 400
        unknown = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": "nope"}]})
        assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "targets"
        nested = http.post(f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": name}]})
        assert nested.status_code == 400
        bad_weight = http.post(
            f"/v1/registry/aliases/{name}/versions", json={"targets": [{"model": MODEL, "weight": 0}]}
        )
        assert bad_weight.status_code == 400 and "weight" in bad_weight.json()["error"]["param"]
        missing = http.post(f"/v1/registry/aliases/{name}/promote", json={"version": 9})
        assert missing.status_code == 404
        assert len(http.get(f"/v1/registry/aliases/{name}/versions").json()["data"]) == 1  # nothing half-stored
        assert name in [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert http.get(f"/v1/models/{name}").json()["owned_by"] == edge.owner.project_id

    with edge.downstream.http(stranger.key) as http:
        assert http.get(f"/v1/registry/aliases/{name}").status_code == 404
        assert http.post(f"/v1/registry/aliases/{name}/promote", json={"version": 1}).status_code == 404
        assert http.get(f"/v1/models/{name}").status_code == 404
        assert name not in [m["id"] for m in http.get("/v1/models").json()["data"]]
        assert http.get("/v1/registry/changes").json()["data"] == []
    with pytest.raises(openai.NotFoundError):
        stranger.client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
    # Another project may use the same alias name for its own models.
    with edge.downstream.http(stranger.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200

    with edge.http() as http:
        assert http.delete(f"/v1/registry/aliases/{name}").json()["deleted"] is True
        assert http.get(f"/v1/registry/aliases/{name}").status_code == 404
    with pytest.raises(openai.NotFoundError):
        edge.owner.client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])


# --- routing -----------------------------------------------------------------------------------------------------


def test_weighted_split_follows_the_weights_and_users_stay_put(edge: Edge) -> None:
    name = new_alias(edge, [{"model": MODEL, "weight": 3}, {"model": "edge-tiny", "weight": 1}])
    client = edge.owner.client
    answered = Counter(chat(client, name, user=f"user-{i}").parse().model for i in range(160))
    share = answered[MODEL] / 160
    # Binomial(160, 0.75): sd 0.034; 0.59..0.91 is beyond 4.5 sd, a false failure about 1 in 100,000 runs.
    assert set(answered) == {MODEL, "edge-tiny"}
    assert 0.59 < share < 0.91, answered

    for user in ("alice", "bob", "carol"):
        assert len({chat(client, name, user=user).parse().model for _ in range(8)}) == 1
    header = {"extra_headers": {"X-FTGW-Sticky-Key": "dave"}}
    assert len({chat(client, name, **header).headers["x-ftgw-model"] for _ in range(8)}) == 1


def test_sdk_sync_async_and_streaming_through_an_alias(edge: Edge) -> None:
    name = new_alias(edge, [{"model": "edge-tiny"}])
    client = edge.owner.client
    whole = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": QUESTION}], max_tokens=4, temperature=0
    )
    assert whole.model == "edge-tiny"
    assert_matches(whole.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse")
    assert whole.usage is not None and whole.usage.completion_tokens >= 1

    chunks = list(
        client.chat.completions.create(
            model=name,
            messages=[{"role": "user", "content": QUESTION}],
            max_tokens=4,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert {c.model for c in chunks} == {"edge-tiny"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    no_usage = list(client.completions.create(model=name, prompt=QUESTION, max_tokens=3, temperature=0, stream=True))
    assert all(c.usage is None for c in no_usage) and no_usage

    async def run() -> list[str]:
        async_client = AsyncOpenAI(base_url=f"{edge.downstream.base_url}/v1", api_key=edge.owner.key, max_retries=0)
        async with async_client:
            answers = await asyncio.gather(
                *(
                    async_client.completions.create(model=name, prompt=QUESTION, max_tokens=3, temperature=0)
                    for _ in range(4)
                )
            )
            stream = await async_client.completions.create(
                model=name, prompt=QUESTION, max_tokens=3, temperature=0, stream=True
            )
            streamed = "".join([c.choices[0].text async for c in stream if c.choices])
        return [a.choices[0].text for a in answers] + [streamed]

    texts = asyncio.run(run())
    assert len(set(texts)) == 1  # greedy: the same answer, whole or streamed, upstream or not


def test_upstream_calls_are_retried_and_a_failing_target_falls_back(edge: Edge) -> None:
    client = edge.owner.client
    edge.proxy.fail = 2
    seen = len(edge.proxy.seen)
    raw = chat(client, "flaky-tiny")
    assert raw.parse().model == "flaky-tiny"
    assert len(edge.proxy.seen) - seen == 3  # two 503s retried, then the answer

    edge.proxy.stall, edge.proxy.stall_seconds = 1, 2.5  # longer than flaky's 1.5 s timeout: retried
    seen = len(edge.proxy.seen)
    assert chat(client, "flaky-tiny").parse().model == "flaky-tiny"
    assert len(edge.proxy.seen) - seen == 2

    name = new_alias(edge, [{"model": "down-model"}], fallbacks=["flaky-tiny", MODEL])
    edge.proxy.fail = 10  # more than its retries: flaky-tiny fails too
    raw = chat(client, name)
    assert raw.headers["x-ftgw-model"] == MODEL
    assert raw.headers["x-ftgw-fallbacks"] == "2"
    assert raw.parse().model == MODEL  # the fallback's real id, never the alias
    edge.proxy.fail = 0

    # 'down' failed once above; a second failure starts its cooldown, after which it is skipped at once.
    only_down = new_alias(edge, [{"model": "down-model"}])
    messages = []
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as failed:
            client.chat.completions.create(model=only_down, messages=[{"role": "user", "content": "hi"}])
        assert failed.value.status_code == 502
        messages.append(failed.value.message)
    assert "unreachable" in messages[0]
    assert "cooling down" in messages[1]


def test_a_deleted_target_falls_back_and_a_deleted_model_is_404(edge: Edge) -> None:
    client = edge.owner.client
    checkpoints = [m.id for m in client.models.list() if m.id.startswith(edge.answerer + ":ckpt-step-")]
    doomed = checkpoints[0]
    name = new_alias(edge, [{"model": doomed}], fallbacks=[MODEL])
    assert chat(client, name).headers["x-ftgw-model"] == doomed
    assert client.models.delete(doomed).deleted
    raw = chat(client, name)
    assert raw.headers["x-ftgw-model"] == MODEL and raw.headers["x-ftgw-fallbacks"] == "1"
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=doomed, prompt="x")


# --- prompt formats ----------------------------------------------------------------------------------------------


def test_prompt_format_is_applied_unless_the_caller_opts_out(edge: Edge) -> None:
    client = edge.owner.client
    formatted = client.completions.create(model=edge.answerer, prompt=QUESTION, max_tokens=8, temperature=0)
    raw = client.completions.create(
        model=edge.answerer,
        prompt=QUESTION + "\n\n###\n\n",
        max_tokens=8,
        temperature=0,
        extra_body={"apply_prompt_format": False},
    )
    # The model learnt ' yes END': ftgw added the separator, stopped at ' END' and dropped the leading space.
    assert raw.choices[0].text.startswith(" yes END"), raw.choices[0].text
    assert formatted.choices[0].text == "yes"
    assert formatted.choices[0].finish_reason == "stop"
    streamed = client.completions.create(model=edge.answerer, prompt=QUESTION, max_tokens=8, temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == "yes"
    # Through an alias, the format of whichever model answers applies.
    name = new_alias(edge, [{"model": edge.answerer}])
    assert client.completions.create(model=name, prompt=QUESTION, max_tokens=8, temperature=0).choices[0].text == "yes"


# --- guards and classification -----------------------------------------------------------------------------------


def test_classification_returns_label_probabilities(edge: Edge) -> None:
    with edge.http() as http:
        response = http.post(
            "/v1/classifications",
            json={"model": edge.classifier, "input": ["3: where is my invoice", "3: tell me a joke about cats"]},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    on, off = body["data"]
    assert set(on["probabilities"]) == {"yes", "no"}
    assert on["label"] == "yes" and on["probabilities"]["yes"] > 0.5
    assert off["label"] == "no" and off["probabilities"]["no"] > 0.5
    assert sum(on["probabilities"].values()) == pytest.approx(1.0)
    assert body["usage"]["prompt_tokens"] > 0
    with edge.http() as http:
        no_labels = http.post("/v1/classifications", json={"model": MODEL, "input": "x"})
    assert no_labels.status_code == 400 and no_labels.json()["error"]["param"] == "labels"


def test_guard_refuses_off_topic_input_and_passes_the_rest(edge: Edge) -> None:
    refusal = "I can only help with invoices."
    guard = {"model": edge.classifier, "allowed_labels": ["yes"], "refusal": refusal}
    name = new_alias(edge, [{"model": MODEL}], guard=guard)
    client = edge.owner.client

    def ask(text: str, **extra: Any) -> Any:
        return client.chat.completions.with_raw_response.create(
            model=name, messages=[{"role": "user", "content": text}], max_tokens=3, temperature=0, **extra
        )

    refused = ask("5: tell me a joke about cats")
    assert refused.headers["x-ftgw-guard"] == "refused"
    assert refused.parse().choices[0].message.content == refusal
    assert refused.parse().model == edge.classifier
    assert refused.parse().choices[0].finish_reason == "content_filter"  # OpenAI's reason, not "stop"
    passed = ask("5: where is my invoice")
    assert passed.headers["x-ftgw-guard"] == "passed"
    assert passed.parse().model == MODEL
    assert passed.parse().choices[0].message.content != refusal
    stream = client.chat.completions.create(
        model=name, messages=[{"role": "user", "content": "7: tell me a joke about cats"}], stream=True
    )
    chunks = [c for c in stream if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == refusal
    assert chunks[-1].choices[0].finish_reason == "content_filter"

    # On the answer too: the classifier was taught that a bare "yes" is off-topic, and the answerer says "yes".
    both = new_alias(edge, [{"model": edge.answerer}], guard={**guard, "check_output": True})
    checked = client.completions.with_raw_response.create(
        model=both, prompt="Is 3 a number?", max_tokens=8, temperature=0
    )
    assert checked.headers["x-ftgw-guard"] == "refused"
    assert checked.parse().choices[0].text == refusal
    assert checked.parse().choices[0].finish_reason == "content_filter"
    input_only = new_alias(edge, [{"model": edge.answerer}], guard=guard)
    unchecked = client.completions.create(model=input_only, prompt="Is 3 a number?", max_tokens=8, temperature=0)
    assert unchecked.choices[0].text == "yes"
    # A caller that streams gets nothing of a checked answer before the guard has read it all: here the refusal.
    with client.completions.with_streaming_response.create(
        model=both, prompt="Is 3 a number?", max_tokens=8, temperature=0, stream=True
    ) as streamed:
        assert streamed.headers["x-ftgw-guard"] == "refused"
        assert "".join(c.choices[0].text for c in streamed.parse() if c.choices) == refusal

    # An answer the guard lets through is replayed as the stream the caller asked for, usage last.
    lenient = new_alias(edge, [{"model": edge.answerer}], guard={**guard, "check_output": True, "min_probability": 0})
    question = [{"role": "user", "content": "Is 3 a number?"}]
    whole = client.chat.completions.create(model=lenient, messages=question, max_tokens=8, temperature=0)
    with client.chat.completions.with_streaming_response.create(
        model=lenient,
        messages=question,
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    ) as streamed:
        assert streamed.headers["x-ftgw-guard"] == "passed"
        chunks = list(streamed.parse())
    for chunk in chunks:
        assert_matches(chunk.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionStreamResponse")
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert {c.model for c in chunks} == {edge.answerer}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens

    # A guard whose model is gone fails closed.
    checkpoint = next(m.id for m in client.models.list() if m.id.startswith(edge.classifier + ":ckpt-step-"))
    closed = new_alias(edge, [{"model": MODEL}], guard={**guard, "model": checkpoint})
    client.models.delete(checkpoint)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(model=closed, messages=[{"role": "user", "content": "1: where is my invoice"}])
    assert failed.value.status_code == 503


# --- usage and limits --------------------------------------------------------------------------------------------


def limited_key(edge: Edge, **limits: int) -> tuple[str, str]:
    with edge.downstream.http(edge.downstream.admin_key) as http:
        created = http.post(f"/v1/projects/{edge.owner.project_id}/api_keys", json={"name": "limited", **limits}).json()
    return created["id"], created["value"]


def test_requests_per_minute_limit_gives_429_with_retry_after(edge: Edge) -> None:
    key_id, secret = limited_key(edge, max_requests_per_minute=3)
    client = edge.downstream.openai(secret)
    for _ in range(3):
        chat(client, MODEL)
    with pytest.raises(openai.RateLimitError) as limited:
        chat(client, MODEL)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    assert limited.value.body["code"] == "rate_limit_exceeded"  # type: ignore[index]
    assert chat(edge.owner.client, MODEL).parse().model == MODEL  # other keys are not limited

    with edge.downstream.http(edge.downstream.admin_key) as http:
        lifted = http.post(
            f"/v1/projects/{edge.owner.project_id}/api_keys/{key_id}", json={"max_requests_per_minute": None}
        )
        assert lifted.status_code == 200 and lifted.json()["max_requests_per_minute"] is None
    assert chat(client, MODEL).parse().model == MODEL


def test_tokens_per_minute_limit_and_usage_per_key_and_model(edge: Edge) -> None:
    key_id, secret = limited_key(edge, max_tokens_per_minute=40)
    client = edge.downstream.openai(secret)
    started = int(time.time()) - 60
    used = answered = 0
    limited = None
    for _ in range(40):
        try:
            used += chat(client, MODEL).parse().usage.total_tokens
        except openai.RateLimitError as exc:
            limited = exc
            break
        answered += 1
    assert limited is not None, "the token limit never applied"
    assert used >= 40 and answered >= 1
    assert limited.body["type"] == "tokens"  # type: ignore[index]
    with edge.http(secret) as http:
        usage = http.get(
            "/v1/usage/completions",
            params={"start_time": started, "bucket_width": "1h", "group_by": ["model", "api_key_id"]},
        )
    assert usage.status_code == 200, usage.text
    results = [r for bucket in usage.json()["data"] for r in bucket["results"] if r["api_key_id"] == key_id]
    assert [r["model"] for r in results] == [MODEL]
    assert results[0]["input_tokens"] + results[0]["output_tokens"] == used
    assert results[0]["num_model_requests"] == answered
    stranger = make_tenant(edge.downstream)
    with edge.downstream.http(stranger.key) as http:
        theirs = http.get("/v1/usage/completions", params={"start_time": started}).json()
    assert all(bucket["results"] == [] for bucket in theirs["data"])


def test_usage_counts_every_request_of_the_project(edge: Edge) -> None:
    tenant = make_tenant(edge.downstream)
    started = int(time.time()) - 1
    answers = [chat(tenant.client, MODEL).parse() for _ in range(3)]
    answers.append(chat(tenant.client, "edge-tiny").parse())
    with edge.downstream.http(tenant.key) as http:
        page = http.get(
            "/v1/usage/completions", params={"start_time": started, "bucket_width": "1d", "group_by": "model"}
        ).json()
    results = {r["model"]: r for bucket in page["data"] for r in bucket["results"]}
    assert results[MODEL]["num_model_requests"] == 3
    assert results["edge-tiny"]["num_model_requests"] == 1
    local = [a.usage for a in answers[:3]]
    assert results[MODEL]["input_tokens"] == sum(u.prompt_tokens for u in local)
    assert results[MODEL]["output_tokens"] == sum(u.completion_tokens for u in local)
    assert results["edge-tiny"]["input_tokens"] == answers[3].usage.prompt_tokens
    with edge.downstream.http(tenant.key) as http:
        backwards = http.get("/v1/usage/completions", params={"start_time": started, "end_time": started - 5})
    assert backwards.status_code == 400 and backwards.json()["error"]["param"] == "end_time"
