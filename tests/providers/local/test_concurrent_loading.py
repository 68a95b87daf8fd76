"""Loads from several threads at once never fail (transformers' lazy module is not thread-safe on its own).

Before the process-wide loading lock (``app.providers.local.hf.LOADING``), three threads of a fresh process
loading a tokenizer, a config and a base model at once failed with ``ImportError: cannot import name
'AutoTokenizer' from 'transformers'`` in 6 runs of 6; in the gateway that was the engine warming a base model
while a worker counted a job's tokens. A fresh interpreter per attempt: in this one transformers is warm already.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.providers.local.base_models import BaseModelStore

REPO = Path(__file__).resolve().parents[3]
SCRIPT = """
import sys, threading
from pathlib import Path

import torch
from app.providers.local.base_models import BaseModelStore, TINY
from app.providers.local.engine import Engine
from app.providers.local.engine._batch import load_slot
from app.providers.local.training._modeling import load_base

store = BaseModelStore(Path(sys.argv[1]), None, include_test_models=True)
engine = Engine(store)
errors = []

def run(load):
    barrier.wait()
    try:
        load()
    except Exception as error:
        errors.append(repr(error))

loads = [
    lambda: store.tokenizer(TINY),
    lambda: engine.limits(TINY),
    lambda: engine.encode_text(TINY, "hello"),
    lambda: load_slot(store.resolve(TINY), dtype=torch.float32, device=torch.device("cpu"), max_adapters=1),
    lambda: load_base(store.resolve(TINY), torch.float32, torch.device("cpu")),
]
barrier = threading.Barrier(len(loads) * 2)
threads = [threading.Thread(target=run, args=(load,)) for load in loads * 2]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(errors)
sys.exit(1 if errors else 0)
"""


def test_loading_from_ten_threads_at_once_in_a_fresh_process(store: BaseModelStore, tiny_path: Path) -> None:
    for _ in range(4):
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(store.cache_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
