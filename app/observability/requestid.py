"""``X-Request-ID`` on every response, and each request's latency, in one pure ASGI middleware.

The caller's id is kept when it is printable ASCII of at most 128 characters (anything else could split a log line
or bloat it), else a random one is made. The id is on the response's headers (errors and streams included) and in
every log line written while the request is served (:mod:`app.observability.logging` reads it from
:data:`app.observability.context.current`).

Pure ASGI, not Starlette's ``BaseHTTPMiddleware`` (which runs the app in a task group and copies each body chunk
through a stream): on the routed inference path this middleware costs a few microseconds per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from random import getrandbits
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.context import RequestContext, current
from app.observability.metrics import observe_request

HEADER = b"x-request-id"
MAX_LENGTH = 128


def valid_request_id(value: bytes) -> bool:
    """Printable ASCII (space to tilde), 1 to 128 characters."""
    return 0 < len(value) <= MAX_LENGTH and value.isascii() and value.decode("ascii").isprintable()


def new_request_id() -> str:
    # 128 random bits from the process's PRNG: an id must not collide, not be unguessable, and os.urandom's system
    # call per request cost 4% of a routed call.
    return f"{getrandbits(128):032x}"


def given_request_id(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The caller's ``X-Request-ID``, when it is one we keep."""
    for name, value in headers:
        if name == HEADER:
            return value.decode("ascii") if valid_request_id(value) else None
    return None


def start_request(headers: Iterable[tuple[bytes, bytes]]) -> RequestContext:
    """The request's context, with the caller's id or a new one, made current for its task (and the tasks it
    starts). Not reset afterwards: the server runs each request in its own task, whose context ends with it; left
    set, the server's own report of an exception that escaped the app still carries the id."""
    context = RequestContext(given_request_id(headers) or new_request_id())
    current.set(context)
    return context


class RequestIdMiddleware:
    """Give each HTTP request an id (``X-Request-ID`` in, or a new one) and time it into the metrics."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        context = start_request(scope["headers"])
        header = (HEADER, context.request_id.encode("ascii"))
        status = 500  # what the client gets if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            observe_request(scope.get("route"), scope["method"], status, perf_counter() - started, context.model)


def outermost(build: Callable[[], ASGIApp]) -> Callable[[], ASGIApp]:
    """Wrap an application's middleware-stack builder so that this middleware runs outside Starlette's
    ``ServerErrorMiddleware``: the 500 it renders for an unhandled exception gets the id and is timed too (a
    middleware added with ``add_middleware`` always runs inside it)."""

    def build_with_id() -> ASGIApp:
        return RequestIdMiddleware(build())

    return build_with_id
