"""The plan of a migration: for each upstream job, what is copied or distilled, how its hyperparameters and method
translate to the target, which alias keeps its name; and the totals shown before anything moves (bytes, calls,
trained tokens, an estimated time from this gateway's past jobs, an upstream cost from configured prices)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from openai.types.fine_tuning import FineTuningJob

from app.config import ModelPrice
from app.migration.schemas import (
    CreateMigrationRequest,
    FileCopy,
    MigrationItem,
    PlanTotals,
    Translation,
)
from app.migration.upstream import Listed, hyperparameters_of, method_of
from app.providers.base import TrainingProvider

# OpenAI's learning-rate multipliers scale its own (full fine-tuning) rates: a LoRA run here has its own rule.
_LR_NOTE = (
    "the upstream multiplier scales that provider's own base rate and does not transfer to a LoRA run here: "
    "the local rule ('auto') is used"
)
_AUTO_TRANSFERS = "'auto' there, 'auto' here (the target's own rule)"


def imported_model_id(provider: str, project_id: str, upstream_model: str) -> str:
    """Our id of an upstream fine-tuned model registered in a project: unique per project, never the upstream id
    itself (that name is the alias callers use)."""
    return f"ft:{provider}:{project_id}:{upstream_model.removeprefix('ft:')}"


def translate(
    job: FineTuningJob, body: CreateMigrationRequest, target: TrainingProvider, base_model: str
) -> tuple[str, dict[str, Any], list[Translation]]:
    """``(method, hyperparameters, translations)`` of the new job."""
    upstream = hyperparameters_of(job)
    method = method_of(job)
    local = target.name == "local"
    notes: list[Translation] = [
        Translation(field="model", upstream=job.model, local=base_model, note="retrained on the chosen base model")
    ]
    target_method = method
    if method == "reinforcement":
        target_method = "supervised"
        notes.append(
            Translation(
                field="method",
                upstream="reinforcement",
                local="supervised",
                note="reinforcement fine-tuning has no equivalent here: the upstream model's answers are distilled "
                "into supervised data",
            )
        )
    elif method == "dpo" and not target.supports("dpo", "preference"):
        target_method = "supervised"
        notes.append(
            Translation(field="method", upstream="dpo", local="supervised", note=f"{target.name} trains no DPO")
        )
    else:
        notes.append(Translation(field="method", upstream=method, local=method, note="kept"))
    hyper: dict[str, Any] = {}
    for name in ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"):
        if name == "beta" and target_method != "dpo":
            continue
        value = upstream.get(name, "auto")
        if value == "auto":
            hyper[name] = "auto"
            notes.append(Translation(field=name, upstream="auto", local="auto", note=_AUTO_TRANSFERS))
        elif name == "learning_rate_multiplier" and local:
            hyper[name] = "auto"
            notes.append(Translation(field=name, upstream=value, local="auto", note=_LR_NOTE))
        elif name == "batch_size" and isinstance(value, int) and value > 256:
            hyper[name] = 256
            notes.append(Translation(field=name, upstream=value, local=256, note="capped at the largest batch here"))
        else:
            hyper[name] = value
            notes.append(Translation(field=name, upstream=value, local=value, note="kept"))
    overrides = body.hyperparameters.model_dump(exclude_none=True) if body.hyperparameters else {}
    for name, value in overrides.items():
        if name == "beta" and target_method != "dpo":
            continue
        notes = [n for n in notes if n.field != name]  # the request's value, not the translation, is used
        notes.append(
            Translation(field=name, upstream=upstream.get(name), local=value, note="overridden by the request")
        )
        hyper[name] = value
    if job.seed is not None:
        notes.append(Translation(field="seed", upstream=job.seed, local=job.seed, note="kept"))
    if job.integrations:
        kinds = sorted({str(i.type) for i in job.integrations})
        notes.append(Translation(field="integrations", upstream=kinds, local=None, note="not available here: dropped"))
    return target_method, hyper, notes


def item_of(
    job: FineTuningJob,
    body: CreateMigrationRequest,
    target: TrainingProvider,
    *,
    training: Listed | None,
    validation: Listed | None,
) -> MigrationItem:
    """One upstream job's item; ``training``/``validation`` are its files as listed there (None: gone)."""
    method, hyper, notes = translate(job, body, target, body.base_model)
    suffix = body.suffix or getattr(job, "user_provided_suffix", None)
    item = MigrationItem(
        upstream_job=job.id,
        upstream_model=job.fine_tuned_model,
        upstream_base_model=job.model,
        upstream_status=str(job.status),
        method=method_of(job),
        upstream_hyperparameters=hyperparameters_of(job),
        upstream_metadata=dict(job.metadata) if job.metadata else None,
        upstream_trained_tokens=job.trained_tokens,
        suffix=suffix[:40] if suffix else None,
        training_file=_copy(job.training_file, training),
        validation_file=_copy(job.validation_file, validation) if job.validation_file else None,
        action="copy",
        translations=notes,
        hyperparameters=hyper,
        target_method=method,
        alias=job.fine_tuned_model if body.keep_names and job.fine_tuned_model else None,
    )
    distil = body.distil
    can_distil = distil is not None and (distil.prompts_file is not None or item.validation_file is not None)
    if job.status != "succeeded" or not job.fine_tuned_model:
        item.action, item.status, item.step = "skip", "skipped", "done"
        item.reason = f"the upstream job is {job.status}, with no fine-tuned model to move"
    elif method_of(job) == "reinforcement" or (distil is not None and distil.mode == "always"):
        why = "reinforcement fine-tuning" if method_of(job) == "reinforcement" else "distil.mode is 'always'"
        item.action, item.reason = "distil", why
    elif training is None:
        item.action = "distil"
        item.reason = f"its training file {job.training_file} is gone from the provider"
    if item.action == "distil" and not can_distil:
        item.action, item.status, item.step = "skip", "skipped", "done"
        item.reason = (
            f"{item.reason}, and there is no prompt set to distil from: give distil.prompts_file (or keep the "
            "validation file there)"
        )
    return item


