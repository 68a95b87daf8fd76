"""The seam between the worker and the work: one kind of leased background work (fine-tuning jobs, eval runs).

The worker only asks for the next item; the task claims one under a lease, runs it while the lease is renewed, and
hands what happened to its own service, which alone changes the item's status (as Polar's tasks call services).
"""

from __future__ import annotations

from typing import Protocol


class LeasedTask(Protocol):
    @property
    def name(self) -> str:
        """Short and stable: it names the worker's loop for this kind of work in logs and wake-ups."""
        ...

    async def run_next(self, worker_id: str) -> bool:
        """Claim at most one runnable item for ``worker_id`` and run it to its end (or until this worker stops, when
        the item is released to resume elsewhere). Whether there was one."""
        ...
