"""Work that stops when nobody waits for it: an awaitable raced against the HTTP client going away.

Starlette cancels nothing when a client disconnects from a plain (non-streamed) response: the endpoint runs to the
end and its answer is dropped. For work that takes seconds of CPU (generating completions), that is seconds spent
for nobody, and requests that pile up behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work was cancelled."""


WATCH_AFTER_SECONDS = 0.05


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientDisconnected` once the client has gone (``work`` cancelled then).

    Call it after the request body has been read (FastAPI has parsed it before the endpoint runs): from then on
    the ASGI server's next message is ``http.disconnect``. ``work`` runs in the calling task. Work that is done
    within ``WATCH_AFTER_SECONDS`` (a routed call, mostly) is not watched at all: a watcher task costs more than
    such a call's own Python work; longer work gets one then, which cancels it when the client leaves.
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False
    watch: asyncio.Task[None] | None = None

    def left(done: asyncio.Task[None]) -> None:
        nonlocal gone
        if not done.cancelled() and done.exception() is None:
            gone = True
            task.cancel()

    def start_watch() -> None:
        nonlocal watch
        watch = asyncio.create_task(_disconnect(receive))
        watch.add_done_callback(left)

    timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, start_watch)
    try:
        result = await work
    except asyncio.CancelledError:
        # Our own cancel, and no other one pending (server shutdown): the client left.
        if gone and task.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    else:
        if gone:  # the work swallowed our cancel
            task.uncancel()
            raise ClientDisconnected
        return result
    finally:
        timer.cancel()
        if watch is not None:
            watch.remove_done_callback(left)
            watch.cancel()


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.1)  # a server that answers at once with empty bodies must not make this spin
