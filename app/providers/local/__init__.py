"""The local provider's training core: base models, LoRA training (supervised and DPO), checkpoints, generation.

Pure Python, no database and no HTTP: the worker runs :func:`app.providers.local.trainer.train` in a child
process and relays what the :class:`Reporter` hears; :func:`app.providers.local.generate.complete` runs a model.
Those two import torch, so they are not re-exported here: importing this package stays cheap for the API
process. Nothing here downloads anything (``HF_HUB_OFFLINE`` is set before transformers loads).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from app.providers.local.base_models import (
    SMOLLM2,
    TINY,
    BaseModelStore,
    UnknownBaseModel,
    register_local_tokenizers,
)
from app.providers.local.data import TrainingDataError
from app.providers.local.hyperparams import ResolvedHyperparameters, resolve_hyperparameters
from app.providers.local.spec import (
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
    "SMOLLM2",
    "TINY",
    "BaseModelStore",
    "CheckpointInfo",
    "ClassificationSettings",
    "Control",
    "Hyperparameters",
    "LoraSettings",
    "NullReporter",
    "Reporter",
    "ResolvedHyperparameters",
    "StepMetrics",
    "TrainOutcome",
    "TrainSpec",
    "TrainingDataError",
    "UnknownBaseModel",
    "ValidationMetrics",
    "register_local_tokenizers",
    "resolve_hyperparameters",
]
