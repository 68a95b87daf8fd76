"""The local provider: fine-tunes trained and served on this machine (CPU, or a GPU when there is one).

Three parts, each with a small public face:

* :mod:`.base_models`: which local base models exist, and a folder ``from_pretrained`` can load for each.
* :mod:`.training`: the trainer (LoRA, supervised and DPO), run by :class:`.provider.LocalProvider` in a child
  process.
* :mod:`.engine`: the serving engine (continuous batching over base models and their adapters), which the
  inference gateway reaches through its local backend.

:mod:`.hf` holds what the last two share about Hugging Face models. Importing this package stays cheap (no
torch): nothing here downloads anything either (``HF_HUB_OFFLINE`` is set before transformers loads).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