def _copy(file_id: str, found: Listed | None) -> FileCopy:
    if found is None:
        return FileCopy(upstream_id=file_id, state="missing")
    return FileCopy(upstream_id=file_id, filename=found.filename, bytes=found.bytes, upstream_sha256=found.sha256)


def price_of(prices: dict[str, ModelPrice], model: str, base: str) -> ModelPrice | None:
    """The configured price of ``model``, else of the base it was fine-tuned from (OpenAI bills by the base)."""
    return prices.get(model) or prices.get(base)


def totals(
    items: Sequence[MigrationItem],
    body: CreateMigrationRequest,
    *,
    prompts: int,
    prompt_tokens: int,
    prices: dict[str, ModelPrice],
    tokens_per_second: float | None,
) -> PlanTotals:
    """The plan's sums. ``prompts``/``prompt_tokens``: the distillation prompt set (0 without one);
    ``tokens_per_second``: trained tokens per second of this gateway's past jobs on the base model."""
    moving = [i for i in items if i.action != "skip"]
    distilled = [i for i in moving if i.action == "distil"]
    files = [f for i in moving for f in (i.training_file, i.validation_file) if f is not None and f.state != "missing"]
    notes: list[str] = []
    per_item_prompts = min(prompts, body.distil.max_prompts) if body.distil else 0
    parity_rows = body.parity.max_rows
    calls = len(distilled) * per_item_prompts + len(moving) * parity_rows
    trained = [i.upstream_trained_tokens for i in moving if i.action == "copy"]
    trained_tokens = sum(t for t in trained if t is not None) if trained and None not in trained else None
    if trained and None in trained:
        notes.append("the upstream did not report trained tokens for every job: no training estimate")
    seconds = trained_tokens / tokens_per_second if trained_tokens and tokens_per_second else None
    if trained_tokens and tokens_per_second is None:
        notes.append(f"no past job on {body.base_model} here to estimate the training time from")
    cost: float | None = 0.0
    for item in distilled:
        price = price_of(prices, item.upstream_model or "", item.upstream_base_model)
        if price is None:
            cost = None
            notes.append(f"no price configured for {item.upstream_model} (or {item.upstream_base_model})")
            continue
        max_out = per_item_prompts * (body.distil.max_tokens if body.distil else 0)
        share = prompt_tokens * per_item_prompts / prompts if prompts else 0
        if cost is not None:
            cost += (share * price.input + max_out * price.output) / 1e6
    if distilled and cost is not None:
        notes.append("the upstream cost counts every answer at its max_tokens: an upper bound")
    if moving:
        notes.append(f"parity asks the upstream model at most {parity_rows} rows per job (not counted in the cost)")
    return PlanTotals(
        jobs=len(items),
        to_copy=sum(1 for i in moving if i.action == "copy"),
        to_distil=len(distilled),
        skipped=len(items) - len(moving),
        files=len(files),
        bytes=sum(f.bytes or 0 for f in files),
        aliases=sum(1 for i in moving if i.alias),
        upstream_calls=calls,
        estimated_trained_tokens=trained_tokens,
        estimated_training_seconds=math.ceil(seconds) if seconds is not None else None,
        estimated_upstream_cost=round(cost, 6) if cost is not None and distilled else (0.0 if not distilled else None),
        notes=notes,
    )
