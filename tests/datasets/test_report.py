"""The report: token statistics, hyperparameters, duplicates, classification and every suggestion."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import pytest
import tiktoken

from app.datasets import Fix, SuggestionCode, analyse_file
from app.datasets.hyperparams import auto_epochs
from app.datasets.schemas import DatasetReport, Format, Suggestion
from tests.datasets.factories import chat, pc, write_jsonl


def suggestion(report: DatasetReport, code: SuggestionCode) -> Suggestion:
    found = [s for s in report.suggestions if s.code == code]
    assert len(found) == 1, [s.code for s in report.suggestions]
    return found[0]


def codes(report: DatasetReport) -> set[SuggestionCode]:
    return {s.code for s in report.suggestions}


def cookbook_tokens(row: dict[str, Any], enc: tiktoken.Encoding) -> int:
    """OpenAI's cookbook count: 3 per message + each value's tokens (+1 per name) + 3."""
    total = 3
    for message in row["messages"]:
        total += 3
        for key, value in message.items():
            total += len(enc.encode(value))
            if key == "name":
                total += 1
    return total


def test_known_defects_and_token_statistics(tmp_path: Path) -> None:
    rng = random.Random(3)
    words = ["order", "refund", "account", "password", "shipping", "invoice", "delivery", "address"]
    rows: list[Any] = []
    for i in range(200):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(3, 40)))
        rows.append(chat(i, answer=text.capitalize() + "."))
    rows[10] = {"messages": [{"role": "user", "content": "no answer"}]}
    rows[50] = ["not", "an", "object"]
    rows[120] = rows[30]
    rows[121] = rows[31]
    rows[0]["messages"][1]["name"] = "ann"
    path = write_jsonl(tmp_path / "known.jsonl", rows)

    report = analyse_file(path, model="gpt-4o-mini")

    assert report.errors.by_code == {"no_assistant_message": 1, "not_an_object": 1}
    assert [i.line for i in report.errors.items] == [11, 51]
    assert report.n_duplicates == 2
    assert suggestion(report, SuggestionCode.DUPLICATES).lines == [121, 122]
    assert report.tokenizer == "o200k_base"
    enc = tiktoken.get_encoding("o200k_base")
    expected = [cookbook_tokens(r, enc) for r in rows if isinstance(r, dict)]
    assert report.tokens is not None
    assert report.tokens.total == sum(expected)
    assert report.tokens.min == min(expected)
    assert report.tokens.max == max(expected)
    assert report.tokens.p50 == statistics.median(expected)
    assert report.tokens.mean == pytest.approx(sum(expected) / len(expected), abs=0.01)
    answers = [
        len(enc.encode(m["content"]))
        for r in rows
        if isinstance(r, dict)
        for m in r["messages"]
        if m["role"] == "assistant"
    ]
    assert report.target_tokens is not None
    assert report.target_tokens.total == sum(answers)
    hp = report.hyperparameters
    assert hp is not None
    assert hp.n_epochs == 3
    valid_tokens = sum(cookbook_tokens(r, enc) for i, r in enumerate(rows) if i not in (10, 50))
    assert hp.billing_tokens_per_epoch == valid_tokens
    assert hp.estimated_trained_tokens == 3 * valid_tokens
    assert report.model_dump(mode="json")["format"] == "chat"  # JSON-serialisable


@pytest.mark.parametrize(
    ("n", "epochs"), [(1, 25), (3, 25), (10, 10), (20, 5), (34, 3), (100, 3), (8333, 3), (8334, 2), (30000, 1)]
)
def test_auto_epochs_follow_openai(n: int, epochs: int) -> None:
    assert auto_epochs(n) == epochs


def test_prompt_completion_clean_file_has_no_suggestions(tmp_path: Path) -> None:
    report = analyse_file(write_jsonl(tmp_path / "ok.jsonl", [pc(i) for i in range(20)]))
    assert report.ok
    assert report.suggestions == []


def test_missing_separator_stop_and_leading_space(tmp_path: Path) -> None:
    rows = [pc(i, prompt=f"Describe item {i}", completion=f"Item {i} is a widget{'!' * (i % 2)}") for i in range(20)]
    report = analyse_file(write_jsonl(tmp_path / "raw.jsonl", rows))

    sep = suggestion(report, SuggestionCode.MISSING_SEPARATOR)
    assert (sep.fix, sep.value, sep.recommended, sep.count) == (Fix.ADD_SEPARATOR, "\n\n###\n\n", True, 20)
    stop = suggestion(report, SuggestionCode.MISSING_STOP_SEQUENCE)
    assert (stop.fix, stop.value, stop.recommended) == (Fix.ADD_STOP_SEQUENCE, "\n", True)
    space = suggestion(report, SuggestionCode.NO_LEADING_WHITESPACE)
    assert (space.fix, space.count, space.lines[:3]) == (Fix.ADD_LEADING_WHITESPACE, 20, [1, 2, 3])


def test_separator_choice_avoids_text_already_in_prompts(tmp_path: Path) -> None:
    rows = [pc(i, prompt=f"A\n\n###\n\nB{i}", completion=f" x{i}{'.' if i % 2 else ''}") for i in range(12)]
    report = analyse_file(write_jsonl(tmp_path / "hashes.jsonl", rows))
    assert suggestion(report, SuggestionCode.MISSING_SEPARATOR).value == " ->"


def test_inconsistent_separator_and_stop(tmp_path: Path) -> None:
    rows = [
        pc(i, prompt=f"Q{i}" + (" ->" if i % 3 else "\n\n###\n\n"), completion=f" A{i}" + (" END" if i % 2 else "###"))
        for i in range(12)
    ]
    report = analyse_file(write_jsonl(tmp_path / "mixed.jsonl", rows))

    sep = suggestion(report, SuggestionCode.INCONSISTENT_SEPARATOR)
    assert (sep.value, sep.count) == (" ->", 4)
    stop = suggestion(report, SuggestionCode.INCONSISTENT_STOP_SEQUENCE)
    assert stop.value in (" END", "###")
    assert stop.count == 6


def test_case_suggestions(tmp_path: Path) -> None:
    upper = [chat(i, answer=f"ITEM {i} IS A WIDGET.") for i in range(12)]
    report = analyse_file(write_jsonl(tmp_path / "upper.jsonl", upper))
    found = suggestion(report, SuggestionCode.ALL_UPPERCASE)
    assert (found.fix, found.recommended, found.count) == (Fix.LOWERCASE, False, 12)

    lower = [chat(i, answer=f"item {i} is a widget.") for i in range(12)]
    report = analyse_file(write_jsonl(tmp_path / "lower.jsonl", lower))
    assert suggestion(report, SuggestionCode.ALL_LOWERCASE).fix is None

    mixed = analyse_file(write_jsonl(tmp_path / "mixed.jsonl", [chat(i) for i in range(12)]))
    assert not codes(mixed) & {SuggestionCode.ALL_UPPERCASE, SuggestionCode.ALL_LOWERCASE}


def test_empty_completions_and_invalid_examples(tmp_path: Path) -> None:
    rows: list[object] = [pc(i) for i in range(12)]
    rows[3] = pc(3, completion="")
    rows[7] = {"prompt": "p"}
    report = analyse_file(write_jsonl(tmp_path / "e.jsonl", rows))

    empty = suggestion(report, SuggestionCode.EMPTY_COMPLETIONS)
    assert (empty.lines, empty.fix) == ([4], Fix.DROP_EMPTY_COMPLETIONS)
    invalid = suggestion(report, SuggestionCode.INVALID_EXAMPLES)
    assert (invalid.lines, invalid.fix) == ([8], Fix.DROP_INVALID)


def test_long_examples_without_a_model_use_the_cookbook_limit(tmp_path: Path) -> None:
    rows = [chat(i) for i in range(12)] + [chat(99, answer="token " * 17_000)]
    report = analyse_file(write_jsonl(tmp_path / "long.jsonl", rows))

    assert report.errors.total == 0  # no model: a warning-level suggestion, not an error
    long = suggestion(report, SuggestionCode.LONG_EXAMPLES)
    assert (long.lines, long.fix) == ([13], Fix.DROP_LONG_EXAMPLES)
    assert report.hyperparameters is not None
    assert report.hyperparameters.max_tokens_per_example == 16_385


def test_classification_classes_balance_and_single_tokens(tmp_path: Path) -> None:
    labels = [" positive"] * 20 + [" negative"] * 10 + [" rather mixed feelings"] * 5
    rows = [pc(i, prompt=f"Review {i}\n\n###\n\n", completion=label + "\n") for i, label in enumerate(labels)]
    report = analyse_file(write_jsonl(tmp_path / "cls.jsonl", rows))

    cls = report.classification
    assert cls is not None
    assert [(c.label, c.count, c.single_token) for c in cls.classes] == [
        (" positive\n", 20, True),
        (" negative\n", 10, True),
        (" rather mixed feelings\n", 5, False),
    ]
    assert cls.imbalance == 4.0
    assert not cls.all_single_token
    assert SuggestionCode.CLASSIFICATION in codes(report)


def test_free_text_is_not_classification(tmp_path: Path) -> None:
    report = analyse_file(write_jsonl(tmp_path / "gen.jsonl", [chat(i) for i in range(40)]))
    assert report.classification is None


def test_chat_classification_uses_the_last_assistant_message(tmp_path: Path) -> None:
    rows = [chat(i, answer=["yes", "no"][i % 2]) for i in range(30)]
    report = analyse_file(write_jsonl(tmp_path / "yn.jsonl", rows))
    assert report.format is Format.CHAT
    assert report.classification is not None
    assert {c.label: c.count for c in report.classification.classes} == {"yes": 15, "no": 15}


@pytest.mark.parametrize(
    ("labels", "stop"),
    [((" positive", " negative"), ""), ((" positive END", " negative END"), " END"), ((" active", " passive"), "")],
)
def test_labels_that_end_alike_are_not_cut_at_their_shared_letters(
    tmp_path: Path, labels: tuple[str, str], stop: str
) -> None:
    # ' positive' and ' negative' share 'ive': a word fragment, not a stop sequence. Cutting it off made every label
    # look like several tokens and hid the missing stop sequence.
    rows = [pc(i, prompt=f"Review {i}\n\n###\n\n", completion=labels[i % 2]) for i in range(40)]
    report = analyse_file(write_jsonl(tmp_path / "sentiment.jsonl", rows))

    assert report.classification is not None
    assert report.classification.all_single_token
    assert [c.label for c in report.classification.classes] == sorted(labels, key=labels.index)
    stop_suggested = any(s.fix is Fix.ADD_STOP_SEQUENCE for s in report.suggestions)
    assert stop_suggested == (stop == "")
