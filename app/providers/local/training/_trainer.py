"""The training loop: :func:`train` runs a :class:`~._spec.TrainSpec` to the end or to a pause.

Each optimizer step packs its batch into padding-free forward passes (:mod:`._batching`),
reports :class:`StepMetrics`, and appends a results.csv row. Each epoch ends with validation (when there is a
validation file) and a checkpoint. A pause saves the state and returns; calling :func:`train` again on the same
``output_dir`` resumes from the newest complete state and replays exactly what an uninterrupted run would have
done: the data order is a function of (seed, epoch), and the torch RNG is reseeded from (seed, step) before
every step, so dropout does not depend on where a run was interrupted.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from app.providers.local.hf import default_device
from app.providers.local.training import _state as disk
from app.providers.local.training._batching import chunk_by_tokens, epoch_batches, pack
from app.providers.local.training._data import (
    PreferencePair,
    TokenSequence,
    load_preferences,
    load_supervised,
)
from app.providers.local.training._dpo import cached_reference, dpo_step, dpo_validation
from app.providers.local.training._eta import FinishEstimate
from app.providers.local.training._hyperparams import (
    DeviceKind,
    ResolvedHyperparameters,
    lr_factor,
    resolve_hyperparameters,
    steps_per_epoch,
    usable_cores,
)
from app.providers.local.training._metrics import classification_metrics, classification_mode, summarize
from app.providers.local.training._modeling import load_for_training, resolve_dtype, score_tokens
from app.providers.local.training._results import ResultsWriter, columns
from app.providers.local.training._spec import (
    CheckpointInfo,
    Control,
    Reporter,
    StepMetrics,
    TrainOutcome,
    TrainSpec,
    ValidationMetrics,
)

RESULTS_FILE = "results.csv"
REFERENCE_DIR = "reference"


@dataclass(frozen=True, slots=True)
class StepStats:
    loss: float
    token_accuracy: float
    sequence_accuracy: float
    n_tokens: int
    extra: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class RunData:
    """The tokenized files of a run."""

    train_sft: list[TokenSequence] = field(default_factory=list)
    valid_sft: list[TokenSequence] = field(default_factory=list)
    train_pairs: list[PreferencePair] = field(default_factory=list)
    valid_pairs: list[PreferencePair] = field(default_factory=list)

    @property
    def n_train(self) -> int:
        return len(self.train_pairs) or len(self.train_sft)

    @property
    def mean_tokens(self) -> float:
        return sum(self.example_tokens(i) for i in range(self.n_train)) / max(1, self.n_train)

    def example_tokens(self, index: int) -> int:
        if self.train_pairs:
            return self.train_pairs[index].n_tokens
        return len(self.train_sft[index].input_ids)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _load_data(spec: TrainSpec, tokenizer: Any, max_tokens: int, reporter: Reporter) -> RunData:
    data = RunData()
    truncated = 0
    if spec.method == "dpo":
        data.train_pairs, truncated = load_preferences(spec.training_file, tokenizer, max_tokens)
        if spec.validation_file is not None:
            data.valid_pairs, _ = load_preferences(spec.validation_file, tokenizer, max_tokens)
    else:
        data.train_sft, truncated = load_supervised(spec.training_file, tokenizer, max_tokens)
        if spec.validation_file is not None:
            data.valid_sft, _ = load_supervised(spec.validation_file, tokenizer, max_tokens)
    if truncated:
        reporter.on_message("warn", f"{truncated} training examples were truncated to {max_tokens} tokens")
    return data


def _fingerprint(spec: TrainSpec, hp: ResolvedHyperparameters, n_examples: int) -> str:
    """What must match for a saved state to belong to this run."""
    digest = hashlib.sha256()
    for path in (spec.training_file, spec.validation_file):
        if path is not None:
            digest.update(path.read_bytes())
    key = [spec.base_model, spec.method, spec.seed, n_examples, repr(hp), str(spec.parent_adapter)]
    digest.update(json.dumps(key).encode())
    return digest.hexdigest()[:16]


class _Run:
    """One call of :func:`train`: the loaded model, optimizer and data, and the loop's bookkeeping."""

    def __init__(self, spec: TrainSpec, reporter: Reporter) -> None:
        from transformers import AutoTokenizer

        self.spec = spec
        self.reporter = reporter
        torch.set_num_threads(spec.num_threads or usable_cores())
        # Subnormal floats (tiny gradients through a peaked softmax) run ~100x slower on x86 without this.
        torch.set_flush_denormal(True)
        _seed_everything(spec.seed)
        self.device = default_device()
        self.tokenizer = AutoTokenizer.from_pretrained(str(spec.base_path), local_files_only=True)
        config = json.loads((spec.base_path / "config.json").read_text())
        context = int(config.get("max_position_embeddings") or 2048)
        self.max_tokens = min(spec.max_tokens_per_example or context, context)
        self.data = _load_data(spec, self.tokenizer, self.max_tokens, reporter)
        cores = spec.num_threads or usable_cores()
        kind: DeviceKind = "cuda" if self.device.type == "cuda" else "cpu"
        self.hp = resolve_hyperparameters(spec, self.data.n_train, self.data.mean_tokens, device=kind, cores=cores)
        self.steps_per_epoch = steps_per_epoch(self.data.n_train, self.hp.batch_size)
        self.total_steps = self.steps_per_epoch * self.hp.n_epochs
        self.fingerprint = _fingerprint(spec, self.hp, self.data.n_train)
        self.budget = max(spec.max_tokens_per_forward, self.max_tokens)
        self.model = load_for_training(
            spec.base_path,
            lora=self.hp.lora,
            parent_adapter=spec.parent_adapter,
            dtype=resolve_dtype(spec.precision, self.device),
            device=self.device,
            seed=spec.seed,
        )
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.params = params
        self.optimizer = torch.optim.AdamW(params, lr=self.hp.learning_rate, weight_decay=self.hp.weight_decay)
        total, warmup = self.total_steps, self.hp.warmup_ratio
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, total, warmup))
        self.classes = self._classes()
        self.reference: torch.Tensor | None = None
        self.valid_reference: torch.Tensor | None = None

    def _classes(self) -> list[str]:
        settings = self.spec.classification
        if not settings.compute_classification_metrics:
            return []
        if self.spec.method != "supervised" or not self.data.valid_sft:
            self.reporter.on_message("warn", "classification metrics need supervised training and a validation file")
            return []
        labels = {s.label for s in [*self.data.train_sft, *self.data.valid_sft] if s.label is not None}
        classes = sorted(labels)
        if settings.classification_n_classes is not None and settings.classification_n_classes != len(classes):
            self.reporter.on_message(
                "warn",
                f"classification_n_classes is {settings.classification_n_classes} but the files have "
                f"{len(classes)} distinct answers",
            )
        return classes

    def header(self) -> list[str]:
        mode = classification_mode(self.spec.classification.classification_positive_class) if self.classes else None
        has_validation = bool(self.data.valid_sft or self.data.valid_pairs)
        return columns(validation=has_validation, classification=mode)

    def restore(self) -> disk.Progress:
        """Load the newest complete state of this run, or start at step 0."""
        from peft import set_peft_model_state_dict

        disk.remove_leftovers(self.spec.output_dir)
        for folder in disk.candidate_states(self.spec.output_dir):
            try:
                saved = disk.load_state(folder)
            except Exception as exc:  # a state from an older format or a damaged disk: try the next one
                self.reporter.on_message("warn", f"cannot read the saved state {folder.name}: {exc}")
                continue
            if saved.progress.fingerprint != self.fingerprint:
                raise ValueError(f"{self.spec.output_dir} holds another run's state (different data or settings)")
            set_peft_model_state_dict(self.model, {k: v.to(self.device) for k, v in saved.adapter.items()})
            self.optimizer.load_state_dict(saved.optimizer)
            self.scheduler.load_state_dict(saved.scheduler)
            self.reporter.on_message("info", f"resumed from step {saved.progress.step}")
            return saved.progress
        return disk.Progress(0, 1, 0, 0, 0, 0, 0.0, self.fingerprint)

    def prepare_reference(self) -> None:
        if self.spec.method != "dpo":
            return
        is_reference = self.spec.parent_adapter is not None
        ref_dir = self.spec.output_dir / REFERENCE_DIR
        self.reference = cached_reference(
            ref_dir / "train", self.model, self.data.train_pairs, self.budget, adapter_is_reference=is_reference
        )
        if self.data.valid_pairs:
            self.valid_reference = cached_reference(
                ref_dir / "valid", self.model, self.data.valid_pairs, self.budget, adapter_is_reference=is_reference
            )

    def step(self, indices: list[int], beta: float) -> StepStats:
        """Forward and backward over one batch; the caller updates the weights."""
        self.model.train()
        if self.spec.method == "dpo":
            assert self.reference is not None
            pairs = [self.data.train_pairs[i] for i in indices]
            stats = dpo_step(self.model, pairs, self.reference[indices], beta, self.budget)
            extra = {"reward_accuracy": stats.reward_accuracy, "reward_margin": stats.reward_margin}
            return StepStats(stats.loss, stats.token_accuracy, stats.sequence_accuracy, stats.n_tokens, extra)
        seqs = [self.data.train_sft[i] for i in indices]
        n_targets = sum(s.n_targets for s in seqs)
        loss_sum = hits = exact = 0.0
        n_tokens = 0
        for chunk in chunk_by_tokens([len(s.input_ids) for s in seqs], self.budget):
            batch = pack([seqs[i] for i in chunk])
            scores = score_tokens(self.model, batch)
            # Mean over the batch's trained tokens, as a padded batch with -100 labels would compute it.
            (-scores.logprobs.sum() / n_targets).backward()  # type: ignore[no-untyped-call]
            loss_sum -= float(scores.logprobs.detach().sum())
            correct = scores.correct.float()
            hits += float(correct.sum())
            ones = torch.ones_like(correct)
            per_seq = torch.zeros(batch.n_sequences).index_add(0, batch.owner.cpu(), correct.cpu())
            counts = torch.zeros(batch.n_sequences).index_add(0, batch.owner.cpu(), ones.cpu())
            exact += float((per_seq == counts).float().sum())
            n_tokens += batch.n_tokens
        return StepStats(loss_sum / n_targets, hits / n_targets, exact / len(seqs), n_tokens)

    def validate(self, step: int, beta: float) -> ValidationMetrics | None:
        self.model.eval()
        if self.data.valid_pairs:
            assert self.valid_reference is not None
            d = dpo_validation(self.model, self.data.valid_pairs, self.valid_reference, beta, self.budget)
            return ValidationMetrics(step, d.loss, d.token_accuracy, d.sequence_accuracy)
        if not self.data.valid_sft:
            return None
        summary = summarize(self.model, self.data.valid_sft, self.budget)
        classification: dict[str, float] = {}
        if self.classes:
            tokenizer = self.tokenizer

            def encode(text: str) -> list[int]:
                return list(tokenizer(text, add_special_tokens=False)["input_ids"])

            positive = self.spec.classification.classification_positive_class
            classification = classification_metrics(
                self.model, self.data.valid_sft, self.classes, positive, encode, self.budget
            )
        return ValidationMetrics(step, summary.loss, summary.token_accuracy, summary.sequence_accuracy, classification)


