"""SingleFlight: concurrent callers of one key share one run; results, errors and cancellation behave."""

from __future__ import annotations

import asyncio

import pytest

from app.kit.singleflight import SingleFlight


def test_concurrent_callers_of_a_key_share_one_run_and_other_keys_run_apart() -> None:
    runs: list[str] = []

    async def scenario() -> list[str]:
        flight: SingleFlight[str, str] = SingleFlight()

        def work(key: str) -> asyncio.Future[str]:
            async def look_up() -> str:
                runs.append(key)
                await asyncio.sleep(0.01)
                return key.upper()

            return asyncio.ensure_future(flight.run(key, look_up))

        results = await asyncio.gather(*[work("a") for _ in range(16)], work("b"))
        again = await work("a")  # the first run is over: a new one
        return [*results, again]

    results = asyncio.run(scenario())
    assert results == ["A"] * 16 + ["B", "A"]
    assert sorted(runs) == ["a", "a", "b"]


def test_an_error_reaches_every_caller_and_is_not_kept() -> None:
    async def scenario() -> tuple[list[BaseException | int], int]:
        flight: SingleFlight[str, int] = SingleFlight()
        attempts = 0

        async def failing() -> int:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0.01)
            raise LookupError("gone")

        outcomes = await asyncio.gather(*[flight.run("k", failing) for _ in range(4)], return_exceptions=True)
        await asyncio.gather(flight.run("k", failing), return_exceptions=True)
        return outcomes, attempts

    outcomes, attempts = asyncio.run(scenario())
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert attempts == 2


def test_a_cancelled_caller_leaves_the_run_to_the_others() -> None:
    async def scenario() -> str:
        flight: SingleFlight[str, str] = SingleFlight()

        async def slow() -> str:
            await asyncio.sleep(0.05)
            return "done"

        first = asyncio.ensure_future(flight.run("k", slow))
        second = asyncio.ensure_future(flight.run("k", slow))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(scenario()) == "done"
