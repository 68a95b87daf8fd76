"""One process-wide lock for loading anything through ``transformers``.

transformers resolves its classes lazily (``from transformers import AutoTokenizer`` imports the submodule on first
use, and ``from_pretrained`` imports the model's own tokenizer and modeling modules), and that lazy module is not
safe to enter from two threads at once: the loser of the race gets ``ImportError: cannot import name
'AutoTokenizer' from 'transformers'``. In the gateway two threads do load at once: the local engine warming a base
model while a worker thread reads a tokenizer to count a job's tokens, or the first requests for two models. So
every load in this package (tokenizers, configs, base models, the default model's conversion) holds this lock;
loads are rare and seconds long at most, so nothing waits noticeably.
"""

from __future__ import annotations

import threading

LOADING = threading.RLock()
