"""Benchmark: the local trainer against a plain PEFT loop, LoRA on SmolLM2-135M-Instruct, same data and settings.

Builds 200 prompt-completion examples of ~55 tokens with varied lengths (so padding matters), then runs, each in
its own subprocess of this interpreter, one after the other in the same run:

* ``plain``: the textbook loop: right-pad each batch of 8 to its longest example, labels -100 on prompt and
  padding, ``model(...).loss``, AdamW, gradient clipping 1.0, float32;
* ``ours``: :func:`app.providers.local.training._trainer.train` (packed rows, per-sequence attention, LM head only on
  trained positions, ``precision="auto"``: bfloat16 base weights where the CPU multiplies them natively);
* ``ours-fp32`` (unless ``--skip-fp32``): the same trainer forced to float32, to show what packing alone gives.

All runs share the LoRA config (rank 8, alpha 16, q/k/v/o), learning rate and schedule, epochs, seed, thread
count and the exact batch composition of every step. Examples/s counts training examples over the wall time of
the training (plain: its loop; ours: the whole ``train()`` call, loading and checkpoints included, a handicap).
Final loss: each adapter's mean completion-token loss on the 200 examples, computed afterwards by the same plain
float32 code, plus each run's mean training loss over its last epoch. Goal: ours >= 1.5x, final loss within 10%.

    .venv/bin/python bench/local_training.py [--epochs 2] [--threads N] [--skip-fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.providers.local.training._spec import Precision

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_EXAMPLES = 200
BATCH = 8
SEED = 1234
TEXT = "the quiet river ran past old stone walls while children played near green fields and a small dog watched"
WORDS = TEXT.split(" ")


def build_examples(path: Path) -> None:
    rng = random.Random(SEED)
    rows = []
    for i in range(N_EXAMPLES):
        review = " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 72)))
        label = "positive" if i % 2 else "negative"
        reason = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        rows.append({"prompt": f"Review: {review}\nSentiment:", "completion": f" {label} because {reason} END"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    return {"n_epochs": args.epochs, "batch_size": BATCH, "learning_rate_multiplier": 2.0}


def run_plain(base: Path, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The textbook PEFT loop, sharing only the batch order and schedule with ours (so batches are identical)."""
    import torch
    from anchors import right_padded
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.providers.local.training._batching import epoch_batches
    from app.providers.local.training._data import encode_prompt_completion, read_jsonl
    from app.providers.local.training._hyperparams import BASE_LEARNING_RATE, lr_factor

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    seqs = [encode_prompt_completion(tokenizer, r["prompt"], r["completion"]) for _, r in read_jsonl(data)]
    base_model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    model = get_peft_model(base_model, config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=BASE_LEARNING_RATE * 2.0, weight_decay=0.0)
    total = args.epochs * ((N_EXAMPLES + BATCH - 1) // BATCH)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, 0.03))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses: list[float] = []
    model.train()
    started = time.perf_counter()
    step = 0
    for epoch in range(1, args.epochs + 1):
        for indices in epoch_batches(N_EXAMPLES, BATCH, SEED, epoch):
            step += 1
            torch.manual_seed(SEED * 1_000_003 + step)
            batch = [seqs[i] for i in indices]
            ids, mask, labels = right_padded(batch, pad)
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss))
    elapsed = time.perf_counter() - started
    model.save_pretrained(str(out / "adapter"))
    return {"seconds": elapsed, "losses": losses, "adapter": str(out / "adapter")}


def run_ours(base: Path, data: Path, out: Path, args: argparse.Namespace, precision: Precision) -> dict[str, Any]:
    from app.providers.local.training._spec import Hyperparameters, NullReporter, StepMetrics, TrainSpec
    from app.providers.local.training._trainer import train

    losses: list[float] = []

    class Losses(NullReporter):
        def on_step(self, m: StepMetrics) -> None:
            losses.append(m.train_loss)

    spec = TrainSpec(
        base_model="smollm2-135m-instruct",
        base_path=base,
        training_file=data,
        output_dir=out / "run",
        hyperparameters=Hyperparameters(**_settings(args)),
        seed=SEED,
        precision=precision,
        num_threads=args.threads,
    )
    started = time.perf_counter()
    outcome = train(spec, Losses())
    elapsed = time.perf_counter() - started
    return {"seconds": elapsed, "losses": losses, "adapter": str(outcome.adapter_path)}


