"""The worker: one loop per kind of leased work, each claiming and running one item at a time.

A loop knows nothing of what it runs (see ``app.worker.task``): fine-tuning jobs and eval runs each claim, renew and
finish their own rows through their own services. The loops run side by side, so a long training job never holds
back a short eval run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Sequence

from app.worker.task import LeasedTask
from app.worker.wakeup import Wakeup

log = logging.getLogger(__name__)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(
        self,
        tasks: Sequence[LeasedTask],  # one loop each: list a task N times to run N of its items at once
        *,
        poll_seconds: float,
        worker_id: str | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.tasks = list(tasks)
        self.poll_seconds = poll_seconds
        self.id = worker_id or new_worker_id()
        self.wakeup = wakeup or Wakeup()

    async def run_forever(self) -> None:
        log.info("worker %s started (%s)", self.id, ", ".join(task.name for task in self.tasks))
        async with asyncio.TaskGroup() as group:
            for i, task in enumerate(self.tasks):  # a task listed twice runs two of its items at a time
                name = f"{task.name}-{i}"
                group.create_task(self._loop(task, name), name=f"ftgw-worker-{name}")

    async def _loop(self, task: LeasedTask, name: str) -> None:
        while True:
            try:
                worked = await task.run_next(self.id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("worker %s: %s failed", self.id, task.name)
                worked = False
            if not worked:
                await self.wakeup.wait(name, self.poll_seconds)
