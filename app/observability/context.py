"""The request being served, as a context variable: its id (for logs and the response header) and, once inference
has answered, the model that answered (for the latency histogram by model).

One mutable object per request, set once by :class:`app.observability.requestid.RequestIdMiddleware`: code deeper
in the request (or in tasks it starts, which copy the context) writes to it without knowing about the middleware.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(slots=True)
class RequestContext:
    request_id: str
    model: str | None = None  # the model that answered, when the request was an inference call


current: ContextVar[RequestContext | None] = ContextVar("ftgw_request", default=None)


def request_id() -> str | None:
    """The id of the request being served here, if any."""
    context = current.get()
    return context.request_id if context is not None else None