def final_loss(base: Path, data: Path, adapter: str, threads: int) -> float:
    """Mean completion-token loss of base + adapter on the training file, plain float32, one example at a time."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from app.providers.local.training._data import encode_prompt_completion, read_jsonl

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32), adapter)
    model.eval()
    total = count = 0.0
    with torch.no_grad():
        for _, r in read_jsonl(data):
            s = encode_prompt_completion(tokenizer, r["prompt"], r["completion"])
            n = sum(1 for t in s.labels[1:] if t != -100)
            loss = model(input_ids=torch.tensor([s.input_ids]), labels=torch.tensor([s.labels])).loss
            total += float(loss) * n
            count += n
    return total / count


def worker(args: argparse.Namespace) -> None:
    base, data, out = Path(args.base), Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.worker == "plain":
        result = run_plain(base, data, out, args)
    elif args.worker == "eval":
        result = {"loss": final_loss(base, data, args.adapter, args.threads)}
    else:
        result = run_ours(base, data, out, args, "float32" if args.worker == "ours-fp32" else "auto")
    (out / "result.json").write_text(json.dumps(result))


def _spawn(kind: str, args: argparse.Namespace, base: Path, data: Path, out: Path, **extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", kind, "--base", str(base), "--data", str(data), "--out", str(out)]
    command += ["--epochs", str(args.epochs), "--threads", str(args.threads)]
    for key, value in extra.items():
        command += [f"--{key}", value]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads((out / "result.json").read_text())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--skip-fp32", action="store_true")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", default=os.environ.get("FTGW_TEST_MODEL_CACHE", str(default_cache)))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--adapter", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    from app.providers.local.base_models import SMOLLM2, BaseModelStore

    base = BaseModelStore(Path(args.cache)).resolve(SMOLLM2)
    kinds = ["plain", "ours"] + ([] if args.skip_fp32 else ["ours-fp32"])
    with tempfile.TemporaryDirectory(prefix="ftgw-bench-") as tmp:
        data = Path(tmp) / "train.jsonl"
        build_examples(data)
        lengths = _token_lengths(base, data)
        print(
            f"{N_EXAMPLES} examples, tokens mean {sum(lengths) / len(lengths):.1f} (min {min(lengths)}, "
            f"max {max(lengths)}), batch {BATCH}, {args.epochs} epochs, {args.threads} threads, "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        results: dict[str, dict[str, Any]] = {}
        for kind in kinds:
            results[kind] = _spawn(kind, args, base, data, Path(tmp) / kind)
            adapter = results[kind]["adapter"]
            evaluated = _spawn("eval", args, base, data, Path(tmp) / f"eval-{kind}", adapter=adapter)
            results[kind]["final"] = evaluated["loss"]
    per_epoch = (N_EXAMPLES + BATCH - 1) // BATCH
    plain = results["plain"]
    examples = N_EXAMPLES * args.epochs
    for kind in kinds:
        r = results[kind]
        last_epoch = sum(r["losses"][-per_epoch:]) / per_epoch
        print(
            f"{kind:>10}: {examples / r['seconds']:6.2f} examples/s ({r['seconds']:6.1f} s), "
            f"final loss {r['final']:.4f}, last-epoch training loss {last_epoch:.4f}"
        )
    for kind in kinds[1:]:
        r = results[kind]
        print(
            f"{kind} vs plain: {plain['seconds'] / r['seconds']:.2f}x examples/s (goal >= 1.5x), "
            f"final loss {100 * (r['final'] / plain['final'] - 1):+.1f}% (goal within 10%)"
        )


def _token_lengths(base: Path, data: Path) -> list[int]:
    from transformers import AutoTokenizer

    from app.providers.local.training._data import encode_prompt_completion, read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    rows = [r for _, r in read_jsonl(data)]
    return [len(encode_prompt_completion(tokenizer, r["prompt"], r["completion"]).input_ids) for r in rows]


if __name__ == "__main__":
    main()
