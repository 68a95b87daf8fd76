"""Benchmark: does SmolLM2-135M-Instruct *learn* with the local trainer's ``auto`` hyperparameters?

Tasks (``bench/tasks.py``, seeded and deterministic; test sentences use templates and vocabulary the training
file never has): binary sentiment, an on/off-topic guard for a billing chatbot, a 5-way support-email triage, a
generation task in the seed's style (``\\n\\n###\\n\\n`` separator, completions ending in `` END``) and a chatbot
whose answers end in ``**STOP**``.

For each task, in the same run:

* ``ours``: the trainer (``training._trainer.train``) with every hyperparameter ``"auto"``, i.e. exactly what the
  gateway resolves for a job (the provider hands the trainer the same :func:`resolve_hyperparameters` numbers);
* ``anchor`` (unless ``--no-anchor``): a plain PEFT LoRA loop (transformers + peft, float32, right padding) with
  OpenAI's auto batch (0.2% of the examples: batch 1), the same epochs, rank 8 / alpha 16 on q/k/v/o at 4e-4.

Scored afterwards by the same float32 PEFT code: classification is the greedy first token of the answer against
the label's first token; generation is the share of held-out prompts whose greedy answer (at most 32 tokens)
contains the trained stop marker. Targets: sentiment and guard >= 0.98, triage >= 0.85, each >= the anchor;
stop marker >= 0.95. One seed moves a score by a test sentence or three: ``--seeds 3`` trains each side three
times (seeds 1234-1236) and prints the mean and each score.

    PYTHONPATH=. .venv/bin/python bench/learning_quality.py [--tasks sentiment,guard,...] [--no-anchor] [--seeds N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from anchors import right_padded  # noqa: E402
from tasks import Task, chat, generation, guard, sentiment, triage  # noqa: E402

SEED = 1234
TARGETS = {"sentiment": 0.98, "guard": 0.98, "triage": 0.85, "generation": 0.95, "chat": 0.95}


def build_tasks() -> dict[str, Task]:
    return {
        "sentiment": sentiment(40, 60),
        "guard": guard(40, 60),
        "triage": triage(100, 60),
        "generation": generation(30, 30),
        "chat": chat(24, 12),
    }


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_ours(base: Path, data: Path, out: Path, seed: int = SEED) -> tuple[str, float]:
    from app.providers.local.training._spec import NullReporter, TrainSpec
    from app.providers.local.training._trainer import train

    spec = TrainSpec(base_model="smollm2-135m-instruct", base_path=base, training_file=data, output_dir=out, seed=seed)
    started = time.perf_counter()
    outcome = train(spec, NullReporter())
    return str(outcome.adapter_path), time.perf_counter() - started


def train_anchor(base: Path, data: Path, out: Path, epochs: int, seed: int = SEED) -> tuple[str, float]:
    """The textbook loop at OpenAI's auto batch for small files (1), float32, right padding."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.providers.local.training._data import load_supervised
    from app.providers.local.training._hyperparams import lr_factor

    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    seqs, _ = load_supervised(data, tokenizer, 2048)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32),
        LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]),
    )
    batch_size = max(1, round(len(seqs) * 0.002))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=4e-4, weight_decay=0.0)
    total = epochs * -(-len(seqs) // batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 0.03))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rng = torch.Generator().manual_seed(seed)
    model.train()
    started = time.perf_counter()
    for _ in range(epochs):
        order = torch.randperm(len(seqs), generator=rng).tolist()
        for i in range(0, len(order), batch_size):
            batch = [seqs[j] for j in order[i : i + batch_size]]
            ids, mask, labels = right_padded(batch, pad)
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - started
    model.save_pretrained(str(out))
    return str(out), elapsed


def score(base: Path, adapter: str, task: Task) -> float:
    """Held-out accuracy (classification) or the share of answers that carry the stop marker (generation)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32), adapter)
    model.eval()
    good = 0
    with torch.no_grad():
        for row in task.test:
            if task.kind == "chat":
                prompt = tokenizer.apply_chat_template(row["messages"], tokenize=False, add_generation_prompt=True)
            else:
                prompt = row["prompt"]
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
            if task.kind == "classify":
                label = row["completion"].removesuffix(" END")
                want = tokenizer(label, add_special_tokens=False)["input_ids"][0]
                good += int(int(model(input_ids=ids).logits[0, -1].argmax()) == want)
                continue
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=32,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
            text = tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
            good += int(("**STOP**" if task.kind == "chat" else "END") in text)
    return good / len(task.test)


def _summary(scores: list[float]) -> str:
    """The mean, and each seed's score when there are several."""
    mean = sum(scores) / len(scores)
    return f"{mean:.3f}" if len(scores) == 1 else f"{mean:.3f} {[round(s, 3) for s in scores]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sentiment,guard,triage,generation,chat")
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument(
        "--seeds", type=int, default=1, help="train each side with this many seeds (data order, adapter init); mean"
    )
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", default=os.environ.get("FTGW_TEST_MODEL_CACHE", str(default_cache)))
    args = parser.parse_args()

    from app.providers.local.base_models import SMOLLM2, BaseModelStore
    from app.providers.local.training._data import load_supervised
    from app.providers.local.training._hyperparams import resolve_hyperparameters
    from app.providers.local.training._spec import TrainSpec

    base = BaseModelStore(Path(args.cache)).resolve(SMOLLM2)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    tasks = build_tasks()
    print(f"load average {os.getloadavg()[0]:.2f}, {len(os.sched_getaffinity(0))} cores", flush=True)
    with tempfile.TemporaryDirectory(prefix="ftgw-quality-") as tmp:
        for name in args.tasks.split(","):
            task = tasks[name]
            data = write(Path(tmp) / f"{name}.jsonl", task.train)
            seqs, _ = load_supervised(data, tokenizer, 2048)
            mean = sum(len(s.input_ids) for s in seqs) / len(seqs)
            spec = TrainSpec(base_model=SMOLLM2, base_path=base, training_file=data, output_dir=Path(tmp) / "x")
            hp = resolve_hyperparameters(spec, len(seqs), mean)
            seeds = [SEED + i for i in range(args.seeds)]
            ours_runs = [train_ours(base, data, Path(tmp) / f"{name}-ours-{s}", s) for s in seeds]
            ours = [score(base, adapter, task) for adapter, _ in ours_runs]
            line = (
                f"{name:>10}: {len(task.train)} train / {len(task.test)} test, {mean:.0f} tokens/example, "
                f"auto -> epochs {hp.n_epochs} batch {hp.batch_size} lr {hp.learning_rate:g}; "
                f"ours {_summary(ours)} ({sum(t for _, t in ours_runs) / len(seeds):.0f} s)"
            )
            if not args.no_anchor:
                anchor_runs = [
                    train_anchor(base, data, Path(tmp) / f"{name}-anchor-{s}", hp.n_epochs, s) for s in seeds
                ]
                anchor = [score(base, adapter, task) for adapter, _ in anchor_runs]
                line += f", anchor {_summary(anchor)} ({sum(t for _, t in anchor_runs) / len(seeds):.0f} s)"
            line += f", target {TARGETS[name]}"
            print(line, flush=True)


if __name__ == "__main__":
    main()
