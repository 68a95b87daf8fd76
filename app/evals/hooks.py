"""What other domains do when an eval run ends, in the transaction that ends it.

The evals service calls every listener with each run it moves to a final status (completed, failed, canceled),
before that transaction commits: what a listener writes lands with the run's outcome, or not at all. A listener
registers once, when the module that defines it is imported (the fine-tuning package registers the report a job's
validation eval makes in the job's events), so the evals package never imports the domains that listen to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from app.evals.models import EvalRun

RunFinished = Callable[[AsyncSession, EvalRun], Awaitable[None]]

_listeners: list[RunFinished] = []


def on_run_finished(listener: RunFinished) -> RunFinished:
    """Call ``listener`` with every run that reaches a final status (once, however often it is registered)."""
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


async def run_finished(session: AsyncSession, run: EvalRun) -> None:
    """Tell every listener that ``run`` has just reached its final status (in the caller's transaction)."""
    for listener in _listeners:
        await listener(session, run)
