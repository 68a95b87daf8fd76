"""Sampling parameters over HTTP: everything OpenAI accepts works, anything else is a 400 naming the parameter,
and one project's parameters never make another project's requests fail."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Gateway, Tenant, make_tenant

MODEL = "tiny-smollm2"
PROMPT = "Is 7 a number?\n\n###\n\n"
MESSAGES = [{"role": "user", "content": "Say hi"}]
INT64_MAX = 2**63 - 1
VOCABULARY = 49152  # tiny-smollm2's


def completion(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "prompt": PROMPT, "max_tokens": 4, **fields}


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": 4, **fields}


async def test_tiny_temperatures_are_greedy_and_fail_nobody_else(gateway: Gateway) -> None:
    # Logits divided by 1e-300 overflow; once that failed the whole prefill pass, other projects' requests too.
    first, second = make_tenant(gateway), make_tenant(gateway)

    async def post(key: str, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers, timeout=120) as http:
            return await http.post(path, json=body)

    tiny = [
        post(first.key, path, make(temperature=t, max_tokens=8))
        for t in (1e-300, 1e-45)
        for path, make in (("/v1/completions", completion), ("/v1/chat/completions", chat))
    ]
    others = [post(second.key, "/v1/completions", completion(prompt=f"{i}, {i + 1},", max_tokens=6)) for i in range(12)]
    responses = await asyncio.gather(*tiny, *others)
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text for r in responses]
    greedy_completion = await post(first.key, "/v1/completions", completion(temperature=0, max_tokens=8))
    greedy_chat = await post(first.key, "/v1/chat/completions", chat(temperature=0, max_tokens=8))
    expected = [greedy_completion.json()["choices"][0]["text"], greedy_chat.json()["choices"][0]["message"]["content"]]
    got = [r.json()["choices"][0] for r in responses[:4]]
    assert [got[0]["text"], got[1]["message"]["content"], got[2]["text"], got[3]["message"]["content"]] == expected * 2


def test_openai_parameters_change_the_answer(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        plain = http.post("/v1/completions", json=completion(temperature=0, apply_prompt_format=False)).json()
        forced = http.post(
            "/v1/completions",
            json=completion(temperature=0, apply_prompt_format=False, logit_bias={"42": 100}, logprobs=1),
        ).json()
        nulls = http.post(
            "/v1/chat/completions",
            json=chat(temperature=None, top_p=None, n=None, seed=None, logit_bias=None, frequency_penalty=None),
        )
    tokens = forced["choices"][0]["logprobs"]["tokens"]
    assert len(tokens) == 4 and len(set(tokens)) == 1  # token 42, four times
    assert "".join(tokens) == forced["choices"][0]["text"] != plain["choices"][0]["text"]
    assert nulls.status_code == 200, nulls.text  # OpenAI's null means the default


def test_parameters_the_model_cannot_take_are_400(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        unknown_token = http.post("/v1/completions", json=completion(logit_bias={str(VOCABULARY): 1}))
        too_long = http.post("/v1/chat/completions", json=chat(messages=[{"role": "user", "content": "hi " * 3000}]))
    assert unknown_token.status_code == 400 and unknown_token.json()["error"]["param"] == "logit_bias"
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "messages"
    assert too_long.json()["error"]["code"] == "context_length_exceeded"


# --- every accepted parameter set answers; every out-of-range one is a 400 naming it ---------------------------

floats = st.floats(allow_nan=False, allow_infinity=False)
STOP_TEXT = st.text(st.characters(exclude_characters="\x00"), min_size=1, max_size=3)
accepted = st.fixed_dictionaries(
    {},
    optional={
        "temperature": st.one_of(st.floats(0, 2), st.sampled_from([0, 2, 1e-300, 1e-45, 5e-324]), st.none()),
        "top_p": st.one_of(st.floats(0, 1), st.sampled_from([0, 1]), st.none()),
        "n": st.one_of(st.integers(1, 128), st.none()),
        "seed": st.one_of(st.integers(-(2**63), INT64_MAX), st.none()),
        "frequency_penalty": st.one_of(st.floats(-2, 2), st.none()),
        "presence_penalty": st.one_of(st.floats(-2, 2), st.none()),
        "logit_bias": st.one_of(
            st.dictionaries(st.integers(0, VOCABULARY - 1).map(str), st.integers(-100, 100), max_size=5), st.none()
        ),
        # NUL is refused everywhere text is taken (tests/platform/test_storable_input.py), so it is no accepted stop.
        "stop": st.one_of(STOP_TEXT, st.lists(STOP_TEXT, max_size=4)),
    },
)
# (parameter, a value outside what OpenAI accepts), JSON-encoded as a client could send it.
rejected = st.one_of(
    st.tuples(st.just("temperature"), st.one_of(floats.filter(lambda t: not 0 <= t <= 2), st.just(1e308))),
    st.tuples(st.just("top_p"), floats.filter(lambda p: not 0 <= p <= 1)),
    st.tuples(st.just("n"), st.one_of(st.integers(max_value=0), st.integers(min_value=129))),
    st.tuples(st.just("seed"), st.one_of(st.integers(min_value=2**63), st.integers(max_value=-(2**63) - 1))),
    st.tuples(st.just("frequency_penalty"), floats.filter(lambda p: not -2 <= p <= 2)),
    st.tuples(st.just("presence_penalty"), floats.filter(lambda p: not -2 <= p <= 2)),
    st.tuples(st.just("max_tokens"), st.one_of(st.integers(max_value=0), st.integers(min_value=2**63))),
    st.tuples(st.just("logprobs"), st.integers(min_value=6)),
    st.tuples(
        st.just("logit_bias"),
        st.one_of(
            st.fixed_dictionaries({"5": floats.filter(lambda b: not -100 <= b <= 100)}),
            st.fixed_dictionaries({"five": st.just(1)}),
            st.fixed_dictionaries({"-5": st.just(1)}),
        ),
    ),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=accepted, chat_api=st.booleans(), stream=st.booleans())
def test_any_accepted_sampling_parameters_answer(
    gateway: Gateway, tenant: Tenant, fields: dict[str, Any], chat_api: bool, stream: bool
) -> None:
    body = (chat if chat_api else completion)(max_tokens=2, stream=stream, **fields)
    path = "/v1/chat/completions" if chat_api else "/v1/completions"
    with gateway.http(tenant.key) as http:
        response = http.post(path, json=body, timeout=120)
    assert response.status_code == 200, response.text
    if not stream:
        n = fields.get("n") or 1
        assert sorted(c["index"] for c in response.json()["choices"]) == list(range(n))
    else:
        assert response.text.rstrip().endswith("data: [DONE]"), response.text[-300:]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=rejected, chat_api=st.booleans())
def test_sampling_parameters_out_of_range_are_400_naming_them(
    gateway: Gateway, tenant: Tenant, bad: tuple[str, Any], chat_api: bool
) -> None:
    param, value = bad
    if param == "logprobs" and chat_api:
        param = "top_logprobs"
        value = value + 15  # chat's bound is 20
    body = (chat if chat_api else completion)(**{param: value})
    with gateway.http(tenant.key) as http:
        response = http.post(
            "/v1/chat/completions" if chat_api else "/v1/completions",
            content=json.dumps(body),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].split(".")[0] == param


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_400(gateway: Gateway, tenant: Tenant, literal: str) -> None:
    # Not JSON, but Python's parser reads them: they must not reach the sampler.
    for param in ("temperature", "top_p", "frequency_penalty"):
        raw = json.dumps(completion()).replace('"max_tokens"', f'"{param}": {literal}, "max_tokens"')
        with gateway.http(tenant.key) as http:
            response = http.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 400, (param, literal, response.text)
        assert response.json()["error"]["param"] == param
