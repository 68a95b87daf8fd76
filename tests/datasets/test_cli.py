"""``ftgw prepare-data``: the questions, -q, the files written and the command printed."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from app.datasets.cli import app
from tests.datasets.factories import pc, read_jsonl, write_jsonl

runner = CliRunner()


def raw_file(tmp_path: Path) -> Path:
    rows = [pc(i, prompt=f"Describe item {i}", completion=f"Widget number {i}") for i in range(12)]
    return write_jsonl(tmp_path / "items.jsonl", rows)


def test_yes_to_every_fix(tmp_path: Path) -> None:
    source = raw_file(tmp_path)

    result = runner.invoke(app, ["-f", str(source)], input="y\n" * 3)

    assert result.exit_code == 0, result.output
    assert result.output.count("[Y/n]") == 3
    prepared = tmp_path / "items_prepared.jsonl"
    assert read_jsonl(prepared)[0] == {"prompt": "Describe item 0\n\n###\n\n", "completion": " Widget number 0\n"}
    assert f"ftgw fine-tunes create -t {prepared} -m gpt-4o-mini-2024-07-18" in result.output
    assert "12 examples, format prompt_completion" in result.output


def test_no_to_every_fix_writes_the_data_unchanged(tmp_path: Path) -> None:
    source = raw_file(tmp_path)

    result = runner.invoke(app, ["-f", str(source), "-m", "gpt-3.5-turbo-0125"], input="n\n" * 3)

    assert result.exit_code == 0, result.output
    assert read_jsonl(tmp_path / "items_prepared.jsonl") == read_jsonl(source)
    assert "-m gpt-3.5-turbo-0125" in result.output


def test_quiet_accepts_recommended_fixes_and_splits_classification(tmp_path: Path) -> None:
    labels = [" yes", " no"] * 15
    rows = [pc(i, prompt=f"Is this even: {i}", completion=label) for i, label in enumerate(labels)]
    source = write_jsonl(tmp_path / "yn.jsonl", rows)

    result = runner.invoke(app, ["-f", str(source), "-q"])

    assert result.exit_code == 0, result.output
    assert "[Y/n]" not in result.output
    train, valid = tmp_path / "yn_prepared_train.jsonl", tmp_path / "yn_prepared_valid.jsonl"
    assert len(read_jsonl(train)) == 24
    assert len(read_jsonl(valid)) == 6
    assert read_jsonl(train)[0]["prompt"].endswith("\n\n###\n\n")
    assert f"-t {train} -v {valid}" in result.output
    assert "class ' yes': 15" in result.output


def test_missing_file_and_unusable_file(tmp_path: Path) -> None:
    assert runner.invoke(app, ["-f", str(tmp_path / "nope.jsonl")]).exit_code == 2
    bad = tmp_path / "cols.csv"
    bad.write_text("question,answer\nq,a\n")
    result = runner.invoke(app, ["-f", str(bad), "-q"])
    assert result.exit_code == 1
    assert "prompt, completion" in result.output
    assert not (tmp_path / "cols_prepared.jsonl").exists()
