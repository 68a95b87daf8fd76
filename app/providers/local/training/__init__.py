"""The local trainer: LoRA fine-tuning (supervised and DPO) of a local base model, with checkpoints and metrics.

Pure Python, no database and no HTTP. The local provider (``app.providers.local.provider``) starts
:func:`child_main` in a child process, which runs the training loop and reports what its :class:`Reporter` hears
over a pipe. Its public face is what is imported here; the rest of this package is private. Importing it stays
cheap (no torch): the training loop imports torch in the child.
"""

from __future__ import annotations

from app.providers.local.training._data import TrainingDataError, load_preferences, load_supervised
from app.providers.local.training._hyperparams import DeviceKind, ResolvedHyperparameters, resolve_hyperparameters
from app.providers.local.training._process import child_main
from app.providers.local.training._spec import (
    CheckpointInfo,
    ClassificationSettings,
    Control,
    Hyperparameters,
    LoraSettings,
    NullReporter,
    Reporter,
    StepMetrics,
    TrainOutcome,
    TrainSpec,
    ValidationMetrics,
)

__all__ = [
    "CheckpointInfo",
    "ClassificationSettings",
    "Control",
    "DeviceKind",
    "Hyperparameters",
    "LoraSettings",
    "NullReporter",
    "Reporter",
    "ResolvedHyperparameters",
    "StepMetrics",
    "TrainOutcome",
    "TrainSpec",
    "TrainingDataError",
    "ValidationMetrics",
    "child_main",
    "load_preferences",
    "load_supervised",
    "resolve_hyperparameters",
]
