"""/v1/chat/completions, /v1/completions and /v1/classifications: OpenAI's inference API, routed by the registry.

The response's ``model`` and the ``X-FTGW-Model`` header name the model that actually answered; an alias call
also gets ``X-FTGW-Alias`` and ``X-FTGW-Alias-Version``. ``X-FTGW-Sticky-Key`` (or the ``user`` field) keeps one
user on one target of a split. A client that disconnects before its answer is ready cancels its generation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse
from starlette.types import Receive

from app.auth.principal import Principal, PrincipalDep
from app.errors import ServiceUnavailable
from app.inference.gateway import InferenceGateway, Served
from app.inference.gateway import Request as InferenceRequest
from app.inference.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ClassificationRequest,
    ClassificationResponse,
    Completion,
    CompletionChunk,
    CompletionRequest,
)
from app.kit.disconnect import ClientDisconnected, unless_disconnected
from app.kit.openapi import event_stream

router = APIRouter(prefix="/v1", tags=["Inference"])
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away first"; nobody receives it

_STREAMED = "as JSON; with `stream: true`, server-sent events, each one's data a {} (then `[DONE]`)"
StickyKey = Annotated[
    str | None,
    Header(alias="x-ftgw-sticky-key", description="Keeps one user on one target of an alias's split."),
]


def _gateway(request: Request) -> InferenceGateway:
    gateway: InferenceGateway = request.app.state.inference
    return gateway


async def _serve(request: Request, principal: Principal, body: InferenceRequest, sticky: str | None) -> Response:
    return await served_response(request.receive, _gateway(request), principal, body, sticky)


async def served_response(
    receive: Receive, gateway: InferenceGateway, principal: Principal, body: InferenceRequest, sticky: str | None
) -> Response:
    """The response to an inference call (the route's); raises GatewayError for the error handler to render."""
    return response_for(await serve_call(receive, gateway, principal, body, sticky))


async def serve_call(
    receive: Receive, gateway: InferenceGateway, principal: Principal, body: InferenceRequest, sticky: str | None
) -> Served | None:
    """The served call, or None when the client left before its answer was ready (the route's and the fast
    path's, app/inference/fastpath.py); raises GatewayError for the caller to render."""
    try:
        return await unless_disconnected(receive, gateway.serve(principal, body, sticky))
    except ClientDisconnected:
        return None
    except asyncio.CancelledError:
        # Only the server cancels a request it is still answering: it is shutting down and the grace period
        # (FTGW_SHUTDOWN_GRACE_SECONDS) is over. A 503 tells the caller's SDK to retry, elsewhere or later.
        raise ServiceUnavailable("The server is shutting down; retry the request.", code="shutting_down") from None


def response_for(served: Served | None) -> Response:
    """The answer as a response: server-sent events, JSON, or a bare 499 when the client left (``served`` None)."""
    if served is None:
        return Response(status_code=CLIENT_CLOSED_REQUEST)
    answer = served.answer
    if answer.events is not None:
        return EventSourceResponse(_encoded(answer.events), headers=served.headers())
    return Response(orjson.dumps(answer.body), media_type="application/json", headers=served.headers())


async def _encoded(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    async for event in events:
        yield orjson.dumps(event).decode()
    yield "[DONE]"


@router.post(
    "/chat/completions",
    response_model=ChatCompletion,
    responses=event_stream(ChatCompletionChunk, "The chat completion " + _STREAMED.format("`chat.completion.chunk`")),
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, principal: PrincipalDep, sticky: StickyKey = None
) -> Response:
    """Chat completion from a base model, a fine-tuned model or an alias (`stream: true` for server-sent events)."""
    return await _serve(request, principal, body, sticky)


@router.post(
    "/completions",
    response_model=Completion,
    responses=event_stream(CompletionChunk, "The completion " + _STREAMED.format("`text_completion` piece")),
)
async def completions(
    body: CompletionRequest, request: Request, principal: PrincipalDep, sticky: StickyKey = None
) -> Response:
    """Text completion (`logprobs=N` gives the top N tokens per position); the model's prompt format is applied."""
    return await _serve(request, principal, body, sticky)


@router.post("/classifications", response_model=ClassificationResponse)
async def classifications(
    body: ClassificationRequest, request: Request, principal: PrincipalDep, sticky: StickyKey = None
) -> ClassificationResponse:
    """Label probabilities from a fine-tuned classifier's logprobs, for each input."""
    return await _gateway(request).classify(principal, body, sticky)