def _metrics_dict(m: StepMetrics, valid: ValidationMetrics | None) -> dict[str, float]:
    """A checkpoint's metrics, named as OpenAI names them."""
    out: dict[str, float] = {
        "step": float(m.step),
        "train_loss": m.train_loss,
        "train_mean_token_accuracy": m.train_mean_token_accuracy,
    }
    if valid is not None:
        out |= {
            "valid_loss": valid.loss,
            "valid_mean_token_accuracy": valid.token_accuracy,
            "full_valid_loss": valid.loss,
            "full_valid_mean_token_accuracy": valid.token_accuracy,
        }
        out |= valid.classification
    return out


def train(spec: TrainSpec, reporter: Reporter, control: Control | None = None) -> TrainOutcome:
    """Run (or resume) the training ``spec`` describes, in this process; returns when done or paused."""
    try:
        return _train(spec, reporter, control)
    finally:
        # Flushing subnormals (set by _Run) is process-wide: a run in a caller's process (tests, benchmarks) must not
        # leave it on for code that needs IEEE arithmetic, as hypothesis's float strategies do.
        torch.set_flush_denormal(False)


def _train(spec: TrainSpec, reporter: Reporter, control: Control | None) -> TrainOutcome:
    spec.output_dir.mkdir(parents=True, exist_ok=True)
    loading = time.monotonic()
    reporter.on_message("info", f"Loading base model {spec.base_model} and tokenizing the training data")
    run = _Run(spec, reporter)
    reporter.on_message("info", f"Base model {spec.base_model} loaded in {time.monotonic() - loading:.1f} s")
    hp = run.hp
    progress = run.restore()
    run.prepare_reference()
    results = ResultsWriter(spec.output_dir / RESULTS_FILE, run.header(), keep_through_step=progress.step)
    checkpoints = []
    for path in disk.list_checkpoints(spec.output_dir):
        done = int(path.name.removeprefix("step-"))
        metrics_json = json.loads((path / "metrics.json").read_text())
        checkpoints.append(CheckpointInfo(done, done // run.steps_per_epoch, path, metrics_json))
    reporter.on_message(
        "info",
        f"training {run.data.n_train} examples: {hp.n_epochs} epochs x {run.steps_per_epoch} steps, "
        f"batch {hp.batch_size}, learning rate {hp.learning_rate:g}",
    )
    valid_tokens = sum(len(s.input_ids) for s in run.data.valid_sft) + sum(p.n_tokens for p in run.data.valid_pairs)
    eta = FinishEstimate(run.total_steps, run.steps_per_epoch, valid_tokens)
    if progress.step < run.total_steps:
        eta.time_adapter_save(run.model, spec.output_dir)
    started = last_save = time.monotonic()
    final: dict[str, float] = {}
    while progress.step < run.total_steps:
        if control is not None and control.should_pause():
            progress = _with_time(progress, started)
            disk.save_state(spec.output_dir, run.model, run.optimizer, run.scheduler, progress)
            reporter.on_message("info", f"paused after step {progress.step}")
            return _outcome("paused", progress, run, results.path, None, checkpoints, final)
        step_started = time.monotonic()
        batches = epoch_batches(run.data.n_train, hp.batch_size, spec.seed, progress.epoch)
        indices = batches[progress.batch_in_epoch]
        step = progress.step + 1
        torch.manual_seed(spec.seed * 1_000_003 + step)
        lr = float(run.scheduler.get_last_lr()[0])
        stats = run.step(indices, hp.beta)
        if hp.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(run.params, hp.max_grad_norm)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        computed = time.monotonic()
        eta.step_done(computed - step_started, stats.n_tokens)
        epoch_end = progress.batch_in_epoch + 1 == len(batches)
        example_tokens = sum(run.data.example_tokens(i) for i in indices)
        progress = disk.Progress(
            step=step,
            epoch=progress.epoch + 1 if epoch_end else progress.epoch,
            batch_in_epoch=0 if epoch_end else progress.batch_in_epoch + 1,
            elapsed_tokens=progress.elapsed_tokens + stats.n_tokens,
            elapsed_examples=progress.elapsed_examples + len(indices),
            trained_tokens=progress.trained_tokens + example_tokens,
            elapsed_seconds=progress.elapsed_seconds,
            fingerprint=progress.fingerprint,
        )
        valid_started = time.monotonic()
        valid = run.validate(step, hp.beta) if epoch_end else None
        valid_done = time.monotonic()
        if valid is not None:
            eta.validation_done(valid_done - valid_started)
            reporter.on_validation(valid)
        metrics = StepMetrics(
            step=step,
            total_steps=run.total_steps,
            epoch=progress.epoch - 1 if epoch_end else progress.epoch,
            train_loss=stats.loss,
            train_mean_token_accuracy=stats.token_accuracy,
            train_sequence_accuracy=stats.sequence_accuracy,
            elapsed_tokens=progress.elapsed_tokens,
            elapsed_examples=progress.elapsed_examples,
            learning_rate=lr,
            estimated_finish_seconds=eta.remaining_seconds(step, checkpoint_pending=epoch_end),
            valid_loss=valid.loss if valid else None,
            valid_mean_token_accuracy=valid.token_accuracy if valid else None,
            valid_sequence_accuracy=valid.sequence_accuracy if valid else None,
            extra=stats.extra,
        )
        results.append(_row(metrics, valid))
        final = _metrics_dict(metrics, valid)
        reporter.on_step(metrics)
        eta.step_bookkeeping(time.monotonic() - valid_done + valid_started - computed)
        if epoch_end:
            progress = _with_time(progress, started)
            started = last_save = time.monotonic()
            path = disk.save_checkpoint(spec.output_dir, run.model, run.optimizer, run.scheduler, progress, final)
            eta.checkpoint_done(time.monotonic() - started)
            info = CheckpointInfo(step, metrics.epoch, path, final)
            checkpoints.append(info)
            reporter.on_checkpoint(info)
            shutil.rmtree(spec.output_dir / disk.STATE_DIR, ignore_errors=True)  # older than the checkpoint
        elif spec.state_interval_seconds is not None and time.monotonic() - last_save > spec.state_interval_seconds:
            # Saved without touching the ETA's clock: only the elapsed time is folded into the state.
            disk.save_state(spec.output_dir, run.model, run.optimizer, run.scheduler, _with_time(progress, started))
            last_save = time.monotonic()
    adapter = disk.save_adapter(spec.output_dir, run.model)
    shutil.rmtree(spec.output_dir / disk.STATE_DIR, ignore_errors=True)
    if not final and checkpoints:  # resumed a run that had already finished
        final = checkpoints[-1].metrics
    return _outcome("succeeded", progress, run, results.path, adapter, checkpoints, final)


def _with_time(progress: disk.Progress, since: float) -> disk.Progress:
    return replace(progress, elapsed_seconds=progress.elapsed_seconds + time.monotonic() - since)


def _row(m: StepMetrics, valid: ValidationMetrics | None) -> dict[str, float | int | None]:
    row: dict[str, float | int | None] = {
        "step": m.step,
        "elapsed_tokens": m.elapsed_tokens,
        "elapsed_examples": m.elapsed_examples,
        "training_loss": m.train_loss,
        "training_sequence_accuracy": m.train_sequence_accuracy,
        "training_token_accuracy": m.train_mean_token_accuracy,
    }
    if valid is not None:
        row |= {
            "validation_loss": valid.loss,
            "validation_sequence_accuracy": valid.sequence_accuracy,
            "validation_token_accuracy": valid.token_accuracy,
        }
        row |= valid.classification
    return row


def _outcome(
    status: Literal["succeeded", "paused"],
    progress: disk.Progress,
    run: _Run,
    results_csv: Path,
    adapter: Path | None,
    checkpoints: list[CheckpointInfo],
    final: dict[str, float],
) -> TrainOutcome:
    return TrainOutcome(
        status=status,
        step=progress.step,
        total_steps=run.total_steps,
        trained_tokens=progress.trained_tokens,
        results_csv=results_csv,
        adapter_path=adapter,
        checkpoints=checkpoints,
        final_metrics=final,
    )
