"""The gateway's count of calls in flight, and of those it is still routing (the local engine's Traffic)."""

from __future__ import annotations

import asyncio

from app.inference.gateway import InFlight


async def test_a_call_is_on_its_way_until_handed_to_a_backend_and_in_flight_until_answered() -> None:
    in_flight = InFlight()
    handed = asyncio.Event()

    async def call(dispatch: bool) -> None:
        with in_flight.call():
            await asyncio.sleep(0)
            if dispatch:
                # From a task the call starts (a classification's inputs): the same call, counted once.
                await asyncio.gather(*(asyncio.create_task(one()) for _ in range(3)))
            await handed.wait()

    async def one() -> None:
        in_flight.dispatched()

    tasks = [asyncio.create_task(call(True)), asyncio.create_task(call(False))]
    await asyncio.sleep(0.01)
    assert (in_flight.calls(), in_flight.routing()) == (2, 1)  # the second is still being routed
    handed.set()
    await asyncio.gather(*tasks)
    assert (in_flight.calls(), in_flight.routing()) == (0, 0)
    in_flight.dispatched()  # outside any call: nothing to count
    assert in_flight.routing() == 0
