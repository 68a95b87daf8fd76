"""The routed inference calls without the web framework's per-request machinery: a pure ASGI front.

A ``POST /v1/chat/completions`` or ``/v1/completions`` with a JSON body and a key this process verified within
``FTGW_AUTH_CACHE_SECONDS`` is served here, in front of FastAPI's whole middleware stack (the request id and
timing middleware stays outside it): the same request model, :class:`InferenceGateway` and response code as the
routes (:func:`app.inference.endpoints.served_response`), and the same rendering of what serving raises. Anything
else goes on to the FastAPI app unchanged, its body replayed: an unknown or malformed key, a console cookie, a query
string, a body that is not JSON, holds a ``\\u0000`` escape or fails validation. So each refusal of a request has one
definition, the route's, and the OpenAPI document still describes these routes.

What this skips is what a routed call does not need: Starlette's error and exception middleware, FastAPI's
body-limit and exit-stack layers, the route table walk, dependency resolution, a second pass over the body.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson
from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.auth.principal import bearer_secret, cached_principal
from app.errors import AuthenticationFailed, GatewayError, gateway_error_response, unhandled_error_response
from app.inference.endpoints import router, served_response
from app.inference.gateway import Request as InferenceRequest
from app.inference.schemas import ChatCompletionRequest, CompletionRequest
from app.kit.schemas import STORABLE
from app.observability.metrics import FAST_PATH_DEFERRED, FAST_PATH_SERVED

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
    """Put the fast path in front of ``app``'s middleware stack. Call it before the request-id middleware is put
    outermost (app/observability), so that fast calls get their id and are timed too."""
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
        try:
            response = await served_response(receive, self.state.inference, principal, call.body, call.sticky)
        except GatewayError as exc:
            response = gateway_error_response(exc)
        except Exception as exc:
            response = unhandled_error_response(scope["method"], scope["path"], exc)
        await response(scope, receive, send)


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
