"""The training child process: runs :func:`train` and talks to the worker over a pipe.

Training runs in its own process so that cancel and pause really stop compute (the worker can kill it) and so
that a crash in torch cannot take the worker down. The child asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG``): a worker killed with -9 must not leave a trainer running on, since another worker is
about to resume the job from its last checkpoint in the same folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import signal
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from app.providers.local.training._spec import CheckpointInfo, StepMetrics, TrainSpec, ValidationMetrics

PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    # Off Linux there is no prctl: the worker still kills us on every path it controls.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _asdict(obj: Any) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


class PipeReporter:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def on_step(self, m: StepMetrics) -> None:
        self.conn.send(("step", _asdict(m)))

    def on_validation(self, m: ValidationMetrics) -> None:
        self.conn.send(("validation", _asdict(m)))

    def on_checkpoint(self, c: CheckpointInfo) -> None:
        self.conn.send(("checkpoint", _asdict(c)))

    def on_message(self, level: str, message: str) -> None:
        self.conn.send(("message", {"level": level, "message": message}))


class PipeControl:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.paused = False

    def should_pause(self) -> bool:
        while not self.paused and self.conn.poll():
            if self.conn.recv() == "pause":
                self.paused = True
        return self.paused


def child_main(spec_json: str, conn: Connection, parent_pid: int) -> None:
    """Entry point of the spawned process."""
    _die_with_parent(parent_pid)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from app.providers.local.training._trainer import train

        outcome = train(TrainSpec.model_validate_json(spec_json), PipeReporter(conn), PipeControl(conn))
        conn.send(("done", _asdict(outcome)))
    except BaseException as exc:
        conn.send(("error", {"message": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}))
        raise SystemExit(1) from None
    finally:
        conn.close()
