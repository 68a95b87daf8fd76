"""``X-Request-ID`` over real HTTP: the caller's when valid, a new unique one otherwise, on every kind of response
(success, 4xx errors, a stream, and the 500 Starlette renders for an unhandled exception)."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from app.errors import install_error_handlers
from app.observability.endpoints import install
from tests.conftest import Gateway, ServerThread, Tenant

MODEL = "tiny-smollm2"
GENERATED = re.compile(r"[0-9a-f]{32}")


def test_the_callers_id_is_echoed_and_one_is_made_when_none_is_given(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        given = "req-42 from the edge/proxy:7 ~ (printable ASCII)"
        assert http.get("/v1/models", headers={"X-Request-ID": given}).headers["x-request-id"] == given
        made = [http.get("/v1/models").headers["x-request-id"] for _ in range(3)]
    assert all(GENERATED.fullmatch(m) for m in made), made
    assert len(set(made)) == 3


@pytest.mark.parametrize(
    "given",
    [
        b"x" * 129,  # too long
        b"caf\xc3\xa9",  # not ASCII
        b"tab\there",  # not printable
        b"",
    ],
)
def test_an_invalid_id_is_replaced(gateway: Gateway, given: bytes) -> None:
    with httpx.Client(base_url=gateway.base_url) as http:
        answered = http.get("/health", headers=[(b"X-Request-ID", given)])
    assert answered.status_code == 200
    assert GENERATED.fullmatch(answered.headers["x-request-id"])


def test_the_longest_valid_id_is_kept(gateway: Gateway) -> None:
    longest = "a" * 128
    with httpx.Client(base_url=gateway.base_url) as http:
        assert http.get("/health", headers={"X-Request-ID": longest}).headers["x-request-id"] == longest


def test_errors_and_streams_carry_the_id(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(tenant.key) as http:
        missing = http.get("/v1/no-such-route", headers={"X-Request-ID": "lost-1"})
        assert missing.status_code == 404 and missing.headers["x-request-id"] == "lost-1"
        assert missing.json()["error"]["type"] == "invalid_request_error"
        invalid = http.post("/v1/chat/completions", json={"model": MODEL}, headers={"X-Request-ID": "bad-1"})
        assert invalid.status_code == 400 and invalid.headers["x-request-id"] == "bad-1"
        body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True}
        with http.stream("POST", "/v1/chat/completions", json=body, headers={"X-Request-ID": "sse-1"}) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["content-type"].startswith("text/event-stream")
            assert streamed.headers["x-request-id"] == "sse-1"
            assert "[DONE]" in "".join(streamed.iter_text())
    with httpx.Client(base_url=gateway.base_url) as anonymous:
        refused = anonymous.get("/v1/models", headers={"X-Request-ID": "anon-1"})
        assert refused.status_code == 401 and refused.headers["x-request-id"] == "anon-1"


def test_the_500_of_an_unhandled_exception_carries_the_id() -> None:
    """The middleware runs outside Starlette's ServerErrorMiddleware, which renders this 500."""
    app = FastAPI()
    install_error_handlers(app)
    install(app)

    @app.get("/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    server = ServerThread(app)
    server.start()
    try:
        with httpx.Client(base_url=server.base_url) as http:
            answered = http.get("/broken", headers={"X-Request-ID": "bug-1"})
    finally:
        server.stop()
    assert answered.status_code == 500
    assert answered.json()["error"]["code"] == "internal_error"
    assert answered.headers["x-request-id"] == "bug-1"
