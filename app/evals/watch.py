"""In-process news of eval runs ending, for whoever waits on one (a release gate).

The evals service tells the watch once a run's final status is committed (``RUNS_FINISHED`` in ``session.info``,
put there by the app's sessionmaker), so a waiter in the same process hears of a run the embedded worker finished
at once. A run finished by a worker in another process is not heard of: waiters poll the database as well.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Collection, Iterator
from contextlib import contextmanager

RUNS_FINISHED = "ftgw.eval_runs_finished"  # the session.info key of the process's RunWatch


class RunWatch:
    def __init__(self) -> None:
        self._waiting: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def finished(self, run_id: str) -> None:
        """``run_id`` has reached a final status (called after the commit that recorded it)."""
        for event in self._waiting.get(run_id, ()):
            event.set()

    @contextmanager
    def watching(self, run_ids: Collection[str]) -> Iterator[asyncio.Event]:
        """An event set whenever one of ``run_ids`` finishes, while the block lasts (clear it before each look)."""
        event = asyncio.Event()
        for run_id in run_ids:
            self._waiting[run_id].add(event)
        try:
            yield event
        finally:
            for run_id in run_ids:
                waiters = self._waiting.get(run_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiting[run_id]
