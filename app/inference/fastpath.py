"""The routed inference calls without the web framework's per-request machinery: a pure ASGI front.

A ``POST /v1/chat/completions`` or ``/v1/completions`` with a JSON body and a key this process verified within
``FTGW_AUTH_CACHE_SECONDS`` is served here, in front of the whole middleware stack: the same request model,
:class:`InferenceGateway` and serving code as the routes (:func:`app.inference.endpoints.serve_call`), and the same
rendering of what serving raises. It gives the call its request id and times it as the request-id middleware does
(app/observability/requestid.py), and writes a JSON answer's headers in one list. Anything
else goes on to the FastAPI app unchanged, its body replayed: an unknown or malformed key, a console cookie, a query
string, a body that is not JSON, holds a ``\\u0000`` escape or fails validation. So each refusal of a request has one
definition, the route's, and the OpenAPI document still describes these routes.

What this skips is what a routed call does not need: the request-id middleware's wrapping of ``send``, Starlette's
error and exception middleware, FastAPI's body-limit and exit-stack layers, the route table walk, dependency
resolution, a second pass over the body, a response object for a JSON answer.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, NamedTuple

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.principal import Principal, bearer_secret, cached_principal
from app.errors import AuthenticationFailed, GatewayError, gateway_error_response, unhandled_error_response
from app.inference.endpoints import response_for, router, serve_call
from app.inference.gateway import Request as InferenceRequest
from app.inference.gateway import Served
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.kit.schemas import STORABLE
from app.observability.metrics import FAST_PATH_DEFERRED, FAST_PATH_SERVED, observe_request
from app.observability.requestid import HEADER as REQUEST_ID
from app.observability.requestid import start_request

SCHEMAS: dict[str, type[InferenceRequest]] = {
    "/v1/chat/completions": ChatCompletionRequest,
    "/v1/completions": CompletionRequest,
}
_AUTHORIZATION, _CONTENT_TYPE, _STICKY = b"authorization", b"content-type", b"x-ftgw-sticky-key"


class Call(NamedTuple):
    body: InferenceRequest  # validated
    secret: str  # the bearer key
    sticky: str | None  # X-FTGW-Sticky-Key


def install(app: FastAPI) -> None:
    """Put the fast path in front of ``app``'s whole middleware stack: call it after the request-id middleware is
    put outermost (app/observability), which then ids and times the calls it hands on."""
    build = app.build_middleware_stack

    def build_with_fast_path() -> ASGIApp:
        return InferenceFastPath(build(), app)

    app.build_middleware_stack = build_with_fast_path  # type: ignore[method-assign]


class InferenceFastPath:
    """Serve the common case of the inference routes directly; hand anything else to ``app``."""

    def __init__(self, app: ASGIApp, gateway_app: FastAPI) -> None:
        self.app = app
        self.gateway_app = gateway_app
        self.state = gateway_app.state
        by_path = {r.path: r for r in router.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ())}
        self.routes = {path: (schema, by_path[path]) for path, schema in SCHEMAS.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if found is None or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        schema, route = found
        messages = await _read_body(receive)
        call = _accepted(scope, schema, messages)
        principal = cached_principal(call.secret, self.state.auth_cache) if call is not None else None
        if call is None or principal is None:  # the route judges it (and looks up a key it has not seen lately)
            FAST_PATH_DEFERRED.inc()
            await self.app(scope, _replaying(messages, receive), send)
            return
        FAST_PATH_SERVED.inc()
        scope["route"] = route  # the metrics label the route would have set
        scope["app"] = self.gateway_app  # as Starlette sets it for the routes
        started = perf_counter()
        context = start_request(scope["headers"])
        status = 500
        try:
            status = await self._answer(scope, receive, send, call, principal, context.request_id.encode("ascii"))
        finally:
            observe_request(route, "POST", status, perf_counter() - started, context.model)

    async def _answer(
        self, scope: Scope, receive: Receive, send: Send, call: Call, principal: Principal, request_id: bytes
    ) -> int:
        """Serve the call and send its answer (with the request id); the status sent."""
        response: Response
        try:
            served = await serve_call(receive, self.state.inference, principal, call.body, call.sticky)
        except GatewayError as exc:
            response = gateway_error_response(exc)
        except Exception as exc:
            response = unhandled_error_response(scope["method"], scope["path"], exc)
        else:
            if served is not None and served.answer.events is None:
                await _send_json(send, served, request_id)
                return 200
            response = response_for(served)
        response.raw_headers.append((REQUEST_ID, request_id))
        await response(scope, receive, send)
        return response.status_code


async def _send_json(send: Send, served: Served, request_id: bytes) -> None:
    """A JSON answer as the route's Response would send it: the same body and headers, in one list."""
    content = orjson.dumps(served.answer.body)
    headers = [
        (b"content-length", str(len(content)).encode("ascii")),
        (b"content-type", b"application/json"),
        *((name.encode("latin-1"), value.encode("latin-1")) for name, value in served.headers().items()),
        (REQUEST_ID, request_id),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _accepted(scope: Scope, schema: type[InferenceRequest], messages: list[Message]) -> Call | None:
    """The call, or None where the route must judge the request."""
    if messages[-1]["type"] != "http.request":  # the client left before sending it all
        return None
    authorization = content_type = sticky = None
    for name, value in scope["headers"]:
        if name == _AUTHORIZATION and authorization is None:
            authorization = value.decode("latin-1")
        elif name == _CONTENT_TYPE and content_type is None:
            content_type = value
        elif name == _STICKY and sticky is None:
            sticky = value.decode("latin-1")
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != b"application/json":
        return None
    body = b"".join(m.get("body", b"") for m in messages)
    if b"\\u0000" in body:  # a NUL escape: the route refuses it with its location
        return None
    try:
        secret = bearer_secret(authorization)
        data: Any = orjson.loads(body)
        if not isinstance(data, dict):
            return None
        # orjson refuses what else cannot be stored (infinities, NaN, lone surrogates): see RequestSchema.
        return Call(schema.model_validate(data, context=STORABLE), secret, sticky)
    except (AuthenticationFailed, orjson.JSONDecodeError, ValidationError):
        return None


async def _read_body(receive: Receive) -> list[Message]:
    """The request's messages up to its last body chunk, or up to the client leaving (the route sees that too)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """``receive`` giving back the messages already read first, in order."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
