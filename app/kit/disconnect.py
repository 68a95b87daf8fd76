"""Work that stops when nobody waits for it: an awaitable raced against the HTTP client going away.

Starlette cancels nothing when a client disconnects from a plain (non-streamed) response: the endpoint runs to the
end and its answer is dropped. For work that takes seconds of CPU (generating completions), that is seconds spent
for nobody, and requests that pile up behind it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial
from typing import TypeVar
from weakref import WeakKeyDictionary

from starlette.types import Receive

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready; the work was cancelled."""


WATCH_AFTER_SECONDS = 0.05


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """``work``'s result, or :class:`ClientDisconnected` once the client has gone (``work`` cancelled then).

    Call it after the request body has been read (FastAPI has parsed it before the endpoint runs): from then on
    the ASGI server's next message is ``http.disconnect``. ``work`` runs in the calling task. Work that is done
    within ``WATCH_AFTER_SECONDS`` (a routed call, mostly) is not watched at all: a watcher task, or even a timer per
    call, costs more than such a call's own Python work. The calls in flight are kept in one table per event loop,
    swept every ``WATCH_AFTER_SECONDS``; a call still there at its second sweep gets a watcher, which cancels it
    when the client leaves.
    """
    task = asyncio.current_task()
    assert task is not None
    calls = _calls_of(task.get_loop())
    call = calls.enter(task, receive)
    try:
        result = await work
    except asyncio.CancelledError:
        # Our own cancel, and no other one pending (server shutdown): the client left.
        if call.gone and task.uncancel() == 0:
            raise ClientDisconnected from None
        raise
    else:
        if call.gone:  # the work swallowed our cancel
            task.uncancel()
            raise ClientDisconnected
        return result
    finally:
        calls.leave(task, call)


class _Call:
    __slots__ = ("gone", "receive", "swept", "watch")

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.swept = False  # seen by one sweep already
        self.watch: asyncio.Task[None] | None = None
        self.gone = False  # the client left; the task was cancelled for it


class _Calls:
    """The watched calls in flight on one event loop, and the timer that sweeps them while there are any."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.in_flight: dict[asyncio.Task[object], _Call] = {}
        self.timer: asyncio.TimerHandle | None = None

    def enter(self, task: asyncio.Task[object], receive: Receive) -> _Call:
        call = self.in_flight[task] = _Call(receive)
        if self.timer is None:
            self.timer = self.loop.call_later(WATCH_AFTER_SECONDS, self.sweep)
        return call

    def leave(self, task: asyncio.Task[object], call: _Call) -> None:
        del self.in_flight[task]
        if call.watch is not None:
            call.watch.cancel()

    def sweep(self) -> None:
        for task, call in self.in_flight.items():
            if call.watch is None and call.swept:
                call.watch = self.loop.create_task(_disconnect(call.receive))
                call.watch.add_done_callback(partial(_left, task=task, call=call))
            call.swept = True
        self.timer = self.loop.call_later(WATCH_AFTER_SECONDS, self.sweep) if self.in_flight else None


_loops: WeakKeyDictionary[asyncio.AbstractEventLoop, _Calls] = WeakKeyDictionary()


def _calls_of(loop: asyncio.AbstractEventLoop) -> _Calls:
    calls = _loops.get(loop)
    if calls is None:
        calls = _loops[loop] = _Calls(loop)
    return calls


def _left(done: asyncio.Task[None], *, task: asyncio.Task[object], call: _Call) -> None:
    if not done.cancelled() and done.exception() is None and not task.done():
        call.gone = True
        task.cancel()


async def _disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        await asyncio.sleep(0.1)  # a server that answers at once with empty bodies must not make this spin
