"""Resumable training state and epoch checkpoints on disk, written so that a kill at any moment leaves them usable.

Layout of a run's ``output_dir``::

    state/step-<N>/                  a pause (or any mid-epoch save): adapter/, trainer.pt, progress.json
    checkpoints/step-<N>/            an epoch's end: adapter_config.json + adapter_model.safetensors (a usable
                                     model), metrics.json, training_state/ (same layout as state/step-<N>/)
    adapter/                         the final adapter
    results.csv

Every folder is built under a ``.tmp-*`` name and renamed into place, so a folder with its final name is always
complete; a run resumes from the highest-step complete state of either kind.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_DIR = "state"
CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE = "training_state"
PROGRESS_FILE = "progress.json"
TRAINER_FILE = "trainer.pt"
ADAPTER_DIR = "adapter"


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a run stands after ``step`` optimizer steps. ``epoch``/``batch_in_epoch`` locate the next batch."""

    step: int
    epoch: int
    batch_in_epoch: int
    elapsed_tokens: int
    elapsed_examples: int
    trained_tokens: int
    elapsed_seconds: float
    fingerprint: str


@dataclass(frozen=True, slots=True)
class SavedState:
    """A loaded state: progress, the adapter's weights, and the optimizer's and scheduler's states."""

    folder: Path
    progress: Progress
    adapter: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    torch_rng: torch.Tensor


def _fsync_tree(folder: Path) -> None:
    # Survives a power cut too, not just a kill: rename only after the contents are on disk.
    for path in [*folder.rglob("*"), folder]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temp folder next to ``target``; on success it replaces ``target`` in one rename."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        _fsync_tree(tmp)
        if target.exists():
            trash = target.parent / f".tmp-old-{target.name}-{uuid.uuid4().hex[:8]}"
            os.rename(target, trash)
            os.rename(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def remove_leftovers(output_dir: Path) -> None:
    """Delete temp folders a killed process left behind (only the owner of ``output_dir`` may call this)."""
    for parent in (output_dir, output_dir / STATE_DIR, output_dir / CHECKPOINTS_DIR):
        if parent.is_dir():
            for child in parent.glob(".tmp-*"):
                shutil.rmtree(child, ignore_errors=True)


def _rng_json() -> dict[str, Any]:
    np_state: Any = np.random.get_state()
    return {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def _restore_rng(data: dict[str, Any], torch_rng: torch.Tensor) -> None:
    version, internal, gauss = data["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = data["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch_rng)


def write_state(folder: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress) -> None:
    """Everything needed to continue: adapter, optimizer, LR scheduler, RNG states, progress."""
    model.save_pretrained(str(folder / ADAPTER_DIR))
    torch.save(
        {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state()},
        folder / TRAINER_FILE,
    )
    (folder / PROGRESS_FILE).write_text(json.dumps({"progress": asdict(progress), "rng": _rng_json()}))


def save_state(output_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress) -> Path:
    """A state under ``state/step-<N>``; older ones are removed once it is in place."""
    target = output_dir / STATE_DIR / f"step-{progress.step}"
    with atomic_dir(target) as tmp:
        write_state(tmp, model, optimizer, scheduler, progress)
    for old in (output_dir / STATE_DIR).glob("step-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)
    return target


def _step_of(folder: Path) -> int:
    try:
        return int(folder.name.removeprefix("step-"))
    except ValueError:
        return -1


def candidate_states(output_dir: Path) -> list[Path]:
    """Complete state folders, newest (highest step) first: mid-epoch states and checkpoints' states."""
    found = [p for p in (output_dir / STATE_DIR).glob("step-*") if (p / PROGRESS_FILE).is_file()]
    for checkpoint in (output_dir / CHECKPOINTS_DIR).glob("step-*"):
        state = checkpoint / TRAINING_STATE
        if (state / PROGRESS_FILE).is_file():
            found.append(state)
    key = {p: _step_of(p if p.name.startswith("step-") else p.parent) for p in found}
    return sorted(found, key=lambda p: key[p], reverse=True)


def load_state(folder: Path) -> SavedState:
    """Read a state written by :func:`write_state` and restore the process's RNG states from it."""
    from safetensors.torch import load_file

    meta = json.loads((folder / PROGRESS_FILE).read_text())
    trainer = torch.load(folder / TRAINER_FILE, weights_only=True)
    adapter = load_file(str(folder / ADAPTER_DIR / "adapter_model.safetensors"))
    _restore_rng(meta["rng"], trainer["torch_rng"])
    return SavedState(
        folder=folder,
        progress=Progress(**meta["progress"]),
        adapter=adapter,
        optimizer=trainer["optimizer"],
        scheduler=trainer["scheduler"],
        torch_rng=trainer["torch_rng"],
    )


def save_checkpoint(
    output_dir: Path, model: Any, optimizer: Any, scheduler: Any, progress: Progress, metrics: dict[str, float]
) -> Path:
    """An epoch checkpoint: a loadable adapter, its metrics, and the state to resume from it."""
    target = output_dir / CHECKPOINTS_DIR / f"step-{progress.step}"
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
        state = tmp / TRAINING_STATE
        state.mkdir()
        write_state(state, model, optimizer, scheduler, progress)
    return target


def save_adapter(output_dir: Path, model: Any) -> Path:
    """The final adapter under ``adapter/``."""
    target = output_dir / ADAPTER_DIR
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp))
    return target


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Epoch checkpoints in step order."""
    return sorted((output_dir / CHECKPOINTS_DIR).glob("step-*"), key=_step_of)
