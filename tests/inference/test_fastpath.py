"""The inference fast path (app/inference/fastpath.py) answers exactly as the routes do, over real HTTP.

A query string is never taken by the fast path, so ``?route=1`` sends the same request through FastAPI's route:
every pair of answers below must agree (status, error envelope, headers), on both backends. The fast path's
counter (``ftgw_inference_fast_path_total``) proves which way each call went.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event

from tests.conftest import Gateway, Tenant
from tests.fine_tuning.test_training import MODEL
from tests.observability.scrape import scrape, value

FAST = "ftgw_inference_fast_path_total"
VOLATILE = {"id", "created", "system_fingerprint"}


def _post(http: httpx.Client, path: str, content: bytes, *, route: bool, **headers: str) -> httpx.Response:
    return http.post(
        path + ("?route=1" if route else ""),
        content=content,
        headers={"Content-Type": "application/json", **headers},
    )


def _comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    try:
        body = response.json()
    except json.JSONDecodeError:
        body = response.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VOLATILE}
    kept = ("retry-after", "content-type")
    headers = {k: v for k, v in response.headers.items() if k.startswith("x-ftgw-") or k in kept}
    return response.status_code, body, headers


def test_a_known_key_is_served_by_the_fast_path_and_answers_as_the_route(gateway: Gateway, tenant: Tenant) -> None:
    content = json.dumps(
        {"model": MODEL, "messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 3, "temperature": 0}
    ).encode()
    with gateway.http(tenant.key) as http:
        before = scrape(gateway)
        first = _post(http, "/v1/chat/completions", content, route=False)  # a key not seen yet: the route
        middle = scrape(gateway)
        fast = _post(http, "/v1/chat/completions", content, route=False)
        after = scrape(gateway)
        routed = _post(http, "/v1/chat/completions", content, route=True)
        traced = _post(http, "/v1/chat/completions", content, route=False, **{"X-Request-ID": "trace-7 a/b"})
        # An id that could split a log line is replaced, as the request-id middleware replaces it.
        forged = _post(http, "/v1/chat/completions", content, route=False, **{"X-Request-ID": "x" * 129})
        end = scrape(gateway)

    assert value(middle, FAST, outcome="deferred") - value(before, FAST, outcome="deferred") == 1
    assert value(after, FAST, outcome="served") - value(middle, FAST, outcome="served") == 1
    assert fast.status_code == 200, fast.text
    assert _comparable(fast) == _comparable(first) == _comparable(routed)
    assert fast.headers["x-ftgw-model"] == MODEL
    assert len(fast.headers["x-request-id"]) == 32 and fast.headers["x-request-id"] != routed.headers["x-request-id"]
    assert traced.headers["x-request-id"] == "trace-7 a/b"  # the caller's id, kept
    assert len(forged.headers["x-request-id"]) == 32
    assert value(end, FAST, outcome="served") - value(after, FAST, outcome="served") == 2
    assert fast.headers["content-length"] == str(len(fast.content))
    # Timed under the route's template, like the route's own calls.
    route = {"route": "/v1/chat/completions", "method": "POST", "status": "2xx"}
    timed = value(after, "ftgw_http_request_duration_seconds_count", **route)
    assert timed - value(middle, "ftgw_http_request_duration_seconds_count", **route) == 1


def test_streams_and_text_completions_take_the_fast_path_too(gateway: Gateway, tenant: Tenant) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "temperature": 0}
    text = {"model": MODEL, "prompt": "Once upon", "max_tokens": 2, "temperature": 0}
    with gateway.http(tenant.key) as http:
        http.post("/v1/completions", json=text).raise_for_status()  # the key is now known
        before = scrape(gateway)
        streamed = _post(http, "/v1/chat/completions", json.dumps({**chat, "stream": True}).encode(), route=False)
        completed = _post(http, "/v1/completions", json.dumps(text).encode(), route=False)
        after = scrape(gateway)
        routed = _post(http, "/v1/completions", json.dumps(text).encode(), route=True)
    assert value(after, FAST, outcome="served") - value(before, FAST, outcome="served") == 2
    assert streamed.status_code == 200 and streamed.headers["content-type"].startswith("text/event-stream")
    assert streamed.text.rstrip().endswith("data: [DONE]")
    assert _comparable(completed) == _comparable(routed)


def test_requests_the_fast_path_cannot_judge_go_to_the_route(gateway: Gateway, tenant: Tenant) -> None:
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    cases: list[tuple[bytes, dict[str, str], int]] = [
        (b"{not json", {}, 400),
        (b"[1, 2]", {}, 400),
        (json.dumps({**chat, "temperature": "hot"}).encode(), {}, 400),
        (json.dumps({**chat, "user": "a\x00b"}).encode(), {}, 400),  # a \u0000 escape
        (b'{"model": "m", "messages": [], "temperature": NaN}', {}, 400),
        (json.dumps(chat).encode(), {"Content-Type": "text/plain"}, 400),
        (json.dumps(chat).encode(), {"Authorization": "Basic abc"}, 401),
        (json.dumps(chat).encode(), {"Authorization": "Bearer sk-ftgw-unknown-key"}, 401),
    ]
    with gateway.http(tenant.key) as http:
        _post(http, "/v1/chat/completions", json.dumps(chat).encode(), route=False).raise_for_status()
        for content, headers, status in cases:
            before = scrape(gateway)
            fast = _post(http, "/v1/chat/completions", content, route=False, **headers)
            after = scrape(gateway)
            routed = _post(http, "/v1/chat/completions", content, route=True, **headers)
            assert value(after, FAST, outcome="deferred") - value(before, FAST, outcome="deferred") == 1, content
            assert fast.status_code == status, (content, fast.text)
            assert _comparable(fast) == _comparable(routed), content


_names = st.sampled_from(["no-such-model", "ft:nope:p:x:abc", "bot@2", "a" * 600, ""])
_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=8))
_messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "tool", "nobody"]), "content": _scalars}
    ),
    max_size=3,
)
_bodies = st.fixed_dictionaries(
    {"model": st.one_of(_names, _scalars), "messages": st.one_of(_messages, _scalars)},
    optional={
        "temperature": _scalars,
        "n": _scalars,
        "max_tokens": _scalars,
        "stop": st.one_of(_scalars, st.lists(st.text(max_size=4), max_size=6)),
        "stream": _scalars,
        "logit_bias": st.dictionaries(st.text(max_size=4), _scalars, max_size=2),
        "extra": _scalars,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_bodies)
def test_any_body_gets_the_same_answer_fast_or_routed(gateway: Gateway, tenant: Tenant, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()  # floats may come out as NaN/Infinity: not JSON, the route refuses them
    with gateway.http(tenant.key) as http:
        fast = _post(http, "/v1/chat/completions", content, route=False)
        routed = _post(http, "/v1/chat/completions", content, route=True)
    assert fast.status_code < 500 and fast.status_code != 200, fast.text  # no model of these names exists
    assert _comparable(fast) == _comparable(routed)


def test_an_expired_cache_costs_one_lookup_not_one_per_request(gateway: Gateway, tenant: Tenant) -> None:
    """16 calls in flight when the key and alias caches expire: one key lookup and one alias lookup between them
    (they used to queue 16 of each on the database, stalling every call)."""
    with gateway.http(tenant.key) as http:
        http.post("/v1/registry/aliases", json={"name": "herd"}).raise_for_status()
        versions = http.post("/v1/registry/aliases/herd/versions", json={"targets": [{"model": MODEL, "weight": 1}]})
        versions.raise_for_status()
    statements: list[str] = []
    engine = gateway.app.state.engine.sync_engine

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    gateway.app.state.auth_cache.forget_all()
    gateway.app.state.inference.catalog.forget_all()
    body = {"model": "herd", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}

    async def calls() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {tenant.key}"}
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=headers, timeout=60) as http:
            return await asyncio.gather(*[http.post("/v1/chat/completions", json=body) for _ in range(16)])

    event.listen(engine, "before_cursor_execute", seen)
    try:
        responses = asyncio.run(calls())
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert [r.status_code for r in responses] == [200] * 16
    assert {r.headers["x-ftgw-alias"] for r in responses} == {"herd"}
    assert sum("FROM api_keys" in s for s in statements) == 1, statements
    assert sum("FROM model_aliases" in s for s in statements) == 1, statements
