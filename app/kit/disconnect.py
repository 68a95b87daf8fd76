"""Work that stops when nobody waits for it: an awaitable raced against the HTTP client going away.

Starlette cancels nothing when a client disconnects from a plain (non-streamed) response: the endpoint runs to the
end and its answer is dropped. For work that takes seconds of CPU (generating completions), that is seconds spent
for nobody, and requests that pile up behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work was cancelled."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientDisconnected` once the client has gone (``work`` cancelled then).

    Call it after the request body has been read (FastAPI has parsed it before the endpoint runs): from then on
    the ASGI server's next message is ``http.disconnect``.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.create_task(_disconnect(request.receive))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:  # also when this request's own task is cancelled (server shutdown)
        watch.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    if task.cancelled():
        raise ClientDisconnected
    return task.result()


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.1)  # a server that answers at once with empty bodies must not make this spin
