"""The plan's pieces without a network: translations, what each job becomes, totals; distillation's prompts and
split; the markdown report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openai.types.fine_tuning import FineTuningJob

from app.config import ModelPrice, Settings, UpstreamProviderConfig
from app.kit.time import utcnow
from app.migration import distil
from app.migration.models import Migration, MigrationStatus
from app.migration.plan import item_of, totals, translate
from app.migration.report import build_report, markdown
from app.migration.schemas import CreateMigrationRequest, Parity
from app.migration.upstream import Listed
from app.providers.local.provider import LocalProvider
from app.providers.upstream import UpstreamProvider

FILE = Listed("train.jsonl", 1000, None)
_CHECK = {"type": "string_check", "name": "eq", "input": "{{sample.output_text}}", "reference": "{{item.r}}"}
_GRADER: dict[str, dict[str, Any]] = {"reinforcement": {"grader": {**_CHECK, "operation": "eq"}}}


def job(method: str = "supervised", hyper: dict[str, Any] | None = None, **fields: Any) -> FineTuningJob:
    values: dict[str, Any] = {
        "id": "ftjob-1",
        "object": "fine_tuning.job",
        "created_at": 1,
        "model": "gpt-4o-mini-2024-07-18",
        "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
        "organization_id": "org-1",
        "result_files": [],
        "seed": 42,
        "status": "succeeded",
        "training_file": "file-t",
        "validation_file": None,
        "trained_tokens": 12_000,
        "method": {"type": method, method: {"hyperparameters": hyper or {}, **_GRADER.get(method, {})}},
        "hyperparameters": {},
    }
    values.update(fields)
    return FineTuningJob.model_validate(values)


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalProvider:
    return LocalProvider(Settings(data_dir=tmp_path_factory.mktemp("data"), _env_file=None))  # type: ignore[call-arg]


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> UpstreamProvider:
    config = UpstreamProviderConfig(name="other", base_url="http://127.0.0.1:9/v1", api_key_env="X", models=["m"])
    return UpstreamProvider(config, Settings(data_dir=tmp_path_factory.mktemp("d"), _env_file=None))  # type: ignore[call-arg]


def request(**fields: Any) -> CreateMigrationRequest:
    return CreateMigrationRequest.model_validate({"provider": "openai", "base_model": "tiny-smollm2", **fields})


def test_supervised_hyperparameters_translate_with_a_reason_each(local: LocalProvider) -> None:
    upstream = job(hyper={"n_epochs": 3, "batch_size": 512, "learning_rate_multiplier": 1.8})
    method, hyper, notes = translate(upstream, request(), local, "tiny-smollm2")
    by_field = {n.field: n for n in notes}
    assert method == "supervised"
    assert hyper == {"n_epochs": 3, "batch_size": 256, "learning_rate_multiplier": "auto"}
    assert by_field["batch_size"].note.startswith("capped")
    assert "does not transfer" in by_field["learning_rate_multiplier"].note
    assert (by_field["model"].upstream, by_field["model"].local) == ("gpt-4o-mini-2024-07-18", "tiny-smollm2")
    assert by_field["seed"].local == 42
    assert all(n.note for n in notes)


def test_another_provider_keeps_the_multiplier_and_overrides_win(
    local: LocalProvider, remote: UpstreamProvider
) -> None:
    upstream = job(hyper={"n_epochs": "auto", "learning_rate_multiplier": 0.5})
    _, hyper, _ = translate(upstream, request(), remote, "m")
    assert hyper["learning_rate_multiplier"] == 0.5 and hyper["n_epochs"] == "auto"
    _, hyper, notes = translate(upstream, request(hyperparameters={"learning_rate_multiplier": 30}), local, "x")
    assert hyper["learning_rate_multiplier"] == 30
    assert [n.note for n in notes if n.field == "learning_rate_multiplier"] == ["overridden by the request"]


def test_dpo_keeps_beta_and_reinforcement_is_distilled(local: LocalProvider) -> None:
    method, hyper, _ = translate(job("dpo", {"beta": 0.2, "n_epochs": 2}), request(), local, "x")
    assert method == "dpo" and hyper["beta"] == 0.2
    rl = job("reinforcement", {"n_epochs": 1})
    method, hyper, notes = translate(rl, request(), local, "x")
    assert method == "supervised" and "beta" not in hyper
    assert any(n.field == "method" and "distilled" in n.note for n in notes)
    without = item_of(rl, request(), local, training=FILE, validation=None)
    assert without.action == "skip" and "prompt set" in (without.reason or "")
    withp = item_of(rl, request(distil={"prompts_file": "file-p"}), local, training=FILE, validation=None)
    assert withp.action == "distil" and withp.target_method == "supervised"


def test_what_each_job_becomes(local: LocalProvider) -> None:
    body = request(distil={"prompts_file": "file-p"})
    assert item_of(job(), body, local, training=FILE, validation=None).action == "copy"
    gone = item_of(job(), body, local, training=None, validation=None)
    assert gone.action == "distil" and "gone" in (gone.reason or "")
    assert gone.training_file is not None and gone.training_file.state == "missing"
    failed = item_of(job(status="failed", fine_tuned_model=None), body, local, training=FILE, validation=None)
    assert (failed.action, failed.status) == ("skip", "skipped")
    always = item_of(
        job(), request(distil={"prompts_file": "p", "mode": "always"}), local, training=FILE, validation=None
    )
    assert always.action == "distil"
    nameless = item_of(job(), request(keep_names=False), local, training=FILE, validation=None)
    assert nameless.alias is None


def test_totals_price_only_what_can_be_priced(local: LocalProvider) -> None:
    body = request(distil={"prompts_file": "p", "max_tokens": 100}, parity={"max_rows": 10})
    items = [
        item_of(job(validation_file="file-v"), body, local, training=FILE, validation=Listed("v.jsonl", 500, None)),
        item_of(job(id="ftjob-2"), body, local, training=None, validation=None),
    ]
    prices = {"gpt-4o-mini-2024-07-18": ModelPrice(input=1.0, output=2.0)}
    sums = totals(items, body, prompts=20, prompt_tokens=400, prices=prices, tokens_per_second=100.0)
    assert (sums.files, sums.bytes, sums.to_copy, sums.to_distil, sums.aliases) == (2, 1500, 1, 1, 2)
    assert sums.upstream_calls == 20 + 2 * 10
    assert sums.estimated_trained_tokens == 12_000 and sums.estimated_training_seconds == 120
    assert sums.estimated_upstream_cost == pytest.approx((400 * 1.0 + 20 * 100 * 2.0) / 1e6)
    unpriced = totals(items, body, prompts=20, prompt_tokens=400, prices={}, tokens_per_second=None)
    assert unpriced.estimated_upstream_cost is None and unpriced.estimated_training_seconds is None
    assert any("no price configured" in n for n in unpriced.notes)
    assert any("no past job" in n for n in unpriced.notes)


def test_prompts_are_read_from_either_shape(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    lines = [
        {"prompt": "Q1"},
        {"messages": [{"role": "user", "content": "Q2"}, {"role": "assistant", "content": "old answer"}]},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"other": 1},
        "not an object",
        {"prompt": "   "},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    prompts = distil.read_prompts(path, 10)
    assert [(p.kind, p.messages) for p in prompts] == [
        ("prompt", [{"role": "user", "content": "Q1"}]),
        ("chat", [{"role": "user", "content": "Q2"}]),  # the old answer is what the upstream gives anew
    ]
    assert len(distil.read_prompts(path, 1)) == 1
    (tmp_path / "empty.jsonl").write_text('{"other": 1}\n')
    with pytest.raises(distil.NoPrompts):
        distil.read_prompts(tmp_path / "empty.jsonl", 10)


@given(
    answers=st.lists(st.one_of(st.none(), st.text(max_size=5)), min_size=1, max_size=60),
    share=st.floats(min_value=0, max_value=0.5),
)
def test_the_holdout_split_is_stable_and_loses_no_answer(answers: list[str | None], share: float) -> None:
    prompts = [distil.Prompt("prompt", [{"role": "user", "content": f"q{i}"}]) for i in range(len(answers))]
    by_index = dict(enumerate(answers))
    train, held = distil.rows(prompts, by_index, seed="job", holdout=share)
    again = distil.rows(prompts, by_index, seed="job", holdout=share)
    assert (train, held) == again
    kept = [a for a in answers if a is not None and a.strip()]
    assert sorted(r["completion"] for r in train + held) == sorted(kept)
    if share == 0:
        assert held == []


def test_the_markdown_report_escapes_what_it_quotes(local: LocalProvider) -> None:
    item = item_of(job(), request(), local, training=FILE, validation=None)
    item.status = "completed"
    item.parity = Parity(
        eval_id="eval_1",
        upstream_run_id="r1",
        migrated_run_id="r2",
        status="completed",
        rows=2,
        criteria=[],
        disagreements=1,
        examples=[{"upstream": "a | b\nc", "migrated": "d"}],
        holds=True,
    )
    migration = Migration(
        id="mig-1",
        project_id="p",
        provider="openai",
        target_provider="local",
        base_model="tiny-smollm2",
        status=MigrationStatus.completed,
        options=request(parity={"max_regression": 2}).model_dump(mode="json"),
        plan={},
        items=[item.model_dump(mode="json")],
        created_at=utcnow(),
        finished_at=utcnow(),
        switched_at=None,
    )
    report = build_report(migration)
    assert report.summary.parity_holds == 1 and report.summary.completed == 1
    text = markdown(report)
    assert "a \\| b c" in text
    assert "ft:gpt-4o-mini-2024-07-18:acme:support:abc123" in text
    assert "holding for 1 (max regression 2 points)" in text
